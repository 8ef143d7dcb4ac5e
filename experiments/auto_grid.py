"""Is ``algo="auto"`` ever more than 1.25x slower than the best of fftconv's algorithms (the speed target)? And
which algorithm wins where?

On a grid of 2-d geometries that varies the input size n, the kernel size k, the channels (f -> f'), the batch S and
the stride, this experiment times every pass (forward, input gradient, weight gradient; float32, no padding) with
every algorithm of fftconv's registry (``fftconv.ALGORITHMS``: ``fft`` with the default FFT backend, ``im2col``,
``winograd`` and ``tiled`` with the tile the cost model picks, as the public functions run them, and ``direct``
where it is cheap: it is a slow float64 reference; elsewhere a row says why it was skipped), and ``algo="auto"`` in
its default hybrid mode. An algorithm that cannot run a geometry (Winograd at stride 2) gets a row with its reason.
The comparison is against the best of the algorithms actually timed at that point.

**Calibration.** Before any timing, a worker with the same pinned threads as the others runs
:func:`fftconv.calibrate` (``save=False``: the user's saved rates are left alone). The rates are stored in the
results file (resuming reuses them); every ``auto`` worker installs them and sets ``FFTCONV_AUTO=hybrid`` (the
default, whatever the caller's environment says): the model decides, except where its estimates are within 4x of
each other and the problem is small, or within 1.5x and medium-sized, where auto times those candidates once (in the warm-up call, which is not
timed). Each ``auto`` row records the choice with its options (a tile), the model's estimate of every candidate,
the candidates it left out and why, and what auto timed.

**Timing.** docs/experiments.md: one worker process per method, threads pinned and recorded, tuned malloc,
one warm-up call (FFT planning) and the median of repeats (``timing_settings``: up to 15 repeats within 0.1 s in
quick mode, so sub-millisecond calls get many). The methods of ``CHUNK`` geometries at a time are timed one after
the other, in an order that rotates, and the whole grid is timed in ``ROUNDS`` = 2 rounds; each (geometry, method,
pass) keeps the lower of its two medians. This machine has transient slowdowns of up to 2x lasting seconds (the same
im2col measurement repeated in six processes agreed to 3 % apart from such bursts): timing the methods close together
and twice keeps a burst from passing for a difference between algorithms.

**Ratios**, per (geometry, pass):

- ``auto/best``: the ``auto`` worker's median over the best median of the timed algorithms. This is the speed
  target's criterion. ``auto`` runs in its own process at another moment than the algorithm it picked, so this ratio
  also holds the run-to-run noise (differences under ~15 % are noise on the project's machine); it can fall below 1.
- ``chosen/best``: the median of the algorithm ``auto`` chose, timed in that algorithm's own worker, over the best.
  It is the decision's quality without the cross-process noise; exactly 1 where auto picked the winner.
- ``model/best``: what ``FFTCONV_AUTO=model`` picks (the lowest estimate among the candidates auto did not leave
  out; nothing timed), judged by the medians here.
- ``measure/best``: what ``FFTCONV_AUTO=measure`` would pick, computed without extra timing. Measure mode times the
  candidates whose model estimate is within 4x of the lowest (fftconv's own rule, through
  :func:`experiments.harness.fftconv_api.measure_mode_candidates`) and keeps the fastest. Here the estimates are
  those the ``auto`` worker recorded, and "fastest" uses this experiment's medians of those candidates instead of
  measure mode's own best-of-5, so the ratio is that of an ideal measurement. A candidate in the window that this
  experiment did not time (``direct`` where it was too slow) is listed and left out.

**Grid.** ``n in {8, 16, 32, 64, 128}``, ``k in {1, 3, 5, ..., 13}`` and ``k = n`` (only ``k <= n``), channels
``(3, 16), (16, 32), (64, 64), (128, 128)``, ``S in {1, 8, 32}``, stride ``{1, 2}``, in three blocks:

- **map**: every (n, k) at fixed channels and batch, stride 1 (:data:`WINNERS`; quick: S = 4, 32 -> 32 maps,
  n up to 64; full: S = 8, 64 -> 64 maps, n up to 128);
- **channels**: f = f' swept at fixed (k, n), stride 1 (quick: k = 3, n = 32, S = 4, 4 to 256 maps; full: also
  k = 7, 4 to 512 maps, S = 8);
- **cells**: every (n, k, stride) the map does not cover, once, with its (channels, batch) drawn in a seeded order
  per cell, the first whose estimated cost is under ``QUICK_CAP_SECONDS`` (quick mode: the kernel sizes of
  ``QUICK_CELL_KERNELS`` and ``k = n``); full mode: every combination under ``FULL_CAP_SECONDS``.

The map and channel blocks are also drawn on their own (``auto_grid_winners.png``): the fastest algorithm of each
(k, n) and its margin over the next, per pass and for the training step (the three passes summed), and every
algorithm's time against the channel count.

The cost used to keep the run short is the model's estimate with the documented default rates (not this machine's,
so the grid does not depend on the machine): the sum over passes of the fft and im2col estimates plus the lower of
them, about what one timed call of each method costs.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from .harness import fftconv_api, methods as method_labels, points
from .harness.jobs import Job, measure_jobs
from .harness.results import missing_fields
from .harness.style import fmt_ms, markdown_table, method_style, save_figure, write_table
from .harness.timing import TimingSettings

NAME = "auto_grid"
DESCRIPTION = ("algo='auto' (hybrid mode, model calibrated here) vs the best of every registered algorithm on a 2-d "
               "grid, and which algorithm wins where")

INPUT_SIZES = (8, 16, 32, 64, 128)
KERNEL_SIZES = (1, 3, 5, 7, 9, 11, 13)  # and k = n
CHANNELS = ((3, 16), (16, 32), (64, 64), (128, 128))
BATCHES = (1, 8, 32)
STRIDES = (1, 2)
#: Quick mode: the kernel sizes of the cells block (and k = n); the map block has every ``KERNEL_SIZES``.
QUICK_CELL_KERNELS = (1, 3, 7, 13)
#: The fixed-channel blocks of the winners figure, per mode (``True``: quick): the (k, n) map and the channel sweep.
WINNERS = {
    True: {"map": {"S": 4, "channels": 32, "n": (8, 16, 32, 64), "k": KERNEL_SIZES},
           "channels": {"S": 4, "n": 32, "k": (3,), "channels": (4, 16, 32, 64, 256)}},
    False: {"map": {"S": 8, "channels": 64, "n": INPUT_SIZES, "k": KERNEL_SIZES},
            "channels": {"S": 8, "n": 32, "k": (3, 7), "channels": (4, 8, 16, 32, 64, 128, 256, 512)}},
}
#: Estimated seconds (default rates) above which a geometry is left out of the quick cells / the full grid.
QUICK_CAP_SECONDS = 0.05
FULL_CAP_SECONDS = 1.0
#: ``direct`` is timed only where the model (default rates) expects one call to take less than this.
DIRECT_CAP_SECONDS = {True: 0.01, False: 0.25}
#: The speed target: auto no more than this much slower than the best.
TARGET = 1.25
#: Calls faster than this are at the noise floor of a shared 2-core machine (the same sub-millisecond call drifts by
#: 20 % between blocks of repeats in one process); the summary also counts the slower ones apart.
SLOW_SECONDS = 1e-3
#: The mode the auto workers run in: fftconv's default.
AUTO_MODE = "hybrid"
#: Geometries timed by one set of workers (one per method) before the next set starts: few enough that the methods
#: of a geometry are timed within a few minutes of each other, enough that starting the workers (a second or more
#: each) does not dominate the run.
CHUNK = 30
#: Every (geometry, method, pass) is timed this many times, in different worker processes at different moments;
#: the lowest median is kept. The machine has transient slowdowns lasting seconds (the same im2col measurement in
#: six processes in a row agreed to 3 % except for bursts up to 2x); one round cannot tell them from the method.
ROUNDS = 2


def registry() -> list[str]:
    """fftconv's algorithms, in the registry's order: the candidates timed and ``algo="auto"``'s candidates."""
    return method_labels.algorithms()


def algorithm_order(algos) -> list[str]:
    """``algos`` in the registry's order, any others (rows of an older registry) after them, sorted."""
    known = registry()
    return [a for a in known if a in algos] + sorted(set(algos) - set(known))


# ---------------------------------------------------------------------------------------------------- the grid
def grid_point(S: int, f: int, fp: int, n: int, k: int, stride: int, seed: int = 0) -> dict:
    """One geometry in the shared point format (batch ``S``, ``f -> fp`` maps, ``n x n`` input, ``k x k`` kernel,
    ``stride``, no padding), tagged ``kind="conv"`` to tell it from the calibration row."""
    if not 1 <= k <= n:
        raise ValueError(f"kernel size k={k} must be between 1 and the input size n={n}")
    return {"kind": "conv", **points.conv_point(S, f, fp, n, k, stride=stride, seed=seed)}


def output_size(point: dict) -> int:
    return (point["n"] - point["k"]) // point["stride"] + 1


def kernel_sizes(n: int, kernels: Sequence[int] = KERNEL_SIZES) -> list[int]:
    """``kernels`` that fit ``n``, and ``n`` itself."""
    return sorted({k for k in kernels if k <= n} | {n})


def estimated_cost(point: dict) -> float:
    """Seconds one timed call of fft, im2col and auto would take by the model with the default rates."""
    return _estimated_cost(tuple(sorted((name, tuple(v) if isinstance(v, list) else v) for name, v in point.items())))


@functools.lru_cache(maxsize=4096)
def _estimated_cost(items: tuple) -> float:
    point = dict(items)
    total = 0.0
    for pass_name in points.PASSES:
        estimates = fftconv_api.estimates(point, pass_name)
        total += estimates["fft"] + estimates["im2col"] + min(estimates["fft"], estimates["im2col"])
    return total


def map_points(winners: dict) -> list[dict]:
    """The (k, n) map of the winners figure: every ``k <= n`` at fixed channels and batch, stride 1."""
    block = winners["map"]
    return [grid_point(block["S"], block["channels"], block["channels"], n, k, 1)
            for n in block["n"] for k in block["k"] if k <= n]


def channel_points(winners: dict) -> list[dict]:
    """The channel sweep of the winners figure: f = f' over ``channels`` at each fixed (k, n), stride 1."""
    block = winners["channels"]
    return [grid_point(block["S"], c, c, block["n"], k, 1) for k in block["k"] for c in block["channels"]]


def _add(grid: list[dict], new: Sequence[dict]) -> list[dict]:
    return grid + [p for p in new if p not in grid]


def quick_grid() -> list[dict]:
    """The map and channel blocks, then each (n, k, stride) cell the map does not cover once, with a seeded
    (channels, batch) under the cap."""
    winners = WINNERS[True]
    grid = _add(map_points(winners), channel_points(winners))
    covered = {(p["n"], p["k"], p["stride"]) for p in grid}
    combinations = [(channels, batch) for channels in CHANNELS for batch in BATCHES]
    for n in INPUT_SIZES:
        for k in kernel_sizes(n, QUICK_CELL_KERNELS):
            for stride in STRIDES:
                if (n, k, stride) in covered:
                    continue
                # A string seed is hashed with SHA-512: the same order in every process and Python version.
                order = random.Random(f"auto_grid {n} {k} {stride}").sample(combinations, len(combinations))
                for (f, fp), batch in order:
                    point = grid_point(batch, f, fp, n, k, stride)
                    if estimated_cost(point) <= QUICK_CAP_SECONDS:
                        grid = _add(grid, [point])
                        break
    return grid


def full_grid() -> list[dict]:
    """Every combination under ``FULL_CAP_SECONDS``, the full winners blocks, and the quick grid (so full mode
    contains quick mode)."""
    winners = WINNERS[False]
    grid = [grid_point(batch, f, fp, n, k, stride)
            for n in INPUT_SIZES for k in kernel_sizes(n) for stride in STRIDES
            for f, fp in CHANNELS for batch in BATCHES]
    grid = [p for p in grid if estimated_cost(p) <= FULL_CAP_SECONDS]
    return _add(_add(_add(grid, map_points(winners)), channel_points(winners)), quick_grid())


def build_grid(quick: bool) -> list[dict]:
    return quick_grid() if quick else full_grid()


def direct_skip_reason(point: dict, quick: bool) -> str | None:
    """Why ``direct`` is not timed at ``point`` (``None``: it is cheap enough)."""
    limit = DIRECT_CAP_SECONDS[quick]
    slowest = max(fftconv_api.estimates(point, p)["direct"] for p in points.PASSES)
    if slowest > limit:
        return (f"direct (a float64 reference) is estimated at ~{slowest * 1e3:.0f} ms per call here "
                f"(limit {limit * 1e3:.0f} ms); not timed")
    return None


def skip_reason(method: str, point: dict, quick: bool) -> str | None:
    """Why ``method`` is not timed at ``point``: its algorithm cannot run it, or it is ``direct`` and too slow."""
    reason = fftconv_api.unsupported_reason(method_labels.parse_method(method)["algo"] or "", point)
    if reason is None and method == "direct":
        reason = direct_skip_reason(point, quick)
    return reason


def label(point: dict) -> str:
    return points.label(point)


# ---------------------------------------------------------------------------------------------------- measuring
def add_arguments(parser) -> None:
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="measure only the first N geometries of the grid (smoke runs)")


def methods(ctx) -> tuple[list[str], str]:
    """The timed algorithms' labels (fftconv's registry, or ``--algos``) and auto's label; fft, tiled and auto use
    the same FFT backend."""
    import fftconv

    algos = ctx.selected("algos", registry())
    backend = ctx.selected("backends", fftconv.available_backends(), [method_labels.default_backend_name()])[0]
    labels = [f"fft-{backend}" if algo == "fft" else algo for algo in algos]
    return labels, f"auto-{backend}"


def calibration_row(rows: Sequence[dict]) -> dict | None:
    return next((row for row in rows if row.get("kind") == "calibration" and "rates" in row), None)


def validate(row: dict) -> str | None:
    if row.get("kind") == "calibration":
        return None
    problem = points.validate(row)
    if problem:
        return problem
    if "median_s" in row and method_labels.parse_method(row["method"])["algo"] == "auto":
        return missing_fields(row, "choice", "estimates")
    return None


def _winners_settings(winners: dict) -> dict:
    return {name: {key: list(value) if isinstance(value, tuple) else value for key, value in block.items()}
            for name, block in winners.items()}


def measure(ctx) -> None:
    timed, auto = methods(ctx)
    ctx.record_settings(rounds=ROUNDS, target=TARGET, auto_mode=AUTO_MODE, slow_seconds=SLOW_SECONDS,
                        windows=fftconv_api.auto_windows(), winners=_winners_settings(WINNERS[ctx.quick]))
    key = {"kind": "calibration"}
    measure_jobs(ctx, [Job(auto, key, [{}], case=key)], "experiments.auto_grid:calibration",
                 desc="auto_grid calibration")
    calibration = calibration_row([row for row in ctx.results.rows() if ctx.results.counts(row)])
    if calibration is None:
        raise RuntimeError(f"auto_grid: calibration failed; see the error row in {ctx.results.path}")
    grid = build_grid(ctx.quick)[:getattr(ctx.options, "limit", None)]
    chunks = [grid[start:start + CHUNK] for start in range(0, len(grid), CHUNK)]
    every = [*timed, auto]
    for round_ in range(ROUNDS):
        for index, chunk in enumerate(chunks):
            # The methods of a few geometries are timed close together, in an order that rotates
            # from chunk to chunk and round to round, so that no method is always timed last.
            shift = (index + 2 * round_) % len(every)
            jobs = []
            for method in every[shift:] + every[:shift]:
                for point in chunk:
                    skip = None if method == auto else skip_reason(method, point, ctx.quick)
                    case = {**point, "rates": calibration["rates"]} if method == auto else dict(point)
                    jobs.append(Job(method, dict(point), [{"pass": p, "round": round_} for p in points.PASSES],
                                    case=case, skip_reason=skip))
            measure_jobs(ctx, jobs, "experiments.auto_grid:grid_passes", timing_settings(ctx.quick),
                         desc=f"auto_grid round {round_ + 1}/{ROUNDS}, geometries {index * CHUNK + 1}-"
                              f"{index * CHUNK + len(chunk)} of {len(grid)}")


def timing_settings(quick: bool) -> TimingSettings:
    """Many repeats of the sub-millisecond calls (cheap), a short budget for the rest: two rounds fit the budget."""
    if quick:
        return TimingSettings(warmup=1, min_repeats=3, max_repeats=15, budget_seconds=0.1)
    return TimingSettings(warmup=1, min_repeats=5, max_repeats=31, budget_seconds=0.5)


# ---------------------------------------------------------------------------------------------------- worker tasks
def calibration(case: dict, session) -> Iterator[dict]:
    """Task: calibrate the cost model with the worker's pinned threads and FFT backend (not saved to disk)."""
    import fftconv

    if session.backend is not None:
        fftconv.set_backend(session.backend)
    start = time.perf_counter()
    rates = fftconv_api.calibrate()
    yield {"rates": rates, "calibration_s": time.perf_counter() - start}


def grid_passes(case: dict, session) -> Iterator[dict]:
    """Task: time the passes in ``case["todo"]``; an auto worker also records its choice and the estimates."""
    algo = session.parsed["algo"]
    if algo == "auto":
        os.environ["FFTCONV_AUTO"] = AUTO_MODE  # whatever the caller's environment says
        fftconv_api.use_rates(case["rates"])
    functions = points.conv_pass_functions(session, case)
    for subkey in case["todo"]:
        row = session.measure(functions[subkey["pass"]])
        # an auto worker's: the decision the timed calls used (cached by fftconv under the same key)
        row.update(points.run_options(session, case, subkey["pass"]))
        yield {**subkey, **row}


# ---------------------------------------------------------------------------------------------------- analysis
@dataclass
class Comparison:
    """One (geometry, pass): the timed algorithms' medians, auto's median and choice, and the ratios."""

    point: dict
    pass_name: str
    times: dict
    skipped: dict
    auto: float
    choice: str
    estimates: dict
    best_algo: str
    best: float
    auto_ratio: float
    chosen_ratio: float | None
    measure_candidates: list = field(default_factory=list)
    measure_untimed: list = field(default_factory=list)
    measure_pick: str | None = None
    measure_ratio: float | None = None
    model_pick: str | None = None
    model_ratio: float | None = None
    timed_by_auto: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    excluded: dict = field(default_factory=dict)


def point_key(row: dict) -> tuple:
    return points.point_key(row)


def _sort_key(point: dict) -> tuple:
    """Table order: input size, kernel size, stride, channels, batch."""
    return (point["n"], point["k"], point["stride"], point["f"], point["fp"], point["S"], point["seed"])


def measure_mode(estimates: dict, times: dict) -> tuple[list, list, str | None]:
    """Candidates measure mode would time (fftconv's own rule: estimate within ``MEASURE_WINDOW`` of the lowest),
    those of them not timed here, and the fastest of the timed ones by this experiment's medians.

    Examples
    --------
    >>> measure_mode({"fft": 1.0, "im2col": 3.0, "direct": 9.0}, {"fft": 0.5, "im2col": 0.2})
    (['fft', 'im2col'], [], 'im2col')
    """
    to_time = fftconv_api.measure_mode_candidates(estimates)
    candidates = algorithm_order(to_time)
    timed = [algo for algo in candidates if algo in times]
    pick = min(timed, key=times.get) if timed else None
    return candidates, [algo for algo in candidates if algo not in times], pick


def compare(rows: Sequence[dict]) -> tuple[list[Comparison], list[dict]]:
    """Comparisons for every (geometry, pass) with auto and at least one algorithm timed, sorted by geometry (n, k,
    stride, channels, batch) and pass, and the incomplete (geometry, pass) pairs (``{"point", "pass", "why"}``).

    A method timed in several rounds counts with its lowest median.
    """
    order: list[tuple] = []
    by_point: dict[tuple, dict] = {}
    for row in rows:
        if row.get("kind") != "conv" or "pass" not in row or "method" not in row:
            continue
        key = (point_key(row), row["pass"])
        if key not in by_point:
            order.append(key)
            by_point[key] = {"point": points.point_of(row), "times": {}, "skipped": {}, "auto": None}
        entry, algo = by_point[key], method_labels.parse_method(row["method"])["algo"]
        if "median_s" not in row:
            if algo != "auto":
                entry["skipped"].setdefault(algo, row.get("skipped") or row.get("error", "no timing"))
        elif algo == "auto":  # the round with the lowest median (the choice is the same in every round)
            if entry["auto"] is None or row["median_s"] < entry["auto"]["median_s"]:
                entry["auto"] = row
        else:
            entry["times"][algo] = min(row["median_s"], entry["times"].get(algo, math.inf))
    for entry in by_point.values():  # timed in some round: not skipped
        entry["skipped"] = {algo: why for algo, why in entry["skipped"].items() if algo not in entry["times"]}
    comparisons, incomplete = [], []
    order.sort(key=lambda key: (_sort_key(by_point[key]["point"]), points.PASSES.index(key[1])
                                if key[1] in points.PASSES else len(points.PASSES)))
    for key in order:
        entry = by_point[key]
        times, auto = entry["times"], entry["auto"]
        if auto is None or not times:
            why = "auto not timed" if auto is None else "no algorithm timed"
            incomplete.append({"point": entry["point"], "pass": key[1], "why": why})
            continue
        best_algo = min(times, key=times.get)
        best = times[best_algo]
        chosen = times.get(auto["choice"])
        # what the model and measure modes choose between: the candidates auto did not leave out (too inaccurate,
        # too large for memory; older rows record no exclusions)
        eligible = {a: e for a, e in auto["estimates"].items() if a not in auto.get("excluded", {})}
        candidates, untimed, pick = measure_mode(eligible, times)
        model_pick = min(eligible, key=eligible.get)
        comparisons.append(Comparison(
            point=entry["point"], pass_name=key[1], times=dict(times), skipped=dict(entry["skipped"]),
            auto=auto["median_s"], choice=auto["choice"], estimates=dict(auto["estimates"]), best_algo=best_algo,
            best=best, auto_ratio=auto["median_s"] / best, chosen_ratio=None if chosen is None else chosen / best,
            measure_candidates=candidates, measure_untimed=untimed, measure_pick=pick,
            measure_ratio=None if pick is None else times[pick] / best, model_pick=model_pick,
            model_ratio=times[model_pick] / best if model_pick in times else None,
            timed_by_auto=list(auto.get("timed_by_auto", [])), options=dict(auto.get("options") or {}),
            excluded=dict(auto.get("excluded") or {})))
    return comparisons, incomplete


def worst(comparisons: Sequence[Comparison], attribute: str) -> Comparison | None:
    """The comparison with the largest ``attribute`` ratio (``None`` if no comparison has it)."""
    present = [c for c in comparisons if getattr(c, attribute) is not None]
    return max(present, key=lambda c: getattr(c, attribute)) if present else None


def over_target(comparisons: Sequence[Comparison], attribute: str, target: float = TARGET) -> list[Comparison]:
    return [c for c in comparisons if getattr(c, attribute) is not None and getattr(c, attribute) > target]


# ---------------------------------------------------------------------------------------------------- report
def algo_color(algo: str) -> str:
    """The colour of an algorithm, as in every other figure (:func:`experiments.harness.style.method_style`)."""
    return method_style(algo)["color"]


def present_algos(comparisons: Sequence[Comparison]) -> list[str]:
    """The algorithms timed or chosen anywhere in ``comparisons``, in the registry's order."""
    return algorithm_order({a for c in comparisons for a in (*c.times, *c.skipped, c.choice)})
_PASS_MARKERS = {"forward": "o", "input": "^", "weight": "s"}
_RATIO_TICKS = (0.25, 0.5, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
_RATIOS = (("auto_ratio", "auto / best (auto, default hybrid mode, timed in its own worker)"),
           ("chosen_ratio", "auto's chosen algorithm / best (each timed in its own worker)"),
           ("model_ratio", "FFTCONV_AUTO=model pick / best (lowest estimate; from the medians)"),
           ("measure_ratio", "FFTCONV_AUTO=measure pick / best (computed from the medians)"))
_PICKS = {"measure_ratio": "measure_pick", "model_ratio": "model_pick"}


def saved(ctx) -> dict:
    """Rounds, target, auto mode, the slow-call threshold and auto's windows, as stored with the rows (else the
    code's current values, flagged with ``recorded=False``)."""
    stored, recorded = ctx.saved_settings({"rounds": ROUNDS, "target": TARGET, "auto_mode": AUTO_MODE,
                                           "slow_seconds": SLOW_SECONDS, "windows": None, "winners": None})
    if stored["windows"] is None:
        stored["windows"] = fftconv_api.auto_windows()
    return {**stored, "recorded": recorded}


def _prose(pass_name: str) -> str:
    """``"input gradient"`` for ``"input"``: a pass as captions and tables name it."""
    return points.PROSE_NAMES.get(pass_name, pass_name)


def _choice_text(c: Comparison) -> str:
    """auto's choice with its tile, e.g. ``winograd 4x4``."""
    tile = c.options.get("tile")
    return c.choice + (" " + "x".join(str(t) for t in tile) if tile else "")


def _describe_case(c: Comparison | None, attribute: str) -> str:
    if c is None:
        return "none"
    times = ", ".join(f"{a} {fmt_ms(t)} ms" for a, t in sorted(c.times.items(), key=lambda i: i[1]))
    picked = getattr(c, _PICKS.get(attribute, "choice"))
    return (f"**{getattr(c, attribute):.2f}x** at {label(c.point)}, {_prose(c.pass_name)}: picked {picked}, best "
            f"{c.best_algo} ({times}; auto {fmt_ms(c.auto)} ms)")


def _caption(ctx, comparisons, cfg: dict) -> str:
    geometries = {point_key(c.point) for c in comparisons}
    return ctx.describe(f"algo='auto' ({cfg['auto_mode']} mode, rates calibrated on this machine) vs the best of "
                        "fftconv's timed algorithms, float32", f"{len(geometries)} geometries x 3 passes")


def _plot_figure(ctx, comparisons: Sequence[Comparison], cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    target, rounds = cfg["target"], cfg["rounds"]
    fig, grid = plt.subplots(2, 2, figsize=(13.3, 9.4), layout="constrained", sharey=True)
    axes = list(grid.flat)
    for ax, (attribute, title) in zip(axes, _RATIOS):
        present = sorted((c for c in comparisons if getattr(c, attribute) is not None),
                         key=lambda c: getattr(c, attribute))
        picked = (lambda c, name=_PICKS.get(attribute, "choice"): getattr(c, name))
        for rank, c in enumerate(present):
            ax.scatter(rank, getattr(c, attribute), s=22, marker=_PASS_MARKERS.get(c.pass_name, "o"),
                       color=algo_color(picked(c)), edgecolors="none")
        ax.axhline(target, color="#d62728", linestyle="--", linewidth=1.2)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator(_RATIO_TICKS))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
        ax.yaxis.set_minor_locator(NullLocator())
        if present:
            last = present[-1]
            ax.annotate(f"{label(last.point)}\n{_prose(last.pass_name)}", (len(present) - 1, getattr(last, attribute)),
                        xytext=(-8, 0), textcoords="offset points", ha="right", va="center", fontsize=9)
        ax.set_xlabel("(geometry, pass), sorted by ratio", fontsize=10)
        above = len(over_target(present, attribute, target))
        ax.set_title(f"{title}\n{above} of {len(present)} above {target}x", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3, which="both")
    for ax in axes[::2]:
        ax.set_ylabel(f"time / best timed algorithm's time\n(medians; the lower of {rounds} rounds)", fontsize=10)
    handles = [Line2D([], [], linestyle="", marker="o", color=color, label=f"picked {algo}")
               for algo, color in ((a, algo_color(a)) for a in present_algos(comparisons))]
    handles += [Line2D([], [], linestyle="", marker=marker, color="black", label=_prose(name))
                for name, marker in _PASS_MARKERS.items()]
    handles.append(Line2D([], [], color="#d62728", linestyle="--", label=f"target {target}x"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=10)
    fig.suptitle(_caption(ctx, comparisons, cfg), fontsize=11)
    save_figure(fig, ctx.out_dir, "auto_grid")
    plt.close(fig)


def _misses_section(comparisons: Sequence[Comparison], target: float) -> str:
    misses = sorted({id(c): c for attribute in ("auto_ratio", "chosen_ratio")
                     for c in over_target(comparisons, attribute, target)}.values(), key=lambda c: -c.auto_ratio)
    if not misses:
        return f"No (geometry, pass) has auto or its choice more than {target}x slower than the best.\n"
    rows = []
    algos = present_algos(comparisons)
    for c in misses:
        cells = [label(c.point), _prose(c.pass_name), _choice_text(c), c.best_algo, f"{c.auto_ratio:.2f}x",
                 "-" if c.chosen_ratio is None else f"{c.chosen_ratio:.2f}x"]
        for algo in algos:
            estimate, measured = c.estimates.get(algo), c.times.get(algo)
            cells.append(f"{fmt_ms(estimate)} / {fmt_ms(measured)}"
                         + (f" ({measured / estimate:.1f}x)" if estimate and measured else ""))
        rows.append(cells)
    return ("Model estimate / measured median in ms per candidate (in parentheses: measured over estimated, i.e. "
            "how much slower the candidate ran than the model said). A miss where the chosen algorithm was also "
            "the fastest (chosen/best 1.00x) is run-to-run noise between workers, not a model error.\n\n"
            + markdown_table(["geometry", "pass", "auto chose", "best", "auto/best", "chosen/best",
                              *(f"{a} est / measured" for a in algos)], rows))


def _model_error_table(comparisons: Sequence[Comparison]) -> str:
    rows = []
    for algo in present_algos(comparisons):
        for pass_name in points.PASSES:
            factors = sorted(c.times[algo] / c.estimates[algo] for c in comparisons
                             if c.pass_name == pass_name and algo in c.times and c.estimates.get(algo))
            if factors:
                rows.append([algo, _prose(pass_name), len(factors), f"{factors[0]:.2g}x",
                             f"{factors[len(factors) // 2]:.2g}x", f"{factors[-1]:.3g}x"])
    return markdown_table(["algorithm", "pass", "points", "min", "median", "max"], rows)


def report(ctx, comparisons: Sequence[Comparison], incomplete: Sequence[dict], rates: dict | None,
           cfg: dict) -> str:
    rounds, target, auto_mode, slow_seconds = cfg["rounds"], cfg["target"], cfg["auto_mode"], cfg["slow_seconds"]
    hybrid_window, hybrid_max_seconds = cfg["windows"]["hybrid_window"], cfg["windows"]["hybrid_max_seconds"]
    measure_window = cfg["windows"]["measure_window"]
    close_window, close_max = (cfg["windows"].get(key) for key in ("hybrid_close_window", "hybrid_close_max_seconds"))
    close = (f", or within {close_window:g}x and under {close_max * 1e3:g} ms" if close_window is not None else "")
    lines = [f"# algo='auto' on a grid of geometries ({ctx.mode} mode)", "", _caption(ctx, comparisons, cfg), "",
             ctx.provenance_note().strip(), ""]
    if not cfg["recorded"]:
        lines += ["The settings (rounds, target, auto's windows) were not stored with these rows; the code's current "
                  "values are used.", ""]
    lines += [
        f"Per (geometry, pass): each algorithm's median time (the lower of the medians of {rounds} rounds, each "
        f"in its own worker process), what `auto` ({auto_mode} mode, fftconv's default) chose, and ratios to the "
        f"best of the algorithms timed here: {', '.join(f'`{a}`' for a in present_algos(comparisons))} "
        "(fftconv's registry), `direct` only where it is cheap (it is a slow float64 reference) and each only "
        "where it can run the geometry (elsewhere '-' and a reason in the results). So 'best' is the best of the "
        "algorithms timed, not of all algorithms.", "",
        "- `auto/best`: the `auto` worker's median over the best median (the speed target's criterion; it includes "
        "run-to-run noise between worker processes, so it can be below 1).",
        "- `chosen/best`: the chosen algorithm's median from its own worker over the best (the decision's "
        f"quality). In hybrid mode the model decides alone unless its estimates are within {hybrid_window:g}x of "
        f"each other and the problem is small (lowest estimate under {hybrid_max_seconds * 1e3:g} ms){close}; "
        "then auto times those candidates once.",
        "- `model`: what `FFTCONV_AUTO=model` picks (the lowest estimate among the candidates auto did not leave "
        "out for accuracy or memory, nothing timed), judged by the medians measured here.",
        f"- `measure`: what `FFTCONV_AUTO=measure` would pick: among the candidates whose model estimate is within "
        f"{measure_window:g}x of the lowest (the estimates the auto worker recorded), the one with the lowest "
        "median measured here; no extra timing. Measure mode itself times them once per geometry (best of 5 "
        "interleaved rounds).", ""]
    lines.append("## Summary")
    lines.append("")
    if not comparisons:
        lines.append("No complete (geometry, pass) yet.")
    for attribute, title in _RATIOS:
        present = [getattr(c, attribute) for c in comparisons if getattr(c, attribute) is not None]
        if not present:
            continue
        above = over_target(comparisons, attribute, target)
        slow = [c for c in comparisons if c.best >= slow_seconds and getattr(c, attribute) is not None]
        lines.append(f"- {title}: worst {_describe_case(worst(comparisons, attribute), attribute)}; "
                     f"median {sorted(present)[len(present) // 2]:.2f}x; {len(above)} of {len(present)} above "
                     f"{target}x ({len(over_target(slow, attribute, target))} of the {len(slow)} whose best time is at "
                     f"least {slow_seconds * 1e3:g} ms)")
    if comparisons:
        agree = sum(c.choice == c.best_algo for c in comparisons)
        lines.append(f"- auto chose the fastest timed algorithm in {agree} of {len(comparisons)} (geometry, pass); it "
                     f"timed candidates itself (hybrid mode) in {sum(bool(c.timed_by_auto) for c in comparisons)}.")
        winners = {a: sum(c.best_algo == a for c in comparisons) for a in present_algos(comparisons)}
        chosen = {a: sum(c.choice == a for c in comparisons) for a in present_algos(comparisons)}
        lines.append("- fastest timed: " + ", ".join(f"{a} {n}" for a, n in winners.items())
                     + "; auto chose: " + ", ".join(f"{a} {n}" for a, n in chosen.items()) + ".")
        untimed = [c for c in comparisons if c.measure_untimed]
        if untimed:
            lines.append(f"- measure mode would also time {', '.join(sorted({a for c in untimed for a in c.measure_untimed}))} "
                         f"at {len(untimed)} (geometry, pass) where this experiment did not; left out there.")
    if incomplete:
        lines.append(f"- {len(incomplete)} (geometry, pass) incomplete (e.g. {label(incomplete[0]['point'])}, "
                     f"{incomplete[0]['pass']}: {incomplete[0]['why']}).")
    lines.append("")
    if rates:
        lines += ["## Rates the model used (calibrated in a worker with the same threads)", "",
                  markdown_table(["fft GFLOP/s", "complex GEMM GFLOP/s", "real GEMM GFLOP/s", "copy GB/s",
                                  "direct GFLOP/s", "source"],
                                 [[f"{rates['fft_flops'] / 1e9:.1f}", f"{rates['complex_gemm_flops'] / 1e9:.1f}",
                                   f"{rates['real_gemm_flops'] / 1e9:.1f}", f"{rates['copy_bytes'] / 1e9:.2f}",
                                   f"{rates['direct_flops'] / 1e9:.2f}", rates.get("source", "")]])]
    lines += ["## How far the model's estimates are from the measured times", "",
              "Measured median over the model's estimate (this machine's rates), per algorithm and pass, over the "
              "grid: the model needs the right ratio between algorithms, not the right absolute time, but a spread "
              "between algorithms is what makes it pick the wrong one.", "", _model_error_table(comparisons)]
    lines += [f"## Where auto or its choice is more than {target}x slower than the best", "",
              _misses_section(comparisons, target), "## Every (geometry, pass)", ""]
    algos = present_algos(comparisons)
    header = ["S", "f -> f'", "n", "k", "stride", "pass", *(f"{a} ms" for a in algos), "auto ms",
              "auto chose", "auto timed", "best", "auto/best", "chosen/best", "model pick", "model/best",
              "measure pick", "measure/best"]
    rows = []
    for c in comparisons:
        p = c.point
        rows.append([p["S"], f"{p['f']} -> {p['fp']}", p["n"], p["k"], p["stride"], _prose(c.pass_name),
                     *(fmt_ms(c.times.get(a)) for a in algos), fmt_ms(c.auto), _choice_text(c),
                     ", ".join(c.timed_by_auto) or "-", c.best_algo, f"{c.auto_ratio:.2f}",
                     "-" if c.chosen_ratio is None else f"{c.chosen_ratio:.2f}", c.model_pick or "-",
                     "-" if c.model_ratio is None else f"{c.model_ratio:.2f}",
                     c.measure_pick or "-", "-" if c.measure_ratio is None else f"{c.measure_ratio:.2f}"])
    lines.append(markdown_table(header, rows))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- winners
@dataclass
class Cell:
    """One point of a winners block: each algorithm's seconds per pass and for the step (the three passes summed;
    only for an algorithm timed in all three), and the fastest with its margin over the next (``None``: fewer than
    two algorithms timed)."""

    point: dict
    seconds: dict  # pass or "step" -> {algo: seconds}

    def winner(self, what: str) -> tuple[str | None, float | None]:
        times = self.seconds.get(what, {})
        if not times:
            return None, None
        ranked = sorted(times, key=times.get)
        return ranked[0], (times[ranked[1]] / times[ranked[0]] if len(ranked) > 1 else None)


STEP = "step"


def algorithm_methods(rows: Sequence[dict]) -> dict[str, str]:
    """The method label of each timed algorithm in ``rows`` (``"fft"`` -> ``"fft-pyfftw"``), auto left out."""
    labels = {row["method"] for row in rows if row.get("kind") == "conv" and "method" in row}
    return {method_labels.parse_method(m)["algo"]: m for m in sorted(labels)
            if method_labels.parse_method(m)["algo"] not in ("auto", None)}


def winner_cells(rows: Sequence[dict], block_points: Sequence[dict]) -> list[Cell]:
    """Each algorithm's times at ``block_points`` (the lowest median of the rounds), from the timed rows."""
    results = points.ConvResults([row for row in rows if row.get("kind") == "conv"])
    labels = algorithm_methods(rows)
    cells = []
    for point in block_points:
        seconds: dict = {p: {} for p in (*points.PASSES, STEP)}
        for algo, method in labels.items():
            for pass_name in points.PASSES:
                value = results.seconds(point, method, pass_name)
                if value is not None:
                    seconds[pass_name][algo] = value
            total = results.total(point, method)
            if total is not None:
                seconds[STEP][algo] = total
        cells.append(Cell(point, seconds))
    return cells


def _panel_title(what: str) -> str:
    return "training step (three passes)" if what == STEP else _prose(what)


def _plot_winners(ctx, rows: Sequence[dict], winners: dict) -> str:
    """The winners figure (map of the fastest algorithm over (k, n), time against the channel count) and its
    markdown section."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    block, sweep = winners["map"], winners["channels"]
    method_of = algorithm_methods(rows)

    def color(algo: str) -> str:
        return method_style(method_of.get(algo, algo))["color"]

    cells = winner_cells(rows, map_points(winners))
    sweeps = winner_cells(rows, channel_points(winners))
    if not any(c.seconds[STEP] for c in cells + sweeps):
        return "No timed rows of the winners blocks yet.\n"
    whats = (STEP, *points.PASSES)
    algos = algorithm_order({a for c in cells + sweeps for times in c.seconds.values() for a in times})
    fig, grid = plt.subplots(2, 4, figsize=(13.3, 8.4), layout="constrained")
    by_kn = {(c.point["k"], c.point["n"]): c for c in cells}
    ks, ns = list(block["k"]), list(block["n"])
    for ax, what in zip(grid[0], whats):
        image = np.ones((len(ns), len(ks), 3))
        for (k, n), cell in by_kn.items():
            algo, margin = cell.winner(what)
            if algo is None:
                continue
            rgb = matplotlib.colors.to_rgb(color(algo))
            image[ns.index(n), ks.index(k)] = rgb
            dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.55
            ax.text(ks.index(k), ns.index(n), f"{algo}\n{margin:.2f}x" if margin else algo, ha="center",
                    va="center", fontsize=6.5, color="white" if dark else "black")
        ax.imshow(image, origin="lower", aspect="auto")
        ax.set_xticks(range(len(ks)), ks)
        ax.set_yticks(range(len(ns)), ns)
        ax.set_xlabel("kernel size k")
        ax.set_ylabel("input size n")
        ax.set_title(f"fastest, {_panel_title(what)}\n(runner-up's time / fastest's)", fontsize=9)
    styles = ("-", "--", ":")
    for ax, what in zip(grid[1], whats):
        for style, k in zip(styles, sweep["k"]):
            line_cells = [c for c in sweeps if c.point["k"] == k]
            for algo in algos:
                marks = [(c.point["f"], c.seconds[what][algo] * 1e3) for c in line_cells if algo in c.seconds[what]]
                if marks:
                    ax.plot(*zip(*marks), linestyle=style, marker="o", markersize=3, color=color(algo),
                            label=f"{algo}, k={k}")
        ax.set(xscale="log", yscale="log", xlabel="channels f = f'", ylabel="ms (median)")
        ax.xaxis.set_major_locator(FixedLocator(sorted(sweep["channels"])))
        ax.xaxis.set_minor_locator(NullLocator())
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25"
                                                   else ""))
        ax.tick_params(which="both", labelsize=7)
        ax.set_title(f"{_panel_title(what)}, n={sweep['n']}, S={sweep['S']}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    if len(sweep["k"]) > 1:
        grid[1][0].legend(fontsize=6)
    handles = [Patch(color=color(a), label=method_style(method_of.get(a, a))["label"]) for a in algos]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.suptitle(ctx.describe("Which of fftconv's algorithms is fastest, float32, stride 1, no padding: over (k, n) "
                              f"at {block['channels']} -> {block['channels']} maps, and against the channel count",
                              f"batch S={block['S']}"), fontsize=10)
    save_figure(fig, ctx.out_dir, "auto_grid_winners")
    plt.close(fig)
    return _winners_tables(cells, sweeps, block, sweep, algos)


def _winners_tables(cells: list[Cell], sweeps: list[Cell], block: dict, sweep: dict, algos: list[str]) -> str:
    by_kn = {(c.point["k"], c.point["n"]): c for c in cells}
    body = []
    for n in block["n"]:
        line = [n]
        for k in block["k"]:
            cell = by_kn.get((k, n))
            algo, margin = cell.winner(STEP) if cell else (None, None)
            line.append("-" if algo is None else f"{algo}" + (f" ({margin:.2f}x)" if margin else ""))
        body.append(line)
    text = (f"Figure: `auto_grid_winners.png`. The fastest algorithm for a training step (the three passes summed; "
            f"in brackets the runner-up's time over the fastest's), S={block['S']}, {block['channels']} -> "
            f"{block['channels']} maps, stride 1, no padding; rows n, columns k:\n\n"
            + markdown_table(["n \\ k", *block["k"]], body))
    body = []
    for cell in sweeps:
        algo, margin = cell.winner(STEP)
        body.append([cell.point["k"], cell.point["f"], *(fmt_ms(cell.seconds[STEP].get(a)) for a in algos),
                     "-" if algo is None else algo + (f" ({margin:.2f}x)" if margin else "")])
    text += (f"\nTraining step in ms against the channel count f = f', n={sweep['n']}, S={sweep['S']}:\n\n"
             + markdown_table(["k", "f = f'", *(f"{a} ms" for a in algos), "fastest"], body))
    return text


def plot(ctx) -> None:
    rows = ctx.rows()
    cfg = saved(ctx)
    comparisons, incomplete = compare(rows)
    calibration = calibration_row(rows)
    _plot_figure(ctx, comparisons, cfg)
    text = report(ctx, comparisons, incomplete, calibration["rates"] if calibration else None, cfg)
    if cfg["winners"] is not None:
        text += "\n## Which algorithm wins where\n\n" + _plot_winners(ctx, rows, cfg["winners"])
    else:
        text += ("\n## Which algorithm wins where\n\nThese rows were measured before the grid had its fixed-channel "
                 "blocks; measure again for the winners figure.\n")
    write_table(ctx.out_dir, "auto_grid", text)
