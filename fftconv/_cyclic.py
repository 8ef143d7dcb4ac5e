"""Reading and writing cyclic buffers at arithmetic progressions ``(offset + i * step) mod N``.

Every crop of the spectral algorithm is such a progression per axis: strided outputs read from ``-p_before``,
time-reversed kernels and gradients (``step < 0``), dilated taps. A progression that does not repeat wraps at most
once, so it is at most two slices; copying 2^ndim strided blocks is several times faster than fancy indexing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Progression:
    """Positions ``(offset + i * step) mod size`` for ``i < count``.

    Examples
    --------
    >>> Progression(count=4, step=-1, offset=0, size=6).positions().tolist()
    [0, 5, 4, 3]
    >>> [(a.start, a.stop, b.start, b.stop, b.step) for a, b in Progression(4, -1, 0, 6).pieces()]
    [(0, 1, 0, None, -1), (1, 4, 5, 2, -1)]
    """

    count: int
    step: int
    offset: int
    size: int

    def positions(self) -> np.ndarray:
        return (np.arange(self.count) * self.step + self.offset) % self.size

    def repeats(self) -> bool:
        return self.count > 1 and abs(self.step) * (self.count - 1) >= self.size

    def pieces(self) -> list[tuple[slice, slice]]:
        """``(slice of i, slice of positions)`` pairs covering the progression; it must not repeat."""
        first, step, size = self.offset % self.size, self.step, self.size
        if self.count == 0:
            return []
        before_wrap = -(-(size - first) // step) if step > 0 else first // -step + 1
        before_wrap = min(self.count, before_wrap)
        result = [(slice(0, before_wrap), _slice(first, before_wrap, step))]
        if before_wrap < self.count:
            start = first + before_wrap * step + (-size if step > 0 else size)
            result.append((slice(before_wrap, self.count), _slice(start, self.count - before_wrap, step)))
        return result


def _slice(start: int, count: int, step: int) -> slice:
    stop = start + count * step
    return slice(start, None if stop < 0 else stop, step)


def gather_into(result: np.ndarray, array: np.ndarray, progressions: Sequence[Progression],
                scale: float = 1.0) -> None:
    """``result[...] = scale * array[..., pos_0, pos_1, ...]`` (outer indexing over the trailing axes).

    Scaling while copying costs nothing extra; the spectral passes use it to normalise inverse FFTs while cropping
    each block of maps (:meth:`fftconv.backends.FFTBackend.irfftn_blocks`).
    """
    if any(p.repeats() for p in progressions):
        index = np.ix_(*(p.positions() for p in progressions))
        np.multiply(array[(Ellipsis, *index)], scale, out=result, casting="unsafe")
        return
    for blocks in itertools.product(*(p.pieces() for p in progressions)):
        np.multiply(array[(Ellipsis, *(b[1] for b in blocks))], scale,
                    out=result[(Ellipsis, *(b[0] for b in blocks))], casting="unsafe")


def scatter(buffer: np.ndarray, progressions: Sequence[Progression], values: np.ndarray) -> None:
    """``buffer[..., pos_0, pos_1, ...] += values`` into a zeroed buffer; positions that wrap onto each other add."""
    if any(p.repeats() for p in progressions):
        np.add.at(buffer, (Ellipsis, *np.ix_(*(p.positions() for p in progressions))), values)
        return
    for blocks in itertools.product(*(p.pieces() for p in progressions)):
        buffer[(Ellipsis, *(b[1] for b in blocks))] = values[(Ellipsis, *(b[0] for b in blocks))]


def progressions(counts: Sequence[int], steps: Sequence[int], offsets: Sequence[int],
                 sizes: Sequence[int]) -> list[Progression]:
    """One :class:`Progression` per axis."""
    return [Progression(int(c), int(s), int(o), int(n)) for c, s, o, n in zip(counts, steps, offsets, sizes)]

