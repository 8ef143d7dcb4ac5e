"""Operation counts and memory: the paper's formulas, and the work fftconv actually executes.

The only home of these counts; the cost model (:mod:`fftconv.choose.model`) turns them into seconds. The paper's
counts (section 2, Table 1, and its memory formula; see docs/paper.md) are for one layer with a minibatch of ``S``
images of ``f`` input maps of size ``n x n``, ``f'`` output maps and ``k x k`` kernels, one operation per
multiply-add. ``C`` is the constant of the FFT's ``O(n^2 log n)``, which the paper does not state; ``C = 5`` (the
usual ``5 N log2 N`` complex-FFT count) matches its Figure 2.

What fftconv executes is counted in real floating-point operations (a multiply and an add count as two): a real FFT
of ``N`` points costs ``2.5 N log2 N`` flops (half a complex FFT), small kernels may instead be transformed by
DFT-matrix products (:func:`kernel_dft_flops`), and the per-bin complex GEMMs cost 8 flops per complex multiply-add
over the bins :func:`fftconv.spectral.hermitian_matmul` multiplies (the half spectrum less its conjugate pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .geometry import ConvGeometry
from .passes import Pass
from .rates import MachineRates, get_rates
from .sizes import half_spectrum_shape, multiplied_bins

#: The constant of the paper's FFT cost used when none is given (see the module docstring).
DEFAULT_FFT_CONSTANT = 5.0


# ---------------------------------------------------------------------- the paper's counts
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

    ``2C n^2 log2(n) (S f + f' f) + 4 S f' f n^2 + 2C n^2 log2(n) S f'``: forward transforms of inputs and kernels,
    the products in the frequency domain, and the inverse transforms of the outputs.

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


# ---------------------------------------------------------------------- what fftconv executes
def real_fft_flops(fft_shape: Sequence[int]) -> float:
    """Flops of one real multi-dimensional FFT of ``N = prod(fft_shape)`` points: ``2.5 N log2 N``.

    Half the conventional ``5 N log2 N`` of a complex FFT, since a real transform does about half the work. The same
    count is used for the inverse; a one-point transform costs nothing.

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
    bins = half_spectrum_shape(fft_shape)
    multiply_adds = sum(math.prod(kernel_shape[:i + 1]) * math.prod(bins[i:]) for i in range(len(bins)))
    return 8.0 * multiply_adds


def kernels_by_matrix(kernel_shape: Sequence[int], fft_shape: Sequence[int], rates: MachineRates | None = None) -> bool:
    """Whether kernel-size maps are transformed faster by DFT matrices than by the FFT, at these rates.

    Each way's flops at its rate (:attr:`~fftconv.rates.MachineRates.dft_matrix_flops` and
    :attr:`~fftconv.rates.MachineRates.fft_flops`); ``rates`` defaults to the rates in use
    (:func:`fftconv.rates.get_rates`).

    Examples
    --------
    >>> defaults = MachineRates()
    >>> kernels_by_matrix((5, 5), (32, 32), defaults), kernels_by_matrix((31, 31), (32, 32), defaults)
    (True, False)
    """
    rates = rates or get_rates()
    by_matrix = rates.dft_matrix_seconds(kernel_dft_flops(kernel_shape, fft_shape))
    return by_matrix < rates.fft_seconds(real_fft_flops(fft_shape))


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


@dataclass(frozen=True)
class FFTPassWork:
    """The transforms and products one pass of the FFT algorithm executes at one FFT size.

    Every pass transforms its two operands and inverse-transforms its result (nothing is cached between passes),
    and does one complex GEMM ``(m x k) @ (k x n)`` per multiplied bin and group:

    ============  =========================  ===================  ===================
    pass          forward transforms (maps)  inverse (maps)       GEMM ``m x k x n``
    ============  =========================  ===================  ===================
    forward       ``S f + f' f/g``           ``S f'``             ``S x f/g x f'/g``
    input         ``S f' + f' f/g``          ``S f``              ``S x f'/g x f/g``
    weight        ``S f + S f'``             ``f' f/g``           ``f'/g x S x f/g``
    ============  =========================  ===================  ===================

    with ``g`` groups. The ``f' f/g`` kernel-size maps (kernels, and the weight gradient's inverse) are done by
    DFT-matrix products when ``kernels_by_gemm`` is true. Cropping, layout copies and conjugation move data and
    are not counted.
    """

    pass_name: Pass
    fft_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    kernels_by_gemm: bool
    fft_maps: tuple[int, int]      # (forward, inverse) maps transformed by the FFT backend
    matrix_maps: tuple[int, int]   # (forward, inverse) kernel-size maps transformed by DFT matrices
    gemm_shape: tuple[int, int, int]  # (m, k, n) of one per-bin product
    gemm_count: int                # per-bin products: multiplied bins times groups

    @classmethod
    def of(cls, geometry: ConvGeometry, fft_shape: Sequence[int], pass_name: Union[Pass, str] = Pass.FORWARD,
           kernels_by_gemm: bool | None = None) -> "FFTPassWork":
        """The work of ``pass_name`` on ``geometry`` at ``fft_shape``; ``kernels_by_gemm=None``: as fftconv decides
        (:func:`kernels_by_matrix` at the rates in use)."""
        pass_name = Pass.parse(pass_name)
        fft_shape = tuple(int(n) for n in fft_shape)
        if len(fft_shape) != geometry.ndim:
            raise ValueError(f"fft_shape={fft_shape} must have one size per spatial dimension ({geometry.ndim})")
        if kernels_by_gemm is None:
            kernels_by_gemm = kernels_by_matrix(geometry.kernel_shape, fft_shape)
        g = geometry
        cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
        inputs, grads, kernels = g.batch * g.in_channels, g.batch * g.out_channels, g.out_channels * cg
        forward_maps, inverse_maps, kernel_end, gemm = {
            Pass.FORWARD: (inputs, grads, 0, (g.batch, cg, fg)),
            Pass.INPUT: (grads, inputs, 0, (g.batch, fg, cg)),
            Pass.WEIGHT: (inputs + grads, 0, 1, (fg, g.batch, cg)),
        }[pass_name]
        kernel_maps = [0, 0]
        kernel_maps[kernel_end] = kernels
        fft_maps = [forward_maps, inverse_maps]
        if not kernels_by_gemm:
            fft_maps[kernel_end] += kernels
            kernel_maps = [0, 0]
        return cls(pass_name, fft_shape, g.kernel_shape, bool(kernels_by_gemm), tuple(fft_maps),
                   tuple(kernel_maps), gemm, multiplied_bins(fft_shape) * g.groups)

    def flops(self) -> FlopCount:
        """The flops of this work, split into forward transforms, products and inverse transforms."""
        one = real_fft_flops(self.fft_shape)
        by_matrix = kernel_dft_flops(self.kernel_shape, self.fft_shape)
        m, k, n = self.gemm_shape
        return FlopCount(forward_transforms=self.fft_maps[0] * one + self.matrix_maps[0] * by_matrix,
                         products=complex_gemm_flops(m, k, n) * self.gemm_count,
                         inverse_transforms=self.fft_maps[1] * one + self.matrix_maps[1] * by_matrix,
                         kernels_by_gemm=self.kernels_by_gemm)


def executed_flops(geometry: ConvGeometry, fft_shape: Sequence[int], pass_name: Union[Pass, str] = Pass.FORWARD,
                   kernels_by_gemm: bool | None = None) -> FlopCount:
    """Flops fftconv executes for one pass of ``geometry`` at circular size ``fft_shape`` (see :class:`FFTPassWork`).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((128, 96, 32, 32), (256, 96, 7, 7))
    >>> count = executed_flops(g, (32, 32), "forward", kernels_by_gemm=False)
    >>> f"{count.total:.4g}", f"{count.products / count.total:.2f}"
    ('1.472e+10', '0.88')
    """
    return FFTPassWork.of(geometry, fft_shape, pass_name, kernels_by_gemm).flops()


def complex_gemm_flops(m: int, k: int, n: int) -> float:
    """Flops of one complex GEMM ``(m x k) @ (k x n)``: 8 per complex multiply-add."""
    return 8.0 * m * k * n


def real_gemm_flops(m: int, k: int, n: int) -> float:
    """Flops of one real GEMM ``(m x k) @ (k x n)``: 2 per multiply-add."""
    return 2.0 * m * k * n


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


# ---------------------------------------------------------------------- bytes
def spectra_bytes(geometry: ConvGeometry, fft_shape: Sequence[int], complex_itemsize: int = 8) -> int:
    """Bytes of the half spectra of a training step's ``S f + S f' + f' f/g`` maps (without the storage's padding).

    Examples
    --------
    >>> spectra_bytes(ConvGeometry.from_shapes((128, 96, 16, 16), (256, 96, 3, 3)), (16, 16))  # 16 x 9 bins
    80216064
    """
    g = geometry
    maps = g.batch * g.in_channels + g.batch * g.out_channels + g.out_channels * (g.in_channels // g.groups)
    return complex_itemsize * math.prod(half_spectrum_shape(fft_shape)) * maps


def im2col_column_bytes(geometry: ConvGeometry, dtype=np.float32) -> int:
    """Bytes of im2col's unfolded input, ``(f * prod(k), S * prod(m))`` values."""
    g = geometry
    return g.batch * math.prod(g.output_shape) * g.in_channels * math.prod(g.kernel_shape) * np.dtype(dtype).itemsize


def spatial_workspace_bytes(geometry: ConvGeometry, dtype, algo: str) -> int:
    """Bytes a spatial algorithm (``"im2col"`` or ``"direct"``) holds at once: the padded input, the output and the
    weight, plus the unfolded columns for im2col. ``dtype`` is the precision it computes in."""
    g = geometry
    arrays = math.prod(g.full_padded_input_shape) + math.prod(g.full_output_shape) + math.prod(g.full_weight_shape)
    needed = arrays * np.dtype(dtype).itemsize
    return needed + (im2col_column_bytes(g, dtype) if algo == "im2col" else 0)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
