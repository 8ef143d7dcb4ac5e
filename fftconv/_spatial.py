"""Spatial-domain helpers shared by the direct and im2col algorithms: padding and the windows each kernel tap reads."""

from __future__ import annotations

import itertools
import math
from typing import Iterator

import numpy as np

from . import _memory
from .geometry import ConvGeometry


def pad_input(x: np.ndarray, g: ConvGeometry, dtype=None) -> np.ndarray:
    """Zero-pad the spatial axes of ``x`` by ``padding_before`` / ``padding_after`` (``x`` itself if there is none)."""
    x = x.astype(dtype or x.dtype, copy=False)
    if not any(g.padding_before) and not any(g.padding_after):
        return x  # np.pad copies even with zero widths (~60 us on a small input)
    return np.pad(x, [(0, 0), (0, 0), *zip(g.padding_before, g.padding_after)])


def crop_padding(padded: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Inverse of :func:`pad_input` for gradients: keep the rows that hold real input."""
    return padded[(Ellipsis, *(slice(b, b + n) for b, n in zip(g.padding_before, g.input_shape)))]


def tap_windows(g: ConvGeometry) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """For each kernel tap ``t``, the slice of the padded input that tap reads for all outputs.

    Output ``i`` reads padded position ``i * s + t * d``, so tap ``t`` sees a strided window starting at ``t * d``.
    """
    for taps in itertools.product(*(range(k) for k in g.kernel_shape)):
        window = tuple(slice(t * d, t * d + (m - 1) * s + 1, s)
                       for t, d, m, s in zip(taps, g.dilation, g.output_shape, g.stride))
        yield taps, (Ellipsis, *window)


def padded_shape(g: ConvGeometry) -> tuple[int, ...]:
    """Full shape of the zero-padded input, ``(S, f, *(n + p_before + p_after))``."""
    return (g.batch, g.in_channels, *(n + b + a for n, b, a in zip(g.input_shape, g.padding_before, g.padding_after)))


def check_spatial_memory(g: ConvGeometry, dtype, algo: str) -> None:
    """Fail before allocating if the padded input, the unfolded columns (im2col) and the result cannot fit."""
    itemsize = np.dtype(dtype).itemsize
    needed = (math.prod(padded_shape(g)) + math.prod(g.full_output_shape) + math.prod(g.full_weight_shape)) * itemsize
    if algo == "im2col":
        needed += im2col_bytes(g, dtype)
    _memory.check_fits(needed, f"algo={algo!r} for {g}",
                       "use a smaller batch" + (" or algo='fft'" if algo == "im2col" else " or algo='im2col'"))


def im2col_bytes(g: ConvGeometry, dtype) -> int:
    """Bytes of the unfolded input matrix ``(S * prod(m), f * prod(k))``."""
    return g.batch * math.prod(g.output_shape) * g.in_channels * math.prod(g.kernel_shape) * np.dtype(dtype).itemsize
