"""Is ``algo="auto"`` ever more than 1.25x slower than the best of fftconv's algorithms (the speed target)?

On a grid of 2-d geometries that varies the input size n, the kernel size k, the channels (f -> f'), the batch S and
the stride, this experiment times every pass (forward, input gradient, weight gradient; float32, no padding) with
fftconv's ``algo="fft"`` (default FFT backend), ``algo="im2col"``, ``algo="direct"`` where it is cheap (it is a
slow float64 reference; elsewhere a row says why it was skipped) and ``algo="auto"`` in its default hybrid mode. The
comparison is against the best of the algorithms actually timed at that point.

**Calibration.** Before any timing, a worker with the same pinned threads as the others runs
:func:`fftconv.calibrate` (``save=False``: the user's saved rates are left alone). The rates are stored in the
results file (resuming reuses them); every ``auto`` worker installs them and sets ``FFTCONV_AUTO=hybrid`` (the
default, whatever the caller's environment says): the model decides, except where its estimates are within 4x of
each other and the problem is small, where auto times those candidates once (in the warm-up call, which is not
timed). Each ``auto`` row records the choice, the model's estimate of every candidate and what auto timed.

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
- ``model/best``: what ``FFTCONV_AUTO=model`` picks (the lowest estimate; nothing timed), judged by the medians here.
- ``measure/best``: what ``FFTCONV_AUTO=measure`` would pick, computed without extra timing. Measure mode times the
  candidates whose model estimate is within 4x of the lowest (fftconv's own rule, through
  :func:`experiments.harness.fftconv_api.measure_mode_candidates`) and keeps the fastest. Here the estimates are those the ``auto`` worker
  recorded, and "fastest" uses this experiment's medians of those candidates instead of measure mode's own
  best-of-3, so the ratio is that of an ideal measurement. A candidate in the window that this experiment did not
  time (``direct`` where it was too slow) is listed and left out.

**Grid.** ``n in {8, 16, 32, 64}``, ``k in {1, 3, 5, 7, 11}`` and ``k = n`` (only ``k <= n``), channels
``(3, 16), (16, 32), (64, 64), (128, 128)``, ``S in {1, 8, 32}``, stride ``{1, 2}``.

- Quick mode (58 geometries): every (n, k, stride) cell once (46 cells), with its (channels, batch) drawn in a
  seeded order per cell, the first whose estimated cost is under ``QUICK_CAP_SECONDS``; plus a block in the
  regime where many maps make the FFT's transform reuse pay (n in {16, 32}, k in {5, 7, 11}, channels (64, 64) and
  (128, 128), S = 8, stride 1; 12 geometries).
- Full mode: every combination whose estimated cost is under ``FULL_CAP_SECONDS``, plus the quick grid.

The cost used to keep the run short is the model's estimate with the documented default rates (not this machine's,
so the grid does not depend on the machine): the sum over passes of the fft and im2col estimates plus the lower of
them, about what one timed call of each method costs.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from .harness import fftconv_api, methods as method_labels, points
from .harness.jobs import Job, measure_jobs
from .harness.results import missing_fields
from .harness.style import fmt_ms, markdown_table, save_figure, write_table
from .harness.timing import TimingSettings

NAME = "auto_grid"
DESCRIPTION = "algo='auto' (hybrid mode, model calibrated here) vs the best of fft/im2col/direct on a 2-d grid"

INPUT_SIZES = (8, 16, 32, 64)
KERNEL_SIZES = (1, 3, 5, 7, 11)  # and k = n
CHANNELS = ((3, 16), (16, 32), (64, 64), (128, 128))
BATCHES = (1, 8, 32)
STRIDES = (1, 2)
#: Geometries where many maps make the FFT method's transform reuse pay, added to the quick grid.
FFT_REGIME = {"n": (16, 32), "k": (5, 7, 11), "channels": ((64, 64), (128, 128)), "S": 8, "stride": 1}
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
ALGOS = ("fft", "im2col", "direct")
#: Geometries timed by one set of workers (one per method) before the next set starts.
CHUNK = 6
#: Every (geometry, method, pass) is timed this many times, in different worker processes at different moments;
#: the lowest median is kept. The machine has transient slowdowns lasting seconds (the same im2col measurement in
#: six processes in a row agreed to 3 % except for bursts up to 2x); one round cannot tell them from the method.
ROUNDS = 2


# ---------------------------------------------------------------------------------------------------- the grid
def grid_point(S: int, f: int, fp: int, n: int, k: int, stride: int, seed: int = 0) -> dict:
    """One geometry in the shared point format (batch ``S``, ``f -> fp`` maps, ``n x n`` input, ``k x k`` kernel,
    ``stride``, no padding), tagged ``kind="conv"`` to tell it from the calibration row."""
    if not 1 <= k <= n:
        raise ValueError(f"kernel size k={k} must be between 1 and the input size n={n}")
    return {"kind": "conv", **points.conv_point(S, f, fp, n, k, stride=stride, seed=seed)}


def output_size(point: dict) -> int:
    return (point["n"] - point["k"]) // point["stride"] + 1


def kernel_sizes(n: int) -> list[int]:
    """``KERNEL_SIZES`` that fit ``n``, and ``n`` itself."""
    return sorted({k for k in KERNEL_SIZES if k <= n} | {n})


def estimated_cost(point: dict) -> float:
    """Seconds one timed call of fft, im2col and auto would take by the model with the default rates."""
    total = 0.0
    for pass_name in points.PASSES:
        estimates = fftconv_api.estimates(point, pass_name)
        total += estimates["fft"] + estimates["im2col"] + min(estimates["fft"], estimates["im2col"])
    return total


def quick_grid() -> list[dict]:
    """Each (n, k, stride) cell once with a seeded (channels, batch) under the cap, then the FFT-regime block."""
    combinations = [(channels, batch) for channels in CHANNELS for batch in BATCHES]
    points = []
    for n in INPUT_SIZES:
        for k in kernel_sizes(n):
            for stride in STRIDES:
                # A string seed is hashed with SHA-512: the same order in every process and Python version.
                order = random.Random(f"auto_grid {n} {k} {stride}").sample(combinations, len(combinations))
                for (f, fp), batch in order:
                    point = grid_point(batch, f, fp, n, k, stride)
                    if estimated_cost(point) <= QUICK_CAP_SECONDS:
                        points.append(point)
                        break
    for n in FFT_REGIME["n"]:
        for k in FFT_REGIME["k"]:
            for f, fp in FFT_REGIME["channels"]:
                point = grid_point(FFT_REGIME["S"], f, fp, n, k, FFT_REGIME["stride"])
                if point not in points:
                    points.append(point)
    return points


def full_grid() -> list[dict]:
    """Every combination under ``FULL_CAP_SECONDS``, plus the quick grid (so full mode contains quick mode)."""
    points = [grid_point(batch, f, fp, n, k, stride)
              for n in INPUT_SIZES for k in kernel_sizes(n) for stride in STRIDES
              for f, fp in CHANNELS for batch in BATCHES]
    points = [p for p in points if estimated_cost(p) <= FULL_CAP_SECONDS]
    return points + [p for p in quick_grid() if p not in points]


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


def label(point: dict) -> str:
    return points.label(point)


# ---------------------------------------------------------------------------------------------------- measuring
def add_arguments(parser) -> None:
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="measure only the first N geometries of the grid (smoke runs)")


def methods(ctx) -> tuple[list[str], str]:
    """The timed algorithms' labels and auto's label; fft and auto use the same FFT backend."""
    import fftconv

    algos = ctx.selected("algos", ALGOS)
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


def measure(ctx) -> None:
    timed, auto = methods(ctx)
    ctx.record_settings(rounds=ROUNDS, target=TARGET, auto_mode=AUTO_MODE, slow_seconds=SLOW_SECONDS,
                        windows=fftconv_api.auto_windows())
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
            # The methods of a few geometries are timed within seconds of each other, in an order that rotates
            # from chunk to chunk and round to round, so that no method is always timed last.
            shift = (index + 2 * round_) % len(every)
            jobs = []
            for method in every[shift:] + every[:shift]:
                for point in chunk:
                    skip = direct_skip_reason(point, ctx.quick) if method == "direct" else None
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
    import numpy as np

    algo = session.parsed["algo"]
    if algo == "auto":
        os.environ["FFTCONV_AUTO"] = AUTO_MODE  # whatever the caller's environment says
        fftconv_api.use_rates(case["rates"])
    functions = points.conv_pass_functions(session, case)
    for subkey in case["todo"]:
        row = session.measure(functions[subkey["pass"]])
        if algo == "auto":  # the decision the timed calls used (cached by fftconv under the same key)
            row.update(fftconv_api.auto_decision(case, subkey["pass"], np.float32, session.backend))
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
    candidates = [algo for algo in ALGOS if algo in to_time]
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
        candidates, untimed, pick = measure_mode(auto["estimates"], times)
        model_pick = min(auto["estimates"], key=auto["estimates"].get)
        comparisons.append(Comparison(
            point=entry["point"], pass_name=key[1], times=dict(times), skipped=dict(entry["skipped"]),
            auto=auto["median_s"], choice=auto["choice"], estimates=dict(auto["estimates"]), best_algo=best_algo,
            best=best, auto_ratio=auto["median_s"] / best, chosen_ratio=None if chosen is None else chosen / best,
            measure_candidates=candidates, measure_untimed=untimed, measure_pick=pick,
            measure_ratio=None if pick is None else times[pick] / best, model_pick=model_pick,
            model_ratio=times[model_pick] / best if model_pick in times else None,
            timed_by_auto=list(auto.get("timed_by_auto", []))))
    return comparisons, incomplete


def worst(comparisons: Sequence[Comparison], attribute: str) -> Comparison | None:
    """The comparison with the largest ``attribute`` ratio (``None`` if no comparison has it)."""
    present = [c for c in comparisons if getattr(c, attribute) is not None]
    return max(present, key=lambda c: getattr(c, attribute)) if present else None


def over_target(comparisons: Sequence[Comparison], attribute: str, target: float = TARGET) -> list[Comparison]:
    return [c for c in comparisons if getattr(c, attribute) is not None and getattr(c, attribute) > target]


# ---------------------------------------------------------------------------------------------------- report
_CHOICE_COLORS = {"fft": "#1b9e3e", "im2col": "#ff7f0e", "direct": "#7f7f7f"}
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
                                           "slow_seconds": SLOW_SECONDS, "windows": None})
    if stored["windows"] is None:
        stored["windows"] = fftconv_api.auto_windows()
    return {**stored, "recorded": recorded}


def _prose(pass_name: str) -> str:
    """``"input gradient"`` for ``"input"``: a pass as captions and tables name it."""
    return points.PROSE_NAMES.get(pass_name, pass_name)


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
                       color=_CHOICE_COLORS.get(picked(c), "#9467bd"), edgecolors="none")
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
               for algo, color in _CHOICE_COLORS.items()]
    handles += [Line2D([], [], linestyle="", marker=marker, color="black", label=name)
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
    for c in misses:
        cells = [label(c.point), _prose(c.pass_name), c.choice, c.best_algo, f"{c.auto_ratio:.2f}x",
                 "-" if c.chosen_ratio is None else f"{c.chosen_ratio:.2f}x"]
        for algo in ALGOS:
            estimate, measured = c.estimates.get(algo), c.times.get(algo)
            cells.append(f"{fmt_ms(estimate)} / {fmt_ms(measured)}"
                         + (f" ({measured / estimate:.1f}x)" if estimate and measured else ""))
        rows.append(cells)
    return ("Model estimate / measured median in ms per candidate (in parentheses: measured over estimated, i.e. "
            "how much slower the candidate ran than the model said). A miss where the chosen algorithm was also "
            "the fastest (chosen/best 1.00x) is run-to-run noise between workers, not a model error.\n\n"
            + markdown_table(["geometry", "pass", "auto chose", "best", "auto/best", "chosen/best",
                              *(f"{a} est / measured" for a in ALGOS)], rows))


def _model_error_table(comparisons: Sequence[Comparison]) -> str:
    rows = []
    for algo in ALGOS:
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
    lines = [f"# algo='auto' on a grid of geometries ({ctx.mode} mode)", "", _caption(ctx, comparisons, cfg), "",
             ctx.provenance_note().strip(), ""]
    if not cfg["recorded"]:
        lines += ["The settings (rounds, target, auto's windows) were not stored with these rows; the code's current "
                  "values are used.", ""]
    lines += [
        f"Per (geometry, pass): each algorithm's median time (the lower of the medians of {rounds} rounds, each "
        f"in its own worker process), what `auto` ({auto_mode} mode, fftconv's default) chose, and ratios to the "
        "best of the algorithms timed here: fftconv's `fft` and `im2col`, and `direct` only where it is cheap "
        "(it is a slow float64 reference; elsewhere '-' and a skip reason in the results). So 'best' is the best "
        "of the algorithms timed, not of all algorithms.", "",
        "- `auto/best`: the `auto` worker's median over the best median (the speed target's criterion; it includes "
        "run-to-run noise between worker processes, so it can be below 1).",
        "- `chosen/best`: the chosen algorithm's median from its own worker over the best (the decision's "
        f"quality). In hybrid mode the model decides alone unless its estimates are within {hybrid_window:g}x of "
        f"each other and the problem is small (lowest estimate under {hybrid_max_seconds * 1e3:g} ms); then auto "
        "times those candidates once.",
        "- `model`: what `FFTCONV_AUTO=model` picks (the lowest estimate, nothing timed), judged by the medians "
        "measured here.",
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
        winners = {a: sum(c.best_algo == a for c in comparisons) for a in ALGOS}
        chosen = {a: sum(c.choice == a for c in comparisons) for a in ALGOS}
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
    header = ["S", "f -> f'", "n", "k", "stride", "pass", "fft ms", "im2col ms", "direct ms", "auto ms",
              "auto chose", "auto timed", "best", "auto/best", "chosen/best", "model pick", "model/best",
              "measure pick", "measure/best"]
    rows = []
    for c in comparisons:
        p = c.point
        rows.append([p["S"], f"{p['f']} -> {p['fp']}", p["n"], p["k"], p["stride"], _prose(c.pass_name),
                     *(fmt_ms(c.times.get(a)) for a in ALGOS), fmt_ms(c.auto), c.choice,
                     ", ".join(c.timed_by_auto) or "-", c.best_algo, f"{c.auto_ratio:.2f}",
                     "-" if c.chosen_ratio is None else f"{c.chosen_ratio:.2f}", c.model_pick or "-",
                     "-" if c.model_ratio is None else f"{c.model_ratio:.2f}",
                     c.measure_pick or "-", "-" if c.measure_ratio is None else f"{c.measure_ratio:.2f}"])
    lines.append(markdown_table(header, rows))
    return "\n".join(lines)


def plot(ctx) -> None:
    rows = ctx.rows()
    cfg = saved(ctx)
    comparisons, incomplete = compare(rows)
    calibration = calibration_row(rows)
    _plot_figure(ctx, comparisons, cfg)
    write_table(ctx.out_dir, "auto_grid", report(ctx, comparisons, incomplete,
                                                 calibration["rates"] if calibration else None, cfg))
