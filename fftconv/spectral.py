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
batched ``matmul`` over contiguous matrices with no transposes of spectra. The backends transform channels-first
spatial arrays and write through a strided view of the frequency-major buffer (FFTW directly or through a small
stage buffer; numpy and scipy by one copy), and the inverse reads it block of maps by block, cropping each block
while it is in cache.

Conjugate pairs. Products of spectra of real maps are Hermitian, and the half-spectrum still holds conjugate pairs
in its self-conjugate columns; :func:`hermitian_matmul` multiplies one bin of each pair and conjugates the other
(5-10 % less GEMM work at the paper's sizes; measured 5-6 % faster per-bin products).

Conjugates without copies. Kernels and output gradients are stored time-reversed (flipped, so that the backend can
pad them while copying), which conjugates their spectra times a phase; the crops' offsets undo the phase.

Padding and stride. Inputs are transformed unpadded; zero padding before the data is a cyclic shift of the
circular result, and the stride is applied by reading every ``s``-th coefficient of the stride-1 result
(the input gradient and weight gradient use the zero-upsampled output gradient). The circular size is at least
:attr:`fftconv.geometry.ConvGeometry.minimal_fft_shape`, which makes every kept coefficient exact.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal, Sequence, Union

import numpy as np

from . import _kernel_dft, _memory
from ._cyclic import Progression, gather_into, progressions, scatter
from ._parallel import batched_matmul, blas_single_threaded_within
from .backends import FFTBackend, get_backend, irfftn_blocks, smooth_sizes_between
from .geometry import ConvGeometry

FFTSizePolicy = Literal["fast", "pow2", "minimal"]
FFT_SIZE_POLICIES = ("fast", "pow2", "minimal")
#: Measured default (README, "Choosing defaults"): 7-smooth sizes avoid the slow prime sizes of "minimal" and the
#: up-to-2x padding of "pow2".
DEFAULT_FFT_SIZE: FFTSizePolicy = "fast"


@functools.lru_cache(maxsize=1024)  # every call of a convolution asks; the search walks up to n integers
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
    if len(shape) != geometry.ndim:
        raise ValueError(f"fft_size={shape} must have one entry per spatial dimension ({geometry.ndim})")
    if any(n < m for n, m in zip(shape, minimal)):
        raise ValueError(f"fft_size={shape} is too small for this convolution; every dimension must be at least "
                         f"{minimal} to avoid wrap-around")
    return shape


def _padded(name: str) -> bool:
    """Whether a spectrum's bins get padded strides (see ``SpectralPlan._bin_stride``): those FFTW writes map by
    map. Kernel spectra are not: the DFT-matrix GEMMs write them as one contiguous ``(bins, maps)`` matrix."""
    return name != "weight"


def _half(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[:-1], shape[-1] // 2 + 1)


def _conjugate_pairs(fft_shape: Sequence[int]) -> tuple[int, slice, slice] | None:
    """Where a half spectrum holds conjugate pairs: ``(half, self_conjugate, middle)``, or None if it holds none.

    The columns ``self_conjugate`` (``xi_last = 0`` and, for even sizes, ``N_last / 2``) pair bin ``(xi_0, ...)`` with
    ``(-xi_0, ...)``; their rows ``xi_0 < half`` are enough. The ``middle`` columns have no pairs.
    """
    rows, last = fft_shape[0], fft_shape[-1]
    half = rows // 2 + 1
    if len(fft_shape) == 1 or half >= rows:
        return None
    columns = last // 2 + 1
    self_conjugate = slice(0, columns, columns - 1) if last % 2 == 0 and columns > 1 else slice(0, 1)
    middle = slice(1, columns - 1 if last % 2 == 0 else columns)
    return half, self_conjugate, middle


def multiplied_bins(fft_shape: Sequence[int]) -> int:
    """Frequency bins whose per-bin product :func:`hermitian_matmul` computes (the others are conjugated copies).

    Examples
    --------
    >>> math.prod(_half((16, 16))), multiplied_bins((16, 16)), multiplied_bins((16,))
    (144, 130, 9)
    """
    bins = math.prod(_half(tuple(fft_shape)))
    pairs = _conjugate_pairs(fft_shape)
    if pairs is None:
        return bins
    half, self_conjugate, _ = pairs
    columns = len(range(fft_shape[-1] // 2 + 1)[self_conjugate])
    return bins - (fft_shape[0] - half) * math.prod(fft_shape[1:-1]) * columns


def hermitian_matmul(left: np.ndarray, right: np.ndarray, out: np.ndarray,
                     fft_shape: Sequence[int]) -> np.ndarray:
    """Per-bin products ``out[b] = left[b] @ right[b]`` of half-spectra of real maps, each conjugate pair once.

    ``left``, ``right`` and ``out`` are ``(*bins, ..., M, K)``, ``(*bins, ..., K, N)`` and ``(*bins, ..., M, N)``
    with ``bins = (*fft_shape[:-1], fft_shape[-1] // 2 + 1)``. The half-spectrum of a real map still holds
    conjugate pairs: in the columns ``xi_last = 0`` and ``xi_last = N_last / 2`` (the ones the halving maps to
    themselves), bin ``(xi_0, xi_1, ...)`` is the conjugate of ``(-xi_0, -xi_1, ...)``, and so is every product of
    such spectra. So those columns are multiplied for ``xi_0 <= N_0 / 2`` only and the rest are conjugated copies:
    ``(N_0 / 2 - 1) / (N_0 (N_last / 2 + 1) / 2)`` of the GEMM work saved, 10 % at 16 x 16 and 5 % at 32 x 32.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((8, 8, 3, 2)), rng.standard_normal((8, 8, 2, 4))
    >>> spectra = [np.fft.rfftn(a, axes=(0, 1)) for a in (x, w)]
    >>> out = np.empty((8, 5, 3, 4), complex)
    >>> product = hermitian_matmul(*spectra, out, (8, 8))
    >>> bool(np.allclose(product, spectra[0] @ spectra[1]))
    True
    """
    pairs = _conjugate_pairs(fft_shape)
    if pairs is None:
        return batched_matmul(left, right, out)
    half, self_conjugate, middle = pairs
    nd, rows = len(fft_shape), fft_shape[0]

    def at(row: slice, column: slice) -> tuple:
        return (row, *(slice(None),) * (nd - 2), column)

    if middle.stop > middle.start:
        everywhere = at(slice(None), middle)
        batched_matmul(left[everywhere], right[everywhere], out[everywhere])
    computed = at(slice(0, half), self_conjugate)
    batched_matmul(left[computed], right[computed], out[computed])
    mirrors = out[at(slice(rows - half, 0, -1), self_conjugate)]  # rows N_0 - xi_0 for xi_0 = half .. N_0 - 1
    for axis, size in enumerate(fft_shape[1:-1], start=1):  # the other axes mirror too: xi -> -xi mod N
        mirrors = mirrors.take((-np.arange(size)) % size, axis=axis)
    np.conjugate(mirrors, out=out[at(slice(half, rows), self_conjugate)])
    return out


@dataclass
class SpectralPlan:
    """Everything needed to run the three passes of one geometry in the frequency domain.

    The six methods are the paper's building blocks. The ``transform_*`` methods take an optional ``out``, a
    preallocated complex array of shape ``spectrum_shapes[name]`` and dtype ``complex_dtype`` (a workspace).
    Layers call them directly to reuse spectra between forward and backward (``transform_input`` in forward,
    reused in ``grad_weight``; ``transform_weight`` reused in ``grad_input``). Spectra are opaque, frequency-major arrays; only this class reads them.

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
    kernel_transform: str = "auto"
    spectrum_shapes: dict = field(init=False, repr=False)

    @classmethod
    def create(cls, geometry: ConvGeometry, dtype, backend: Union[str, FFTBackend, None] = None,
               fft_size: Union[FFTSizePolicy, Sequence[int], None] = None, check_memory: bool = True,
               kernel_transform: str = "auto") -> "SpectralPlan":
        """Validate options and estimate memory before anything is allocated.

        ``kernel_transform`` chooses how kernels and weight gradients (maps of kernel size in an FFT-size buffer)
        are transformed: ``"fft"`` with the backend, ``"gemm"`` as DFT-matrix products (much faster for small
        kernels, see :mod:`fftconv._kernel_dft`), or ``"auto"`` (by operation count).
        """
        if kernel_transform not in ("auto", "fft", "gemm"):
            raise ValueError(f"kernel_transform must be 'auto', 'fft' or 'gemm', got {kernel_transform!r}")
        plan = cls(geometry, np.dtype(dtype), fft_shape_for(geometry, fft_size), get_backend(backend),
                   kernel_transform)
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

    @property
    def kernels_by_gemm(self) -> bool:
        """Whether kernel-domain transforms use DFT matrices instead of the FFT backend."""
        if self.kernel_transform == "auto":
            return _kernel_dft.gemm_is_cheaper(self.geometry.kernel_shape, self.fft_shape)
        return self.kernel_transform == "gemm"

    def _record(self, direction: str, maps: int) -> None:
        """Tell a counting backend about transforms done here rather than by its FFT."""
        record = getattr(self.backend, "record", None)
        if record is not None:
            record(direction, maps)

    # ------------------------------------------------------------------ sizes
    @property
    def complex_dtype(self) -> np.dtype:
        return np.result_type(self.dtype, np.complex64)

    def spectrum_bytes(self) -> dict[str, int]:
        """Bytes of each of the three spectra (input, weight, output gradient), bin padding included."""
        item = self.complex_dtype.itemsize
        return {name: self.spectrum_elements(name) * item for name in self.spectrum_shapes}

    def spectrum_elements(self, name: str) -> int:
        """Complex elements of storage one spectrum takes: bins times the (padded) stride between bins."""
        return self._storage_elements(self.spectrum_shapes[name], _padded(name))

    def spectrum_from(self, name: str, storage: np.ndarray) -> np.ndarray:
        """View 1-d complex ``storage`` of :meth:`spectrum_elements` elements as the ``name`` spectrum."""
        return self._frequency_major_view(storage, self.spectrum_shapes[name], _padded(name))

    def _storage_elements(self, shape: tuple[int, ...], padded: bool) -> int:
        nd = self.geometry.ndim
        return math.prod(shape[:nd]) * self._bin_stride(shape[nd:], padded)

    def _bin_stride(self, inner_shape: tuple[int, ...], padded: bool) -> int:
        """Elements between consecutive frequency bins.

        Maps transformed into a frequency-major array write one element per bin, ``stride`` elements apart. When
        that stride is a multiple of 4 KiB (S*f = 512, 1024, 3072 ... complex64 in the paper's layers) every write of
        a map lands in the same few cache sets and FFTW ran 1.5-2.5x slower than into map-major order (measured,
        pyFFTW, 512-8192 maps of 16x16 and 32x32). Padding each bin's row to an odd number of cache lines spreads
        them; the GEMMs do not mind the gaps. Rows under 1 KiB are left alone.
        """
        elements = math.prod(inner_shape)
        item = self.complex_dtype.itemsize
        if not padded or elements * item < 1024:
            return elements
        lines = -(-elements * item // 64)
        lines += 1 - lines % 2  # an odd number of 64-byte lines
        return lines * 64 // item

    def _frequency_major_view(self, storage: np.ndarray, shape: tuple[int, ...], padded: bool) -> np.ndarray:
        nd = self.geometry.ndim
        bins, inner = shape[:nd], shape[nd:]
        stride = self._bin_stride(inner, padded)
        rows = storage[:math.prod(bins) * stride].reshape(math.prod(bins), stride)
        return rows[:, :math.prod(inner)].reshape(shape)

    def _empty_frequency_major(self, shape: tuple[int, ...], padded: bool = True) -> np.ndarray:
        """An uninitialised frequency-major array of ``shape`` with padded bin strides (see :meth:`_bin_stride`)."""
        storage = self._empty((self._storage_elements(shape, padded),), self.complex_dtype)
        return self._frequency_major_view(storage, shape, padded)

    def peak_bytes(self) -> int:
        """Upper estimate of the memory one pass allocates: three spectra, a product and one spatial result."""
        spectra = self.spectrum_bytes()
        spatial = math.prod(self.fft_shape) * self.dtype.itemsize * self.geometry.batch * max(
            self.geometry.in_channels, self.geometry.out_channels)
        return sum(spectra.values()) + max(spectra.values()) + spatial

    # ------------------------------------------------------------------ layouts
    @property
    def _axes(self) -> tuple[int, ...]:
        """Spatial axes of the channels-first ``(rows, groups, cols, *space)`` arrays handed to the backend."""
        return tuple(range(3, 3 + self.geometry.ndim))

    def _empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        return getattr(self.backend, "empty", np.empty)(shape, dtype)

    def _new_spectrum(self, name: str, out: np.ndarray | None) -> np.ndarray:
        shape = self.spectrum_shapes[name]
        if out is None:
            return self._empty_frequency_major(shape, _padded(name))
        if out.shape != shape or out.dtype != self.complex_dtype:
            raise ValueError(f"out for the {name} spectrum must have shape {shape} and dtype {self.complex_dtype}, "
                             f"got {out.shape} and {out.dtype}")
        return out

    def _channels_first(self, spectrum: np.ndarray) -> np.ndarray:
        """View a frequency-major ``(*bins, groups, rows, cols)`` array as ``(rows, groups, cols, *bins)``.

        FFTW reads and writes through these strides, so spectra are never transposed in memory.
        """
        nd = self.geometry.ndim
        return spectrum.transpose(nd + 1, nd, nd + 2, *range(nd))

    @property
    def _kernel_shift(self) -> tuple[int, ...]:
        """Kernels are stored flipped: tap ``t`` at ``d*(k-1) - t*d``, i.e. time-reversed and shifted by this."""
        return tuple(kd - 1 for kd in self.geometry.dilated_kernel_shape)

    @property
    def _grad_shift(self) -> tuple[int, ...]:
        """Output gradients are stored flipped and upsampled: output ``i`` at ``(m-1)*s - i*s``."""
        return tuple((m - 1) * s for m, s in zip(self.geometry.output_shape, self.geometry.stride))

    def _flipped(self, maps: np.ndarray, steps: Sequence[int]) -> np.ndarray:
        """``maps`` reversed along its trailing axes and spread ``steps`` apart (zeros between), ready to transform.

        Reversal conjugates the spectrum (times a phase for the shift, which the reads below undo). When the spread
        maps are longer than the FFT size (minimal sizes with heavy padding), wrapped entries are summed instead.
        """
        nd = self.geometry.ndim
        counts = maps.shape[-nd:]
        extents = [(c - 1) * s + 1 for c, s in zip(counts, steps)]
        if any(e > n for e, n in zip(extents, self.fft_shape)):
            buffer = np.zeros((*maps.shape[:-nd], *self.fft_shape), dtype=maps.dtype)
            shifts = [e - 1 for e in extents]
            scatter(buffer, progressions(counts, [-s for s in steps], shifts, self.fft_shape), maps)
            return buffer
        flipped = maps[(Ellipsis, *(slice(None, None, -1),) * nd)]  # a view: the backend pads while copying
        if all(s == 1 for s in steps):
            return flipped
        spread = np.zeros((*maps.shape[:-nd], *extents), dtype=maps.dtype)
        spread[(Ellipsis, *(slice(None, None, s) for s in steps))] = flipped
        return spread

    def _transform(self, maps: np.ndarray, name: str, out: np.ndarray | None) -> np.ndarray:
        spectrum = self._new_spectrum(name, out)
        self.backend.rfftn(maps, self.fft_shape, self._axes, out=self._channels_first(spectrum))
        return spectrum

    # ------------------------------------------------------------------ forward transforms
    @blas_single_threaded_within
    def transform_input(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``X`` of the input maps, ``(*bins, groups, S, f/groups)``; each of the ``S*f`` maps once."""
        g = self.geometry
        used = x[(Ellipsis, *(slice(0, n) for n in g.used_input_shape))]
        maps = used.reshape(g.batch, g.groups, g.in_channels // g.groups, *used.shape[2:])
        return self._transform(maps, "input", out)

    @blas_single_threaded_within
    def transform_weight(self, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``conj(W)`` of the dilated kernels, ``(*bins, groups, f'/groups, f/groups)``.

        The kernel is stored time-reversed, which conjugates its spectrum: the forward pass needs ``conj(W)``, and
        the input gradient, computed conjugated, needs it too (see :meth:`grad_input`). No pass copies spectra.
        """
        g = self.geometry
        if self.kernels_by_gemm:
            spectrum = self._new_spectrum("weight", out)
            taps_first = w.reshape(g.out_channels * w.shape[1], -1).T.reshape(*g.kernel_shape, -1)  # (*k, f'*f/g)
            stored = progressions(g.kernel_shape, [-d for d in g.dilation], self._kernel_shift, self.fft_shape)
            positions = [p.positions() for p in stored]
            _kernel_dft.forward(taps_first, positions, self.fft_shape,
                                spectrum.reshape(*spectrum.shape[:g.ndim], -1))
            self._record("forward", taps_first.shape[-1])
            return spectrum
        kernels = w.reshape(g.groups, g.out_channels // g.groups, *w.shape[1:]).swapaxes(0, 1)
        return self._transform(self._flipped(kernels, g.dilation), "weight", out)

    @blas_single_threaded_within
    def transform_grad_output(self, grad_output: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``conj(GY)`` of the stride-upsampled output gradient, ``(*bins, groups, S, f'/groups)``."""
        g = self.geometry
        maps = grad_output.reshape(g.batch, g.groups, -1, *g.output_shape)
        return self._transform(self._flipped(maps, g.stride), "grad_output", out)

    # ------------------------------------------------------------------ the three passes
    def _cropped_product(self, left: np.ndarray, right: np.ndarray, reads: Sequence[Progression],
                         dtype) -> np.ndarray:
        """Per-bin batched GEMM, then the inverse transform of the product read at ``reads`` and scaled by 1/N.

        Returns the crop ``(rows, groups, cols, *counts)``. The inverse goes block of maps by block, each cropped
        while in cache (:func:`fftconv.backends.irfftn_blocks`): the uncropped spatial result is never written.
        """
        product = self._empty_frequency_major((*left.shape[:-1], right.shape[-1]))
        hermitian_matmul(left, right, product, self.fft_shape)
        spectrum = self._channels_first(product)
        lead = spectrum.ndim - self.geometry.ndim
        crop = np.empty((*spectrum.shape[:lead], *(p.count for p in reads)), dtype=dtype)
        irfftn_blocks(self.backend, spectrum, self.fft_shape, self._axes,
                      lambda block, maps: gather_into(crop[block[:lead]], maps, reads, self._scale))
        return crop

    @property
    def _scale(self) -> float:
        """The inverse FFT's ``1/prod(N)``, applied while cropping instead of as a pass over the whole result."""
        return 1.0 / math.prod(self.fft_shape)

    @blas_single_threaded_within
    def forward(self, input_spectrum: np.ndarray, weight_spectrum: np.ndarray,
                bias: np.ndarray | None = None) -> np.ndarray:
        """``updateOutput``: ``y = irfft(X conj(W)^T)`` read at stride ``s`` from ``kernel_shift - p_before``."""
        g = self.geometry
        offsets = [shift - p for shift, p in zip(self._kernel_shift, g.padding_before)]
        reads = progressions(g.output_shape, g.stride, offsets, self.fft_shape)
        y = self._cropped_product(input_spectrum, weight_spectrum.swapaxes(-1, -2), reads, self.dtype)
        y = y.reshape(g.full_output_shape)
        if bias is not None:
            y += bias.reshape(-1, *(1,) * g.ndim)
        return y

    @blas_single_threaded_within
    def grad_input(self, grad_output_spectrum: np.ndarray, weight_spectrum: np.ndarray) -> np.ndarray:
        """``updateGradInput``: ``conj(GX) = conj(GY) conj(W)``, whose inverse is ``gx`` time-reversed.

        ``gx[j] = circ[j + p_before]``; with both operands stored flipped and shifted, ``gx[j]`` sits at
        ``grad_shift + kernel_shift - p_before - j`` of the inverse. Inputs no output reads (a strided tail) get
        zero.
        """
        g = self.geometry
        offsets = [gs + ks - p for gs, ks, p in zip(self._grad_shift, self._kernel_shift, g.padding_before)]
        reads = progressions(g.used_input_shape, [-1] * g.ndim, offsets, self.fft_shape)
        used = self._cropped_product(grad_output_spectrum, weight_spectrum, reads, self.dtype)
        used = used.reshape(g.batch, g.in_channels, *g.used_input_shape)
        if used.shape == g.full_input_shape:
            return used
        grad = np.zeros(g.full_input_shape, dtype=self.dtype)
        grad[(Ellipsis, *(slice(0, n) for n in g.used_input_shape))] = used
        return grad

    @blas_single_threaded_within
    def grad_weight(self, input_spectrum: np.ndarray, grad_output_spectrum: np.ndarray) -> np.ndarray:
        """``accGradParameters``: ``GW = conj(GY)^T X``, read at the dilated taps ``t*d - p_before + grad_shift``.

        With fewer input than output channels the per-bin product is computed transposed, ``GW^T = X^T conj(GY)``:
        OpenBLAS ran (f x S) @ (S x f') 1.6x faster than (f' x S) @ (S x f) at f = 3, f' = 96 (the paper's first
        layer); with f <= f' the two orders measured the same.
        """
        g = self.geometry
        offsets = [shift - p for shift, p in zip(self._grad_shift, g.padding_before)]
        reads = progressions(g.kernel_shape, g.dilation, offsets, self.fft_shape)
        transposed = g.in_channels < g.out_channels
        left, right = ((input_spectrum.swapaxes(-1, -2), grad_output_spectrum) if transposed else
                       (grad_output_spectrum.swapaxes(-1, -2), input_spectrum))
        # the product's maps are (groups, f'/g, f/g), or (groups, f/g, f'/g) transposed: this puts them back
        out_first = (0, 1, 2) if not transposed else (0, 2, 1)
        if self.kernels_by_gemm:
            positions = [p.positions() for p in reads]
            product = self._empty((*left.shape[:-1], right.shape[-1]), self.complex_dtype)
            hermitian_matmul(left, right, product, self.fft_shape)
            taps = _kernel_dft.inverse(product.reshape(*product.shape[:g.ndim], -1), positions, self.fft_shape,
                                       self.dtype)  # (*k, maps)
            self._record("inverse", taps.shape[-1])
            maps = taps.reshape(-1, *product.shape[g.ndim:]).transpose(*(1 + axis for axis in out_first), 0)
        else:
            taps = self._cropped_product(left, right, reads, self.dtype)  # (rows, groups, cols, *k)
            maps = taps.transpose(*((1, 0, 2) if not transposed else (1, 2, 0)), *range(3, taps.ndim))
        return np.ascontiguousarray(maps).reshape(g.full_weight_shape)
