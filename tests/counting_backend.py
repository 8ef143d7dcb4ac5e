"""A backend wrapper that counts the maps each kind of transform handles: the tests' proof of transform reuse."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from fftconv.backends import FFTBackend

Shape = tuple[int, ...]


class CountingBackend(FFTBackend):
    """Wrap a backend and count the maps it transforms, by FFT and by DFT matrices.

    Every FFT call transforms ``prod(x.shape) / prod(x.shape[axes])`` independent maps; a DFT-matrix call transforms
    the ``B`` maps of its last axis. ``calls`` logs ``(method, shape)`` in order.

    Examples
    --------
    >>> from fftconv import NumpyBackend
    >>> counter = CountingBackend(NumpyBackend())
    >>> _ = counter.rfftn(np.ones((2, 3, 4, 4)), (4, 4), (2, 3))
    >>> counter.forward_maps, counter.inverse_maps
    (6, 0)
    """

    def __init__(self, inner: FFTBackend):
        self.inner = inner
        self.name = f"counting[{inner.name}]"
        self.reset()

    def reset(self) -> None:
        self.forward_maps = 0
        self.inverse_maps = 0
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    @staticmethod
    def _maps(array: np.ndarray, axes: Shape) -> int:
        transformed = {a % array.ndim for a in axes}
        return int(np.prod([s for i, s in enumerate(array.shape) if i not in transformed]))

    def _count(self, method: str, shape: tuple[int, ...], forward: bool, maps: int) -> None:
        if forward:
            self.forward_maps += maps
        else:
            self.inverse_maps += maps
        self.calls.append((method, shape))

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        self._count("rfftn", x.shape, True, self._maps(x, axes))
        return self.inner.rfftn(x, shape, axes, out=out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        self._count("irfftn", spectrum.shape, False, self._maps(spectrum, axes))
        return self.inner.irfftn(spectrum, shape, axes, overwrite_input=overwrite_input, normalise=normalise)

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        self._count("irfftn", spectrum.shape, False, self._maps(spectrum, axes))
        self.inner.irfftn_blocks(spectrum, shape, axes, consume)

    def empty(self, shape: Shape, dtype) -> np.ndarray:
        return self.inner.empty(shape, dtype)

    def rfftn_by_matrix(self, maps: np.ndarray, positions: Sequence[Sequence[int]], fft_shape: Shape,
                        out: np.ndarray) -> np.ndarray:
        self._count("rfftn_by_matrix", maps.shape, True, maps.shape[-1])
        return self.inner.rfftn_by_matrix(maps, positions, fft_shape, out)

    def irfftn_by_matrix(self, spectrum: np.ndarray, positions: Sequence[Sequence[int]], fft_shape: Shape,
                         real_dtype) -> np.ndarray:
        self._count("irfftn_by_matrix", spectrum.shape, False, spectrum.shape[-1])
        return self.inner.irfftn_by_matrix(spectrum, positions, fft_shape, real_dtype)
