"""``scipy.fft`` (pocketfft) with ``workers`` threads; calls into strided outputs run block by block on fftconv's
thread pool."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.fft

from .._parallel import default_threads
from .base import FFTBackend, register_backend, share
from .blocks import (Shape, check_half_spectrum, check_out, for_blocks, half_spectrum_array_shape, into,
                     normalise_axes)


class ScipyBackend(FFTBackend):
    """``scipy.fft`` (pocketfft) with ``workers`` threads.

    Parameters
    ----------
    workers : int, optional
        Threads; defaults to :func:`fftconv._parallel.default_threads`.
    """

    name = "scipy"

    def __init__(self, workers: int | None = None):
        self.workers = default_threads() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")

    def rfftn_scaled(self, x: np.ndarray, shape: Shape, axes: Shape, scale: float,
                     out: np.ndarray | None = None) -> np.ndarray:
        return self.rfftn(x, shape, axes, out, scale=scale)  # the factor in the copy into ``out``

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None,
              scale: float = 1.0) -> np.ndarray:
        if out is None:
            return into(scipy.fft.rfftn(x, s=shape, axes=axes, workers=self.workers), None, scale)
        # pocketfft has no ``out``: blocks of maps transformed on fftconv's pool are each copied (and scaled) into
        # ``out`` while in cache, rather than the whole result copied once after a multi-threaded transform.
        axes = normalise_axes(axes, x.ndim)
        check_out(out, half_spectrum_array_shape(x.shape, axes, shape), np.result_type(x.dtype, np.complex64))
        for_blocks(out, axes, self.workers, lambda block, task: into(
            scipy.fft.rfftn(x[block], s=shape, axes=axes, workers=1), out[block], scale))
        return out

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        return scipy.fft.irfftn(spectrum, s=shape, axes=axes, workers=self.workers, overwrite_x=overwrite_input,
                                norm="backward" if normalise else "forward")

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """Unnormalised inverse, block of maps by block, in parallel; see :meth:`FFTBackend.irfftn_blocks`."""
        axes = normalise_axes(axes, spectrum.ndim)
        check_half_spectrum(spectrum, shape, axes)
        for_blocks(spectrum, axes, self.workers, lambda block, task: consume(
            block, scipy.fft.irfftn(spectrum[block], s=shape, axes=axes, workers=1, norm="forward")))

    def __repr__(self) -> str:
        return f"ScipyBackend(workers={self.workers})"


def configure_scipy(workers: int | None = None) -> ScipyBackend:
    """Replace the shared ``"scipy"`` backend with one using ``workers`` threads, and return it.

    Examples
    --------
    >>> configure_scipy(workers=1).workers
    1
    >>> _ = configure_scipy()  # back to the default number of threads
    """
    return share(ScipyBackend(workers=workers))


register_backend("scipy", ScipyBackend)
