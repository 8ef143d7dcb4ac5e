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

The tile size comes from a cost model (:func:`choose_tile`) over the counts of :func:`work`; see ``docs/tiled.md``.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _kernel_dft, _memory
from ._parallel import parts_for, run_tasks, split
from .backends import FFTBackend
from .geometry import ConvGeometry
from .spectral import DEFAULT_FFT_SIZE, FFT_SIZE_POLICIES, FFTSizePolicy, SpectralPlan, fft_shape_for

BackendArg = Union[str, FFTBackend, None]
FFTSizeArg = Union[FFTSizePolicy, Sequence[int], None]
TileArg = Union[int, Sequence[int], None]

#: Accepted pass names: the chooser's (``"forward"``, ``"input"``, ``"weight"``) and the algorithm methods'.
PASS_NAMES = {"forward": "forward", "input": "input", "grad_input": "input", "weight": "weight",
              "grad_weight": "weight"}

#: Seconds per unit of each count of :func:`work`, for :func:`modelled_seconds` and :func:`choose_tile`. The rates
#: are fftconv's default rates for the project's 2-core machine (batched real FFTs 12 GFLOP/s, per-bin complex GEMMs
#: and DFT-matrix products 150 GFLOP/s, copies 6 GB/s written, i.e. 12 GB/s read plus written). ``fft_maps`` is the
#: batched FFT's cost per map beyond its flops: 4x4 tiles took ~43 ns per map, ~15 of them for the flops; it keeps
#: the model off very small tiles. A machine-calibrated model passes its own weights.
DEFAULT_WEIGHTS = {
    "fft_flops": 1 / 12e9,
    "kernel_dft_flops": 1 / 150e9,
    "gemm_flops": 1 / 150e9,
    "moved_bytes": 1 / 12e9,
    "fft_maps": 3e-8,
}


# ---------------------------------------------------------------------- tiles
@dataclass(frozen=True)
class _Tiling:
    """Tiles of ``tile`` output positions per axis over the output of ``geometry``."""

    geometry: ConvGeometry
    tile: tuple[int, ...]

    @property
    def counts(self) -> tuple[int, ...]:
        """Tiles per axis: ``ceil(m / t)``."""
        return tuple(-(-m // t) for m, t in zip(self.geometry.output_shape, self.tile))

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
    def tile_geometry(self) -> ConvGeometry:
        """The untiled problem the spectral passes solve: one batch entry per (sample, tile), no padding."""
        g = self.geometry
        nd = g.ndim
        return ConvGeometry(g.batch * math.prod(self.counts), g.in_channels, g.out_channels, g.groups, self.read,
                            g.kernel_shape, g.stride, g.dilation, (0,) * nd, (0,) * nd)


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


def unsupported_reason(g: ConvGeometry, tile: TileArg = None) -> str | None:
    """Why the tiled algorithm cannot run ``g`` with ``tile``, or None if it can.

    Every geometry is supported (padding, ``"same"`` with even kernels, stride, dilation and groups all tile);
    a reason comes only from an explicit ``tile`` that is malformed or larger than the output.

    Parameters
    ----------
    g : ConvGeometry
    tile : int or tuple of int, optional
        Output positions per tile and spatial dimension; None lets :func:`choose_tile` decide.

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


def _tiling(g: ConvGeometry, pass_name: str, tile: TileArg, fft_size: FFTSizeArg, dtype) -> _Tiling:
    """The tiling a pass runs: ``tile`` checked, or chosen by the cost model."""
    if tile is None:
        return _Tiling(g, choose_tile(g, pass_name, fft_size, dtype=dtype))
    reason = _tile_problem(g, tile)
    if reason is not None:
        raise ValueError(reason)
    return _Tiling(g, (int(tile),) * g.ndim if np.ndim(tile) == 0 else tuple(int(t) for t in tile))


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


def _gather(array: np.ndarray, tiling: _Tiling, before: Sequence[int], step, read) -> np.ndarray:
    """Tiles of ``array`` ``(S, C, *n)`` (zero-extended by ``before`` and past its end) as ``(S * tiles, C, *read)``."""
    counts = tiling.counts
    extent = tuple((c - 1) * st + r for c, st, r in zip(counts, step, read))
    source = _zero_extended(array, before, extent)
    tiles = np.empty((array.shape[0], *counts, array.shape[1], *read), dtype=array.dtype)
    for index, view in _tile_views(source, step, read, counts):
        _in_parallel(_copy, tiles[index], view)
    return tiles.reshape(-1, array.shape[1], *read)


def _input_tiles(x: np.ndarray, tiling: _Tiling) -> np.ndarray:
    """Overlapping input tiles with their halos, ``(S * tiles, f, *read)``."""
    return _gather(x, tiling, tiling.geometry.padding_before, tiling.step, tiling.read)


def _output_tiles(grad_output: np.ndarray, tiling: _Tiling) -> np.ndarray:
    """Disjoint output-gradient tiles, ``(S * tiles, f', *t)``, zero past the output."""
    return _gather(grad_output, tiling, (0,) * tiling.geometry.ndim, tiling.tile, tiling.tile)


def _assemble(tiles: np.ndarray, tiling: _Tiling) -> np.ndarray:
    """Forward output from its tiles ``(S * tiles, f', *t)``: each tile is a block; the excess is dropped."""
    g = tiling.geometry
    full = np.empty((g.batch, g.out_channels, *tiling.covered), dtype=tiles.dtype)
    tile_major = tiles.reshape(g.batch, *tiling.counts, g.out_channels, *tiling.tile)
    for index, view in _tile_views(full, tiling.tile, tiling.tile, tiling.counts):
        _in_parallel(_copy, view, tile_major[index])
    if tiling.covered == g.output_shape:
        return full
    return np.ascontiguousarray(full[(Ellipsis, *(slice(0, m) for m in g.output_shape))])


def _overlap_add(tiles: np.ndarray, tiling: _Tiling) -> np.ndarray:
    """Input gradient from the gradients of the input tiles ``(S * tiles, f, *read)``: halos add, padding goes."""
    g = tiling.geometry
    extent = tuple(max(s, b + n) for s, b, n in zip(tiling.span, g.padding_before, g.input_shape))
    padded = np.zeros((g.batch, g.in_channels, *extent), dtype=tiles.dtype)
    tile_major = tiles.reshape(g.batch, *tiling.counts, g.in_channels, *tiling.read)
    for number, (index, view) in enumerate(_tile_views(padded, tiling.step, tiling.read, tiling.counts)):
        _in_parallel(_add if number else _copy, view, tile_major[index])  # the first class lands on zeros
    return np.ascontiguousarray(padded[(Ellipsis, *(slice(b, b + n) for b, n in zip(g.padding_before,
                                                                                     g.input_shape)))])


def _plan(tiling: _Tiling, pass_name: str, dtype, backend: BackendArg, fft_size: FFTSizeArg) -> SpectralPlan:
    """The spectral plan of the tile geometry, after checking that the whole pass fits in memory."""
    plan = SpectralPlan.create(tiling.tile_geometry, dtype, backend, fft_size, check_memory=False)
    _memory.check_fits(_peak_bytes(tiling, pass_name, plan),
                       f"the tiled FFT convolution {tiling.geometry} with tiles of {tiling.tile} at FFT size "
                       f"{plan.fft_shape}", "use a smaller batch, smaller tiles, or algo='im2col'")
    return plan


# ---------------------------------------------------------------------- the three passes
def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry, backend: BackendArg = None,
            fft_size: FFTSizeArg = None, tile: TileArg = None) -> np.ndarray:
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
        FFT size policy of the *tiles* (default ``"fast"``), or the tiles' FFT size; without ``tile``, the tile is
        then the largest that fits it.
    tile : int or tuple of int, optional
        Output positions per tile; default :func:`choose_tile`.

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
    tiling = _tiling(g, "forward", tile, fft_size, x.dtype)
    plan = _plan(tiling, "forward", x.dtype, backend, fft_size)
    tiles = plan.forward(plan.transform_input(_input_tiles(x, tiling)), plan.transform_weight(w))
    y = _assemble(tiles, tiling)
    if bias is not None:
        y += bias.reshape(-1, *(1,) * g.ndim)
    return y


def grad_input(grad_output: np.ndarray, w: np.ndarray, g: ConvGeometry, backend: BackendArg = None,
               fft_size: FFTSizeArg = None, tile: TileArg = None) -> np.ndarray:
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
    tiling = _tiling(g, "input", tile, fft_size, grad_output.dtype)
    plan = _plan(tiling, "input", grad_output.dtype, backend, fft_size)
    tiles = plan.grad_input(plan.transform_grad_output(_output_tiles(grad_output, tiling)), plan.transform_weight(w))
    return _overlap_add(tiles, tiling)


def grad_weight(x: np.ndarray, grad_output: np.ndarray, g: ConvGeometry, backend: BackendArg = None,
                fft_size: FFTSizeArg = None, tile: TileArg = None) -> np.ndarray:
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
    tiling = _tiling(g, "weight", tile, fft_size, x.dtype)
    plan = _plan(tiling, "weight", x.dtype, backend, fft_size)
    return plan.grad_weight(plan.transform_input(_input_tiles(x, tiling)),
                            plan.transform_grad_output(_output_tiles(grad_output, tiling)))


# ---------------------------------------------------------------------- cost model
def _pass(pass_name: str) -> str:
    if pass_name not in PASS_NAMES:
        raise ValueError(f"pass_name must be one of {sorted(PASS_NAMES)}, got {pass_name!r}")
    return PASS_NAMES[pass_name]


def _counts(g: ConvGeometry, pass_name: str, tile: Sequence, fft: Sequence, itemsize: int) -> dict:
    """The counts of :func:`work` for tiles ``tile`` at FFT sizes ``fft`` (per axis; ints or broadcasting arrays).

    Each pass transforms ``S * tiles * (f + f')`` maps, multiplies one ``f'/g x f/g x S * tiles`` complex matrix
    product per half-spectrum bin and group, and transforms the ``f' f/g`` kernels (or their gradients) at the
    tile FFT size, by DFT matrices when the spectral plan would. Moved bytes count the tiling's own reads and
    writes (zero fills, copies, adds): gathering overlapping tiles, assembling or overlap-adding results, crops.
    """
    tile = [np.asarray(t, dtype=np.int64) for t in tile]
    fft = [np.asarray(n, dtype=np.int64) for n in fft]
    counts = [-(-m // t) for m, t in zip(g.output_shape, tile)]
    read = [(t - 1) * s + kd for t, s, kd in zip(tile, g.stride, g.dilated_kernel_shape)]
    step = [t * s for t, s in zip(tile, g.stride)]
    batch = g.batch * math.prod(counts)
    cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
    kernels = g.out_channels * cg
    points = math.prod(fft).astype(np.float64)
    bins = math.prod(fft[:-1]) * (fft[-1] // 2 + 1)
    per_map = 2.5 * points * np.log2(points)  # fftconv.costs.real_fft_flops
    per_kernel = 8.0 * _kernel_dft.multiply_adds(g.kernel_shape, fft)
    # the rule of fftconv._kernel_dft.gemm_is_cheaper, which SpectralPlan follows, on arrays of FFT sizes
    by_gemm = per_kernel < _kernel_dft.GEMM_OVER_FFT_RATE * 2.5 * points * np.log2(np.maximum(points, 2))
    maps = batch * (g.in_channels + g.out_channels) + np.where(by_gemm, 0, kernels)
    moved = _moved_elements(g, pass_name, tile, counts, read, step)
    return {"fft_flops": maps * per_map, "kernel_dft_flops": np.where(by_gemm, kernels * per_kernel, 0.0),
            "gemm_flops": 8.0 * bins * batch * cg * fg * g.groups, "fft_maps": maps,
            "moved_bytes": moved * float(itemsize)}


def _moved_elements(g: ConvGeometry, pass_name: str, tile: list, counts: list, read: list, step: list):
    """Elements the tiling itself reads and writes in one pass (arguments per axis: ints or broadcasting arrays).

    A copy reads and writes (2 per element), an add reads two and writes one (3), a zero fill writes (1). The
    overlap-add copies its first class of disjoint tiles, a ``1 / prod(ceil(read / step))`` share, and adds the rest.
    """
    batch = g.batch * math.prod(counts)
    covered = [c * t for c, t in zip(counts, tile)]
    span = [(c - 1) * st + r for c, st, r in zip(counts, step, read)]
    x_space, y_space = math.prod(g.input_shape), math.prod(g.output_shape)
    padded = functools.reduce(np.logical_or, [e > n for e, n in zip(span, g.input_shape)], any(g.padding_before))
    input_tiles = 2 * batch * g.in_channels * math.prod(read) + np.where(
        padded, g.batch * g.in_channels * (math.prod(span) + 2 * x_space), 0)
    partial = functools.reduce(np.logical_or, [c != m for c, m in zip(covered, g.output_shape)], False)
    grad_tiles = 2 * batch * g.out_channels * math.prod(tile) + np.where(
        partial, g.batch * g.out_channels * (math.prod(covered) + 2 * y_space), 0)
    if pass_name == "forward":  # the tiles' outputs into blocks, then the crop of a partial last tile
        return (input_tiles + 2 * batch * g.out_channels * math.prod(tile)
                + np.where(partial, 2 * g.batch * g.out_channels * y_space, 0))
    if pass_name == "input":  # the zeroed padded gradient, the overlap-add, the crop of the padding
        first_class = 1 / math.prod([-(-r // st) for r, st in zip(read, step)])
        extent = [np.maximum(e, b + n) for e, b, n in zip(span, g.padding_before, g.input_shape)]
        return (grad_tiles + (3 - first_class) * batch * g.in_channels * math.prod(read)
                + g.batch * g.in_channels * (math.prod(extent) + 2 * x_space))
    return input_tiles + grad_tiles


def _peak_bytes(tiling: _Tiling, pass_name: str, plan: SpectralPlan) -> int:
    """The spectral plan's peak for the tile geometry, plus the tiling's spatial arrays alive with it."""
    g, itemsize = tiling.geometry, plan.dtype.itemsize
    batch = tiling.tile_geometry.batch
    input_tiles = batch * g.in_channels * math.prod(tiling.read)
    grad_tiles = batch * g.out_channels * math.prod(tiling.tile)
    result = {"forward": math.prod(g.full_output_shape), "input": math.prod(g.full_input_shape),
              "weight": math.prod(g.full_weight_shape)}[PASS_NAMES[pass_name]]
    operands = {"forward": input_tiles, "input": grad_tiles, "weight": input_tiles + grad_tiles}[PASS_NAMES[pass_name]]
    return plan.peak_bytes() + (operands + result) * itemsize


def work(g: ConvGeometry, pass_name: str, tile: int | Sequence[int], fft_size: FFTSizeArg = None,
         dtype=np.float32) -> dict:
    """What one pass of the tiled algorithm does with tiles of ``tile`` outputs: counts for a cost model.

    Parameters
    ----------
    g : ConvGeometry
    pass_name : {"forward", "input", "weight"}
        Also ``"grad_input"`` / ``"grad_weight"``.
    tile : int or tuple of int
        Output positions per tile and spatial dimension (None: :func:`choose_tile`'s).
    fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
        FFT size policy of the tiles, as for :func:`forward`.
    dtype : float32 or float64
        Precision: sets the bytes.

    Returns
    -------
    dict
        ``tile``, ``tiles`` (tiles per axis), ``fft_shape`` (the tiles' FFT size), and the counts:
        ``fft_flops`` (``2.5 N log2 N`` per real map transformed by the FFT backend), ``kernel_dft_flops`` (kernel
        maps transformed by DFT-matrix products instead), ``gemm_flops`` (8 per complex multiply-add of the per-bin
        products), ``fft_maps`` (maps transformed by the FFT backend), ``moved_bytes`` (the tiling's copies, read
        plus written), and ``peak_bytes`` (memory the pass holds at its peak: spectra, tiles and result).

    Examples
    --------
    A 3x3 kernel on 128x128 maps: 8x8 tiles of 16x16 outputs transformed at 18x18 instead of 135x135.

    >>> g = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    >>> counts = work(g, "forward", (16, 16))
    >>> counts["tiles"], counts["fft_shape"], counts["fft_maps"]
    ((8, 8), (18, 18), 32768)
    >>> f"{counts['gemm_flops']:.3g}"
    '7.55e+08'
    """
    pass_name = _pass(pass_name)
    tiling = _tiling(g, pass_name, tile, fft_size, dtype)
    plan = SpectralPlan.create(tiling.tile_geometry, dtype, "numpy", fft_size, check_memory=False)
    counts = _counts(g, pass_name, tiling.tile, plan.fft_shape, plan.dtype.itemsize)
    result = {"tile": tiling.tile, "tiles": tiling.counts, "fft_shape": plan.fft_shape}
    result.update({name: (int if name == "fft_maps" else float)(value) for name, value in counts.items()})
    result["peak_bytes"] = _peak_bytes(tiling, pass_name, plan)
    return result


def modelled_seconds(counts: Mapping[str, float], weights: Mapping[str, float] | None = None) -> float:
    """``sum(weights[name] * counts[name])`` over the weighted counts (default :data:`DEFAULT_WEIGHTS`).

    Examples
    --------
    >>> modelled_seconds({"gemm_flops": 3e9}, {"gemm_flops": 1e-9})
    3.0
    """
    weights = DEFAULT_WEIGHTS if weights is None else weights
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"weights has unknown counts {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
    return sum(weight * counts[name] for name, weight in weights.items() if name in counts)


def _axis_candidates(policy, axis: int, g: ConvGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The tiles worth trying along ``axis``, and their FFT sizes under ``policy``.

    Of all tiles giving ``count`` tiles, the smallest, ``ceil(m / count)``, reads least, has the smallest FFT size
    and copies least; every cost of :func:`work` grows with the tile at a fixed count. So these ``~2 sqrt(m)``
    tiles, one per count, hold the optimum over all tiles. A fixed FFT size keeps the tiles whose reads fit it.
    """
    kd, s, m = g.dilated_kernel_shape[axis], g.stride[axis], g.output_shape[axis]
    tiles = sorted({-(-m // count) for count in range(1, m + 1)})
    if not isinstance(policy, str):
        tiles = [t for t in tiles if (t - 1) * s + kd <= policy[axis]]
        if not tiles:
            raise ValueError(f"fft_size={policy} is smaller than the dilated kernel {g.dilated_kernel_shape} "
                             f"along axis {axis}: a tile of one output needs an FFT size of at least the kernel")
    sizes = []
    for t in tiles:  # the policy applied to a one-axis tile geometry, exactly as SpectralPlan will apply it
        one_axis = ConvGeometry(1, 1, 1, 1, ((t - 1) * s + kd,), (g.kernel_shape[axis],), (s,),
                                (g.dilation[axis],), (0,), (0,))
        sizes.append(fft_shape_for(one_axis, policy if isinstance(policy, str) else (policy[axis],))[0])
    return np.array(tiles), np.array(sizes)


def _policy(fft_size: FFTSizeArg, g: ConvGeometry):
    policy = DEFAULT_FFT_SIZE if fft_size is None else fft_size
    if isinstance(policy, str):
        if policy not in FFT_SIZE_POLICIES:
            raise ValueError(f"fft_size must be one of {FFT_SIZE_POLICIES} or a tuple of ints, got {policy!r}")
        return policy
    shape = tuple(int(n) for n in policy)
    if len(shape) != g.ndim:
        raise ValueError(f"fft_size={shape} must have one entry per spatial dimension ({g.ndim})")
    return shape


def choose_tile(g: ConvGeometry, pass_name: str, fft_size: FFTSizeArg = None, *, dtype=np.float32,
                weights: Mapping[str, float] | None = None) -> tuple[int, ...]:
    """The tile (output positions per axis) that minimises the modelled time of one pass of ``g``.

    Candidates: per axis, for every tile count, the smallest tile giving that count (which beats every larger
    tile with the same count), from tiles of one output to one tile covering the whole output; each at the FFT size
    the policy gives its reads. All combinations are scored at once with :func:`modelled_seconds` of the
    :func:`work` counts: the result is the optimum over all tiles. A pure function of its arguments (cached).

    Parameters
    ----------
    g : ConvGeometry
    pass_name : {"forward", "input", "weight"}
        Also ``"grad_input"`` / ``"grad_weight"``.
    fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
        The tiles' FFT size policy; a tuple fixes the tiles' FFT size (the tile is then the largest that fits).
    dtype : float32 or float64
    weights : mapping, optional
        Seconds per unit of each count; default :data:`DEFAULT_WEIGHTS`.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    >>> tile = choose_tile(g, "forward")
    >>> all(t < 128 for t in tile)  # a 3x3 kernel on 128x128 maps is tiled
    True
    >>> choose_tile(g, "forward", fft_size=(16, 16))  # 16x16 FFTs hold 14 outputs: 10 tiles of 13 per axis
    (13, 13)
    """
    policy = _policy(fft_size, g)
    weight_items = tuple(sorted((DEFAULT_WEIGHTS if weights is None else weights).items()))
    return _choose_tile(g, _pass(pass_name), policy, np.dtype(dtype).itemsize, weight_items)


@functools.lru_cache(maxsize=512)
def _choose_tile(g: ConvGeometry, pass_name: str, policy, itemsize: int, weight_items: tuple) -> tuple[int, ...]:
    axes = [_axis_candidates(policy, axis, g) for axis in range(g.ndim)]
    grids = np.meshgrid(*(tiles for tiles, _ in axes), indexing="ij", sparse=True)
    sizes = np.meshgrid(*(fft for _, fft in axes), indexing="ij", sparse=True)
    seconds = modelled_seconds(_counts(g, pass_name, grids, sizes, itemsize), dict(weight_items))
    seconds = np.broadcast_to(seconds, tuple(len(tiles) for tiles, _ in axes))
    best = np.unravel_index(np.argmin(seconds), seconds.shape)
    return tuple(int(tiles[i]) for (tiles, _), i in zip(axes, best))
