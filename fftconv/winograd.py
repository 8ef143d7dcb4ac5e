"""Winograd's minimal filtering ``F(m x m, r x r)`` (Lavin & Gray, CVPR 2016) for all three passes of a conv layer.

Every pass is one tiled correlation (see docs/winograd.md for the derivations):

- forward: ``y = x (*) w`` on the padded input, tiles of ``m`` outputs;
- input gradient: ``dx = dy (*) flip(w)`` with the channel roles swapped, on ``dy`` padded by ``r - 1 - padding``;
- weight gradient: ``dw = x (*) dy`` with ``F(r, m)``: each ``m``-tile of ``dy`` is the "filter" of an ``r``-output
  correlation, and the products are summed over batch and tiles before the one output transform.

The transform is a tensor product of 1-d transforms, so one N-dimensional code serves 1-d, 2-d and 3-d: each data
tile of ``alpha = m + r - 1`` points per axis is transformed (``B^T d B``), each filter (``G g G^T``), then at each of
the ``prod(alpha)`` transform positions ONE batched GEMM contracts the channels (as the FFT algorithm's per-bin GEMM
does), and the output transform (``A^T M A``) gives the result. The 1-d transforms are exact rational matrices
(:mod:`fftconv._cook_toom`) applied as matrix products along one axis at a time.

The work is cut into chunks of images (or of tile rows when the batch is small). Each chunk is transposed
channels-last, ``(*spatial, images, channels)``, so that a transform along one axis is a single batched matrix
product over strided views of the tiles, written straight into the positions-first layout ``(P, tiles, channels)``
whose per-position slices are the GEMM operands: no tile is gathered on its own. The chunks run on fftconv's thread
pool with single-threaded BLAS.
Stride and dilation other than 1 are not supported (:func:`unsupported_reason`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _memory
from ._cook_toom import MAX_TRANSFORM_SIZE, cook_toom, float_transforms
from ._parallel import blas_single_threaded_within, parts_for, run_tasks, split
from ._tiling import tile_counts
from .costs import WinogradWork, winograd_workspace_bytes
from .geometry import ConvGeometry
from .passes import Pass

TileArg = Union[int, Sequence[int], None]

#: Transform size ``alpha = m + r - 1`` of the default tile, and the largest of :func:`tile_choices`. On a VGG-like
#: float32 layer F(4, 3) (alpha 6) errs about 4x as much as im2col, F(6, 3) (alpha 8) 17x, F(7, 3) 450x
#: (docs/winograd.md).
DEFAULT_TRANSFORM_SIZE = 6
CHOICES_MAX_TRANSFORM_SIZE = 8
#: Bytes of transformed data and products one chunk holds: enough tiles (hundreds on wide layers) that each
#: per-position GEMM is wide, since every chunk reads all the transformed filters; few enough that the chunks in
#: flight stay a small multiple of the input.
CHUNK_BYTES = 1 << 23
#: Terms (tiles of images) one GEMM of the weight gradient sums before its result is added to the others'.
SUM_BLOCK = 256
#: Filters whose transforms :func:`_transformed_filters` computes together.
FILTER_BLOCK = 8192
#: A stride between channels that is a multiple of this maps a point's channels to the same cache sets (4 KiB
#: aliasing); :func:`_channels_last` then copies :data:`CHANNEL_BLOCK` channels at a time, as many as a set holds.
ALIASING_BYTES = 4096
CHANNEL_BLOCK = 8


# ---------------------------------------------------------------------------------------------------------- tiles
def tile_choices(r: int) -> tuple[int, ...]:
    """Output tile sizes ``m`` worth trying for ``r`` kernel taps: ``2 <= m`` and ``m + r - 1 <= 8``.

    Larger tiles need fewer multiplications per output (``(m + r - 1) / m`` per axis) but lose accuracy; past a
    transform size of 8 the float32 error jumps about 30x (2.7e-4 relative for F(7, 3) on a VGG-like layer). A
    kernel of one tap gains nothing from tiling: ``(1,)``. Kernels longer than 7 taps get ``(1,)`` too, which is
    still exact but no faster than a direct method.

    Examples
    --------
    >>> tile_choices(3), tile_choices(5), tile_choices(1), tile_choices(9)
    ((2, 3, 4, 5, 6), (2, 3, 4), (1,), (1,))
    """
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"r must be a positive int (kernel taps), got {r!r}")
    choices = tuple(range(2, CHOICES_MAX_TRANSFORM_SIZE - r + 2))
    return choices if r > 1 and choices else (1,)


def default_tile(g: ConvGeometry) -> tuple[int, ...]:
    """The output tile ``m`` per spatial axis used when ``tile=None``.

    ``m = 7 - r`` (a transform of 6 points: F(4, 3), F(2, 5)) when that is at least 2, else 2 up to ``r = 7`` and 1
    beyond (and for ``r = 1``); never larger than the output. F(4x4, 3x3) is the usual float32 choice (Lavin & Gray;
    cuDNN's non-fused Winograd, oneDNN): it does 4x fewer multiplications than a direct 3x3 convolution at about 4x
    im2col's float32 error on a VGG-like layer, whereas F(6x6, 3x3) saves 5.1x at about 17x the error.

    Examples
    --------
    >>> default_tile(ConvGeometry.from_shapes((8, 64, 32, 32), (64, 64, 3, 3), padding=1))
    (4, 4)
    >>> default_tile(ConvGeometry.from_shapes((1, 2, 3, 40), (4, 2, 3, 5)))
    (1, 2)
    """
    tiles = []
    for r, out in zip(g.kernel_shape, g.output_shape):
        if r == 1 or r > 7:
            m = 1
        else:
            m = max(2, DEFAULT_TRANSFORM_SIZE + 1 - r)
        tiles.append(min(m, out))
    return tuple(tiles)


def _tile_tuple(tile: TileArg, g: ConvGeometry) -> tuple[int, ...]:
    if tile is None:
        return default_tile(g)
    if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool):
        values = (int(tile),) * g.ndim
    else:
        try:
            values = tuple(tile)
        except TypeError:
            raise TypeError(f"tile must be an int, a tuple of {g.ndim} ints or None, got {tile!r}") from None
        if len(values) != g.ndim or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                            for v in values):
            raise ValueError(f"tile must be an int or a tuple of {g.ndim} ints for a {g.ndim}-d convolution, "
                             f"got {tile!r}")
        values = tuple(int(v) for v in values)
    if any(v < 1 for v in values):
        raise ValueError(f"tile must be positive in every dimension, got {values}")
    return values


def unsupported_reason(g: ConvGeometry, tile: TileArg = None) -> str | None:
    """Why Winograd cannot run this geometry (with this tile), or ``None`` if it can.

    Winograd's transforms assume consecutive outputs read consecutive inputs: stride 1 and dilation 1. The
    transform size ``m + r - 1`` is limited to 16 per axis. A malformed ``tile`` raises instead (a usage error).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((1, 1, 9, 9), (1, 1, 3, 3), stride=2)
    >>> unsupported_reason(g)
    'winograd needs stride 1; stride=(2, 2)'
    >>> unsupported_reason(ConvGeometry.from_shapes((1, 1, 9, 9), (1, 1, 3, 3))) is None
    True
    """
    tile = _tile_tuple(tile, g)
    if any(s != 1 for s in g.stride):
        return f"winograd needs stride 1; stride={g.stride}"
    if any(d != 1 for d in g.dilation):
        return f"winograd needs dilation 1; dilation={g.dilation}"
    sizes = tuple(m + r - 1 for m, r in zip(tile, g.kernel_shape))
    if max(sizes) > MAX_TRANSFORM_SIZE:
        return (f"winograd supports transforms of at most {MAX_TRANSFORM_SIZE} points per axis; tile={tile} with "
                f"kernel {g.kernel_shape} needs m + r - 1 = {sizes}; use a smaller tile or another algorithm")
    return None


def _checked_tile(g: ConvGeometry, tile: TileArg) -> tuple[int, ...]:
    reason = unsupported_reason(g, tile)
    if reason is not None:
        raise ValueError(reason)
    return _tile_tuple(tile, g)


# ------------------------------------------------------------------------------------------------ array plumbing
def _embed(array: np.ndarray, before: Sequence[int], length: Sequence[int]) -> np.ndarray:
    """``out[..., j] = array[..., j - before]`` over ``length`` spatial points, zero outside ``array``.

    ``before`` may be negative (the front is cropped) and ``length`` shorter than what ``array`` covers (the back
    is cropped). Returns ``array`` itself when nothing changes.
    """
    spatial = array.shape[2:]
    if not any(before) and tuple(length) == spatial:
        return array
    out = np.zeros((*array.shape[:2], *length), dtype=array.dtype)
    target, source = [], []
    for b, n, size in zip(before, spatial, length):
        start, stop = max(b, 0), max(min(b + n, size), max(b, 0))
        target.append(slice(start, stop))
        source.append(slice(start - b, stop - b))
    out[(Ellipsis, *target)] = array[(Ellipsis, *source)]
    return out


def _along_leading_axes(matrices: Sequence[np.ndarray], array: np.ndarray) -> np.ndarray:
    """Apply ``matrices[d]`` (``out_d x in_d``) along leading axis ``d`` of ``array`` (``(*in, ...)``), one axis at a
    time: a tensor product of 1-d transforms costs ``sum_d out_d in_d`` per point instead of ``prod``."""
    for axis, matrix in enumerate(matrices):
        shape = array.shape
        stacked = array.reshape(math.prod(shape[:axis]), shape[axis], -1)
        array = np.matmul(matrix, stacked).reshape(*shape[:axis], matrix.shape[0], *shape[axis + 1:])
    return array


def _channels_last(block: np.ndarray) -> np.ndarray:
    """``(s, C, *spatial)`` -> contiguous ``(*spatial, s, C)``: the layout in which every transform is a GEMM over
    whole rows of ``s C`` values and every per-position product reads a plain ``(tiles s) x C`` matrix.

    When the channels lie a multiple of :data:`ALIASING_BYTES` apart (32 x 32 float32 maps and larger powers of
    two), one copy would read all ``C`` channels of a point from the same few cache sets, which evict each other:
    the copy is then made per image, :data:`CHANNEL_BLOCK` channels at a time (3 to 4x faster here).
    """
    nd = block.ndim - 2
    moved = block.transpose(*range(2, 2 + nd), 0, 1)
    if block.strides[1] % ALIASING_BYTES:
        return np.ascontiguousarray(moved)
    out = np.empty(moved.shape, dtype=block.dtype)
    for image in range(block.shape[0]):
        for start in range(0, block.shape[1], CHANNEL_BLOCK):
            channels = slice(start, start + CHANNEL_BLOCK)
            out[..., image, channels] = moved[..., image, channels]
    return out


def _to_positions(block: np.ndarray, matrices: Sequence[np.ndarray], step: Sequence[int]) -> np.ndarray:
    """Transformed tiles ``(*out, *T, s, C)`` of channels-last ``block`` ``(*length, s, C)``.

    Along axis ``d`` tile ``t`` reads ``matrices[d].shape[1]`` points from ``t * step[d]`` and becomes
    ``matrices[d].shape[0]`` transform values. Each axis is one batched matrix product over strided views of the
    tiles, written straight into the positions-first layout, so no tile is ever gathered on its own.
    """
    nd = len(matrices)
    array, block = block, None  # each stage's input is freed as soon as the next exists
    for axis, (matrix, stride) in enumerate(zip(matrices, step)):
        out_d, in_d = matrix.shape
        length = array.shape[2 * axis]
        count = (length - in_d) // stride + 1
        lead_out, lead_tiles = array.shape[:axis], array.shape[axis:2 * axis]
        rest = math.prod(array.shape[2 * axis + 1:])
        outer, tiles_before = math.prod(lead_out), math.prod(lead_tiles)
        item = array.itemsize
        tiles = as_strided(array, (outer, tiles_before, count, in_d, rest),
                           (tiles_before * length * rest * item, length * rest * item, stride * rest * item,
                            rest * item, item), writeable=False)
        result = np.empty((*lead_out, out_d, *lead_tiles, count, *array.shape[2 * axis + 1:]), dtype=array.dtype)
        target = result.reshape(outer, out_d, tiles_before, count, rest).transpose(0, 2, 3, 1, 4)
        np.matmul(matrix, tiles, out=target)
        array = result
    return array.reshape(math.prod(array.shape[:nd]), -1, array.shape[-1])


def _chunks(batch: int, tile_rows: int, bytes_per_row: int, min_parts: int) -> list[tuple[slice, slice]]:
    """``(images, tile rows)`` slices that cover ``batch x tile_rows`` in pieces of about :data:`CHUNK_BYTES`.

    Whole images when there are enough of them, else rows of tiles of one image.
    """
    rows_per_chunk = max(1, CHUNK_BYTES // max(bytes_per_row, 1))
    count = min(batch * tile_rows, max(min_parts, -(-batch * tile_rows // rows_per_chunk)))
    if count <= batch:
        return [(slice(a, b), slice(None)) for a, b in split(batch, count)]
    row_ranges = split(tile_rows, -(-count // batch))
    return [(slice(s, s + 1), slice(a, b)) for s in range(batch) for a, b in row_ranges]


def _run_in_tasks(chunks: list, work, multiply_adds: int) -> list:
    """Run ``work(chunk)`` for every chunk; the list is cut into contiguous runs, one per task of fftconv's pool.

    Returns, per task, the sum of its chunks' results (``None`` if ``work`` returns nothing), so a reduction holds
    one partial sum per thread rather than one per chunk; the fixed order keeps results reproducible.
    """
    ranges = split(len(chunks), parts_for(multiply_adds, "multiply_adds"))
    totals: list = [None] * len(ranges)

    def run(task: int, start: int, stop: int) -> None:
        for chunk in chunks[start:stop]:
            result = work(chunk)
            if result is not None:
                totals[task] = result if totals[task] is None else np.add(totals[task], result, out=totals[task])

    run_tasks([lambda i=i, a=a, b=b: run(i, a, b) for i, (a, b) in enumerate(ranges)])
    return totals


@dataclass(frozen=True)
class _Plan:
    """One pass's counts and its cut into chunks, after checking the tile and the memory it needs."""

    work: WinogradWork
    chunks: list
    multiply_adds: int

    @classmethod
    def of(cls, g: ConvGeometry, pass_name: Pass, tile: TileArg, dtype) -> "_Plan":
        work = WinogradWork.of(g, pass_name, _checked_tile(g, tile), dtype)
        plan = cls(work, _cut(g, work), work.gemm_flops // 2)
        _memory.check_fits(workspace_bytes(g, work), f"algo='winograd' for {g} with tiles of {work.tile}",
                           "use a smaller batch, or algo='fft'")
        return plan


def workspace_bytes(g: ConvGeometry, work: WinogradWork) -> int:
    """Memory the pass of ``work`` allocates at its peak (:func:`fftconv.costs.winograd_workspace_bytes`), with the
    chunks it is cut into and the tasks that run them at once."""
    chunks = _cut(g, work)
    moving = work.data_bytes + (work.filter_bytes if work.pass_name is Pass.WEIGHT else work.product_bytes)
    rows = work.tile_counts[0]
    largest = max(len(range(*images.indices(g.batch))) * len(range(*tile_rows.indices(rows)))
                  for images, tile_rows in chunks)
    tasks = min(len(chunks), parts_for(work.gemm_flops // 2, "multiply_adds"))
    return winograd_workspace_bytes(g, work, -(-moving * largest // (g.batch * rows)), tasks)


def _cut(g: ConvGeometry, work: WinogradWork) -> list[tuple[slice, slice]]:
    """The chunks a pass runs: rows of tiles of about :data:`CHUNK_BYTES` of data and products together."""
    row_bytes = work.positions * (g.in_channels + g.out_channels) * math.prod(work.tile_counts[1:]) * work.itemsize
    return _chunks(g.batch, work.tile_counts[0], row_bytes, parts_for(work.gemm_flops // 2, "multiply_adds"))


def gemm_columns(g: ConvGeometry, work: WinogradWork) -> float:
    """Columns of each per-position GEMM of ``work`` as the pass runs it: the tiles of one chunk, on average.

    Examples
    --------
    A row of 16 tiles of 4x4 outputs takes 1.2 MB of transformed data and products: the 16 rows of one image go
    in 3 chunks.

    >>> g = ConvGeometry.from_shapes((1, 256, 64, 64), (256, 256, 3, 3), padding=1)
    >>> round(gemm_columns(g, work(g, "forward", 4)), 1)
    85.3
    """
    return g.batch * work.tiles / len(_cut(g, work))


# --------------------------------------------------------------------------------------------------- the core
def _transformed_filters(w: np.ndarray, g: ConvGeometry, tile: tuple[int, ...], for_input: bool) -> np.ndarray:
    """``G w G^T`` per filter, ``(P, groups, in/groups, out/groups)`` in ``w``'s dtype, computed in float64.

    ``for_input``: the input gradient's filters, flipped in space with input and output channels swapped. Float64
    removes the filter transform's share of the round-off. The layout is the right-hand side of the per-position
    products ``tiles (N x in) @ filters (in x out)``. The filters go in blocks of :data:`FILTER_BLOCK` on the
    pool: each block's float64 intermediates stay in cache, where whole-layer ones (64 x 147456 values for F(6, 3)
    on 384 x 384 channels) cost more in page faults and memory traffic than the arithmetic.
    """
    nd, groups = g.ndim, g.groups
    grouped = w.reshape(groups, g.out_channels // groups, -1, *g.kernel_shape)
    if for_input:
        grouped = grouped[(Ellipsis, *(slice(None, None, -1),) * nd)].swapaxes(1, 2)
    kernels = grouped.transpose(*range(3, 3 + nd), 0, 2, 1)  # (*k, groups, in/g, out/g)
    layout = kernels.shape[nd:]
    kernels = kernels.reshape(*g.kernel_shape, -1)  # a copy: (*k, filters)
    matrices = [float_transforms(m, r, np.float64)[1] for m, r in zip(tile, g.kernel_shape)]
    transformed = np.empty((*(matrix.shape[0] for matrix in matrices), kernels.shape[-1]), dtype=w.dtype)

    starts = range(0, kernels.shape[-1], FILTER_BLOCK)

    def transform(first: int, last: int) -> None:  # the blocks starts[first:last]
        for start in starts[first:last]:
            block = kernels[..., start:start + FILTER_BLOCK].astype(np.float64)
            transformed[..., start:start + FILTER_BLOCK] = _along_leading_axes(matrices, block)

    parts = parts_for(transformed.size, "elements")
    run_tasks([functools.partial(transform, first, last) for first, last in split(len(starts), parts)])
    return transformed.reshape(-1, *layout)


def _grouped(matrix: np.ndarray, groups: int) -> np.ndarray:
    """``(P, N, groups * K)`` -> the view ``(P, groups, N, K)``: one matrix per position and group, no copy."""
    positions, rows, columns = matrix.shape
    return matrix.reshape(positions, rows, groups, columns // groups).transpose(0, 2, 1, 3)


def _summed_products(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` over the last axes (``(..., a, K) @ (..., K, b)``) in sums of at most :data:`SUM_BLOCK`
    terms, added one after the other.

    The float32 error of one GEMM over a long ``K`` grew as ``sqrt(K)`` here (a 16 x 8 x 64 x 64 layer's weight
    gradient erred 5.5x more with 7700 tiles per GEMM than with 256); blocks keep it to the error the accuracy
    model predicts.
    """
    total = None
    for start in range(0, left.shape[-1], SUM_BLOCK):
        block = np.matmul(left[..., start:start + SUM_BLOCK], right[..., start:start + SUM_BLOCK, :])
        total = block if total is None else np.add(total, block, out=total)
    return total


def _chunk_positions(array: np.ndarray, chunk: tuple[slice, slice], tile_rows: int, matrices: Sequence[np.ndarray],
                     step: Sequence[int]) -> np.ndarray:
    """The transformed tiles ``(P, T s, C)`` (:func:`_to_positions`) of one chunk ``(images, tile rows)`` of
    ``array`` ``(S, C, *length)``, whose ``tile_rows`` rows of tiles are ``step[0]`` apart and
    ``matrices[0].shape[1]`` points long on the first spatial axis."""
    images, rows = chunk
    first, stop, _ = rows.indices(tile_rows)
    block = array[images, :, first * step[0]:(stop - 1) * step[0] + matrices[0].shape[1]]
    return _to_positions(_channels_last(block), matrices, step)


def _correlate(data: np.ndarray, filters: np.ndarray, tile: tuple[int, ...], taps: tuple[int, ...],
               out_shape: tuple[int, ...], groups: int, plan: "_Plan") -> np.ndarray:
    """``out[s, o, i] = sum_{c, k} data[s, c, i + k] filter[o, c, k]`` by ``F(tile, taps)``, trusted arguments.

    ``data`` is ``(S, C, *(T m + r - 1))`` with ``T = ceil(out / m)`` tiles per axis; ``filters`` the transformed
    filters ``(P, groups, C/groups, O/groups)``. Returns the contiguous ``(S, O, *out_shape)``.
    """
    nd, batch = len(tile), data.shape[0]
    alpha = tuple(m + r - 1 for m, r in zip(tile, taps))
    tiles = tile_counts(out_shape, tile)
    out_channels = filters.shape[1] * filters.shape[3]
    transforms = [float_transforms(m, r, data.dtype) for m, r in zip(tile, taps)]
    data_transforms, output_transforms = [bt for _, _, bt in transforms], [at for at, _, _ in transforms]
    full = np.empty((batch, out_channels, *(t * m for t, m in zip(tiles, tile))), dtype=data.dtype)
    out_tiles = full.reshape(batch, out_channels, *(v for t, m in zip(tiles, tile) for v in (t, m)))
    # (*m, *T, s, O) -> (s, O, T1, m1, T2, m2, ...)
    to_output = (2 * nd, 2 * nd + 1, *(v for d in range(nd) for v in (nd + d, d)))

    def work(chunk: tuple[slice, slice]) -> None:
        images, rows = chunk
        tiles_in = _chunk_positions(data, chunk, tiles[0], data_transforms, tile)  # (P, T s, C)
        products = np.empty((*tiles_in.shape[:2], out_channels), dtype=data.dtype)
        np.matmul(_grouped(tiles_in, groups), filters, out=_grouped(products, groups))
        del tiles_in
        chunk_tiles = len(range(*rows.indices(tiles[0]))), *tiles[1:]
        values = _along_leading_axes(output_transforms, products.reshape(*alpha, *chunk_tiles, -1, out_channels))
        del products
        out_tiles[images, :, rows] = values.transpose(to_output)

    _run_in_tasks(plan.chunks, work, plan.multiply_adds)
    if full.shape[2:] == tuple(out_shape):
        return full
    return np.ascontiguousarray(full[(Ellipsis, *(slice(0, n) for n in out_shape))])


# ------------------------------------------------------------------------------------------------- the passes
@blas_single_threaded_within
def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry, *,
            tile: TileArg = None) -> np.ndarray:
    """The forward pass ``y = conv(x, w) + bias`` by ``F(m, r)`` tiles.

    Parameters
    ----------
    x : ndarray, shape ``(S, f, *n)``
        Input, float32 or float64 (validated by the caller, as ``g`` describes).
    w : ndarray, shape ``(f', f/groups, *k)``
        Weights of the same dtype.
    bias : ndarray of shape ``(f',)`` or None
    g : ConvGeometry
        Stride and dilation must be 1 (:func:`unsupported_reason`).
    tile : int, tuple of int or None
        Output tile ``m`` per spatial axis; ``None``: :func:`default_tile`.

    Returns
    -------
    ndarray, shape ``(S, f', *out)``, of ``x``'s dtype.

    Raises
    ------
    ValueError
        When :func:`unsupported_reason` gives a reason.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 10, 10)), rng.standard_normal((4, 3, 3, 3))
    >>> g = ConvGeometry.from_shapes(x.shape, w.shape, padding=1)
    >>> from fftconv import direct
    >>> bool(np.allclose(forward(x, w, None, g, tile=4), direct.forward(x, w, None, g)))
    True
    """
    plan = _Plan.of(g, Pass.FORWARD, tile, x.dtype)
    tile = plan.work.tile
    filters = _transformed_filters(w, g, tile, for_input=False)
    length = tuple(-(-n // m) * m + r - 1 for n, m, r in zip(g.output_shape, tile, g.kernel_shape))
    data = _embed(x, g.padding_before, length)
    y = _correlate(data, filters, tile, g.kernel_shape, g.output_shape, g.groups, plan)
    if bias is not None:
        y += bias.reshape(-1, *(1,) * g.ndim)
    return y


@blas_single_threaded_within
def grad_input(grad_output: np.ndarray, w: np.ndarray, g: ConvGeometry, *, tile: TileArg = None) -> np.ndarray:
    """The input gradient ``dL/dx``: correlate ``grad_output`` with the flipped, channel-transposed kernels.

    ``dx_pad[p] = sum_k dy[p - k] w[k]``, a full convolution; for the kept positions ``p = b + q`` it is the
    correlation of ``dy`` shifted by ``r - 1 - b`` (zero-padded, or cropped when the padding ``b`` exceeds
    ``r - 1``) with ``flip(w)``, of which ``F(m, r)`` computes the ``n`` input positions directly.

    Parameters
    ----------
    grad_output : ndarray, shape ``(S, f', *out)``
    w : ndarray, shape ``(f', f/groups, *k)``
    g : ConvGeometry
    tile : int, tuple of int or None
        Tile ``m`` of the computed input gradient per axis; ``None``: :func:`default_tile`.

    Returns
    -------
    ndarray, shape ``(S, f, *n)``

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = ConvGeometry.from_shapes((2, 3, 9, 9), (4, 3, 3, 3), padding="same")
    >>> gy, w = rng.standard_normal(g.full_output_shape), rng.standard_normal(g.full_weight_shape)
    >>> from fftconv import direct
    >>> bool(np.allclose(grad_input(gy, w, g), direct.grad_input(gy, w, g)))
    True
    """
    plan = _Plan.of(g, Pass.INPUT, tile, grad_output.dtype)
    tile = plan.work.tile
    filters = _transformed_filters(w, g, tile, for_input=True)
    lead = tuple(r - 1 - b for r, b in zip(g.kernel_shape, g.padding_before))
    length = tuple(-(-n // m) * m + r - 1 for n, m, r in zip(g.input_shape, tile, g.kernel_shape))
    data = _embed(grad_output, lead, length)
    return _correlate(data, filters, tile, g.kernel_shape, g.input_shape, g.groups, plan)


@blas_single_threaded_within
def grad_weight(x: np.ndarray, grad_output: np.ndarray, g: ConvGeometry, *, tile: TileArg = None) -> np.ndarray:
    """The weight gradient ``dL/dw`` by ``F(r, m)``: tiles of ``m`` output gradients act as the filters.

    ``dw[o, c, k] = sum_{s, i} dy[s, o, i] x_pad[s, c, i + k]``. Cutting ``i`` into tiles of ``m``, each tile
    contributes an ``r``-output correlation of an ``m + r - 1`` input tile with an ``m``-point piece of ``dy``:
    ``F(r, m)``. Its output transform is linear, so the products are summed over images and tiles first: one GEMM
    per transform position over ``S * tiles``, then one output transform per filter.

    Parameters
    ----------
    x : ndarray, shape ``(S, f, *n)``
    grad_output : ndarray, shape ``(S, f', *out)``
    g : ConvGeometry
    tile : int, tuple of int or None
        Tile ``m`` of ``grad_output`` per axis; ``None``: :func:`default_tile`.

    Returns
    -------
    ndarray, shape ``(f', f/groups, *k)``

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = ConvGeometry.from_shapes((2, 4, 11), (6, 2, 3), padding=1, groups=2)
    >>> x, gy = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_output_shape)
    >>> from fftconv import direct
    >>> bool(np.allclose(grad_weight(x, gy, g, tile=2), direct.grad_weight(x, gy, g)))
    True
    """
    plan = _Plan.of(g, Pass.WEIGHT, tile, x.dtype)
    tile = plan.work.tile
    nd, groups, taps = g.ndim, g.groups, g.kernel_shape
    alpha = tuple(m + r - 1 for m, r in zip(tile, taps))
    tiles = tile_counts(g.output_shape, tile)
    transforms = [float_transforms(r, m, x.dtype) for m, r in zip(tile, taps)]  # F(r, m): A^T r x alpha, G alpha x m
    data_transforms, filter_transforms = [bt for _, _, bt in transforms], [gm for _, gm, _ in transforms]
    data = _embed(x, g.padding_before, tuple(t * m + r - 1 for t, m, r in zip(tiles, tile, taps)))
    gy = _embed(grad_output, (0,) * nd, tuple(t * m for t, m in zip(tiles, tile)))
    f_in, f_out = g.in_channels // groups, g.out_channels // groups

    def work(chunk: tuple[slice, slice]) -> np.ndarray:
        tiles_in = _chunk_positions(data, chunk, tiles[0], data_transforms, tile)  # (P, T s, f)
        filters = _chunk_positions(gy, chunk, tiles[0], filter_transforms, tile)  # (P, T s, f')
        return _summed_products(_grouped(tiles_in, groups).swapaxes(2, 3), _grouped(filters, groups))

    products = sum(_run_in_tasks(plan.chunks, work, plan.multiply_adds))  # (P, groups, f/g, f'/g), one per task
    kernels = _along_leading_axes([at for at, _, _ in transforms], products.reshape(*alpha, -1))  # (*k, ...)
    kernels = kernels.reshape(*taps, groups, f_in, f_out).transpose(nd, nd + 2, nd + 1, *range(nd))
    return np.ascontiguousarray(kernels).reshape(g.full_weight_shape)


# --------------------------------------------------------------------------------------------------- cost model
@functools.lru_cache(maxsize=256)
def _rms_growth_1d(m: int, r: int) -> float:
    """``max_i sqrt(sum_j A_ij^2 |G_j|^2 |B^T_j|^2 / r)`` for ``F(m, r)``; see :func:`error_growth`."""
    a_transposed, g_matrix, b_transposed = (np.array(exact, dtype=np.float64) for exact in cook_toom(m, r))
    weights = np.sum(g_matrix ** 2, axis=1) * np.sum(b_transposed ** 2, axis=1)
    return float(np.sqrt(np.max(a_transposed ** 2 @ weights) / r))


def error_growth(g: ConvGeometry, pass_name: Union[Pass, str], tile: TileArg = None) -> float:
    """How much Winograd's transforms amplify round-off, relative to one rounding of each result: ``>= 1``.

    A statistical model, exact in the matrices: for independent random data and filters, entry ``j`` of the
    transformed product ``(G g)_j (B^T d)_j`` carries a rounding error of relative size ``eps`` and has mean square
    ``|G_j|^2 |B^T_j|^2`` (row norms, unit variances), while the ``r``-term correlation output has mean square
    ``r``. The output transform sums them with weights ``A_ij``, so the relative rms error of output ``i`` is
    ``eps sqrt(sum_j A_ij^2 |G_j|^2 |B^T_j|^2 / r)``. In N-d the matrices are Kronecker products, whose row norms
    factor: the growth is the product over axes of the 1-d growth (of ``F(m, r)``; ``F(r, m)`` for the weight
    gradient). The GEMM's accumulation over channels adds its own ``eps sqrt(K)``, as in any method.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    >>> [round(error_growth(g, "forward", m), 1) for m in (2, 4, 6)]
    [1.7, 10.4, 46.3]
    """
    pass_name = Pass.parse(pass_name)
    tile = _checked_tile(g, tile)
    pairs = zip(g.kernel_shape, tile) if pass_name is Pass.WEIGHT else zip(tile, g.kernel_shape)
    return math.prod(_rms_growth_1d(m, r) for m, r in pairs)


def work(g: ConvGeometry, pass_name: Union[Pass, str], tile: TileArg = None, dtype=np.float32) -> WinogradWork:
    """What one Winograd pass computes and stores (:class:`fftconv.costs.WinogradWork`), for a valid ``tile``.

    Parameters
    ----------
    g : ConvGeometry
    pass_name : Pass or {"forward", "input", "weight"}
    tile : int, tuple of int or None
        As for the passes; ``None``: :func:`default_tile`.
    dtype : float32 or float64
        Sets the byte counts.

    Raises
    ------
    ValueError
        When :func:`unsupported_reason` gives a reason.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 64, 32, 32), (64, 64, 3, 3), padding=1)
    >>> counts = work(g, "forward", tile=4)
    >>> counts.positions, counts.tiles, counts.gemm_shape
    (36, 64, (64, 2048, 64))
    """
    pass_name = Pass.parse(pass_name)
    return WinogradWork.of(g, pass_name, _checked_tile(g, tile), dtype)
