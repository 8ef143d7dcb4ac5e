"""Tiles of a convolution's output: how many there are, where each starts and how much padded input it reads.

The one home of the tile arithmetic shared by the tiled FFT algorithm (:mod:`fftconv.tiled`), the Winograd
algorithm (:mod:`fftconv.winograd`) and their counts in :mod:`fftconv.costs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .geometry import ConvGeometry


def tile_counts(sizes: Sequence[int], tile: Sequence[int]) -> tuple[int, ...]:
    """Tiles of ``tile`` positions that cover ``sizes`` positions, per axis: ``ceil(size / tile)``.

    Examples
    --------
    >>> tile_counts((10, 8), (4, 4))
    (3, 2)
    """
    return tuple(-(-n // t) for n, t in zip(sizes, tile))


@dataclass(frozen=True)
class Tiling:
    """Tiles of ``tile`` output positions per axis over the output of ``geometry``.

    Tile ``j`` along an axis computes outputs ``[j t, j t + t)`` and reads padded input ``[j t s, j t s + read)``:
    tiles are aligned to the stride ``s``, so strided convolutions tile like unstrided ones.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((2, 3, 40), (4, 3, 3), stride=2)  # output 19
    >>> tiling = Tiling(g, (7,))
    >>> tiling.counts, tiling.step, tiling.read, tiling.span, tiling.covered
    ((3,), (14,), (15,), (43,), (21,))
    """

    geometry: ConvGeometry
    tile: tuple[int, ...]

    @property
    def counts(self) -> tuple[int, ...]:
        """Tiles per axis: ``ceil(m / t)``."""
        return tile_counts(self.geometry.output_shape, self.tile)

    @property
    def tiles(self) -> int:
        """Tiles per image."""
        return math.prod(self.counts)

    @property
    def step(self) -> tuple[int, ...]:
        """Padded-input distance between consecutive tiles: ``t * s``."""
        return tuple(t * s for t, s in zip(self.tile, self.geometry.stride))

    @property
    def read(self) -> tuple[int, ...]:
        """Padded-input extent one tile reads: ``(t - 1) * s + d * (k - 1) + 1``."""
        g = self.geometry
        return tuple((t - 1) * s + kd for t, s, kd in zip(self.tile, g.stride, g.dilated_kernel_shape))

    @property
    def span(self) -> tuple[int, ...]:
        """Padded-input extent all tiles read together (past the padded input when the last tile is partial)."""
        return tuple((c - 1) * st + r for c, st, r in zip(self.counts, self.step, self.read))

    @property
    def covered(self) -> tuple[int, ...]:
        """Output positions the tiles compute: ``tiles * t >= m``."""
        return tuple(c * t for c, t in zip(self.counts, self.tile))

    @property
    def overlap_classes(self) -> tuple[int, ...]:
        """Per axis, ``ceil(read / step)``: tiles ``j = c (mod classes)`` do not overlap one another."""
        return tuple(-(-r // st) for r, st in zip(self.read, self.step))

    @property
    def tile_geometry(self) -> ConvGeometry:
        """The untiled problem the tiles form: one batch entry per (sample, tile), input ``read``, no padding."""
        g = self.geometry
        nd = g.ndim
        return ConvGeometry(g.batch * self.tiles, g.in_channels, g.out_channels, g.groups, self.read,
                            g.kernel_shape, g.stride, g.dilation, (0,) * nd, (0,) * nd)
