"""How spectra are stored: frequency-major arrays with padded strides between bins, and the views onto them.

A spectrum of a pass is ``(*bins, groups, rows, cols)``: for each frequency bin, the matrices the per-bin product
multiplies lie contiguously, so the products are one batched ``matmul`` with no transposes. The backends transform
channels-first spatial arrays ``(rows, groups, cols, *space)`` through a transposed view of this storage
(:meth:`SpectrumLayout.channels_first`), so spectra are never transposed in memory either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..geometry import ConvGeometry
from ..sizes import half_spectrum_shape


@dataclass(frozen=True)
class SpectrumLayout:
    """The shapes, strides and storage sizes of the spectra of one geometry at one FFT size.

    ``allocate(shape, dtype)`` makes uninitialised arrays (the backend's :meth:`~fftconv.backends.FFTBackend.empty`,
    aligned for FFTW).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((2, 3, 8, 8), (4, 3, 3, 3))
    >>> layout = SpectrumLayout(g, (8, 8), np.dtype(np.complex128), np.empty)
    >>> layout.shapes["input"], layout.channels_first(layout.empty(layout.shapes["input"])).shape
    ((8, 5, 1, 2, 3), (2, 1, 3, 8, 5))
    """

    geometry: ConvGeometry
    fft_shape: tuple[int, ...]
    complex_dtype: np.dtype
    allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] = field(repr=False, compare=False)
    shapes: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        g = self.geometry
        bins = half_spectrum_shape(self.fft_shape)
        cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
        object.__setattr__(self, "shapes", {
            "input": (*bins, g.groups, g.batch, cg),
            "weight": (*bins, g.groups, fg, cg),
            "grad_output": (*bins, g.groups, g.batch, fg),
        })

    @property
    def axes(self) -> tuple[int, ...]:
        """Spatial axes of the channels-first ``(rows, groups, cols, *space)`` arrays handed to the backend."""
        return tuple(range(3, 3 + self.geometry.ndim))

    @staticmethod
    def padded(name: str) -> bool:
        """Whether a spectrum's bins get padded strides (see :meth:`bin_stride`): those the backend writes map by
        map. Kernel spectra are not: DFT-matrix products write them as one contiguous ``(bins, maps)`` matrix."""
        return name != "weight"

    def bin_stride(self, inner_shape: tuple[int, ...], padded: bool) -> int:
        """Elements between consecutive frequency bins.

        Maps transformed into a frequency-major array write one element per bin, ``stride`` elements apart. When
        that stride is a multiple of 4 KiB every write of a map lands in the same few cache sets (FFTW then runs
        1.5-2.5x slower); padding each bin's row to an odd number of 64-byte cache lines spreads them, and the GEMMs
        do not mind the gaps. Rows under 1 KiB are left alone.
        """
        elements = math.prod(inner_shape)
        item = self.complex_dtype.itemsize
        if not padded or elements * item < 1024:
            return elements
        lines = -(-elements * item // 64)
        lines += 1 - lines % 2  # an odd number of 64-byte lines
        return lines * 64 // item

    def storage_elements(self, shape: tuple[int, ...], padded: bool = True) -> int:
        """Complex elements of storage a frequency-major array of ``shape`` takes: bins times the bin stride."""
        nd = self.geometry.ndim
        return math.prod(shape[:nd]) * self.bin_stride(shape[nd:], padded)

    def view(self, storage: np.ndarray, shape: tuple[int, ...], padded: bool = True) -> np.ndarray:
        """View 1-d complex ``storage`` of :meth:`storage_elements` elements as a frequency-major array."""
        nd = self.geometry.ndim
        bins, inner = shape[:nd], shape[nd:]
        stride = self.bin_stride(inner, padded)
        rows = storage[:math.prod(bins) * stride].reshape(math.prod(bins), stride)
        return rows[:, :math.prod(inner)].reshape(shape)

    def empty(self, shape: tuple[int, ...], padded: bool = True) -> np.ndarray:
        """An uninitialised frequency-major array of ``shape``."""
        return self.view(self.allocate((self.storage_elements(shape, padded),), self.complex_dtype), shape, padded)

    def channels_first(self, spectrum: np.ndarray) -> np.ndarray:
        """View a frequency-major ``(*bins, groups, rows, cols)`` array as ``(rows, groups, cols, *bins)``."""
        nd = self.geometry.ndim
        return spectrum.transpose(nd + 1, nd, nd + 2, *range(nd))

    # ------------------------------------------------------------------ the named spectra
    def spectrum_elements(self, name: str) -> int:
        """Complex elements of storage the ``name`` spectrum takes, bin padding included."""
        return self.storage_elements(self.shapes[name], self.padded(name))

    def spectrum_from(self, name: str, storage: np.ndarray) -> np.ndarray:
        """View 1-d complex ``storage`` of :meth:`spectrum_elements` elements as the ``name`` spectrum."""
        return self.view(storage, self.shapes[name], self.padded(name))

    def new_spectrum(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """``out`` checked as the ``name`` spectrum, or a new one."""
        shape = self.shapes[name]
        if out is None:
            return self.empty(shape, self.padded(name))
        if out.shape != shape or out.dtype != self.complex_dtype:
            raise ValueError(f"out for the {name} spectrum must have shape {shape} and dtype {self.complex_dtype}, "
                             f"got {out.shape} and {out.dtype}")
        return out
