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
upsampled gradient. docs/algorithm.md walks through the pipeline; docs/paper.md states the paper's formulas.

Layout. Spectra are kept frequency-major (:mod:`fftconv.spectral.layout`), so the per-bin products are one batched
``matmul`` with no transposes. The inverse transform is read block of maps by block, cropping each block while it
is in cache (:meth:`fftconv.backends.FFTBackend.irfftn_blocks`).

Conjugate pairs. Products of spectra of real maps are Hermitian, and the half spectrum still holds conjugate pairs;
:func:`~fftconv.spectral.hermitian.hermitian_matmul` multiplies one bin of each pair and conjugates the other.

Conjugates without copies. Kernels and output gradients are stored time-reversed (flipped, so that the backend can
pad them while copying), which conjugates their spectra times a phase; the crops' offsets undo the phase.

Scaling. The inverse transform is unnormalised, and its sums would reach ``prod(N)`` times the result. So kernels
and output gradients are transformed times ``2^-e`` (``2^e <= prod(N)``, exact in floating point), and each crop
applies what remains: the forward pass and the weight gradient sum values of the result's own magnitude, the input
gradient values ``prod(N)`` times smaller (float32 keeps full precision down to 1e-38). Each pass needs the two
spectra of one plan.

NaN, inf and overflow. Each transform checks the DC bins of its maps, and each crop its results, so that a NaN or
inf of the data, or an overflow, raises instead of spreading silently (:mod:`fftconv._finite`).

Padding and stride. Inputs are transformed unpadded; zero padding before the data is a cyclic shift of the
circular result, and the stride is applied by reading every ``s``-th coefficient of the stride-1 result
(the input gradient and weight gradient use the zero-upsampled output gradient). The circular size is at least
:attr:`fftconv.geometry.ConvGeometry.minimal_fft_shape`, which makes every kept coefficient exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

from .. import _memory
from .._cyclic import Progression, gather_into, progressions, scatter
from .._finite import all_finite, check_transform, overflow_in_pass
from .._parallel import blas_single_threaded_within
from ..backends import FFTBackend, get_backend
from ..costs import kernels_by_matrix
from ..geometry import ConvGeometry
from ..sizes import FFTSizePolicy, fft_shape_for
from .hermitian import hermitian_matmul
from .layout import SpectrumLayout

KERNEL_TRANSFORMS = ("auto", "fft", "gemm")


@dataclass
class SpectralPlan:
    """Everything needed to run the three passes of one geometry in the frequency domain.

    The six methods are the paper's building blocks. The ``transform_*`` methods take an optional ``out``, a
    preallocated complex array of shape ``spectrum_shapes[name]`` and dtype ``complex_dtype`` (a workspace).
    Layers call them directly to reuse spectra between forward and backward (``transform_input`` in forward,
    reused in ``grad_weight``; ``transform_weight`` reused in ``grad_input``). Spectra are opaque frequency-major
    arrays (:class:`~fftconv.spectral.layout.SpectrumLayout`), scaled (see the module notes); only this class reads
    them.

    A NaN or inf in an operand raises :class:`~fftconv._finite.NonFiniteInput` (a ``ValueError``) from its
    transform, and an overflow :class:`~fftconv._finite.SpectralOverflow` (an ``OverflowError``), naming the
    argument, the count or the magnitude, and the fixes.

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
    kernels_by_gemm: bool | None = None  # kernel-size maps by DFT matrices, not the FFT; None: the faster way
    layout: SpectrumLayout = field(init=False, repr=False)

    @classmethod
    def create(cls, geometry: ConvGeometry, dtype, backend: Union[str, FFTBackend, None] = None,
               fft_size: Union[FFTSizePolicy, Sequence[int], None] = None, check_memory: bool = True,
               kernel_transform: str = "auto") -> "SpectralPlan":
        """Validate options and estimate memory before anything is allocated.

        ``kernel_transform`` chooses how kernels and weight gradients (maps of kernel size in an FFT-size buffer)
        are transformed: ``"fft"`` with the backend, ``"gemm"`` as DFT-matrix products (much faster for small
        kernels, see :mod:`fftconv._kernel_dft`), or ``"auto"``: whichever the machine's rates make faster
        (:func:`fftconv.costs.kernels_by_matrix`).
        """
        if kernel_transform not in KERNEL_TRANSFORMS:
            raise ValueError(f"kernel_transform must be 'auto', 'fft' or 'gemm', got {kernel_transform!r}")
        by_gemm = None if kernel_transform == "auto" else kernel_transform == "gemm"
        plan = cls(geometry, np.dtype(dtype), fft_shape_for(geometry, fft_size), get_backend(backend), by_gemm)
        if check_memory:
            _memory.check_fits(plan.peak_bytes(), f"the FFT convolution {geometry} at FFT size {plan.fft_shape}",
                               "use a smaller batch, fft_size='minimal', or algo='im2col'")
        return plan

    def __post_init__(self):
        if self.kernels_by_gemm is None:
            self.kernels_by_gemm = kernels_by_matrix(self.geometry.kernel_shape, self.fft_shape)
        self.layout = SpectrumLayout(self.geometry, self.fft_shape, self.complex_dtype, self.backend.empty)

    # ------------------------------------------------------------------ sizes
    @property
    def complex_dtype(self) -> np.dtype:
        return np.result_type(self.dtype, np.complex64)

    @property
    def spectrum_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the three spectra, ``"input"``, ``"weight"`` and ``"grad_output"``."""
        return self.layout.shapes

    def spectrum_bytes(self) -> dict[str, int]:
        """Bytes of each of the three spectra (input, weight, output gradient), bin padding included."""
        item = self.complex_dtype.itemsize
        return {name: self.layout.spectrum_elements(name) * item for name in self.spectrum_shapes}

    def spectrum_elements(self, name: str) -> int:
        """Complex elements of storage one spectrum takes: bins times the (padded) stride between bins."""
        return self.layout.spectrum_elements(name)

    def spectrum_from(self, name: str, storage: np.ndarray) -> np.ndarray:
        """View 1-d complex ``storage`` of :meth:`spectrum_elements` elements as the ``name`` spectrum."""
        return self.layout.spectrum_from(name, storage)

    def peak_bytes(self) -> int:
        """Upper estimate of the memory one pass allocates: three spectra, a product and one spatial result."""
        spectra = self.spectrum_bytes()
        spatial = math.prod(self.fft_shape) * self.dtype.itemsize * self.geometry.batch * max(
            self.geometry.in_channels, self.geometry.out_channels)
        return sum(spectra.values()) + max(spectra.values()) + spatial

    # ------------------------------------------------------------------ layouts
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

    @property
    def _spectrum_scale(self) -> float:
        """``2^-e`` with ``2^e <= prod(N) < 2^(e+1)``: the factor kernels and output gradients are transformed with."""
        return 2.0 ** (1 - math.prod(self.fft_shape).bit_length())

    def _checked(self, spectrum: np.ndarray, name: str, operand: np.ndarray) -> np.ndarray:
        """``spectrum``, once its DC bins (each map's sum) show that ``operand`` holds no NaN or inf and that the
        transform did not overflow."""
        check_transform(spectrum[(0,) * self.geometry.ndim], operand, name, math.prod(operand.shape[2:]))
        return spectrum

    def _transform(self, maps: np.ndarray, name: str, out: np.ndarray | None, operand: np.ndarray,
                   scale: float = 1.0) -> np.ndarray:
        spectrum = self.layout.new_spectrum(name, out)
        with np.errstate(over="ignore", invalid="ignore"):  # a NaN, inf or overflow raises below, with the reason
            self.backend.rfftn_scaled(maps, self.fft_shape, self.layout.axes, scale,
                                      out=self.layout.channels_first(spectrum))
        return self._checked(spectrum, name, operand)

    # ------------------------------------------------------------------ forward transforms
    @blas_single_threaded_within
    def transform_input(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``X`` of the input maps, ``(*bins, groups, S, f/groups)``; each of the ``S*f`` maps once."""
        g = self.geometry
        used = x[(Ellipsis, *(slice(0, n) for n in g.used_input_shape))]
        maps = used.reshape(g.batch, g.groups, g.in_channels // g.groups, *used.shape[2:])
        return self._transform(maps, "input", out, used)

    @blas_single_threaded_within
    def transform_weight(self, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``conj(W)`` of the dilated kernels (scaled), ``(*bins, groups, f'/groups, f/groups)``.

        The kernel is stored time-reversed, which conjugates its spectrum: the forward pass needs ``conj(W)``, and
        the input gradient, computed conjugated, needs it too (see :meth:`grad_input`). No pass copies spectra.
        """
        g = self.geometry
        if self.kernels_by_gemm:
            spectrum = self.layout.new_spectrum("weight", out)
            taps_first = w.reshape(g.out_channels * w.shape[1], -1).T.reshape(*g.kernel_shape, -1)  # (*k, f'*f/g)
            stored = progressions(g.kernel_shape, [-d for d in g.dilation], self._kernel_shift, self.fft_shape)
            with np.errstate(over="ignore", invalid="ignore"):  # a NaN, inf or overflow raises below
                self.backend.rfftn_by_matrix(taps_first * self._spectrum_scale, [p.positions() for p in stored],
                                             self.fft_shape, spectrum.reshape(*spectrum.shape[:g.ndim], -1))
            return self._checked(spectrum, "weight", w)
        kernels = w.reshape(g.groups, g.out_channels // g.groups, *w.shape[1:]).swapaxes(0, 1)
        return self._transform(self._flipped(kernels, g.dilation), "weight", out, w, self._spectrum_scale)

    @blas_single_threaded_within
    def transform_grad_output(self, grad_output: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``conj(GY)`` of the stride-upsampled output gradient (scaled), ``(*bins, groups, S, f'/groups)``."""
        g = self.geometry
        maps = grad_output.reshape(g.batch, g.groups, -1, *g.output_shape)
        return self._transform(self._flipped(maps, g.stride), "grad_output", out, grad_output, self._spectrum_scale)

    # ------------------------------------------------------------------ the three passes
    def _cropped_product(self, left: np.ndarray, right: np.ndarray, reads: Sequence[Progression],
                         scale: float, pass_name: str) -> np.ndarray:
        """Per-bin batched GEMM, then the inverse transform of the product read at ``reads`` and multiplied by
        ``scale`` (:meth:`_crop_scale`).

        Returns the crop ``(rows, groups, cols, *counts)``. The inverse goes block of maps by block, each cropped
        while in cache (:meth:`~fftconv.backends.FFTBackend.irfftn_blocks`): the uncropped spatial result is never
        written. Each block's crop is summed while in cache too: a sum that is not finite flags a possible overflow,
        confirmed or dismissed by an exact check of the whole crop at the end.
        """
        product = self.layout.empty((*left.shape[:-1], right.shape[-1]))
        spectrum = self.layout.channels_first(product)
        lead = spectrum.ndim - self.geometry.ndim
        crop = np.empty((*spectrum.shape[:lead], *(p.count for p in reads)), dtype=self.dtype)
        flagged = []

        def consume(block: tuple, maps: np.ndarray) -> None:
            target = crop[block[:lead]]
            gather_into(target, maps, reads, scale)
            if not np.isfinite(np.sum(target)):
                flagged.append(block)

        with np.errstate(over="ignore", invalid="ignore"):  # an overflow raises below, with the reason
            hermitian_matmul(left, right, product, self.fft_shape)
            self.backend.irfftn_blocks(spectrum, self.fft_shape, self.layout.axes, consume)
        if flagged and not all_finite(crop):
            raise overflow_in_pass(pass_name, self.dtype, crop)
        return crop

    def _crop_scale(self, scaled_operands: int) -> float:
        """What the crop multiplies by: the inverse FFT's ``1/prod(N)`` over the factors the operands were transformed
        with (``scaled_operands`` of them scaled by :attr:`_spectrum_scale`), applied while cropping instead of as
        a pass over the whole result."""
        return 1.0 / (math.prod(self.fft_shape) * self._spectrum_scale ** scaled_operands)

    @blas_single_threaded_within
    def forward(self, input_spectrum: np.ndarray, weight_spectrum: np.ndarray,
                bias: np.ndarray | None = None) -> np.ndarray:
        """``updateOutput``: ``y = irfft(X conj(W)^T)`` read at stride ``s`` from ``kernel_shift - p_before``."""
        g = self.geometry
        offsets = [shift - p for shift, p in zip(self._kernel_shift, g.padding_before)]
        reads = progressions(g.output_shape, g.stride, offsets, self.fft_shape)
        y = self._cropped_product(input_spectrum, weight_spectrum.swapaxes(-1, -2), reads, self._crop_scale(1),
                                  "forward")
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
        used = self._cropped_product(grad_output_spectrum, weight_spectrum, reads, self._crop_scale(2),
                                     "input gradient")
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
        BLAS runs the ``(f x S) @ (S x f')`` order faster when ``f`` is small (the paper's first layer), and both
        orders alike otherwise.
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
            product = self.backend.empty((*left.shape[:-1], right.shape[-1]), self.complex_dtype)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow raises below, with the reason
                hermitian_matmul(left, right, product, self.fft_shape)
                taps = self.backend.irfftn_by_matrix(product.reshape(*product.shape[:g.ndim], -1), positions,
                                                     self.fft_shape, self.dtype)  # (*k, maps), normalised
            taps *= self._crop_scale(1) * math.prod(self.fft_shape)
            if not all_finite(taps):
                raise overflow_in_pass("weight gradient", self.dtype, taps)
            maps = taps.reshape(-1, *product.shape[g.ndim:]).transpose(*(1 + axis for axis in out_first), 0)
        else:
            taps = self._cropped_product(left, right, reads, self._crop_scale(1), "weight gradient")
            maps = taps.transpose(*((1, 0, 2) if not transposed else (1, 2, 0)), *range(3, taps.ndim))
        return np.ascontiguousarray(maps).reshape(g.full_weight_shape)
