"""Shape helpers and the block loop every backend shares: cutting maps into cache-sized blocks run on fftconv's pool.

Transforms into and out of fftconv's frequency-major spectra go block of maps by block, so that each block's copy
(or crop) happens while it is in cache; :func:`for_blocks` spreads the blocks over the thread pool.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

from .._parallel import parts_for, run_tasks, split
from ..sizes import half_length

Shape = tuple[int, ...]

#: Most bytes of one block of maps (one map at least), so that a block and its copy or crop stay in cache together.
STAGE_BYTES = 1 << 19


def normalise_axes(axes: Shape, ndim: int) -> Shape:
    return tuple(a % ndim for a in axes)


def with_sizes(shape: Shape, axes: Shape, sizes: Sequence[int]) -> Shape:
    """``shape`` with the entries at ``axes`` replaced by ``sizes``."""
    result = list(shape)
    for axis, size in zip(axes, sizes):
        result[axis] = int(size)
    return tuple(result)


def half_spectrum_array_shape(shape: Shape, axes: Shape, sizes: Sequence[int]) -> Shape:
    """Shape of ``rfftn`` of an array of ``shape`` at ``sizes`` over ``axes`` (the last one halved)."""
    full = with_sizes(shape, axes, sizes)
    return with_sizes(full, axes[-1:], (half_length(full[axes[-1]]),))


def check_out(out: np.ndarray, shape: Shape, dtype) -> None:
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}; the transform needs shape "
                         f"{tuple(shape)} and dtype {np.dtype(dtype)}")


def into(result: np.ndarray, out: np.ndarray | None, scale: float = 1.0) -> np.ndarray:
    """``scale * result`` in ``result``, or copied into the caller's preallocated ``out`` (checked, never
    broadcast); the factor costs nothing extra in the copy."""
    if out is None:
        if scale != 1.0:
            result *= scale
        return result
    check_out(out, result.shape, result.dtype)
    if scale == 1.0:
        np.copyto(out, result)
    else:
        np.multiply(result, scale, out=out)
    return out


def check_half_spectrum(spectrum: np.ndarray, shape: Shape, axes: Shape) -> None:
    expected = half_spectrum_array_shape(spectrum.shape, axes, shape)
    if spectrum.shape != expected:
        raise ValueError(f"spectrum has shape {spectrum.shape}; irfftn to size {tuple(shape)} over axes {axes} "
                         f"needs {expected}")


def split_axis(shape: Shape, axes: Shape) -> int | None:
    """The largest untransformed axis (where a call is cut into independent chunks), or None if there is none."""
    free = [axis for axis in range(len(shape)) if axis not in axes and shape[axis] > 1]
    return max(free, key=lambda axis: shape[axis]) if free else None


def stage_blocks(shape: Shape, strides: Shape, axes: Shape, budget: int) -> list[tuple[slice, ...]]:
    """Index tuples cutting an array's untransformed axes into blocks of at most ``budget`` elements (one map at least).

    The axes innermost in memory are kept whole first, so a block of a frequency-major spectrum is a few long runs in
    every bin's row, and copying it in is cheap.

    Examples
    --------
    >>> blocks = stage_blocks((4, 6, 8, 5), (480, 8, 0, 0), (2, 3), budget=480)  # 12 maps of 40 elements per block
    >>> len(blocks), blocks[1]
    (2, (slice(2, 4, None), slice(0, 6, None), slice(None, None, None), slice(None, None, None)))
    """
    per_map = math.prod(shape[axis] for axis in axes)
    capacity = max(1, budget // per_map)
    sizes = list(shape)
    for axis in sorted((a for a in range(len(shape)) if a not in axes), key=lambda a: abs(strides[a])):
        sizes[axis] = max(1, min(shape[axis], capacity))
        capacity = max(1, capacity // max(shape[axis], 1))
    ranges = [[slice(None)] if axis in axes else
              [slice(start, min(start + sizes[axis], shape[axis])) for start in range(0, shape[axis], sizes[axis])]
              for axis in range(len(shape))]
    return list(itertools.product(*ranges))


def for_blocks(strided: np.ndarray, axes: Shape, threads: int,
               run_block: Callable[[tuple, int], object]) -> None:
    """``run_block(block, task)`` over blocks of ``strided``'s maps, on up to ``threads`` tasks of fftconv's pool.

    The maps are first cut into one near-equal chunk per task, along the untransformed axis outermost in memory
    (the largest one if it is too short to share), then each chunk into its :func:`stage_blocks`. ``task`` numbers
    the tasks, so that each can own its buffers.
    """
    free = [axis for axis in range(strided.ndim) if axis not in axes and strided.shape[axis] > 1]
    parts = parts_for(strided.size, "elements", threads)
    whole = (slice(None),) * strided.ndim
    chunks = [whole]
    if free and parts > 1:
        axis = max(free, key=lambda a: abs(strided.strides[a]))
        if strided.shape[axis] < parts:
            axis = max(free, key=lambda a: strided.shape[a])
        chunks = [whole[:axis] + (slice(a, b),) + whole[axis + 1:] for a, b in split(strided.shape[axis], parts)]

    def task(index: int, chunk: tuple) -> None:
        part = strided[chunk]
        for block in stage_blocks(part.shape, part.strides, axes, STAGE_BYTES // strided.itemsize):
            run_block(tuple(inner if axis in axes else within(outer, inner, n)  # transformed axes stay whole
                            for axis, (outer, inner, n) in enumerate(zip(chunk, block, strided.shape))), index)

    run_tasks([lambda i=i, c=c: task(i, c) for i, c in enumerate(chunks)])


def within(outer: slice, inner: slice, size: int) -> slice:
    """The slice ``inner`` of the part ``outer`` of an axis of ``size``, as a slice of the whole axis."""
    picked = range(size)[outer][inner]
    return slice(picked.start, picked.stop)
