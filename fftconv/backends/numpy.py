"""``numpy.fft``: always available, single-threaded, no plan reuse. The slowest choice."""

from __future__ import annotations

import numpy as np

from .base import FFTBackend, register_backend
from .blocks import Shape, into


class NumpyBackend(FFTBackend):
    """``numpy.fft``: always available, single-threaded, no plan reuse. The slowest choice."""

    name = "numpy"

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None,
              scale: float = 1.0) -> np.ndarray:
        return into(np.fft.rfftn(x, s=shape, axes=axes), out, scale)

    def rfftn_scaled(self, x: np.ndarray, shape: Shape, axes: Shape, scale: float,
                     out: np.ndarray | None = None) -> np.ndarray:
        return self.rfftn(x, shape, axes, out, scale=scale)  # the factor in the copy into ``out``

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        return np.fft.irfftn(spectrum, s=shape, axes=axes, norm="backward" if normalise else "forward")

    def __repr__(self) -> str:
        return "NumpyBackend()"


register_backend("numpy", NumpyBackend)
