"""Spatial-domain helpers shared by the direct and im2col algorithms: padding and the windows each kernel tap reads."""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np

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
