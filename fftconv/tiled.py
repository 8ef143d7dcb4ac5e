"""Tiled FFT convolution: overlap-save / overlap-add for small kernels on large maps, all three passes.

An untiled FFT convolution transforms every map at the size of the whole (padded) map, and every kernel at that
size too: a 3x3 kernel meeting 128x128 maps is padded to 135x135 and its spectrum is 1000 times its size. Tiling
cuts the padded input into tiles of ``t`` output positions plus a halo of ``dilated kernel - stride`` positions,
stacks the tiles into the batch axis and runs the untiled spectral passes (:class:`~fftconv.spectral.SpectralPlan`)
on the small *tile geometry*: batch ``S * tiles``, input ``(t - 1) * s + d * (k - 1) + 1`` per axis, no padding,
output ``t``. The kernels are transformed once, at the small tile FFT size, for all tiles.

- forward (overlap-save): each tile's output is a disjoint block of the output;
- input gradient (overlap-add): each output-gradient tile gives the gradient of its input tile, halo included;
  overlapping halos are added, then the padding is cropped;
- weight gradient: the tiles are extra batch entries, and the weight gradient already sums over the batch.

All three are exact (same result as the untiled passes, up to round-off). Tile ``j`` along an axis reads padded
input ``[j t s, j t s + (t - 1) s + d (k - 1) + 1)``: tiles are aligned to the stride, so strided convolutions tile
too. The padded input is extended with zeros to a whole number of tiles and the extra outputs are dropped.

No Python loop runs over tiles: tiles are strided views of the padded arrays. Tiles ``j = c (mod r)`` with
``r = ceil(read / step)`` do not overlap, so gathering and the overlap-add are ``prod(r)`` strided copies or adds
(at most ``2^ndim`` for tiles longer than the halo).

The tile is an argument of the passes. ``fftconv.conv*d(..., algo="tiled")`` and ``algo="auto"`` take the one of least
estimated time from the cost model (:func:`fftconv.choose.best_options`), whose counts are
:class:`fftconv.costs.TiledWork`; see ``docs/tiled.md``.
"""

from __future__ import annotations

import itertools
from typing import Sequence, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _memory
from ._parallel import parts_for, run_tasks, split
from ._tiling import Tiling
from .backends import FFTBackend
from .costs import TiledWork
from .geometry import ConvGeometry
from .passes import Pass
from .sizes import FFTSizePolicy
from .spectral import SpectralPlan

BackendArg = Union[str, FFTBackend, None]
FFTSizeArg = Union[FFTSizePolicy, Sequence[int], None]
TileArg = Union[int, Sequence[int]]


# ---------------------------------------------------------------------- tiles
def _tile_problem(g: ConvGeometry, tile) -> str | None:
    """Why ``tile`` cannot tile ``g`` (None: it can)."""
    if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool):
        tile = (int(tile),) * g.ndim
    try:
        values = tuple(tile)
    except TypeError:
        return f"tile must be an int or a tuple of {g.ndim} ints, got {tile!r}"
    if len(values) != g.ndim or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                        for v in values):
        return f"tile must be an int or a tuple of {g.ndim} ints (one per spatial dimension), got {tile!r}"
    if any(v < 1 for v in values):
        return f"tile must be positive in every dimension, got {values}"
    if any(v > m for v, m in zip(values, g.output_shape)):
        return (f"tile={values} exceeds the output shape {g.output_shape} of {g}; use tiles of at most the output "
                "size, or tile=None to let the cost model choose")
    return None


def unsupported_reason(g: ConvGeometry, tile: TileArg | None = None) -> str | None:
    """Why the tiled algorithm cannot run ``g`` with ``tile``, or None if it can.

    Every geometry is supported (padding, ``"same"`` with even kernels, stride, dilation and groups all tile);
    a reason comes only from a ``tile`` that is malformed or larger than the output.

    Parameters
    ----------
    g : ConvGeometry
    tile : int or tuple of int, optional
        Output positions per tile and spatial dimension; None: whether some tile can run ``g`` (always).

    Returns
    -------
    str or None

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((1, 1, 20, 20), (1, 1, 3, 3), padding="same")
    >>> unsupported_reason(g) is None, unsupported_reason(g, (8, 8)) is None
    (True, True)
    >>> unsupported_reason(g, 32)[:41]
    'tile=(32, 32) exceeds the output shape (2'
    """
    return None if tile is None else _tile_problem(g, tile)


def _tiling(g: ConvGeometry, tile: TileArg) -> Tiling:
    """The tiling of ``g`` by ``tile``, checked."""
    reason = _tile_problem(g, tile)
    if reason is not None:
        raise ValueError(reason)
    return Tiling(g, (int(tile),) * g.ndim if np.ndim(tile) == 0 else tuple(int(t) for t in tile))


def _tile_views(array: np.ndarray, step: Sequence[int], read: Sequence[int], counts: Sequence[int]):
    """Strided views of the tiles of ``array`` ``(S, C, *space)``, in classes of pairwise disjoint tiles.

    Tile ``j`` covers ``[j * step, j * step + read)`` per axis. Tiles ``j = c (mod r)``,
    ``r = ceil(read / step)``, are ``r * step >= read`` apart and do not overlap, so each class is one view of shape
    ``(S, *class counts, C, *read)`` that may be written or added to. Yields ``(index, view)`` with ``index`` the
    class's tiles in a tile-major ``(S, *counts, C, *read)`` array. The caller makes sure the tiles lie in ``array``.
    """
    spatial_strides = array.strides[2:]
    r = [-(-rd // st) for rd, st in zip(read, step)]
    for classes in itertools.product(*(range(min(ri, n)) for ri, n in zip(r, counts))):
        class_counts = [-(-(n - c) // ri) for n, c, ri in zip(counts, classes, r)]
        start = array[(Ellipsis, *(slice(c * st, None) for c, st in zip(classes, step)))]
        shape = (array.shape[0], *class_counts, array.shape[1], *read)
        strides = (array.strides[0], *(ri * st * sp for ri, st, sp in zip(r, step, spatial_strides)),
                   array.strides[1], *spatial_strides)
        view = as_strided(start, shape, strides, writeable=array.flags.writeable)
        yield (slice(None), *(slice(c, None, ri) for c, ri in zip(classes, r))), view


def _in_parallel(operation, target: np.ndarray, source: np.ndarray) -> None:
    """``operation(target[a:b], source[a:b])`` over bands of the batch axis, on fftconv's thread pool."""
    ranges = split(target.shape[0], parts_for(target.size, "elements"))
    run_tasks([lambda a=a, b=b: operation(target[a:b], source[a:b]) for a, b in ranges])


def _copy(target: np.ndarray, source: np.ndarray) -> None:
    np.copyto(target, source)


def _add(target: np.ndarray, source: np.ndarray) -> None:
    target += source


def _zero_extended(array: np.ndarray, before: Sequence[int], extent: Sequence[int]) -> np.ndarray:
    """``array`` ``(S, C, *n)`` with ``before`` zeros in front and zeros past its end, ``extent`` long per axis.

    Without padding and with the extent inside the array, ``array`` itself (no copy; it may be longer).
    """
    space = array.shape[2:]
    if not any(before) and all(e <= n for e, n in zip(extent, space)):
        return array
    buffer = np.zeros((*array.shape[:2], *extent), dtype=array.dtype)
    kept = tuple(max(0, min(n, e - b)) for n, e, b in zip(space, extent, before))
    _in_parallel(_copy, buffer[(Ellipsis, *(slice(b, b + k) for b, k in zip(before, kept)))],
                 array[(Ellipsis, *(slice(0, k) for k in kept))])
    return buffer


def _gather(array: np.ndarray, tiling: Tiling, before: Sequence[int], step, read) -> np.ndarray:
    """Tiles of ``array`` ``(S, C, *n)`` (zero-extended by ``before`` and past its end) as ``(S * tiles, C, *read)``."""
    counts = tiling.counts
    extent = tuple((c - 1) * st + r for c, st, r in zip(counts, step, read))
    source = _zero_extended(array, before, extent)
    tiles = np.empty((array.shape[0], *counts, array.shape[1], *read), dtype=array.dtype)
    for index, view in _tile_views(source, step, read, counts):
        _in_parallel(_copy, tiles[index], view)
    return tiles.reshape(-1, array.shape[1], *read)


def _input_tiles(x: np.ndarray, tiling: Tiling) -> np.ndarray:
    """Overlapping input tiles with their halos, ``(S * tiles, f, *read)``."""
    return _gather(x, tiling, tiling.geometry.padding_before, tiling.step, tiling.read)


def _output_tiles(grad_output: np.ndarray, tiling: Tiling) -> np.ndarray:
    """Disjoint output-gradient tiles, ``(S * tiles, f', *t)``, zero past the output."""
    return _gather(grad_output, tiling, (0,) * tiling.geometry.ndim, tiling.tile, tiling.tile)


def _assemble(tiles: np.ndarray, tiling: Tiling) -> np.ndarray:
    """Forward output from its tiles ``(S * tiles, f', *t)``: each tile is a block; the excess is dropped."""
    g = tiling.geometry
    full = np.empty((g.batch, g.out_channels, *tiling.covered), dtype=tiles.dtype)
    tile_major = tiles.reshape(g.batch, *tiling.counts, g.out_channels, *tiling.tile)
    for index, view in _tile_views(full, tiling.tile, tiling.tile, tiling.counts):
        _in_parallel(_copy, view, tile_major[index])
    if tiling.covered == g.output_shape:
        return full
    return np.ascontiguousarray(full[(Ellipsis, *(slice(0, m) for m in g.output_shape))])


def _overlap_add(tiles: np.ndarray, tiling: Tiling) -> np.ndarray:
    """Input gradient from the gradients of the input tiles ``(S * tiles, f, *read)``: halos add, padding goes."""
    g = tiling.geometry
    extent = tuple(max(s, b + n) for s, b, n in zip(tiling.span, g.padding_before, g.input_shape))
    padded = np.zeros((g.batch, g.in_channels, *extent), dtype=tiles.dtype)
    tile_major = tiles.reshape(g.batch, *tiling.counts, g.in_channels, *tiling.read)
    for number, (index, view) in enumerate(_tile_views(padded, tiling.step, tiling.read, tiling.counts)):
        _in_parallel(_add if number else _copy, view, tile_major[index])  # the first class lands on zeros
    return np.ascontiguousarray(padded[(Ellipsis, *(slice(b, b + n) for b, n in zip(g.padding_before,
                                                                                     g.input_shape)))])


def _plan(tiling: Tiling, pass_name: Pass, dtype, backend: BackendArg, fft_size: FFTSizeArg) -> SpectralPlan:
    """The spectral plan of the tile geometry, after checking that the whole pass fits in memory."""
    plan = SpectralPlan.create(tiling.tile_geometry, dtype, backend, fft_size, check_memory=False)
    _memory.check_fits(_peak_bytes(tiling, pass_name, plan),
                       f"the tiled FFT convolution {tiling.geometry} with tiles of {tiling.tile} at FFT size "
                       f"{plan.fft_shape}", "use a smaller batch, smaller tiles, or algo='im2col'")
    return plan


def _peak_bytes(tiling: Tiling, pass_name: Pass, plan: SpectralPlan) -> int:
    """The spectral plan's peak for the tile geometry, plus the tiling's spatial arrays alive with it."""
    spatial = TiledWork.of(tiling.geometry, pass_name, tiling.tile).spatial_elements
    return plan.peak_bytes() + spatial * plan.dtype.itemsize


def peak_bytes(g: ConvGeometry, pass_name: Union[Pass, str], tile: TileArg, dtype=np.float32,
               fft_size: FFTSizeArg = None) -> int:
    """Memory one pass holds at its peak with ``tile``: the tile geometry's spectra, the tiles and the result.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    >>> untiled = SpectralPlan.create(g, np.float32, check_memory=False).peak_bytes()
    >>> peak_bytes(g, "forward", 16) < 0.7 * untiled
    True
    """
    tiling = _tiling(g, tile)
    plan = SpectralPlan.create(tiling.tile_geometry, dtype, "numpy", fft_size, check_memory=False)
    return _peak_bytes(tiling, Pass.parse(pass_name), plan)


# ---------------------------------------------------------------------- the three passes
def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry, backend: BackendArg = None,
            fft_size: FFTSizeArg = None, *, tile: TileArg) -> np.ndarray:
    """Forward pass by overlap-save: every tile's output is a disjoint block of ``y``.

    Parameters
    ----------
    x : ndarray, shape ``g.full_input_shape``
    w : ndarray, shape ``g.full_weight_shape``
    bias : ndarray, shape (out_channels,), optional
    g : ConvGeometry
    backend : str or FFTBackend, optional
        FFT library for the tiles' transforms.
    fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
        FFT size policy of the *tiles* (default ``"fast"``), or the tiles' FFT size.
    tile : int or tuple of int
        Output positions per tile and spatial dimension, at most the output size.

    Returns
    -------
    ndarray, shape ``g.full_output_shape``, dtype of ``x``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 40, 40)), rng.standard_normal((4, 3, 3, 3))
    >>> g = ConvGeometry.from_shapes(x.shape, w.shape, padding="same")
    >>> y = forward(x, w, None, g, tile=(16, 16))
    >>> bool(np.allclose(y, fftconv.conv2d(x, w, padding="same", algo="direct")))
    True
    """
    tiling = _tiling(g, tile)
    plan = _plan(tiling, Pass.FORWARD, x.dtype, backend, fft_size)
    tiles = plan.forward(plan.transform_input(_input_tiles(x, tiling)), plan.transform_weight(w))
    y = _assemble(tiles, tiling)
    if bias is not None:
        y += bias.reshape(-1, *(1,) * g.ndim)
    return y


def grad_input(grad_output: np.ndarray, w: np.ndarray, g: ConvGeometry, backend: BackendArg = None,
               fft_size: FFTSizeArg = None, *, tile: TileArg) -> np.ndarray:
    """Input gradient by overlap-add: each output-gradient tile gives its input tile's gradient; halos add.

    Parameters are those of :func:`forward`, with ``grad_output`` of shape ``g.full_output_shape``.

    Returns
    -------
    ndarray, shape ``g.full_input_shape``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> w, gy = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 4, 19, 19))
    >>> g = ConvGeometry.from_shapes((2, 3, 40, 40), w.shape, stride=2)
    >>> gx = grad_input(gy, w, g, tile=7)
    >>> bool(np.allclose(gx, fftconv.conv2d_input((2, 3, 40, 40), w, gy, stride=2, algo="direct")))
    True
    """
    tiling = _tiling(g, tile)
    plan = _plan(tiling, Pass.INPUT, grad_output.dtype, backend, fft_size)
    tiles = plan.grad_input(plan.transform_grad_output(_output_tiles(grad_output, tiling)), plan.transform_weight(w))
    return _overlap_add(tiles, tiling)


def grad_weight(x: np.ndarray, grad_output: np.ndarray, g: ConvGeometry, backend: BackendArg = None,
                fft_size: FFTSizeArg = None, *, tile: TileArg) -> np.ndarray:
    """Weight gradient with the tiles as extra batch entries (the pass sums over the batch anyway).

    Parameters are those of :func:`forward` and :func:`grad_input`.

    Returns
    -------
    ndarray, shape ``g.full_weight_shape``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, gy = rng.standard_normal((2, 3, 30)), rng.standard_normal((2, 4, 30))
    >>> g = ConvGeometry.from_shapes(x.shape, (4, 3, 4), padding="same", dilation=2)
    >>> gw = grad_weight(x, gy, g, tile=8)
    >>> expected = fftconv.conv1d_weight(x, (4, 3, 4), gy, padding="same", dilation=2, algo="direct")
    >>> bool(np.allclose(gw, expected))
    True
    """
    tiling = _tiling(g, tile)
    plan = _plan(tiling, Pass.WEIGHT, x.dtype, backend, fft_size)
    return plan.grad_weight(plan.transform_input(_input_tiles(x, tiling)),
                            plan.transform_grad_output(_output_tiles(grad_output, tiling)))
