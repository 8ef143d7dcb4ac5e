"""ducc0's FFTs (``ducc0.fft``): r2c and c2r over any axes and strides, run block by block on fftconv's pool.

ducc0 is optional (``pip install fftconv[ducc0]``): where it is missing the backend is registered as not installed.
Every call is cut into blocks of maps (:func:`fftconv.backends.blocks.for_blocks`), each transformed with one
ducc0 thread on fftconv's thread pool, so ducc0's own pool never competes with the GEMMs' threads.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

try:
    import ducc0
except ImportError:  # pragma: no cover - exercised only where ducc0 is missing
    ducc0 = None

from .._parallel import default_threads
from .base import FFTBackend, register_backend, share
from .blocks import (Shape, check_half_spectrum, check_out, for_blocks, half_spectrum_array_shape, normalise_axes,
                     with_sizes)


class Ducc0Backend(FFTBackend):
    """ducc0's real FFTs, block of maps by block on fftconv's thread pool.

    ducc0 reads and writes through any strides, so forward transforms write straight into fftconv's frequency-major
    spectra (transforming a block map-major and copying it into place measured no faster, and slower at 64 x 64)
    and the blocked inverse reads each block straight from the spectrum, handing the block's maps to the caller's
    crop. Inputs shorter than the transform size are zero-padded block by block.

    Parameters
    ----------
    threads : int, optional
        Blocks run in parallel on this many tasks; defaults to :func:`fftconv._parallel.default_threads`.

    Examples
    --------
    >>> backend = Ducc0Backend(threads=1)
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> bool(np.allclose(backend.rfftn(x, (6,), (1,)), np.fft.rfftn(x, s=(6,), axes=(1,))))
    True
    """

    name = "ducc0"

    def __init__(self, threads: int | None = None):
        if ducc0 is None:
            raise ImportError("the 'ducc0' backend needs ducc0: pip install 'fftconv[ducc0]'")
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        axes = normalise_axes(axes, x.ndim)
        out_shape = half_spectrum_array_shape(x.shape, axes, shape)
        complex_dtype = np.result_type(x.dtype, np.complex64)
        if out is None:
            out = np.empty(out_shape, complex_dtype)
        check_out(out, out_shape, complex_dtype)
        # like numpy.fft: each transformed axis cropped or zero-padded to its size; ducc0 wants the output's real type
        sizes = dict(zip(axes, shape))
        real = x[tuple(slice(0, sizes.get(axis)) for axis in range(x.ndim))]
        real = real.astype(np.finfo(complex_dtype).dtype, copy=False)
        padded = with_sizes(real.shape, axes, shape) != real.shape

        def run_block(block: tuple, task: int) -> None:
            maps = _zero_padded(real[block], with_sizes(real[block].shape, axes, shape)) if padded else real[block]
            ducc0.fft.r2c(maps, axes=axes, out=out[block])

        for_blocks(out, axes, self.threads, run_block)
        return out

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        axes = normalise_axes(axes, spectrum.ndim)
        check_half_spectrum(spectrum, shape, axes)
        out = np.empty(with_sizes(spectrum.shape, axes, shape), np.finfo(spectrum.dtype).dtype)
        for_blocks(spectrum, axes, self.threads, lambda block, task: ducc0.fft.c2r(
            spectrum[block], axes=axes, lastsize=shape[-1], forward=False, inorm=2 if normalise else 0,
            out=out[block], allow_overwriting_input=overwrite_input))
        return out

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """Unnormalised inverse, block of maps by block, in parallel; see :meth:`FFTBackend.irfftn_blocks`."""
        axes = normalise_axes(axes, spectrum.ndim)
        check_half_spectrum(spectrum, shape, axes)
        for_blocks(spectrum, axes, self.threads, lambda block, task: consume(block, ducc0.fft.c2r(
            spectrum[block], axes=axes, lastsize=shape[-1], forward=False, allow_overwriting_input=True)))

    def __repr__(self) -> str:
        return f"Ducc0Backend(threads={self.threads})"


def _zero_padded(maps: np.ndarray, shape: Shape) -> np.ndarray:
    """``maps`` in the leading corner of a new zero array of ``shape``."""
    buffer = np.zeros(shape, maps.dtype)
    buffer[tuple(slice(0, n) for n in maps.shape)] = maps
    return buffer


def configure_ducc0(threads: int | None = None) -> Ducc0Backend:
    """Replace the shared ``"ducc0"`` backend with one using ``threads`` tasks, and return it.

    Examples
    --------
    >>> configure_ducc0(threads=1).threads
    1
    >>> _ = configure_ducc0()  # back to the default number of threads
    """
    return share(Ducc0Backend(threads=threads))


register_backend("ducc0", Ducc0Backend, available=ducc0 is not None)
