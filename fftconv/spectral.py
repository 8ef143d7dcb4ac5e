"""The paper's algorithm: all three convolutions of a training step as per-frequency complex matrix products.

Mathieu, Henaff & LeCun (2014) observe that in the forward pass (``updateOutput``), the input gradient
(``updateGradInput``) and the weight gradient (``accGradParameters``), every map indexed by ``f`` meets every map
indexed by ``f'``. So each input map, kernel and output-gradient map is transformed once, and the sum over the shared
axis becomes one complex GEMM per frequency bin:

=================  ============================================  =========================  ==============
pass               frequency domain (per bin, per group)          contracted axis            crop
=================  ============================================  =========================  ==============
forward            ``Y   = X  @ conj(W)^T``    (S x f')          input channels ``f``       output ``m``
input gradient     ``GX  = GY @ W``            (S x f)           output channels ``f'``     input ``n``
weight gradient    ``GW  = conj(GY)^T @ X``    (f' x f)          batch ``S``                kernel ``k``
=================  ============================================  =========================  ==============

The conjugates give PyTorch's cross-correlation (not convolution): for real ``w``, the transform of
``c[j] = sum_t x[j + t] w[t]`` is ``X * conj(W)``; the input gradient is a true convolution of the
stride-upsampled gradient with the dilated kernel (no conjugate); the weight gradient correlates the input with the
upsampled gradient. See ``mathieu2014.md`` ("Quick reference for implementers") and fbcunn's kernels.

Layout. Spectra are kept **frequency-major**: ``(*bins, groups, rows, cols)``, so the per-bin products are one
batched ``matmul`` over contiguous matrices with no transposes of spectra. To get there the (smaller, real) spatial
arrays are transposed *before* the forward transform, and the FFTs run over the leading axes.

Padding and stride. Inputs are transformed unpadded; zero padding before the data is a cyclic shift of the
circular result, and the stride is applied by reading every ``s``-th coefficient of the stride-1 result
(the input gradient and weight gradient use the zero-upsampled output gradient). The circular size is at least
:attr:`fftconv.geometry.ConvGeometry.minimal_fft_shape`, which makes every kept coefficient exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence, Union

import numpy as np

from . import _memory
from .backends import FFTBackend, get_backend, smooth_sizes_between
from .geometry import ConvGeometry

FFTSizePolicy = Literal["fast", "pow2", "minimal"]
FFT_SIZE_POLICIES = ("fast", "pow2", "minimal")
#: Measured default (README, "Choosing defaults"): 7-smooth sizes avoid the slow prime sizes of "minimal" and the
#: up-to-2x padding of "pow2".
DEFAULT_FFT_SIZE: FFTSizePolicy = "fast"


def next_fast_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c 7^d >= n``.

    Examples
    --------
    >>> [next_fast_size(n) for n in (11, 13, 17, 22, 64)]
    [12, 14, 18, 24, 64]
    """
    return smooth_sizes_between(n, 2 * n)[0]


def next_power_of_two(n: int) -> int:
    """Smallest power of two ``>= n``.

    Examples
    --------
    >>> next_power_of_two(33)
    64
    """
    return 1 << max(0, (n - 1).bit_length())


def fft_shape_for(geometry: ConvGeometry, policy: Union[FFTSizePolicy, Sequence[int], None] = None) -> tuple[int, ...]:
    """Circular FFT size per spatial dimension for ``geometry`` under a size policy.

    Parameters
    ----------
    policy : {"fast", "pow2", "minimal"} or tuple of int, optional
        ``"minimal"``: the smallest exact size; ``"pow2"``: the next power of two (as in the paper);
        ``"fast"`` (default): the next ``2^a 3^b 5^c 7^d``. An explicit tuple is checked against the minimum.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((1, 1, 27, 27), (1, 1, 5, 5))
    >>> fft_shape_for(g, "minimal"), fft_shape_for(g, "fast"), fft_shape_for(g, "pow2")
    ((27, 27), (27, 27), (32, 32))
    """
    minimal = geometry.minimal_fft_shape
    if policy is None:
        policy = DEFAULT_FFT_SIZE
    if isinstance(policy, str):
        if policy == "minimal":
            return minimal
        if policy == "pow2":
            return tuple(next_power_of_two(n) for n in minimal)
        if policy == "fast":
            return tuple(next_fast_size(n) for n in minimal)
        raise ValueError(f"fft_size must be one of {FFT_SIZE_POLICIES} or a tuple of ints, got {policy!r}")
    shape = tuple(int(n) for n in policy)
    if len(shape) != geometry.ndim or any(n < m for n, m in zip(shape, minimal)):
        raise ValueError(f"fft_size={shape} is too small for this convolution; every dimension must be at least "
                         f"{minimal} to avoid wrap-around")
    return shape


def _half(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[:-1], shape[-1] // 2 + 1)


def _cyclic_index(count: int, step: int, offset: int, size: int) -> np.ndarray:
    """Indices ``(i * step + offset) mod size`` for ``i < count``: strided reads with a cyclic shift."""
    return (np.arange(count) * step + offset) % size


def _gather(array: np.ndarray, indices: Sequence[np.ndarray]) -> np.ndarray:
    """Outer-product fancy indexing over the leading ``len(indices)`` axes."""
    return array[np.ix_(*indices)] if len(indices) > 1 else array[indices[0]]


@dataclass
class SpectralPlan:
    """Everything needed to run the three passes of one geometry in the frequency domain.

    The six methods are the paper's building blocks. The ``transform_*`` methods take an optional ``out``, a
    preallocated complex array of shape ``spectrum_shapes[name]`` and dtype ``complex_dtype`` (a workspace); layers call them directly to reuse spectra between forward and
    backward (``transform_input`` in forward, reused in ``grad_weight``; ``transform_weight`` reused in
    ``grad_input``). Spectra are opaque, frequency-major arrays; only this class reads them.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((2, 3, 8, 8), (4, 3, 3, 3))
    >>> plan = SpectralPlan.create(g, np.float64, backend="numpy")
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    >>> y = plan.forward(plan.transform_input(x), plan.transform_weight(w))
    >>> y.shape
    (2, 4, 6, 6)
    """

    geometry: ConvGeometry
    dtype: np.dtype
    fft_shape: tuple[int, ...]
    backend: FFTBackend
    spectrum_shapes: dict = field(init=False, repr=False)

    @classmethod
    def create(cls, geometry: ConvGeometry, dtype, backend: Union[str, FFTBackend, None] = None,
               fft_size: Union[FFTSizePolicy, Sequence[int], None] = None, check_memory: bool = True) -> "SpectralPlan":
        plan = cls(geometry, np.dtype(dtype), fft_shape_for(geometry, fft_size), get_backend(backend))
        if check_memory:
            _memory.check_fits(plan.peak_bytes(), f"the FFT convolution {geometry} at FFT size {plan.fft_shape}",
                               "use a smaller batch, fft_size='minimal', or algo='im2col'")
        return plan

    def __post_init__(self):
        g = self.geometry
        bins = _half(self.fft_shape)
        cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
        self.spectrum_shapes = {
            "input": (*bins, g.groups, g.batch, cg),
            "weight": (*bins, g.groups, fg, cg),
            "grad_output": (*bins, g.groups, g.batch, fg),
        }

    # ------------------------------------------------------------------ sizes
    @property
    def complex_dtype(self) -> np.dtype:
        return np.result_type(self.dtype, np.complex64)

    def spectrum_bytes(self) -> dict[str, int]:
        """Bytes of each of the three spectra (input, weight, output gradient)."""
        item = self.complex_dtype.itemsize
        return {name: math.prod(shape) * item for name, shape in self.spectrum_shapes.items()}

    def peak_bytes(self) -> int:
        """Upper estimate of the memory one pass allocates: three spectra, a product and one spatial result."""
        spectra = self.spectrum_bytes()
        spatial = math.prod(self.fft_shape) * self.dtype.itemsize * self.geometry.batch * max(
            self.geometry.in_channels, self.geometry.out_channels)
        return sum(spectra.values()) + max(spectra.values()) + spatial

    # ------------------------------------------------------------------ forward transforms
    @property
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(self.geometry.ndim))

    def _to_frequency_major(self, maps: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """``(rows, groups * cols, *space)`` -> ``(*space, groups, rows, cols)``: the layout the GEMMs want."""
        g, nd = self.geometry.groups, self.geometry.ndim
        grouped = maps.reshape(rows, g, cols, *maps.shape[2:])
        return grouped.transpose(*range(3, 3 + nd), 1, 0, 2)

    def transform_input(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum of the input maps, ``(*bins, groups, S, f/groups)``; each of the ``S*f`` maps once."""
        g = self.geometry
        used = tuple(slice(0, n) for n in g.used_input_shape)
        frequency_major = self._to_frequency_major(x[(Ellipsis, *used)], g.batch, g.in_channels // g.groups)
        return self.backend.rfftn(frequency_major, self.fft_shape, self._axes, out=out)

    def transform_weight(self, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum of the (dilated) kernels, ``(*bins, groups, f'/groups, f/groups)``."""
        g = self.geometry
        kernels = self._to_frequency_major(w.swapaxes(0, 1), g.in_channels // g.groups, g.out_channels // g.groups)
        kernels = kernels.swapaxes(-1, -2)  # (*k, groups, f'/g, f/g)
        if any(d != 1 for d in g.dilation):
            dilated = np.zeros((*g.dilated_kernel_shape, *kernels.shape[g.ndim:]), dtype=kernels.dtype)
            dilated[tuple(slice(None, None, d) for d in g.dilation)] = kernels
            kernels = dilated
        return self.backend.rfftn(kernels, self.fft_shape, self._axes, out=out)

    def transform_grad_output(self, grad_output: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum of the stride-upsampled output gradient, ``(*bins, groups, S, f'/groups)``."""
        g = self.geometry
        maps = self._to_frequency_major(grad_output, g.batch, g.out_channels // g.groups)
        if any(s != 1 for s in g.stride):
            upsampled_shape = tuple((m - 1) * s + 1 for m, s in zip(g.output_shape, g.stride))
            upsampled = np.zeros((*upsampled_shape, *maps.shape[g.ndim:]), dtype=maps.dtype)
            upsampled[tuple(slice(None, None, s) for s in g.stride)] = maps
            maps = upsampled
        return self.backend.rfftn(maps, self.fft_shape, self._axes, out=out)

    # ------------------------------------------------------------------ the three passes
    def _inverse(self, spectrum: np.ndarray) -> np.ndarray:
        return self.backend.irfftn(spectrum, self.fft_shape, self._axes)

    def _to_channels_first(self, result: np.ndarray, rows: int) -> np.ndarray:
        """``(*space, groups, rows, cols)`` -> contiguous ``(rows, groups * cols, *space)`` in the input dtype."""
        nd = self.geometry.ndim
        moved = result.transpose(nd + 1, nd, nd + 2, *range(nd))
        return np.ascontiguousarray(moved.reshape(rows, -1, *result.shape[:nd]), dtype=self.dtype)

    def forward(self, input_spectrum: np.ndarray, weight_spectrum: np.ndarray,
                bias: np.ndarray | None = None) -> np.ndarray:
        """``updateOutput``: ``y = irfft(X conj(W)^T)`` read at stride ``s`` from offset ``-p_before``."""
        g = self.geometry
        product = np.matmul(input_spectrum, weight_spectrum.conj().swapaxes(-1, -2))
        circular = self._inverse(product)
        indices = [_cyclic_index(m, s, -p, n) for m, s, p, n in zip(
            g.output_shape, g.stride, g.padding_before, self.fft_shape)]
        y = self._to_channels_first(_gather(circular, indices), g.batch)
        if bias is not None:
            y += bias.reshape(-1, *(1,) * g.ndim)
        return y

    def grad_input(self, grad_output_spectrum: np.ndarray, weight_spectrum: np.ndarray) -> np.ndarray:
        """``updateGradInput``: ``gx = irfft(GY W)`` read from offset ``+p_before``; unread inputs get zero."""
        g = self.geometry
        circular = self._inverse(np.matmul(grad_output_spectrum, weight_spectrum))
        indices = [_cyclic_index(n, 1, p, size) for n, p, size in zip(
            g.used_input_shape, g.padding_before, self.fft_shape)]
        used = self._to_channels_first(_gather(circular, indices), g.batch)
        if used.shape[2:] == g.input_shape:
            return used
        grad = np.zeros(g.full_input_shape, dtype=self.dtype)
        grad[(Ellipsis, *(slice(0, n) for n in g.used_input_shape))] = used
        return grad

    def grad_weight(self, input_spectrum: np.ndarray, grad_output_spectrum: np.ndarray) -> np.ndarray:
        """``accGradParameters``: ``gw = irfft(conj(GY)^T X)`` read at the dilated taps ``t*d - p_before``."""
        g = self.geometry
        product = np.matmul(grad_output_spectrum.conj().swapaxes(-1, -2), input_spectrum)
        circular = self._inverse(product)  # (*space, groups, f'/g, f/g)
        indices = [_cyclic_index(k, d, -p, size) for k, d, p, size in zip(
            g.kernel_shape, g.dilation, g.padding_before, self.fft_shape)]
        taps = _gather(circular, indices)
        nd = g.ndim
        moved = taps.transpose(nd, nd + 1, nd + 2, *range(nd))  # (groups, f'/g, f/g, *k)
        return np.ascontiguousarray(moved.reshape(g.full_weight_shape), dtype=self.dtype)
