"""How fftconv's defaults were chosen: FFT backend x FFT size policy, timed on full training steps.

For each point, one training step (forward + input gradient + weight gradient, ``algo="fft"``) is timed for every
installed backend (one worker process each) under each size policy: ``"minimal"`` (the smallest exact size),
``"fast"`` (next ``2^a 3^b 5^c 7^d``) and ``"pow2"`` (the paper's next power of two). The points are the paper's
five layers plus input sizes where the policies differ (27, 29, 52: prime-ish, smooth and between powers of two).
README's "Choosing the defaults" quotes the table this writes.
"""

from __future__ import annotations

import math
from typing import Iterator

from experiments import _timing
from experiments._harness import write_table

NAME = "defaults"
DESCRIPTION = "FFT backend x FFT size policy on full training steps: how the defaults were chosen"
POLICIES = ("minimal", "fast", "pow2")


def points(quick: bool) -> list[dict]:
    batch = 8 if quick else 32
    layers = [(11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (3, 16, 384, 384)]
    odd_sizes = [(5, 27, 32, 64), (5, 29, 32, 64), (7, 52, 32, 64)]
    return [_timing.conv_point(batch, f, fp, n, k) for k, n, f, fp in layers + odd_sizes]


def step_task(case: dict, session: _timing.Session) -> Iterator[dict]:
    """Worker task: time one training step per FFT size policy listed in ``case["todo"]``."""
    import fftconv

    arrays = _timing.conv_inputs(case)
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


def measure(ctx) -> None:
    import fftconv

    backends = list(getattr(ctx.options, "backends", None) or fftconv.available_backends())
    jobs = [_timing.Job(f"fft-{backend}", dict(point), [{"fft_size": p} for p in POLICIES], case=dict(point))
            for point in points(ctx.quick) for backend in backends]
    _timing.measure_jobs(ctx, jobs, "experiments.defaults:step_task", desc="defaults")


def _table(rows: list[dict]) -> str:
    methods = sorted({row["method"] for row in rows})
    keyed = {(tuple(row[f] for f in _timing.CONV_FIELDS), row["method"], row["fft_size"]): row for row in rows}
    header = ["(k, n, f, f') S", *[f"{m} {p}" for m in methods for p in POLICIES]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    geo_means = {(m, p): [] for m in methods for p in POLICIES}
    for point in sorted({k[0] for k in keyed}, key=lambda f: (f[3], f[4])):
        fields = dict(zip(_timing.CONV_FIELDS, point))
        cells = []
        best = min(r["median_s"] for (pt, _, _), r in keyed.items() if pt == point)
        for m in methods:
            for p in POLICIES:
                row = keyed.get((point, m, p))
                if row is None:
                    cells.append("-")
                    continue
                geo_means[(m, p)].append(row["median_s"] / best)
                size = "x".join(str(v) for v in row["fft_shape"])
                cells.append(f"{row['median_s'] * 1e3:.1f} ({size})")
        label = f"({fields['k']}, {fields['n']}, {fields['f']}, {fields['fp']}) {fields['S']}"
        lines.append("| " + " | ".join([label, *cells]) + " |")
    summary = ["geometric mean of time / best per point", *[
        f"{math.exp(sum(map(math.log, v)) / len(v)):.2f}x" if v else "-" for v in geo_means.values()]]
    lines.append("| " + " | ".join(summary) + " |")
    return "\n".join(lines)


def plot(ctx) -> None:
    rows = _timing.timed_rows(ctx.results.rows())
    if not rows:
        return
    threads = rows[0].get("threads")
    caption = (f"Median ms of one training step (three passes, algo='fft', float32, {threads} threads) per FFT "
               f"backend and size policy; FFT size in brackets. {'Quick' if ctx.quick else 'Full'} mode. "
               f"Machine: {ctx.machine}.")
    write_table(ctx.out_dir, "defaults", caption + "\n\n" + _table(rows) + "\n")
