"""How fftconv's defaults were chosen: FFT backend x FFT size policy, timed on full training steps, with intervals.

For each point, one training step (forward + input gradient + weight gradient, ``algo="fft"``) is timed for every
installed backend (one worker process each) under each size policy: ``"minimal"`` (the smallest exact size),
``"fast"`` (next ``2^a 3^b 5^c 7^d``) and ``"pow2"`` (the paper's next power of two). The points are the paper's
five layers plus input sizes where the policies differ (27, 29, 52: prime-ish, smooth and between powers of two).

Noise: every cell is timed in :data:`ROUNDS` rounds, each in new worker processes, the backends' order rotating.
The table reports, per point, each cell's time over the best cell's with a 95 % interval from a hierarchical
bootstrap (rounds drawn with replacement, then each drawn round's calls with replacement; :func:`bootstrap_medians`).
The rule: a cell whose interval contains 1 is "within noise" of the best (marked ``~``); only cells whose interval
lies above 1 are called slower. Whole settings (a backend with a policy) are compared by the geometric mean of their
ratios over the points, with paired intervals, by the same rule.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

from .harness import points
from .harness.jobs import Job, measure_jobs
from .harness.results import missing_fields
from .harness.style import markdown_table, write_table
from .harness.timing import TimingSettings

NAME = "defaults"
DESCRIPTION = "FFT backend x FFT size policy on full training steps, with bootstrap intervals: how the defaults were chosen"
POLICIES = ("minimal", "fast", "pow2")
#: Rounds of every cell, each in new worker processes (process-to-process variation is part of the noise).
ROUNDS = 3
#: Bootstrap resamples and the interval's coverage.
DRAWS = 1000
LEVEL = 0.95


def grid(quick: bool) -> list[dict]:
    batch = 8 if quick else 32
    layers = [(11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (3, 16, 384, 384)]
    odd_sizes = [(5, 27, 32, 64), (5, 29, 32, 64), (7, 52, 32, 64)]
    return [points.conv_point(batch, f, fp, n, k) for k, n, f, fp in layers + odd_sizes]


def timing_settings(quick: bool) -> TimingSettings:
    """Per round: a few calls (the rounds supply the spread); full mode takes more."""
    return TimingSettings(warmup=1, min_repeats=3, max_repeats=5, budget_seconds=0.2) if quick else \
        TimingSettings(warmup=1, min_repeats=5, max_repeats=11, budget_seconds=1.0)


def step_task(case: dict, session) -> Iterator[dict]:
    """Worker task: time one training step per FFT size policy listed in ``case["todo"]``."""
    import fftconv

    arrays = points.conv_inputs(case)
    x, w, gy = arrays["x"], arrays["w"], arrays["gy"]
    for subkey in case["todo"]:
        options = {"algo": "fft", "backend": session.backend, "fft_size": subkey["fft_size"]}

        def step():
            fftconv.conv2d(x, w, **options)
            fftconv.conv2d_input(x.shape, w, gy, **options)
            fftconv.conv2d_weight(x, w.shape, gy, **options)

        geometry = fftconv.ConvGeometry.from_shapes(x.shape, w.shape)
        yield {**subkey, **session.measure(step),
               "fft_shape": list(fftconv.fft_shape_for(geometry, subkey["fft_size"]))}


def validate(row: dict) -> str | None:
    problem = points.validate(row, subkey="fft_size")
    if problem or "median_s" not in row:
        return problem
    return missing_fields(row, "samples_s", "fft_shape")


def measure(ctx) -> None:
    import fftconv

    backends = list(getattr(ctx.options, "backends", None) or fftconv.available_backends())
    ctx.record_settings(rounds=ROUNDS, policies=list(POLICIES))
    for round_ in range(ROUNDS):
        shift = round_ % len(backends)
        order = backends[shift:] + backends[:shift]  # no backend always first
        jobs = [Job(f"fft-{backend}", dict(point), [{"fft_size": p, "round": round_} for p in POLICIES],
                    case=dict(point)) for backend in order for point in grid(ctx.quick)]
        measure_jobs(ctx, jobs, "experiments.defaults:step_task", timing_settings(ctx.quick),
                     desc=f"defaults round {round_ + 1}/{ROUNDS}")


# ---------------------------------------------------------------------------------------------------- statistics
def bootstrap_medians(rounds: Sequence[Sequence[float]], draws: int = DRAWS, seed: int = 0):
    """Medians of hierarchical resamples: rounds with replacement, then each drawn round's calls with replacement.

    Examples
    --------
    >>> medians = bootstrap_medians([[1.0, 1.0, 1.0]], draws=5)
    >>> medians.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(r, dtype=float) for r in rounds]
    picks = rng.integers(0, len(arrays), size=(draws, len(arrays)))
    out = np.empty(draws)
    for draw, chosen in enumerate(picks):
        pooled = np.concatenate([arrays[j][rng.integers(0, len(arrays[j]), len(arrays[j]))] for j in chosen])
        out[draw] = np.median(pooled)
    return out


def interval(values, level: float = LEVEL) -> tuple[float, float]:
    import numpy as np

    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def verdict(low: float, high: float) -> str:
    """The rule: ``"~"`` (within noise) if the interval of a ratio to the best contains 1, ``"slower"`` if it lies
    above 1, ``"faster"`` below.

    Examples
    --------
    >>> verdict(0.97, 1.08), verdict(1.05, 1.3), verdict(0.8, 0.95)
    ('~', 'slower', 'faster')
    """
    if low <= 1.0 <= high:
        return "~"
    return "slower" if low > 1.0 else "faster"


def analyse(rows: Sequence[dict]) -> dict:
    """Per point: each cell's pooled median and its ratio to the best cell, with interval and verdict; per setting:
    the geometric mean of the ratios, with a paired interval against the best setting."""
    import numpy as np

    cells: dict[tuple, dict[tuple, list]] = {}
    shapes: dict[tuple, list] = {}
    for row in points.timed_rows(rows):
        key = points.point_key(row)
        setting = (row["method"], row["fft_size"])
        cells.setdefault(key, {}).setdefault(setting, []).append(row.get("samples_s") or [row["median_s"]])
        shapes[(key, setting)] = row["fft_shape"]
    settings = sorted({s for per_point in cells.values() for s in per_point},
                      key=lambda s: (s[0], POLICIES.index(s[1]) if s[1] in POLICIES else len(POLICIES)))
    per_point, logs = {}, {s: [] for s in settings}
    for key, per_setting in cells.items():
        draws = {s: bootstrap_medians(r, seed=hash_seed(key, s)) for s, r in per_setting.items()}
        medians = {s: float(np.median(np.concatenate([np.asarray(x) for x in r]))) for s, r in per_setting.items()}
        best = min(medians, key=medians.get)
        entry = {"best": best, "cells": {}}
        for s in per_setting:
            ratio = draws[s] / draws[best]
            low, high = interval(ratio)
            entry["cells"][s] = {"median": medians[s], "ratio": medians[s] / medians[best], "low": low,
                                 "high": high, "verdict": "best" if s == best else verdict(low, high),
                                 "rounds": len(per_setting[s]), "fft_shape": shapes[(key, s)]}
            logs[s].append(np.log(ratio))
        per_point[key] = entry
    complete = [s for s in settings if len(logs[s]) == len(cells)]
    geomeans = {s: np.exp(np.mean(logs[s], axis=0)) for s in complete}
    summary = {}
    if geomeans:
        point_estimates = {s: math.exp(sum(math.log(e["cells"][s]["ratio"]) for e in per_point.values())
                                       / len(per_point)) for s in complete}
        best = min(point_estimates, key=point_estimates.get)
        for s in complete:
            low, high = interval(geomeans[s] / geomeans[best])
            summary[s] = {"geomean": point_estimates[s], "vs_best": point_estimates[s] / point_estimates[best],
                          "low": low, "high": high, "verdict": "best" if s == best else verdict(low, high)}
    return {"points": per_point, "settings": settings, "summary": summary}


def hash_seed(key: tuple, setting: tuple) -> int:
    """A seed that depends only on the cell (the same intervals on every redraw)."""
    import zlib

    return zlib.crc32(repr((key, setting)).encode())


# ---------------------------------------------------------------------------------------------------- output
def _table(analysis: dict) -> str:
    settings = analysis["settings"]
    header = ["(k, n, f, f') S", *[f"{m} {p}" for m, p in settings]]
    body = []
    ordered = sorted(analysis["points"].items(), key=lambda item: (item[0][3], item[0][4]))
    for key, entry in ordered:
        fields = dict(zip(points.POINT_FIELDS, key))
        cells = []
        for s in settings:
            cell = entry["cells"].get(s)
            if cell is None:
                cells.append("-")
                continue
            size = "x".join(str(v) for v in cell["fft_shape"])
            mark = "**best**" if cell["verdict"] == "best" else (
                f"{cell['ratio']:.2f}x [{cell['low']:.2f}, {cell['high']:.2f}] "
                + ("~" if cell["verdict"] == "~" else cell["verdict"]))
            cells.append(f"{cell['median'] * 1e3:.1f} ({size}) {mark}")
        body.append([f"({fields['k']}, {fields['n']}, {fields['f']}, {fields['fp']}) {fields['S']}", *cells])
    summary = analysis["summary"]
    body.append(["geometric mean of time / best per point; then over the best setting's, [95 % interval]",
                 *[(f"{summary[s]['geomean']:.2f}x; " + ("**best**" if summary[s]["verdict"] == "best" else
                   f"{summary[s]['vs_best']:.2f}x [{summary[s]['low']:.2f}, {summary[s]['high']:.2f}] "
                   + ("~" if summary[s]["verdict"] == "~" else summary[s]["verdict"]))) if s in summary else "-"
                   for s in settings]])
    return markdown_table(header, body)


def _conclusions(analysis: dict) -> str:
    summary = analysis["summary"]
    if not summary:
        return "No setting was timed at every point.\n"
    best = next(s for s, v in summary.items() if v["verdict"] == "best")
    tied = [s for s, v in summary.items() if v["verdict"] == "~"]
    slower = [s for s, v in summary.items() if v["verdict"] == "slower"]
    text = f"- Fastest over all points (geometric mean): {best[0]} {best[1]}.\n"
    if tied:
        text += ("- Within noise of it (interval contains 1): " + ", ".join(f"{m} {p}" for m, p in tied)
                 + ". These runs cannot rank them.\n")
    if slower:
        text += "- Slower, outside the noise: " + ", ".join(
            f"{m} {p} ({summary[(m, p)]['vs_best']:.2f}x)" for m, p in slower) + ".\n"
    return text


def plot(ctx) -> None:
    rows = ctx.rows()
    if not points.timed_rows(rows):
        return
    analysis = analyse(rows)
    rounds = sorted({c["rounds"] for e in analysis["points"].values() for c in e["cells"].values()})
    caption = (f"Median ms of one training step (three passes, algo='fft', float32) per FFT backend and size "
               f"policy; FFT size in brackets; then the time over the best cell of the point with a "
               f"{LEVEL:.0%} interval. {ctx.describe('', None).strip()}")
    rule = (f"**Rule.** Each cell was timed in {', '.join(map(str, rounds))} round(s) (new worker processes each); the "
            f"interval comes from {DRAWS} hierarchical bootstrap resamples (rounds with replacement, then each drawn "
            "round's calls with replacement). A ratio whose interval contains 1 is within noise of the best (`~`); "
            "only an interval above 1 counts as slower. The last row compares whole settings the same way, with "
            "intervals paired point by point."
            + (" With one round, the interval covers only the call-to-call spread within one process, not the "
               "larger process-to-process spread: treat it as too narrow." if rounds == [1] else ""))
    write_table(ctx.out_dir, "defaults", f"# FFT backend x size policy ({ctx.mode} mode)\n\n{caption}\n\n"
                + ctx.provenance_note() + "\n" + rule + "\n\n" + _table(analysis) + "\n## What the runs support\n\n"
                + _conclusions(analysis))
