"""The cost model: estimated seconds, memory and round-off of each algorithm for one pass.

Pure: it reads only its arguments (a geometry, a pass, :class:`~fftconv.rates.MachineRates`, a dtype), times
nothing and touches no file. The counts come from :mod:`fftconv.costs`; each estimate is split into transforms,
products, copies and fixed costs, the terms :func:`fftconv.explain` prints, and carries the workspace the pass
allocates and its predicted relative error (:func:`predicted_error`).

The algorithms with options (a tile) are estimated at every allowed value, and the cheapest is theirs
(:func:`best_options`): Winograd over :func:`fftconv.winograd.tile_choices` whose predicted error is within the
bound, the tiled FFT over the smallest tile of each tile count along each axis.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

from .. import winograd
from .._tiling import tile_counts
from ..algorithms import ALGORITHMS
from ..costs import (FFTPassWork, TiledWork, WinogradWork, complex_gemm_flops, direct_flops, im2col_column_bytes,
                     kernel_dft_flops, kernels_by_matrix, real_fft_flops, real_gemm_flops, spatial_workspace_bytes,
                     spectra_bytes)
from ..geometry import ConvGeometry
from ..passes import Pass
from ..rates import MachineRates
from ..sizes import fft_shape_for, parse_fft_size
from ..spectral import SpectralPlan

#: The algorithms ``algo="auto"`` chooses between: every registered one (those that cannot run a geometry are
#: reported with their reason).
CANDIDATES = tuple(ALGORITHMS)

FFTSizeArg = Union[str, Sequence[int], None]
#: Terms a BLAS kernel sums before adding them to its result (about OpenBLAS's K block): round-off stops growing.
BLAS_BLOCK = 256
#: Tiles of the tiled FFT algorithm estimated in full, those of the lowest lower bounds: the model's landscape is
#: flat near its optimum (tiles within 15 % of the best estimate abound), and a full estimate costs ~0.1 ms.
TILED_SHORTLIST = 16


@dataclass(frozen=True)
class Estimate:
    """Estimated seconds of one algorithm for one pass, by stage, with its flops, memory and round-off.

    ``transforms``: FFTs, DFT-matrix and Winograd transforms; ``products``: GEMMs or the direct loop's arithmetic;
    ``copies``: unfolding, tiling, layout copies and crops; ``fixed``: per-call and per-kernel-tap overheads.
    ``options`` are the keyword options the estimate is for (``{"tile": (4, 4)}``), ``workspace_bytes`` the memory
    the pass allocates at its peak, ``error`` the predicted relative error of its result (:func:`predicted_error`).
    """

    algo: str
    transforms: float
    products: float
    copies: float
    fixed: float
    flops: float
    fft_shape: tuple[int, ...] | None = None
    options: dict = field(default_factory=dict)
    workspace_bytes: int = 0
    error: float = 0.0

    @property
    def seconds(self) -> float:
        return self.transforms + self.products + self.copies + self.fixed


# ---------------------------------------------------------------------- round-off
def predicted_error(algo: str, g: ConvGeometry, pass_name: Union[Pass, str], dtype=np.float32, *,
                    fft_shape: Sequence[int] | None = None, tile: Sequence[int] | None = None) -> float:
    """Predicted relative error (max norm, ``max|error| / max|exact|``) of one pass's result, in ``dtype``.

    A round-off model for random data, with ``eps`` the dtype's machine epsilon:

    ============  ===============================================  ==========================================
    algorithm     predicted error                                  ``K``: terms summed by one product
    ============  ===============================================  ==========================================
    ``direct``    ``eps / 2``                                      (accumulated in float64, rounded once)
    ``im2col``    ``eps sqrt(min(K, 256)) / 2``                    ``f/g prod(k)``, ``f'/g prod(k)``, ``S prod(m)``
    ``fft``       ``eps (sqrt(log2 N) + sqrt(min(K, 256)) / 2)``   ``f/g``, ``f'/g``, ``S`` (per bin)
    ``tiled``     as ``fft``, ``N`` the tiles' FFT size            ``S`` times the tiles in the weight gradient
    ``winograd``  ``eps growth (1 + sqrt(min(K, 256)) / 3)``       ``f/g``, ``f'/g``, ``S`` times the tiles
    ============  ===============================================  ==========================================

    (forward, input gradient, weight gradient). Each rounding is relative to what is rounded and random in sign, so
    errors add as a random walk: ``sqrt(K)`` over a sum of ``K`` products, but BLAS kernels sum blocks of at most a
    few hundred terms before adding them to the result, and the measured error stops growing there (hence
    ``min(K, 256)``); a real FFT and its inverse of ``N`` points add about ``sqrt(log2 N)`` (each value passes
    ``log2 N`` butterfly stages); Winograd's output transform amplifies the rounding of the transformed products
    and of their sums over ``K`` alike, by :func:`fftconv.winograd.error_growth`. On the test suite's float32
    geometries the measured errors are 0.1 to 0.9 times these predictions: an upper estimate, not a bound.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    >>> f"{predicted_error('im2col', g, 'forward'):.1e}"
    '9.5e-07'
    >>> f"{predicted_error('winograd', g, 'forward', tile=(6, 6)):.1e}"
    '2.0e-05'
    """
    pass_name = Pass.parse(pass_name)
    eps = float(np.finfo(np.dtype(dtype)).eps)
    if algo == "direct":
        return eps / 2
    taps = math.prod(g.kernel_shape)
    per_product = {Pass.FORWARD: g.in_channels // g.groups, Pass.INPUT: g.out_channels // g.groups,
                   Pass.WEIGHT: g.batch}[pass_name]
    if algo == "im2col":
        terms = per_product * (math.prod(g.output_shape) if pass_name is Pass.WEIGHT else taps)
        return eps * math.sqrt(min(terms, BLAS_BLOCK)) / 2
    if algo in ("fft", "tiled"):
        if fft_shape is None or (algo == "tiled" and tile is None):
            raise ValueError(f"the predicted error of algo={algo!r} needs fft_shape" + (" and tile" if algo == "tiled"
                                                                                       else ""))
        if algo == "tiled" and pass_name is Pass.WEIGHT:
            per_product *= math.prod(tile_counts(g.output_shape, tile))
        return eps * (math.sqrt(math.log2(max(math.prod(fft_shape), 2))) + math.sqrt(min(per_product,
                                                                                           BLAS_BLOCK)) / 2)
    if algo == "winograd":
        growth = winograd.error_growth(g, pass_name, tile)
        if pass_name is Pass.WEIGHT:
            per_product *= winograd.work(g, pass_name, tile).tiles
        return eps * growth * (1 + math.sqrt(min(per_product, BLAS_BLOCK)) / 3)
    raise ValueError(f"algo={algo!r} is unknown; valid: {sorted(CANDIDATES)}")


# ---------------------------------------------------------------------- the estimates
def _map_seconds(g: ConvGeometry, fft_shape: Sequence[int], rates: MachineRates) -> tuple[float, float]:
    """Seconds to transform one map by the FFT backend, and one kernel-size map by DFT matrices."""
    per_map = rates.fft_seconds(real_fft_flops(fft_shape)) + rates.fft_map_seconds
    return per_map, rates.dft_matrix_seconds(kernel_dft_flops(g.kernel_shape, fft_shape))


def _spectra_write_seconds(g: ConvGeometry, fft_shape: Sequence[int], rates: MachineRates, dtype,
                           kernels_by_gemm: bool) -> float:
    """Seconds to write a step's spectra in the GEMMs' layout once; kernels transformed by DFT matrices are written
    there by their own GEMM."""
    complex_itemsize = 2 * np.dtype(dtype).itemsize
    return spectra_bytes(g, fft_shape, complex_itemsize, kernels=not kernels_by_gemm) / rates.copy_bytes


def estimate_fft(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates, fft_size: FFTSizeArg = None,
                 dtype=np.float32, workspace: bool = True) -> Estimate:
    """The FFT algorithm: transforms at the FFT rate (kernels by DFT matrices where fftconv does that), per-bin
    complex GEMMs, the spectra written once, the crop, and a fixed cost per pass (``workspace=False``: no memory
    estimate)."""
    pass_name = Pass.parse(pass_name)
    fft_shape = fft_shape_for(g, fft_size)
    work = FFTPassWork.of(g, fft_shape, pass_name, kernels_by_matrix(g.kernel_shape, fft_shape, rates))
    per_map, by_matrix = _map_seconds(g, fft_shape, rates)
    transforms = sum(work.fft_maps) * per_map + sum(work.matrix_maps) * by_matrix
    m, k, n = work.gemm_shape
    products = (rates.complex_gemm_seconds(complex_gemm_flops(m, k, n) * work.gemm_count, min(m, k, n))
                + work.gemm_count * rates.gemm_matrix_seconds)
    crop = {Pass.FORWARD: g.full_output_shape, Pass.INPUT: g.full_input_shape,
            Pass.WEIGHT: g.full_weight_shape}[pass_name]
    itemsize = np.dtype(dtype).itemsize
    copies = (_spectra_write_seconds(g, fft_shape, rates, dtype, work.kernels_by_gemm)
              + rates.copy_seconds(math.prod(crop), crop[-1], itemsize))
    if workspace:
        workspace = SpectralPlan.create(g, dtype, "numpy", fft_shape, check_memory=False).peak_bytes()
    return Estimate("fft", transforms, products, copies, rates.fft_call_seconds, work.flops().total, fft_shape,
                    workspace_bytes=int(workspace), error=predicted_error("fft", g, pass_name, dtype,
                                                                           fft_shape=fft_shape))


def fft_reuse_seconds(g: ConvGeometry, rates: MachineRates, fft_size: FFTSizeArg = None,
                      dtype=np.float32) -> float:
    """Seconds a training step saves when its three FFT passes share their operands' spectra (the paper's scheme,
    ``memory="reuse"`` in :mod:`fftconv.nn`), against three FFT passes that transform their operands each.

    Separate passes transform the input twice (forward, weight gradient), the kernels twice (forward, input
    gradient) and the output gradient twice (both gradients); a step that keeps the spectra transforms each once.
    The saving is one transform of each and one writing of its spectrum, at the rates :func:`estimate_fft` uses.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 64, 32, 32), (64, 64, 5, 5))
    >>> rates = MachineRates()
    >>> saved = fft_reuse_seconds(g, rates)
    >>> passes = sum(estimate_fft(g, p, rates, workspace=False).transforms for p in ("forward", "input", "weight"))
    >>> spectra = spectra_bytes(g, (32, 32), 8, kernels=False) / rates.copy_bytes  # written once less
    >>> round((saved - spectra) / passes, 2)  # of the 9 transforms (2 forward, 1 inverse per pass) 3 are saved
    0.33
    """
    fft_shape = fft_shape_for(g, fft_size)
    per_map, per_kernel = _map_seconds(g, fft_shape, rates)
    by_gemm = kernels_by_matrix(g.kernel_shape, fft_shape, rates)
    kernel_seconds = g.out_channels * (g.in_channels // g.groups) * (per_kernel if by_gemm else per_map)
    return (g.batch * (g.in_channels + g.out_channels) * per_map + kernel_seconds
            + _spectra_write_seconds(g, fft_shape, rates, dtype, by_gemm))


def estimate_im2col(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates, dtype=np.float32) -> Estimate:
    """The tap-major im2col of :mod:`fftconv.im2col`: copies by their runs, and one GEMM per group."""
    pass_name = Pass.parse(pass_name)
    itemsize = np.dtype(dtype).itemsize
    positions = g.batch * math.prod(g.output_shape)  # columns of the unfolded matrix
    rows = g.in_channels // g.groups * math.prod(g.kernel_shape)  # its rows, per group
    fg = g.out_channels // g.groups
    row_run = g.output_shape[-1]  # numpy copies an output row per inner loop (strided or not)
    unfold = rates.copy_seconds(rows * g.groups * positions, row_run, itemsize)
    outputs = rates.copy_seconds(g.out_channels * positions, math.prod(g.output_shape), itemsize)  # Y or GY^T
    fixed = rates.im2col_call_seconds
    if pass_name is Pass.FORWARD:  # W (f' x rows) @ cols (rows x positions)
        copies, products = unfold + outputs, _real_gemm(rates, fg, rows, positions, g.groups)
    elif pass_name is Pass.WEIGHT:  # GY^T (f' x positions) @ cols^T (positions x rows)
        copies, products = unfold + outputs, _real_gemm(rates, fg, positions, rows, g.groups)
    else:  # W^T (rows x f') @ GY^T (f' x positions), then col2im: one Python step and one add per tap
        taps = math.prod(g.kernel_shape)
        fixed += taps * rates.tap_seconds
        padded = any(g.padding_before) or any(g.padding_after)  # then the padded gradient is cropped by a copy
        crop = rates.copy_seconds(math.prod(g.full_input_shape), g.input_shape[-1], itemsize) if padded else 0.0
        copies = outputs + 1.5 * rates.copy_seconds(rows * g.groups * positions, row_run, itemsize) + crop
        products = _real_gemm(rates, rows, fg, positions, g.groups)
    return Estimate("im2col", 0.0, products, copies, fixed, float(direct_flops(g)),
                    workspace_bytes=spatial_workspace_bytes(g, dtype, "im2col", pass_name),
                    error=predicted_error("im2col", g, pass_name, dtype))


def _real_gemm(rates: MachineRates, m: int, k: int, n: int, count: int) -> float:
    return rates.real_gemm_seconds(real_gemm_flops(m, k, n) * count, m, n)


def estimate_direct(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates, dtype=np.float32) -> Estimate:
    """The direct loop: one einsum per kernel tap over strided windows, in float64."""
    pass_name = Pass.parse(pass_name)
    flops = float(direct_flops(g))
    taps = math.prod(g.kernel_shape)
    inner_loops = flops / 2 / math.prod(g.output_shape)  # einsum's inner loop runs over the output positions
    copies = inner_loops * rates.copy_run_seconds + 2 * im2col_column_bytes(g, np.float32) / rates.copy_bytes
    return Estimate("direct", 0.0, flops / rates.direct_flops, copies,
                    rates.direct_call_seconds + taps * rates.direct_tap_seconds, flops,
                    workspace_bytes=spatial_workspace_bytes(g, dtype, "direct", pass_name),
                    error=predicted_error("direct", g, pass_name, dtype))


def estimate_winograd(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates, tile: Sequence[int],
                      dtype=np.float32) -> Estimate:
    """Winograd ``F(m, r)`` with output tiles ``tile``: the transforms at the Winograd transform rate, one real GEMM
    per transform position and group in each chunk (as wide as the chunk's tiles), the tiles' gathering and
    scattering copies, and a fixed cost per pass."""
    pass_name = Pass.parse(pass_name)
    work = WinogradWork.of(g, pass_name, tile, dtype)
    columns = winograd.gemm_columns(g, work)
    chunks = g.batch * work.tiles / columns
    products = (rates.real_gemm_seconds(work.gemm_flops, work.gemm_shape[0], columns)
                + work.gemm_count * chunks * rates.gemm_matrix_seconds)
    copies = sum(rates.copy_seconds(elements, run, work.itemsize) for elements, run in work.copies)
    workspace = winograd.workspace_bytes(g, work)
    return Estimate("winograd", rates.winograd_transform_seconds(work.transform_flops), products, copies,
                    rates.winograd_call_seconds, float(work.flops), options={"tile": work.tile},
                    workspace_bytes=workspace,
                    error=predicted_error("winograd", g, pass_name, dtype, tile=work.tile))


def estimate_tiled(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates, tile: Sequence[int],
                   fft_size: FFTSizeArg = None, dtype=np.float32, workspace: bool = True) -> Estimate:
    """The tiled FFT algorithm: the FFT algorithm's estimate of the tile geometry plus the tiling's copies.

    ``workspace=False`` skips the memory estimate (0 then), which a tile search needs for its winner only.
    """
    pass_name = Pass.parse(pass_name)
    work = TiledWork.of(g, pass_name, tile)
    spectral = estimate_fft(work.tiling.tile_geometry, pass_name, rates, fft_size, dtype, workspace)
    itemsize = np.dtype(dtype).itemsize
    copies = sum(rates.copy_seconds(elements, run, itemsize) for elements, run in work.copies)
    workspace = spectral.workspace_bytes + work.spatial_elements * itemsize if workspace else 0
    return Estimate("tiled", spectral.transforms, spectral.products, spectral.copies + copies, spectral.fixed,
                    spectral.flops, spectral.fft_shape, {"tile": work.tiling.tile}, workspace,
                    predicted_error("tiled", g, pass_name, dtype, fft_shape=spectral.fft_shape, tile=work.tiling.tile))


# ---------------------------------------------------------------------- options: the tiles
def winograd_tiles(g: ConvGeometry) -> list[tuple[int, ...]]:
    """The Winograd tiles worth estimating: per axis :func:`fftconv.winograd.tile_choices`, none beyond the output.

    Examples
    --------
    >>> winograd_tiles(ConvGeometry.from_shapes((1, 1, 5, 32), (1, 1, 3, 3)))  # output 3 x 30
    [(2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (3, 2), (3, 3), (3, 4), (3, 5), (3, 6)]
    """
    axes = [sorted({min(m, out) for m in winograd.tile_choices(r)})
            for r, out in zip(g.kernel_shape, g.output_shape)]
    return list(itertools.product(*axes))


def winograd_saves(g: ConvGeometry) -> bool:
    """Whether some tile of :func:`winograd_tiles` does fewer multiplications than a direct method: an axis with at
    least two taps and tiles of at least two outputs. ``F(1, r)`` and ``F(m, 1)`` on every axis compute the direct
    method's products in another layout, and the model underestimated such passes up to 11x.

    Examples
    --------
    >>> winograd_saves(ConvGeometry.from_shapes((1, 1, 32, 32), (1, 1, 3, 3)))
    True
    >>> winograd_saves(ConvGeometry.from_shapes((1, 1, 32, 32), (1, 1, 9, 9)))  # F(1, 9): one output per tile
    False
    """
    return any(m > 1 and r > 1 for tile in winograd_tiles(g) for m, r in zip(tile, g.kernel_shape))


def tiled_tiles(g: ConvGeometry, fft_size: FFTSizeArg = None) -> list[tuple[int, ...]]:
    """The tiles of the tiled FFT algorithm worth estimating: per axis, the smallest tile of each tile count.

    Of all tiles giving ``T`` tiles along an axis, the smallest, ``ceil(m / T)``, reads least, has the smallest FFT
    size and copies least: every cost grows with the tile at a fixed count. So these ``~2 sqrt(m)`` tiles per axis
    hold the model's optimum over all tiles. A fixed ``fft_size`` keeps the tiles whose reads fit it.

    Examples
    --------
    >>> tiled_tiles(ConvGeometry.from_shapes((1, 1, 12), (1, 1, 3)))  # output 10
    [(1,), (2,), (3,), (4,), (5,), (10,)]
    >>> tiled_tiles(ConvGeometry.from_shapes((1, 1, 12), (1, 1, 3)), fft_size=(6,))  # reads t + 2 <= 6
    [(1,), (2,), (3,), (4,)]
    """
    fixed = None if fft_size is None or isinstance(fft_size, str) else tuple(fft_size)
    if fixed is not None and len(fixed) != g.ndim:
        raise ValueError(f"fft_size={fixed} must have one entry per spatial dimension ({g.ndim})")
    axes = []
    for axis, (m, s, kd) in enumerate(zip(g.output_shape, g.stride, g.dilated_kernel_shape)):
        tiles = sorted({-(-m // count) for count in range(1, m + 1)})
        if fixed is not None:
            tiles = [t for t in tiles if (t - 1) * s + kd <= fixed[axis]]
            if not tiles:
                raise ValueError(f"fft_size={fixed} is smaller than the dilated kernel {g.dilated_kernel_shape} "
                                 f"along axis {axis}: a tile of one output needs an FFT size of at least the kernel")
        axes.append(tiles)
    return list(itertools.product(*axes))


def _tiled_lower_bounds(g: ConvGeometry, pass_name: Pass, rates: MachineRates, fft_size: FFTSizeArg,
                        itemsize: int, tiles: np.ndarray) -> np.ndarray:
    """A lower bound of :func:`estimate_tiled` for each row of ``tiles`` (one tile per row), all at once.

    Only the terms that dominate: the FFTs of the ``B (f + f')`` tile maps, the per-bin GEMMs over at least half
    of the ``N`` bins (a real spectrum has ``N / 2`` bins besides conjugates), writing those maps' spectra, the
    copies of the input tiles and of the output(-gradient) tiles that every pass makes, and the fixed cost. The FFT
    size of a tile is found per axis: the size policy treats the axes independently.
    """
    sizes = np.array([[_tile_fft_size(g, axis, int(t), fft_size) for axis, t in enumerate(row)] for row in tiles])
    counts = np.prod(-(-np.array(g.output_shape) // tiles), axis=1)
    batch = g.batch * counts
    cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
    fft = batch * (g.in_channels + g.out_channels) * (
        rates.fft_seconds(real_fft_flops(tuple(sizes.T))) + rates.fft_map_seconds)
    m, k, n = {Pass.FORWARD: (batch, cg, fg), Pass.INPUT: (batch, fg, cg), Pass.WEIGHT: (fg, batch, cg)}[pass_name]
    bins = np.prod(sizes, axis=1) / 2
    gemm = rates.complex_gemm_seconds(complex_gemm_flops(m, k, n) * bins * g.groups, np.minimum(np.minimum(m, k), n))
    reads = (tiles - 1) * np.array(g.stride) + np.array(g.dilated_kernel_shape)
    copied = batch * (g.in_channels + g.out_channels) * bins * 2 + batch * (
        g.in_channels * np.prod(reads, axis=1) + g.out_channels * np.prod(tiles, axis=1))
    return fft + gemm + copied * itemsize / rates.copy_bytes + rates.fft_call_seconds


@functools.lru_cache(maxsize=4096)  # each tile's FFT size along one axis; the search asks for each several times
def _tile_fft_size(g: ConvGeometry, axis: int, tile: int, fft_size) -> int:
    s, d, k = g.stride[axis], g.dilation[axis], g.kernel_shape[axis]
    one_axis = ConvGeometry(1, 1, 1, 1, ((tile - 1) * s + d * (k - 1) + 1,), (k,), (s,), (d,), (0,), (0,))
    return fft_shape_for(one_axis, fft_size if fft_size is None or isinstance(fft_size, str)
                         else (fft_size[axis],))[0]


@functools.lru_cache(maxsize=1024)  # a tile search costs milliseconds; layers repeat their geometries
def _best_tile(algo: str, g: ConvGeometry, pass_name: Pass, rates: MachineRates, fft_size, dtype: str,
               max_error: float | None) -> Estimate:
    allowed = lambda e: max_error is None or e.error <= max_error  # noqa: E731
    if algo == "winograd":
        candidates = [estimate_winograd(g, pass_name, rates, tile, dtype) for tile in winograd_tiles(g)]
        within = [e for e in candidates if allowed(e)]
        return min(within, key=lambda e: e.seconds) if within else min(candidates, key=lambda e: (e.error,
                                                                                                 e.seconds))
    # best first by a lower bound: stop once no unseen tile can beat the best estimate found, or after a shortlist
    tiles = np.array(tiled_tiles(g, fft_size))
    bounds = _tiled_lower_bounds(g, pass_name, rates, fft_size, np.dtype(dtype).itemsize, tiles)
    best: Estimate | None = None
    most_accurate: Estimate | None = None
    for index in np.argsort(bounds, kind="stable")[:TILED_SHORTLIST]:
        if best is not None and bounds[index] >= best.seconds:
            break
        e = estimate_tiled(g, pass_name, rates, tuple(int(t) for t in tiles[index]), fft_size, dtype, workspace=False)
        if allowed(e) and (best is None or e.seconds < best.seconds):
            best = e
        if most_accurate is None or e.error < most_accurate.error:
            most_accurate = e
    chosen = best if best is not None else most_accurate
    return estimate_tiled(g, pass_name, rates, chosen.options["tile"], fft_size, dtype)


def best_estimate(algo: str, g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates,
                  fft_size: FFTSizeArg = None, dtype=np.float32, max_error: float | None = None) -> Estimate:
    """The estimate of ``algo`` for one pass at its cheapest options whose predicted error is within ``max_error``.

    Algorithms without options have one estimate. Among tiles, the lowest estimated time wins among those whose
    :attr:`Estimate.error` is at most ``max_error`` (all, when it is None); when none is, the most accurate tile
    (its error then exceeds the bound, which :func:`fftconv.choose.choose` reports). ``algo`` must support ``g``.
    The tiled search estimates the tiles of :func:`tiled_tiles` in the order of a lower bound of their time (the
    FFTs, GEMMs and the copies every pass makes), and stops when the bound passes the best estimate or after
    :data:`TILED_SHORTLIST` tiles.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    >>> best = best_estimate("tiled", g, "forward", MachineRates())
    >>> all(t < 128 for t in best.options["tile"])  # a 3x3 kernel on 128x128 maps is tiled
    True
    """
    pass_name = Pass.parse(pass_name)
    if algo == "fft":
        return estimate_fft(g, pass_name, rates, fft_size, dtype)
    if algo == "im2col":
        return estimate_im2col(g, pass_name, rates, dtype)
    if algo == "direct":
        return estimate_direct(g, pass_name, rates, dtype)
    if algo not in ("winograd", "tiled"):
        raise ValueError(f"algo={algo!r} is unknown; valid: {sorted(CANDIDATES)}")
    bound = None if max_error is None else float(max_error)
    return _best_tile(algo, g, pass_name, rates, _hashable(fft_size, g.ndim), np.dtype(dtype).str, bound)


def _hashable(fft_size: FFTSizeArg, ndim: int):
    """``fft_size`` validated (:func:`fftconv.sizes.parse_fft_size`) into a policy name or a tuple: a cache key."""
    return parse_fft_size(fft_size, ndim)


def unsupported(g: ConvGeometry) -> dict[str, str]:
    """The registered algorithms that cannot run ``g``, with each one's reason.

    Examples
    --------
    >>> unsupported(ConvGeometry.from_shapes((1, 1, 9, 9), (1, 1, 3, 3), stride=2))
    {'winograd': 'winograd needs stride 1; stride=(2, 2)'}
    """
    reasons = {name: entry.unsupported_reason(g) for name, entry in ALGORITHMS.items()}
    return {name: reason for name, reason in reasons.items() if reason is not None}


def estimates(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates, fft_size: FFTSizeArg = None,
              dtype=np.float32, max_error: float | None = None) -> dict[str, Estimate]:
    """The :class:`Estimate` of every candidate that supports ``g`` for one pass, at its best options.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 96, 32, 32), (256, 96, 7, 7))
    >>> costs = estimates(g, "forward", MachineRates())
    >>> costs["fft"].seconds < costs["im2col"].seconds < costs["direct"].seconds
    True
    >>> costs["winograd"].options, costs["direct"].options
    ({'tile': (2, 2)}, {})
    """
    pass_name = Pass.parse(pass_name)
    excluded = unsupported(g)
    return {algo: best_estimate(algo, g, pass_name, rates, fft_size, dtype, max_error)
            for algo in CANDIDATES if algo not in excluded}
