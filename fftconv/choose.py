"""``algo="auto"``: choose an algorithm per pass from a cost model calibrated on this machine, or by measuring.

The model counts what each algorithm does (FFT flops, complex GEMM flops over the half spectrum, im2col bytes
and GEMM flops, the direct loop's flops) and divides by rates measured on the machine (:func:`calibrate`). A
measure mode times the candidates once per geometry and caches the decision, like Theano's meta-optimiser and
fbcunn's autotuner; the default hybrid mode times only where the model cannot separate the candidates and timing is
cheap. :func:`explain` prints the estimates and the choice, in the spirit of opt_einsum's ``PathInfo``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import _kernel_dft
from ._parallel import batched_matmul, parallel_matmul
from .geometry import ConvGeometry
from .spectral import fft_shape_for, multiplied_bins

PASSES = ("forward", "input", "weight")
CANDIDATES = ("fft", "im2col", "direct")


@dataclass(frozen=True)
class MachineRates:
    """Throughputs the cost model divides by (flop/s and byte/s).

    The defaults were measured on the project's 2-core AMD EPYC (Zen 4) machine with 2 threads
    (``cpu-baseline.md``, 2026-11-25); :func:`calibrate` replaces them with this machine's.
    """

    fft_flops: float = 12e9           # batched real FFT into/out of fftconv's frequency-major spectra, 2.5 N log2 N
    complex_gemm_flops: float = 150e9  # per-bin complex GEMMs with every dimension large (8 flops per multiply-add)
    real_gemm_flops: float = 190e9    # one real GEMM with large output dimensions (im2col)
    copy_bytes: float = 6e9           # bytes copied per second with long contiguous runs (unfold, crops, transposes)
    direct_flops: float = 2e9         # the float64 einsum loop of algo="direct"
    # GEMMs with a small dimension run slower: the rate is multiplied by d / (d + half) for each of the output
    # dimensions of a real GEMM, and for the smallest dimension of the per-bin complex GEMMs (fitted to 10 shapes
    # each on the project's machine: within 1.5x).
    gemm_half_dim: float = 16.0
    complex_gemm_half_dim: float = 4.0
    copy_run_seconds: float = 7e-9    # extra cost of each innermost run of a strided copy (numpy's loop overhead)
    # Fixed costs the flop and byte terms miss (measured by the auto_grid experiment: they decide small problems):
    fft_call_seconds: float = 3.0e-4     # plan lookup, allocations, thread hand-offs of one FFT pass
    im2col_call_seconds: float = 1.4e-4  # one im2col pass on a tiny problem
    direct_call_seconds: float = 1.0e-4
    gemm_matrix_seconds: float = 1e-7    # numpy's stacked matmul calls BLAS once per matrix (per bin and group)
    tap_seconds: float = 5e-6            # one step of im2col's per-tap col2im loop
    direct_tap_seconds: float = 3e-5     # one step of the direct algorithm's per-tap einsum loop
    source: str = "defaults measured on the project's 2-core AMD EPYC Zen 4 machine (cpu-baseline.md)"


@dataclass(frozen=True)
class Choice:
    """The decision for one pass: estimated (and optionally measured) seconds per candidate, and the winner."""

    pass_name: str
    algo: str
    estimates: dict
    measured: dict = field(default_factory=dict)
    fft_shape: tuple = ()
    reason: str = ""

    def __str__(self) -> str:
        lines = [f"{self.pass_name}: {self.algo}  ({self.reason})"]
        best = min(self.estimates.values())
        for algo, seconds in sorted(self.estimates.items(), key=lambda item: item[1]):
            measured = f"   measured {self.measured[algo] * 1e3:9.3f} ms" if algo in self.measured else ""
            lines.append(f"  {algo:7s} estimated {seconds * 1e3:9.3f} ms  ({seconds / best:5.2f}x){measured}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- calibration
_CALIBRATION_FILE = Path(os.environ.get("FFTCONV_CACHE", Path.home() / ".cache" / "fftconv")) / "rates.json"
_rates: MachineRates | None = None


def _best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def calibrate(save: bool = True) -> MachineRates:
    """Measure this machine's rates (a few seconds) and, by default, save them for later processes.

    The measurements use the configured default FFT backend and threads, float32, and fftconv's own code paths
    (frequency-major spectra, the per-bin GEMMs split over its thread pool) at shapes typical of convolution layers
    (32x32 maps, per-bin GEMMs of 32x96x256).
    """
    from .backends import get_backend

    rng = np.random.default_rng(0)
    backend = get_backend()
    fft_seconds, fft_maps = _pipeline_fft_seconds(backend, rng)
    left = (rng.standard_normal((272, 32, 96)) + 1j * rng.standard_normal((272, 32, 96))).astype(np.complex64)
    right = (rng.standard_normal((272, 96, 256)) + 1j * rng.standard_normal((272, 96, 256))).astype(np.complex64)
    product = np.empty((272, 32, 256), np.complex64)
    cgemm_seconds = _best_seconds(lambda: batched_matmul(left, right, product))
    tiny_left, tiny_right = left[:, :1, :2].copy(), right[:, :2, :2].copy()
    tiny_product = np.empty((272, 1, 2), np.complex64)
    matrix_seconds = _best_seconds(lambda: batched_matmul(tiny_left, tiny_right, tiny_product), repeats=20) / 272
    a, b = rng.standard_normal((4096, 1024), dtype=np.float32), rng.standard_normal((1024, 256), dtype=np.float32)
    sgemm_seconds = _best_seconds(lambda: parallel_matmul(a[None], b[None]))  # as im2col runs it
    strided = rng.standard_normal((64, 64, 64, 64), dtype=np.float32)
    copy_seconds = _best_seconds(lambda: strided.copy())
    # numpy's copy loop pays per innermost run: runs of 3 values from a source that stays in cache (1 MiB), as
    # im2col's unfold reads its padded input
    short = strided[0, :, :, :3]
    short_seconds = _best_seconds(lambda: np.ascontiguousarray(short), repeats=20)
    defaults = MachineRates()
    x64, w64 = rng.standard_normal((8, 16, 32, 32)), rng.standard_normal((16, 16))
    direct_seconds = _best_seconds(lambda: np.einsum("scxy,fc->sfxy", x64, w64))
    call_seconds = _tiny_call_seconds()
    rates = MachineRates(
        fft_flops=fft_maps * 2.5 * 1024 * 10 / fft_seconds,
        complex_gemm_flops=8 * 272 * 32 * 96 * 256 / cgemm_seconds / _efficiency(32, defaults.complex_gemm_half_dim),
        real_gemm_flops=2 * 4096 * 1024 * 256 / sgemm_seconds / (
            _efficiency(4096, defaults.gemm_half_dim) * _efficiency(256, defaults.gemm_half_dim)),
        copy_bytes=strided.nbytes / copy_seconds,
        copy_run_seconds=short_seconds / (short.size // 3),
        direct_flops=2 * 8 * 16 * 16 * 1024 / direct_seconds,
        fft_call_seconds=call_seconds["fft"],
        im2col_call_seconds=call_seconds["im2col"],
        direct_call_seconds=call_seconds["direct"],
        gemm_matrix_seconds=matrix_seconds,
        tap_seconds=_tap_seconds("im2col", "grad_input"),
        direct_tap_seconds=_tap_seconds("direct", "forward"),
        source=f"calibrated {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} with backend {backend.name}",
    )
    rates = replace(rates, fft_call_seconds=max(rates.fft_call_seconds, _fft_fixed_seconds(rates)))
    if save:
        _CALIBRATION_FILE.parent.mkdir(parents=True, exist_ok=True)
        temporary = _CALIBRATION_FILE.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(rates), indent=1))
        os.replace(temporary, _CALIBRATION_FILE)
    set_rates(rates)
    return rates


def _pipeline_fft_seconds(backend, rng) -> tuple[float, int]:
    """Seconds per 32x32 transform as fftconv runs them, and the maps timed: half forward, half inverse.

    The spectra are frequency-major (padded, strided): measured 1.5-2.5x slower than the map-major batches an FFT
    benchmark times, so a map-major rate would make the model favour the FFT too much.
    """
    from .backends import irfftn_blocks
    from .spectral import SpectralPlan

    g = ConvGeometry.from_shapes((32, 32, 32, 32), (32, 32, 1, 1))  # 1024 maps each way
    plan = SpectralPlan.create(g, np.float32, backend, fft_size=(32, 32))
    x = rng.standard_normal(g.full_input_shape).astype(np.float32)
    spectrum = plan.transform_input(x)
    forward = _best_seconds(lambda: plan.transform_input(x, out=spectrum))
    # as the passes do, block by block (the crop that reads each block is modelled apart)
    inverse = _best_seconds(lambda: irfftn_blocks(backend, plan._channels_first(spectrum), (32, 32), plan._axes,
                                                  lambda block, maps: None))
    return forward + inverse, 2 * 32 * 32


def _tiny_call_seconds() -> dict[str, float]:
    """Seconds of one pass of each algorithm on a problem too small to have any arithmetic cost."""
    from .functional import ALGORITHMS

    g = ConvGeometry.from_shapes((1, 1, 4, 4), (1, 1, 1, 1))
    x, w = np.ones(g.full_input_shape, np.float32), np.ones(g.full_weight_shape, np.float32)
    return {name: _best_seconds(lambda: ALGORITHMS[name].forward(x, w, None, g), repeats=20) for name in CANDIDATES}


def _tap_seconds(algo: str, pass_name: str) -> float:
    """Seconds per kernel tap of an algorithm's per-tap loop: a 16x16 kernel against a 1x1 one, on one map."""
    from .functional import ALGORITHMS

    many, one = (ConvGeometry.from_shapes((1, 1, 16, 16), (1, 1, k, k)) for k in (16, 1))
    seconds = {}
    for g in (many, one):
        x, w = np.ones(g.full_input_shape, np.float32), np.ones(g.full_weight_shape, np.float32)
        gy = np.ones(g.full_output_shape, np.float32)
        run = {"forward": lambda: ALGORITHMS[algo].forward(x, w, None, g),
               "grad_input": lambda: ALGORITHMS[algo].grad_input(gy, w, g)}[pass_name]
        seconds[g] = _best_seconds(run, repeats=10)
    return max(seconds[many] - seconds[one], 0.0) / (256 - 1)


def _fft_fixed_seconds(rates: MachineRates) -> float:
    """Fixed cost of an FFT pass on a small problem that still splits over the thread pool: measured minus modelled.

    The 4x4 problem of :func:`_tiny_call_seconds` hands nothing to the pool; a pass of a few 64x64 maps pays the
    hand-offs, fresh arrays and plan lookups of each of its stages, which the flop terms miss.
    """
    from .functional import ALGORITHMS

    g = ConvGeometry.from_shapes((1, 3, 64, 64), (16, 3, 7, 7))
    x, w = np.ones(g.full_input_shape, np.float32), np.ones(g.full_weight_shape, np.float32)
    measured = _best_seconds(lambda: ALGORITHMS["fft"].forward(x, w, None, g), repeats=10)
    return measured - _fft_seconds(g, "forward", replace(rates, fft_call_seconds=0.0))


def set_rates(rates: MachineRates | None) -> None:
    """Use these rates for ``algo="auto"`` (``None``: reload the saved calibration or the defaults)."""
    global _rates
    _rates = rates
    _decisions.clear()


def get_rates() -> MachineRates:
    """The rates in use: set explicitly, else saved by :func:`calibrate`, else the documented defaults."""
    global _rates
    if _rates is None:
        try:
            _rates = MachineRates(**json.loads(_CALIBRATION_FILE.read_text()))
        except (OSError, ValueError, TypeError):
            _rates = MachineRates()
    return _rates


# ---------------------------------------------------------------------- the cost model
def _efficiency(dimension: float, half: float) -> float:
    """Fraction of the peak GEMM rate along a dimension of this size: ``d / (d + half)``."""
    return dimension / (dimension + half)


def _real_gemm_seconds(m: int, n: int, k: int, rates: MachineRates, count: int = 1) -> float:
    """``count`` real GEMMs ``(m x k) @ (k x n)``."""
    rate = rates.real_gemm_flops * _efficiency(m, rates.gemm_half_dim) * _efficiency(n, rates.gemm_half_dim)
    return count * 2.0 * m * n * k / rate


def _complex_gemm_seconds(m: int, n: int, k: int, rates: MachineRates, count: int = 1) -> float:
    """``count`` complex GEMMs ``(m x k) @ (k x n)`` (the per-bin products, or DFT matrices applied to maps)."""
    rate = rates.complex_gemm_flops * _efficiency(min(m, n, k), rates.complex_gemm_half_dim)
    return count * 8.0 * m * n * k / rate


def _copy_seconds(elements: float, run: float, rates: MachineRates, itemsize: int = 4) -> float:
    """A strided copy of ``elements`` values moved in contiguous runs of ``run`` values."""
    return elements * itemsize / rates.copy_bytes + elements / max(run, 1) * rates.copy_run_seconds


def _fft_seconds(g: ConvGeometry, pass_name: str, rates: MachineRates, fft_size=None) -> float:
    fft_shape = fft_shape_for(g, fft_size)
    points = math.prod(fft_shape)
    bins = math.prod((*fft_shape[:-1], fft_shape[-1] // 2 + 1))
    per_map = 2.5 * points * math.log2(max(points, 2)) / rates.fft_flops
    kernels = g.out_channels * g.in_channels // g.groups
    if _kernel_dft.gemm_is_cheaper(g.kernel_shape, fft_shape):  # DFT matrices (bins x k) applied to all kernels
        kernel_map = 8 * _kernel_dft.multiply_adds(g.kernel_shape, fft_shape) / (
            rates.complex_gemm_flops * _efficiency(min(g.kernel_shape), rates.complex_gemm_half_dim))
    else:
        kernel_map = per_map
    inputs, grads = g.batch * g.in_channels, g.batch * g.out_channels
    maps = {"forward": (inputs * per_map + kernels * kernel_map, grads * per_map),
            "input": (grads * per_map + kernels * kernel_map, inputs * per_map),
            "weight": (inputs * per_map + grads * per_map, kernels * kernel_map)}[pass_name]
    cg, fg = g.in_channels // g.groups, g.out_channels // g.groups
    shapes = {"forward": (g.batch, fg, cg), "input": (g.batch, cg, fg), "weight": (fg, cg, g.batch)}[pass_name]
    products = multiplied_bins(fft_shape) * g.groups
    gemm = _complex_gemm_seconds(*shapes, rates, count=products) + products * rates.gemm_matrix_seconds
    spectrum_bytes = 8 * bins * (inputs + grads + kernels)
    crop = {"forward": g.full_output_shape, "input": g.full_input_shape, "weight": g.full_weight_shape}[pass_name]
    return (rates.fft_call_seconds + sum(maps) + gemm + spectrum_bytes / rates.copy_bytes
            + _copy_seconds(math.prod(crop), crop[-1], rates))


def _spatial_work(g: ConvGeometry) -> tuple[float, float]:
    """Multiply-add flops of one direct pass, and bytes of the unfolded input."""
    outputs = g.batch * math.prod(g.output_shape)
    reduction = g.in_channels // g.groups * math.prod(g.kernel_shape)
    return 2.0 * outputs * g.out_channels * reduction, 4.0 * outputs * g.in_channels * math.prod(g.kernel_shape)


def _im2col_seconds(g: ConvGeometry, pass_name: str, rates: MachineRates) -> float:
    """The tap-major im2col of :mod:`fftconv.im2col`: copies by their runs, and one GEMM per group."""
    positions = g.batch * math.prod(g.output_shape)  # columns of the unfolded matrix
    rows = g.in_channels // g.groups * math.prod(g.kernel_shape)  # its rows, per group
    fg = g.out_channels // g.groups
    row_run = g.output_shape[-1]  # numpy copies an output row per inner loop (strided or not)
    unfold = _copy_seconds(rows * g.groups * positions, row_run, rates)
    outputs = _copy_seconds(g.out_channels * positions, math.prod(g.output_shape), rates)  # Y or GY transposed
    if pass_name == "forward":
        return rates.im2col_call_seconds + unfold + _real_gemm_seconds(fg, positions, rows, rates, g.groups) + outputs
    if pass_name == "weight":
        return rates.im2col_call_seconds + unfold + outputs + _real_gemm_seconds(fg, rows, positions, rates, g.groups)
    taps = math.prod(g.kernel_shape)  # col2im: one Python step and one read-add-write of a tap's rows per tap
    col2im = taps * rates.tap_seconds + 1.5 * _copy_seconds(rows * g.groups * positions, row_run, rates)
    padded = any(g.padding_before) or any(g.padding_after)  # then the padded gradient is cropped by a copy
    crop = _copy_seconds(math.prod(g.full_input_shape), g.input_shape[-1], rates) if padded else 0.0
    return (rates.im2col_call_seconds + outputs + _real_gemm_seconds(rows, positions, fg, rates, g.groups)
            + col2im + crop)


def _direct_seconds(g: ConvGeometry, pass_name: str, rates: MachineRates) -> float:
    flops, column_bytes = _spatial_work(g)
    taps = math.prod(g.kernel_shape)  # one einsum per tap
    inner_loops = flops / 2 / math.prod(g.output_shape)  # einsum's inner loop runs over the output positions
    return (rates.direct_call_seconds + taps * rates.direct_tap_seconds + flops / rates.direct_flops
            + inner_loops * rates.copy_run_seconds
            + 2 * column_bytes / rates.copy_bytes)


def estimate(g: ConvGeometry, pass_name: str, rates: MachineRates | None = None, fft_size=None) -> dict[str, float]:
    """Estimated seconds of each algorithm for one pass of ``g``.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 96, 32, 32), (256, 96, 7, 7))
    >>> costs = estimate(g, "forward")
    >>> sorted(costs) == sorted(CANDIDATES) and costs["fft"] < costs["im2col"] < costs["direct"]
    True
    """
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    rates = rates or get_rates()
    return {"fft": _fft_seconds(g, pass_name, rates, fft_size), "im2col": _im2col_seconds(g, pass_name, rates),
            "direct": _direct_seconds(g, pass_name, rates)}


# ---------------------------------------------------------------------- decisions
_decisions: dict[tuple, Choice] = {}


AUTO_MODES = ("hybrid", "model", "measure")
#: ``measure`` times the candidates the model ranks within this factor of its best (``direct`` beyond it never).
MEASURE_WINDOW = 4.0
#: ``hybrid`` times only when the model cannot separate the candidates (estimates within this factor; the model's
#: per-algorithm error on the auto_grid experiment reached 1.7-2.8x, 12x at one im2col weight gradient, and a 2x
#: window left a 1.28x mispick at a 2.003x estimate ratio) and timing is cheap (best estimate under
#: ``HYBRID_MAX_SECONDS``: at most a few tenths of a second, once per geometry and pass).
HYBRID_WINDOW = 4.0
HYBRID_MAX_SECONDS = 0.01


def _auto_mode() -> str:
    mode = os.environ.get("FFTCONV_AUTO", "hybrid")
    if mode not in AUTO_MODES:
        raise ValueError(f"FFTCONV_AUTO must be one of {AUTO_MODES}, got {mode!r}")
    return mode


def candidates_to_time(estimates: dict[str, float], mode: str) -> list[str]:
    """The candidates ``mode`` times (none: the lowest estimate wins); the auto_grid experiment applies it too."""
    best = min(estimates.values())
    if mode == "measure":
        return [algo for algo, seconds in estimates.items() if seconds <= MEASURE_WINDOW * best]
    if mode == "hybrid" and best <= HYBRID_MAX_SECONDS:
        close = [algo for algo, seconds in estimates.items() if seconds <= HYBRID_WINDOW * best]
        return close if len(close) > 1 else []
    return []


def _time_candidates(g: ConvGeometry, pass_name: str, dtype, candidates: Sequence[str], backend, fft_size) -> dict:
    from .functional import ALGORITHMS

    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.full_input_shape).astype(dtype)
    w = rng.standard_normal(g.full_weight_shape).astype(dtype)
    gy = rng.standard_normal(g.full_output_shape).astype(dtype)
    runners = {
        "forward": lambda algo: ALGORITHMS[algo].forward(x, w, None, g, backend, fft_size),
        "input": lambda algo: ALGORITHMS[algo].grad_input(gy, w, g, backend, fft_size),
        "weight": lambda algo: ALGORITHMS[algo].grad_weight(x, gy, g, backend, fft_size),
    }
    return _best_interleaved({algo: (lambda algo=algo: runners[pass_name](algo)) for algo in candidates})


def _best_interleaved(runs: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Best seconds of each run over ``rounds`` rounds that call every run once, after one warm-up call each.

    Interleaving keeps a change of the machine's state during the timing (frequent on shared VMs) from favouring
    whichever candidate was timed in the quiet moment.
    """
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, math.inf)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def choose(g: ConvGeometry, pass_name: str, dtype=np.float32, *, measure: bool | None = None, backend=None,
           fft_size=None) -> Choice:
    """Pick the algorithm for one pass; cached per (geometry, pass, dtype, backend, fft_size, mode).

    Three modes, from ``measure`` or else ``FFTCONV_AUTO``:

    - ``"hybrid"`` (the default): the lowest model estimate wins, unless the model cannot tell the candidates apart
      (estimates within :data:`HYBRID_WINDOW` of the lowest) and the problem is small (lowest estimate under
      :data:`HYBRID_MAX_SECONDS`); then those candidates are timed once on random data and the fastest wins;
    - ``"model"`` (``measure=False``): the lowest estimate, nothing is timed;
    - ``"measure"`` (``measure=True``): the candidates within :data:`MEASURE_WINDOW` of the lowest estimate are timed
      and the fastest wins, like Theano's meta-optimiser and fbcunn's autotuner. ``direct`` is never timed beyond
      that window because it is a slow float64 reference.
    """
    mode = _auto_mode() if measure is None else ("measure" if measure else "model")
    key = (g, pass_name, np.dtype(dtype).str, repr(backend), repr(fft_size), mode)
    if key in _decisions:
        return _decisions[key]
    estimates = estimate(g, pass_name, fft_size=fft_size)
    candidates = candidates_to_time(estimates, mode)
    measured: dict = {}
    if candidates:
        measured = _time_candidates(g, pass_name, dtype, candidates, backend, fft_size)
        algo, reason = min(measured, key=measured.get), f"fastest when timed ({mode} mode)"
    else:
        algo, reason = min(estimates, key=estimates.get), f"lowest model estimate ({get_rates().source})"
    choice = Choice(pass_name, algo, estimates, measured, fft_shape_for(g, fft_size), reason)
    _decisions[key] = choice
    return choice


def explain(input_shape: Sequence[int], weight_shape: Sequence[int], stride=1, padding=0, dilation=1,
            groups: int = 1, *, dtype=np.float32, measure: bool | None = False, backend=None,
            fft_size=None) -> list[Choice]:
    """Estimated cost of each algorithm for each pass of a convolution, and what ``algo="auto"`` picks.

    By default nothing is timed (``measure=False``, the model's choice); ``measure=None`` decides as ``algo="auto"``
    does in the current ``FFTCONV_AUTO`` mode (the default ``"hybrid"`` may time close candidates), and
    ``measure=True`` times the candidates as the measure mode does.

    Examples
    --------
    >>> choices = explain((32, 96, 32, 32), (256, 96, 7, 7))
    >>> [c.pass_name for c in choices]
    ['forward', 'input', 'weight']
    >>> print(choices[0])  # doctest: +ELLIPSIS
    forward: fft  (lowest model estimate ...)
      fft     estimated ...
    """
    g = ConvGeometry.from_shapes(input_shape, weight_shape, stride, padding, dilation, groups)
    return [choose(g, name, dtype, measure=measure, backend=backend, fft_size=fft_size) for name in PASSES]
