"""Operation counts and memory: the paper's formulas, and the FLOPs fftconv actually executes.

The paper (Mathieu, Henaff & LeCun 2014, section 2) counts "operations" for one layer with a minibatch of ``S``
images of ``f`` input maps of size ``n x n``, ``f'`` output maps and ``k x k`` kernels:

- direct forward pass: ``S f' f (n - k + 1)^2 k^2`` (one operation per multiply-add);
- FFT forward pass (the first row of its Table 1): ``2C n^2 log2(n) (S f + f' f)`` to transform inputs and kernels,
  ``4 S f' f n^2`` for the products in the frequency domain and ``2C n^2 log2(n) S f'`` for the inverse transforms.
  ``C`` is the constant hidden in the FFT's ``O(n^2 log n)``; the paper does not state it. ``C = 5`` (the usual
  ``5 N log2 N`` complex-FFT count) matches its Figure 2.
- memory for the spectra: ``4 n (n + 1) (S f + S f' + f f')`` bytes (half spectra of float complex numbers).

:func:`executed_flops` counts what fftconv runs instead, in real floating-point operations (a multiply and an add
count as two): a real FFT of ``N`` points costs about ``2.5 N log2 N`` flops (half a complex FFT), small kernels
may instead be transformed by DFT-matrix products (:func:`kernel_dft_flops`), and the per-bin complex GEMMs cost 8
flops per complex multiply-add over the Hermitian half spectrum that fftconv keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .geometry import ConvGeometry

#: The constant of the FFT cost used when none is given (see the module docstring).
DEFAULT_FFT_CONSTANT = 5.0
#: The three passes of a training step, in the order the paper lists them.
PASSES = ("forward", "grad_input", "grad_weight")


def direct_ops(batch: int, in_channels: int, out_channels: int, input_size: int, kernel_size: int) -> int:
    """The paper's operation count of a direct convolution layer: ``S f' f (n - k + 1)^2 k^2``.

    The paper gives the same count for all three passes (its Table 1). One operation is one multiply-add.

    Examples
    --------
    The setting of the paper's Figure 2 (S=128, f=96, f'=256, k=7) at n=32:

    >>> direct_ops(128, 96, 256, 32, 7)
    104199094272
    """
    _check_positive(batch=batch, in_channels=in_channels, out_channels=out_channels, input_size=input_size,
                    kernel_size=kernel_size)
    if kernel_size > input_size:
        raise ValueError(f"kernel_size={kernel_size} is larger than input_size={input_size}")
    return batch * out_channels * in_channels * (input_size - kernel_size + 1) ** 2 * kernel_size ** 2


def fft_ops(batch: int, in_channels: int, out_channels: int, input_size: int,
            fft_constant: float = DEFAULT_FFT_CONSTANT) -> float:
    """The paper's operation count of an FFT convolution layer (Table 1, forward row), independent of ``k``.

    ``2C n^2 log2(n) (S f + f' f) + 4 S f' f n^2 + 2C n^2 log2(n) S f'``.

    Examples
    --------
    >>> f"{fft_ops(128, 96, 256, 32):.4g}"
    '1.645e+10'
    >>> fft_ops(1, 1, 1, 2, fft_constant=1.0)  # 2*4*1*(1+1) + 4*4 + 2*4*1
    40.0
    """
    _check_positive(batch=batch, in_channels=in_channels, out_channels=out_channels, input_size=input_size)
    if fft_constant <= 0:
        raise ValueError(f"fft_constant must be positive, got {fft_constant}")
    one_transform = 2 * fft_constant * input_size ** 2 * math.log2(input_size)
    forward_transforms = one_transform * (batch * in_channels + out_channels * in_channels)
    products = 4 * batch * out_channels * in_channels * input_size ** 2
    inverse_transforms = one_transform * batch * out_channels
    return forward_transforms + products + inverse_transforms


def paper_memory_bytes(batch: int, in_channels: int, out_channels: int, input_size: int) -> int:
    """The paper's memory for the spectra of one layer (section 2.3): ``4 n (n + 1) (S f + S f' + f f')`` bytes.

    ``S f + S f' + f f'`` maps, each stored as ``n (n + 1) / 2`` complex numbers of two 4-byte floats.

    Examples
    --------
    The first row of the paper's memory table (printed as 76MB, with MB = 10^6 bytes):

    >>> paper_memory_bytes(128, 96, 256, 16)
    75759616
    """
    _check_positive(batch=batch, in_channels=in_channels, out_channels=out_channels, input_size=input_size)
    maps = batch * in_channels + batch * out_channels + in_channels * out_channels
    return 4 * input_size * (input_size + 1) * maps


def real_fft_flops(fft_shape: Sequence[int]) -> float:
    """Flops of one real multi-dimensional FFT of ``N = prod(fft_shape)`` points: ``2.5 N log2 N``.

    Half the conventional ``5 N log2 N`` of a complex FFT, since a real transform does about half the work. The same
    count is used for the inverse.

    Examples
    --------
    >>> real_fft_flops((32, 32))
    25600.0
    """
    points = math.prod(fft_shape)
    if points < 1:
        raise ValueError(f"fft_shape must have positive sizes, got {tuple(fft_shape)}")
    return 2.5 * points * math.log2(points)


def kernel_dft_flops(kernel_shape: Sequence[int], fft_shape: Sequence[int]) -> float:
    """Flops of transforming one kernel-size map by DFT-matrix products (fftconv's alternative to an FFT).

    Applied one axis at a time, the half spectrum of a ``k``-support map costs ``sum_i prod(k[:i+1]) *
    prod(bins[i:])`` complex multiply-adds (8 flops each), with ``bins`` the half-spectrum shape; the inverse that
    reads only ``k`` outputs per axis costs the same.

    Examples
    --------
    >>> kernel_dft_flops((3, 3), (8, 8))  # 8 * (3*8*5 + 3*3*5)
    1320.0
    """
    bins = (*fft_shape[:-1], fft_shape[-1] // 2 + 1)
    multiply_adds = sum(math.prod(kernel_shape[:i + 1]) * math.prod(bins[i:]) for i in range(len(bins)))
    return 8.0 * multiply_adds


@dataclass(frozen=True)
class FlopCount:
    """Real flops of one FFT convolution pass, split by stage.

    ``forward_transforms`` and ``inverse_transforms`` include kernel-size maps transformed by DFT-matrix products
    when ``kernels_by_gemm`` is true.
    """

    forward_transforms: float
    products: float
    inverse_transforms: float
    kernels_by_gemm: bool = False

    @property
    def transforms(self) -> float:
        return self.forward_transforms + self.inverse_transforms

    @property
    def total(self) -> float:
        return self.forward_transforms + self.products + self.inverse_transforms


def executed_flops(geometry: ConvGeometry, fft_shape: Sequence[int], pass_name: str = "forward",
                   kernels_by_gemm: bool | None = None) -> FlopCount:
    """Flops fftconv executes for one pass of ``geometry`` at circular size ``fft_shape``.

    Every pass transforms its two operands and inverse-transforms its result (the paper's memory-saving choice:
    nothing is cached between passes), and does one complex GEMM per bin of the half spectrum:

    ============  =========================  ===================  ==================
    pass          forward transforms (maps)  inverse (maps)       GEMM per bin
    ============  =========================  ===================  ==================
    forward       ``S f + f' f/g``           ``S f'``             ``S x f/g x f'/g``
    grad_input    ``S f' + f' f/g``          ``S f``              ``S x f'/g x f/g``
    grad_weight   ``S f + S f'``             ``f' f/g``           ``f'/g x S x f/g``
    ============  =========================  ===================  ==================

    with ``g`` groups. The ``f' f/g`` kernel-size maps (kernels, and the weight gradient's inverse) are done by
    DFT-matrix products (:func:`kernel_dft_flops`) when ``kernels_by_gemm`` is true; ``None`` asks
    :class:`~fftconv.spectral.SpectralPlan` which way fftconv goes. Cropping, layout copies and conjugation are not
    counted (they move data, no arithmetic).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((128, 96, 32, 32), (256, 96, 7, 7))
    >>> count = executed_flops(g, (32, 32), "forward", kernels_by_gemm=False)
    >>> f"{count.total:.4g}", f"{count.products / count.total:.2f}"
    ('1.547e+10', '0.88')
    """
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    fft_shape = tuple(int(n) for n in fft_shape)
    if len(fft_shape) != geometry.ndim:
        raise ValueError(f"fft_shape={fft_shape} must have one size per spatial dimension ({geometry.ndim})")
    if kernels_by_gemm is None:
        from .spectral import SpectralPlan  # here: spectral needs nothing from this module

        kernels_by_gemm = SpectralPlan.create(geometry, "float32", fft_size=fft_shape,
                                              check_memory=False).kernels_by_gemm
    batch, f_in, f_out = geometry.batch, geometry.in_channels, geometry.out_channels
    kernels = f_out * (f_in // geometry.groups)
    bins = math.prod(fft_shape[:-1]) * (fft_shape[-1] // 2 + 1)
    gemm = 8 * bins * batch * (f_in // geometry.groups) * (f_out // geometry.groups) * geometry.groups
    one = real_fft_flops(fft_shape)
    kernel_map = kernel_dft_flops(geometry.kernel_shape, fft_shape) if kernels_by_gemm else one
    forward_flops, inverse_flops = {
        "forward": ((batch * f_in) * one + kernels * kernel_map, batch * f_out * one),
        "grad_input": ((batch * f_out) * one + kernels * kernel_map, batch * f_in * one),
        "grad_weight": ((batch * f_in + batch * f_out) * one, kernels * kernel_map),
    }[pass_name]
    return FlopCount(forward_transforms=forward_flops, products=float(gemm), inverse_transforms=inverse_flops,
                     kernels_by_gemm=bool(kernels_by_gemm))


def direct_flops(geometry: ConvGeometry) -> int:
    """Flops of one pass of a direct (or im2col) convolution: two per multiply-add, ``2 S f' (f/g) m k``.

    ``m`` and ``k`` are the products of the output and kernel sizes. All three passes have the same count.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((128, 96, 32, 32), (256, 96, 7, 7))
    >>> direct_flops(g) == 2 * direct_ops(128, 96, 256, 32, 7)
    True
    """
    return (2 * geometry.batch * geometry.out_channels * (geometry.in_channels // geometry.groups)
            * math.prod(geometry.output_shape) * math.prod(geometry.kernel_shape))


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
