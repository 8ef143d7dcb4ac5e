"""fftconv against PyTorch on the paper's five layers at batch 32, and against a roofline measured here.

Three parts, all measured by this script on this machine (docs/experiments.md describes the method):

1. **Rates.** The batched real-FFT rate of fftconv's default backend, in GFLOP/s at ``2.5 N log2 N`` flops per real
   map of ``N = n^2`` points (float32 in, complex64 out, written into a preallocated output), for n = 16 and 32, in
   the map-major layout ``(B, n, n)`` and in the frequency-major layout ``(n, n, B)`` that fftconv's spectra use;
   and the complex64 GEMM rate (8 flops per complex multiply-add) for a square 1024 product and for the three
   batched per-frequency-bin products of each layer (the best of ``numpy.matmul`` and fftconv's own stacked GEMM,
   which splits the bins across threads; numpy's stacked matmul with a 2-thread OpenBLAS is erratic at some shapes).
2. **Layers.** For (k, n, f, f') in the paper's table at S = 32, float32: the time of each pass (the functional
   API: each call transforms what it needs) and of a training step, for fftconv (default backend) and PyTorch CPU.
   The step is one layer forward + backward: ``fftconv.nn.Conv2d`` (bias off, ``memory="reuse"``: every input map,
   kernel and output-gradient map transformed once, the paper's scheme) against a PyTorch autograd
   ``F.conv2d`` + ``backward`` with the input gradient required, so both compute all three passes. The tables show
   the ratio under two protocols, labelled: this step (all three passes, transforms reused), and the paper's
   protocol, the sum of the separately timed passes without the first layer's updateGradInput (a network never
   needs the gradient of its input image).
3. **Forward sweep.** S = 32, f = 16, f' = 32, n in {32, 64}, k in {3, 5, ..., 13}: fftconv vs PyTorch forward.

The roofline model of one step: each of the S f input maps, f f' kernels and S f'
output-gradient maps is transformed once forward and its result set once inverse, i.e. ``2 (S f + f f' + S f')``
real 2-d FFTs of size n at the best measured batched forward FFT rate for that n (over the two layouts; the
inverse rates are reported too), plus three per-bin complex GEMMs,
``3 * 8 S f f' n (n/2 + 1)`` flops, at the measured square cgemm rate ("peak" model). The "attainable" model uses
instead the rates measured at each layer's own per-bin GEMM shapes. Fraction of roofline = model time / fftconv's
step time (1 = at the roofline; the speed targets ask for at least 0.5).

Layers and sweep are timed in ``ROUNDS`` = 3 rounds (quick mode: ``QUICK_ROUNDS`` = 2), fftconv and PyTorch
alternating, each round in new worker processes; each point counts with its lowest median. Quick mode keeps S = 32
and the paper's layers and only lowers the number of repeats and rounds, to fit ``make figures``' budget.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator

from .harness import fftconv_api, methods, points
from .harness.jobs import Job, measure_jobs
from .harness.style import fmt_ms, fmt_ratio, markdown_table, save_figure, write_table
from .harness.timing import TimingSettings

NAME = "roofline"
DESCRIPTION = "fftconv vs PyTorch on the five layers at S=32, fraction of the measured FFT/GEMM roofline"

LAYERS = ((11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384))
BATCH = 32
SWEEP = {"S": 32, "f": 16, "fp": 32, "n": (32, 64), "k": (3, 5, 7, 9, 11, 13)}
#: Input bytes of a batched FFT rate measurement: large enough to leave the caches of one core behind.
FFT_RATE_BYTES = 16 * 2**20
SQUARE_GEMM = 1024
#: Map sizes of the FFT rate measurements (the paper's layers have n = 16 and 32).
RATE_SIZES = (16, 32)
#: Layers and sweep are timed in this many rounds, the methods alternating, each round in new worker processes; a
#: point counts with its lowest median. On the project's machine the same call moved by up to 2x between processes
#: and over minutes, and one round put fftconv and PyTorch in different states.
ROUNDS = 3
#: Quick mode's rounds: the roofline is the longest experiment of ``make figures`` (about a minute per round).
QUICK_ROUNDS = 2
#: The paper's protocol leaves out updateGradInput of its first layer (no layer needs the input image's gradient).
PAPER_SKIPS = {(11, 32, 3, 96): ("input",)}

#: The speed targets: PyTorch step time / fftconv step time at least this much.
TARGETS = {(7, 32, 96, 256): 3.0, (5, 16, 256, 384): 2.0, (5, 16, 384, 384): 2.0, (3, 16, 384, 384): 1.0,
           (11, 32, 3, 96): 1.0}


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None, help=f"batch of the layer part (default {BATCH})")


def timing_settings(quick: bool) -> TimingSettings:
    # Three warm-up calls: the first plans the FFTs, and the next one or two still grow malloc's heap and wake the
    # thread pools (a 7 ms forward took 21, 9-13, then 7-8 ms in its first three calls).
    return (TimingSettings(warmup=3, min_repeats=5, max_repeats=9, budget_seconds=0.5) if quick
            else TimingSettings(warmup=3, min_repeats=7, max_repeats=15, budget_seconds=2.0))


def layer_points(batch: int, layers=LAYERS) -> list[dict]:
    return [points.conv_point(S=batch, f=f, fp=fp, n=n, k=k) for k, n, f, fp in layers]


def sweep_points(sweep: dict = SWEEP) -> list[dict]:
    return [points.conv_point(S=sweep["S"], f=sweep["f"], fp=sweep["fp"], n=n, k=k)
            for n in sweep["n"] for k in sweep["k"]]


def paper_passes(point: dict, skips: dict) -> tuple[str, ...]:
    """The passes the paper's protocol counts at this layer."""
    label = f"({point['k']},{point['n']},{point['f']},{point['fp']})"
    return tuple(p for p in points.PASSES if p not in skips.get(label, ()))


def _label(layer) -> str:
    return "(" + ",".join(str(v) for v in layer) + ")"


def validate(row: dict) -> str | None:
    if row.get("measure") in ("fft_rate", "gemm_rate"):
        from .harness.results import missing_fields

        return None if "median_s" not in row else missing_fields(row, "gflops", "gflops_best", "min_s")
    return points.validate(row)


def bins(n: int) -> int:
    """Frequency bins of a real n x n transform (Hermitian half)."""
    return n * (n // 2 + 1)


def gemm_shapes(point: dict) -> dict[str, tuple[int, int, int, int]]:
    """``(batch of bins, M, K, N)`` of the per-bin complex product of each pass (fftconv's frequency-major GEMMs)."""
    b, S, f, fp = bins(point["n"]), point["S"], point["f"], point["fp"]
    return {"forward": (b, S, f, fp), "input": (b, S, fp, f), "weight": (b, fp, S, f)}


def fft_flops_per_map(n: int) -> float:
    points = n * n
    return 2.5 * points * math.log2(points)


def rate_jobs(method: str, sizes: tuple[int, ...], layers: list[dict]) -> list[Job]:
    jobs = []
    for n in sizes:
        for layout in ("map-major", "frequency-major"):
            for direction in ("forward", "inverse"):
                key = {"measure": "fft_rate", "n": n, "layout": layout, "direction": direction,
                       "bytes": FFT_RATE_BYTES}
                jobs.append(Job(method, key, [{}], case=key))
    square = {"measure": "gemm_rate", "shape": [1, SQUARE_GEMM, SQUARE_GEMM, SQUARE_GEMM]}
    jobs.append(Job(method, square, [{}], case=square))
    for point in layers:
        for pass_, shape in gemm_shapes(point).items():
            key = {"measure": "gemm_rate", "shape": list(shape)}
            if not any(job.key == key for job in jobs):
                jobs.append(Job(method, key, [{}], case=key))
    return jobs


def measure(ctx) -> None:
    settings = timing_settings(ctx.quick)
    batch = getattr(ctx.options, "batch", None) or BATCH
    rounds = rounds_for(ctx.quick)
    ctx.record_settings(batch=batch, layers=[list(layer) for layer in LAYERS], sweep=SWEEP, rounds=rounds,
                        square_gemm=SQUARE_GEMM, targets={_label(c): t for c, t in TARGETS.items()},
                        paper_skips={_label(c): list(p) for c, p in PAPER_SKIPS.items()})
    fft = f"fft-{methods.default_backend_name()}"
    labels = [fft] + (["torch"] if methods.torch_available() else [])
    layers = layer_points(batch, LAYERS)
    measure_jobs(ctx, rate_jobs(fft, RATE_SIZES, layers), "experiments.roofline:rates", settings,
                 desc="roofline rates")
    passes_and_step = [*points.PASSES, "step"]
    for round_ in range(rounds):
        order = labels if round_ % 2 == 0 else labels[::-1]  # neither is always measured first
        jobs = in_round(points.conv_jobs(order, layers, ctx.quick, passes_and_step), round_)
        measure_jobs(ctx, jobs, "experiments.roofline:passes_and_step", settings,
                     desc=f"roofline layers, round {round_ + 1}/{rounds}")
        jobs = in_round(points.conv_jobs(order, sweep_points(), ctx.quick, ("forward",)), round_)
        measure_jobs(ctx, jobs, "experiments.harness.points:conv_passes", settings,
                     desc=f"roofline sweep, round {round_ + 1}/{rounds}")


def rounds_for(quick: bool) -> int:
    return min(ROUNDS, QUICK_ROUNDS) if quick else ROUNDS


def in_round(jobs: list[Job], round_: int) -> list[Job]:
    """The same jobs, their rows marked with ``round`` (a separate row, and a separate worker, per round)."""
    return [replace(job, subkeys=[{**subkey, "round": round_} for subkey in job.subkeys]) for job in jobs]


# ---------------------------------------------------------------------------------------------------- worker tasks
def rates(case: dict, session) -> Iterator[dict]:
    """Task: one FFT or GEMM rate (GFLOP/s from the median and from the best repeat)."""
    import numpy as np

    rng = np.random.default_rng(0)
    if case["measure"] == "gemm_rate":
        batch, m, k, n = case["shape"]
        a = (rng.standard_normal((batch, m, k)) + 1j * rng.standard_normal((batch, m, k))).astype(np.complex64)
        b = (rng.standard_normal((batch, k, n)) + 1j * rng.standard_normal((batch, k, n))).astype(np.complex64)
        flops = 8.0 * batch * m * k * n
        variants = {"numpy.matmul": lambda: np.matmul(a, b)}
        # fftconv's own stacked GEMM (bins split across threads, single-threaded BLAS), where it exists
        batched_matmul = fftconv_api.stacked_complex_gemm()
        if batched_matmul is not None and batch > 1:
            out = np.empty((batch, m, n), dtype=np.complex64)
            variants["fftconv batched_matmul"] = lambda: batched_matmul(a, b, out)
        # The attainable rate at this shape is the best of the ways measured; each one is kept in the row.
        measured = {name: session.measure(fn) for name, fn in variants.items()}
        best = min(measured, key=lambda name: measured[name]["median_s"])
        row = dict(measured[best], variant=best,
                   variants={name: flops / r["median_s"] / 1e9 for name, r in measured.items()})
    else:
        size = case["n"]
        maps = max(1, case["bytes"] // (4 * size * size))
        backend = session.backend
        frequency_major = case["layout"] == "frequency-major"
        real_shape = (size, size, maps) if frequency_major else (maps, size, size)
        axes = (0, 1) if frequency_major else (1, 2)
        half = (size, size // 2 + 1, maps) if frequency_major else (maps, size, size // 2 + 1)
        empty = getattr(backend, "empty", lambda shape, dtype: np.empty(shape, dtype))
        x = empty(real_shape, np.float32)
        x[...] = rng.standard_normal(real_shape, dtype=np.float32)
        spectrum = empty(half, np.complex64)
        # Any values do for timing; no transform runs before session.measure, so its warm-up pays (and reports)
        # the planning.
        spectrum.real[...] = rng.standard_normal(half, dtype=np.float32)
        spectrum.imag[...] = rng.standard_normal(half, dtype=np.float32)
        if case["direction"] == "forward":
            row = session.measure(lambda: backend.rfftn(x, (size, size), axes, out=spectrum))
        else:
            row = session.measure(lambda: backend.irfftn(spectrum, (size, size), axes))
        flops = maps * fft_flops_per_map(size)
        row["maps"] = maps
    row["gflops"] = flops / row["median_s"] / 1e9
    row["gflops_best"] = flops / row["min_s"] / 1e9
    yield row


def step_function(session, case: dict):
    """One training step of a bias-free conv layer, forward + backward, for fftconv or PyTorch."""
    arrays = points.conv_inputs(case)
    if session.torch is not None:
        torch = session.torch
        x = torch.from_numpy(arrays["x"]).requires_grad_(True)
        w = torch.from_numpy(arrays["w"]).requires_grad_(True)
        gy = torch.from_numpy(arrays["gy"])

        def step():
            x.grad, w.grad = None, None
            torch.nn.functional.conv2d(x, w).backward(gy)
        return step
    from fftconv import nn

    layer = nn.Conv2d(case["f"], case["fp"], case["k"], bias=False, algo=session.parsed["algo"],
                      backend=session.backend)
    layer.weight = arrays["w"]
    x, gy = arrays["x"], arrays["gy"]

    def step():
        layer.forward(x)
        return layer.backward(gy)
    return step


def passes_and_step(case: dict, session) -> Iterator[dict]:
    """Task: the three passes (functional API) and a layer step (forward + backward), as listed in ``todo``."""
    todo = case["todo"]
    passes = [s for s in todo if s["pass"] != "step"]
    if passes:
        yield from points.conv_passes({**case, "todo": passes}, session)
    for subkey in (s for s in todo if s["pass"] == "step"):
        row = session.measure(step_function(session, case))
        row["gflops"] = 3 * points.direct_flops(case) / row["median_s"] / 1e9
        yield {**subkey, **row}


# ---------------------------------------------------------------------------------------------------- model
def rate_table(rows: list[dict]) -> tuple[dict, dict, float | None]:
    """Best forward FFT GFLOP/s per n (over layouts), every rate row by key, and the square cgemm GFLOP/s."""
    fft_best: dict[int, float] = {}
    by_key: dict[tuple, dict] = {}
    square = None
    for row in points.timed_rows(rows):
        if row.get("measure") == "fft_rate":
            by_key[("fft", row["n"], row["layout"], row["direction"])] = row
            if row["direction"] == "forward":
                fft_best[row["n"]] = max(fft_best.get(row["n"], 0.0), row["gflops"])
        elif row.get("measure") == "gemm_rate":
            by_key[("gemm", *row["shape"])] = row
            if row["shape"] == [1, SQUARE_GEMM, SQUARE_GEMM, SQUARE_GEMM]:
                square = row["gflops"]
    return fft_best, by_key, square


def model_seconds(point: dict, fft_rate: float | None, gemm_rates: dict[str, float | None]) -> dict | None:
    """Roofline seconds of one step: transforms at ``fft_rate`` plus the three GEMMs at their rates (GFLOP/s)."""
    if not fft_rate or any(not rate for rate in gemm_rates.values()):
        return None
    S, f, fp, n = point["S"], point["f"], point["fp"], point["n"]
    fft = 2 * (S * f + f * fp + S * fp) * fft_flops_per_map(n) / (fft_rate * 1e9)
    gemm = sum(8.0 * S * f * fp * bins(n) / (gemm_rates[p] * 1e9) for p in points.PASSES)
    return {"fft": fft, "gemm": gemm, "total": fft + gemm}


def saved(ctx) -> dict:
    """Batch, layers, sweep, rounds, targets and the paper's skips stored with the rows (else the code's values)."""
    defaults = {"batch": getattr(ctx.options, "batch", None) or BATCH, "layers": [list(c) for c in LAYERS],
                "sweep": SWEEP, "rounds": rounds_for(ctx.quick), "square_gemm": SQUARE_GEMM,
                "targets": {_label(c): t for c, t in TARGETS.items()},
                "paper_skips": {_label(c): list(p) for c, p in PAPER_SKIPS.items()}}
    stored, recorded = ctx.saved_settings(defaults)
    if not recorded:  # older rows: the batch and the rounds are in the rows themselves
        layer_sizes = {tuple(c[1:]) for c in stored["layers"]}
        batches = sorted({row["S"] for row in ctx.rows() if "pass" in row and "S" in row
                          and (row["n"], row["f"], row["fp"]) in {(n, f, fp) for n, f, fp in layer_sizes}})
        if len(batches) == 1:
            stored["batch"] = batches[0]
        rounds = {row["round"] for row in ctx.rows() if isinstance(row.get("round"), int)}
        if rounds:
            stored["rounds"] = max(rounds) + 1
    stored["recorded"] = recorded
    return stored


def summarise(ctx) -> dict:
    """Everything the tables and the figure show, from the saved rows only."""
    settings = saved(ctx)
    rows = ctx.rows()
    batch = settings["batch"]
    fft_best, by_key, square = rate_table(rows)
    results = points.ConvResults(rows)
    labels = results.methods()
    fft = next((m for m in labels if methods.parse_method(m)["algo"] == "fft"), None)
    layers = []
    for point in layer_points(batch, [tuple(c) for c in settings["layers"]]):
        shape_rates = {p: by_key.get(("gemm", *s), {}).get("gflops") for p, s in gemm_shapes(point).items()}
        peak = model_seconds(point, fft_best.get(point["n"]), {p: square for p in points.PASSES})
        attainable = model_seconds(point, fft_best.get(point["n"]), shape_rates)
        entry = {"point": point, "peak": peak, "attainable": attainable, "shape_rates": shape_rates,
                 "paper_passes": paper_passes(point, settings["paper_skips"])}
        for method, name in ((fft, "fftconv"), ("torch", "torch")):
            entry[name] = {p: results.seconds(point, method, p) for p in (*points.PASSES, "step")} if method else {}
            entry[name]["sum"] = results.total(point, method) if method else None
            entry[name]["paper_sum"] = results.total(point, method, entry["paper_passes"]) if method else None
        layers.append(entry)
    sweep = [{"point": p, "fftconv": results.seconds(p, fft, "forward") if fft else None,
              "torch": results.seconds(p, "torch", "forward")} for p in sweep_points(settings["sweep"])]
    return {"fft_method": fft, "fft_best": fft_best, "square": square, "rates": by_key, "layers": layers,
            "sweep": sweep, "batch": batch, "settings": settings}


def _fraction(model, measured) -> str:
    return f"{model / measured:.0%}" if model and measured else "-"


def _layer_label(point: dict) -> str:
    return f"({point['k']},{point['n']},{point['f']},{point['fp']})"


def tables(ctx, summary: dict) -> str:
    fft = summary["fft_method"] or "fftconv"
    settings = summary["settings"]
    lines = [f"# Roofline benchmark ({ctx.mode} mode, batch {summary['batch']})\n",
             ctx.describe(f"{fft} vs PyTorch CPU, float32, batch S={summary['batch']}; times in ms (layers and "
                          f"sweep: the lowest of {settings['rounds']} rounds' medians, methods alternating)") + "\n",
             ctx.provenance_note()]
    if not settings["recorded"]:
        lines.append("The settings were not stored with these rows; the batch is read from the rows and the other "
                     "constants are the code's current values.\n")
    rate_rows = []
    for key, row in sorted(summary["rates"].items(), key=lambda item: str(item[0])):
        if key[0] == "fft":
            what = f"rfft n={key[1]}, {key[2]}, {key[3]} ({row['maps']} maps)"
        else:
            what = f"cgemm batch {key[1]} x ({key[2]} x {key[3]}) @ ({key[3]} x {key[4]})"
            others = {name: rate for name, rate in row.get("variants", {}).items() if name != row.get("variant")}
            what += f", {row.get('variant', 'numpy.matmul')}" + "".join(
                f" (vs {name} {rate:.0f})" for name, rate in others.items())
        plan = row.get("plan_s")
        rate_rows.append([what, f"{row['gflops']:.1f}", f"{row['gflops_best']:.1f}", fmt_ms(row["median_s"]),
                          f"{plan:.2f}" if key[0] == "fft" and plan is not None else "-"])
    lines.append("## Measured rates\n\n" + markdown_table(["operation", "GFLOP/s (median)", "GFLOP/s (best)",
                                                             "ms (median)", "FFTW plan s (excluded)"], rate_rows))
    square = summary["square"]
    lines.append(f"Model rates: FFT = best forward rate per n over the two layouts "
                 f"({', '.join(f'n={n}: {r:.1f}' for n, r in sorted(summary['fft_best'].items())) or '-'} GFLOP/s); "
                 f"GEMM = square {settings['square_gemm']} cgemm ({f'{square:.1f}' if square else '-'} GFLOP/s) for "
                 "the peak model, each layer's own per-bin shapes for the attainable model.\n")
    header = ["(k,n,f,f')", "fftconv fwd", "bprop", "accGrad", "sum of passes", "step", "torch fwd", "bprop",
              "accGrad", "sum of passes", "step", "torch step / fftconv step", "target",
              "model (peak)", "fraction of roofline", "model (attainable)", "fraction (attainable)"]
    rows = []
    for entry in summary["layers"]:
        p, mine, theirs = entry["point"], entry["fftconv"], entry["torch"]
        ratio = theirs.get("step") / mine.get("step") if mine.get("step") and theirs.get("step") else None
        target = settings["targets"].get(_layer_label(p))
        verdict = "-" if ratio is None or target is None else ("met" if ratio >= target else "missed")
        peak, attainable = entry["peak"], entry["attainable"]
        rows.append([_layer_label(p),
                     *(fmt_ms(mine.get(x)) for x in (*points.PASSES, "sum", "step")),
                     *(fmt_ms(theirs.get(x)) for x in (*points.PASSES, "sum", "step")),
                     fmt_ratio(theirs.get("step"), mine.get("step")),
                     f">= {target:g}x: {verdict}" if target else "-",
                     fmt_ms(peak["total"] if peak else None),
                     _fraction(peak["total"] if peak else None, mine.get("step")),
                     fmt_ms(attainable["total"] if attainable else None),
                     _fraction(attainable["total"] if attainable else None, mine.get("step"))])
    plans = [row["plan_s"] for row in ctx.rows() if row.get("plan_s") and "pass" in row]
    lines.append(f"## The five layers at batch {summary['batch']}: passes, steps, ratio, roofline\n\n"
                 + markdown_table(header, rows)
                 + "\nstep = one layer forward + backward (fftconv.nn.Conv2d with transform reuse; PyTorch "
                   "autograd), all three passes, the input gradient included. Fraction of roofline = model time / "
                   "fftconv step time."
                 + (f" FFT planning in the warm-up calls (excluded) took {sum(plans):.1f} s in all."
                    if plans else "") + "\n")
    lines.append(protocol_table(summary))
    model_rows = []
    for entry in summary["layers"]:
        p, peak = entry["point"], entry["peak"]
        model_rows.append([_layer_label(p), fmt_ms(peak["fft"] if peak else None),
                           fmt_ms(peak["gemm"] if peak else None),
                           *(f"{entry['shape_rates'][x]:.0f}" if entry["shape_rates"][x] else "-"
                             for x in points.PASSES)])
    lines.append("## Model details\n\n" + markdown_table(
        ["(k,n,f,f')", "FFT ms (peak model)", "GEMM ms (peak model)", "per-bin cgemm GFLOP/s fwd", "bprop",
         "accGrad"], model_rows))
    sweep_rows = []
    for entry in summary["sweep"]:
        p = entry["point"]
        sweep_rows.append([p["n"], p["k"], fmt_ms(entry["fftconv"]), fmt_ms(entry["torch"]),
                           fmt_ratio(entry["torch"], entry["fftconv"])])
    sweep = settings["sweep"]
    lines.append(f"## Forward sweep, S={sweep['S']}, f={sweep['f']}, f'={sweep['fp']}\n\n"
                 + markdown_table(["n", "k", "fftconv ms", "torch ms", "torch / fftconv"], sweep_rows)
                 + "\nThe speed target: fftconv faster than PyTorch (ratio > 1) at n=32 from k=7 up.\n")
    errors = sorted({f"{row.get('method')}: {row['error']}" for row in ctx.rows() if "error" in row})
    if errors:
        lines.append("Failed points:\n\n" + "\n".join(f"- {e}" for e in errors) + "\n")
    return "\n".join(lines)


def protocol_table(summary: dict) -> str:
    """PyTorch / fftconv under both protocols: with and without the first layer's input gradient."""
    rows = []
    for entry in summary["layers"]:
        mine, theirs = entry["fftconv"], entry["torch"]
        skipped = [points.PAPER_NAMES[p] for p in points.PASSES if p not in entry["paper_passes"]]
        rows.append([_layer_label(entry["point"]), fmt_ratio(theirs.get("step"), mine.get("step")),
                     fmt_ratio(theirs.get("sum"), mine.get("sum")),
                     fmt_ratio(theirs.get("paper_sum"), mine.get("paper_sum")),
                     "without " + ", ".join(skipped) if skipped else "all three passes"])
    return (f"## PyTorch time / fftconv time under two protocols (batch {summary['batch']})\n\n"
            "- **A, with the input gradient**: what a layer of a network computes in training; the step (one "
            "forward + backward, transforms reused) and the sum of the three passes timed separately.\n"
            "- **B, the paper's protocol**: the sum of the separately timed passes without updateGradInput of the "
            "first layer (11,32,3,96), which no layer needs: the gradient of the input image. The layers table "
            "(`layers.md`) uses this protocol at its own batch.\n\n"
            + markdown_table(["(k,n,f,f')", "A: step", "A: sum of passes", "B: sum, paper's protocol",
                              "B counts"], rows))


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = summarise(ctx)
    sweep = summary["settings"]["sweep"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13.3, 5.2), layout="constrained",
                                              width_ratios=(1.3, 1, 0.9))
    labels = [_layer_label(e["point"]) for e in summary["layers"]]
    positions = np.arange(len(labels))
    series = [("PyTorch step", [e["torch"].get("step") for e in summary["layers"]], "#d62728"),
              ("fftconv step", [e["fftconv"].get("step") for e in summary["layers"]], "#1b9e3e"),
              ("roofline model (peak)", [e["peak"]["total"] if e["peak"] else None for e in summary["layers"]],
               "#bbbbbb")]
    width = 0.27
    for index, (label, values, color) in enumerate(series):
        heights = [v * 1e3 if v else float("nan") for v in values]  # missing: no bar (log scale)
        left.bar(positions + (index - 1) * width, heights, width, label=label, color=color, edgecolor="black",
                 linewidth=0.5, log=True)
    left.set_xticks(positions, labels, fontsize=7, rotation=15)
    left.set_yscale("log")  # the first layer is ~20x cheaper than the others
    left.set_ylabel("ms per training step (forward + backward), log scale")
    left.set_title(f"Paper's layers, batch {summary['batch']}:\nA step = all three passes, input gradient included",
                   fontsize=9)
    left.legend(fontsize=7)
    left.grid(axis="y", alpha=0.3)
    protocols = [("A: step, with the input gradient", "step", ""),
                 ("B: paper's protocol, sum of passes\nwithout the first layer's updateGradInput", "paper_sum", "//")]
    width = 0.38
    for index, (name, key, hatch) in enumerate(protocols):
        ratios = [e["torch"].get(key) / e["fftconv"].get(key) if e["torch"].get(key) and e["fftconv"].get(key)
                  else float("nan") for e in summary["layers"]]
        middle.bar(positions + (index - 0.5) * width, ratios, width, color="#1b9e3e" if not hatch else "#a1d99b",
                   hatch=hatch, edgecolor="black", linewidth=0.5, label=name)
    middle.axhline(1.0, color="black", linewidth=1)
    middle.set_xticks(positions, labels, fontsize=7, rotation=15)
    middle.set_ylabel("PyTorch time / fftconv time (above 1: fftconv faster)", fontsize=8)
    middle.set_title("The ratio under both protocols", fontsize=9)
    middle.legend(fontsize=7)
    middle.grid(axis="y", alpha=0.3)
    for n, marker in zip(sweep["n"], ("o", "s")):
        data = [(e["point"]["k"], e["torch"] / e["fftconv"]) for e in summary["sweep"]
                if e["point"]["n"] == n and e["fftconv"] and e["torch"]]
        if data:
            right.plot(*zip(*data), marker=marker, label=f"n={n}")
    right.axhline(1.0, color="black", linewidth=1)
    right.set_xlabel("kernel size k")
    right.set_ylabel("PyTorch time / fftconv time (above 1: fftconv faster)", fontsize=8)
    right.set_title(f"Forward, S={sweep['S']}, f={sweep['f']}, f'={sweep['fp']}", fontsize=9)
    right.grid(alpha=0.3)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    fig.suptitle(ctx.describe(f"Roofline benchmark, float32: {summary['fft_method']} vs PyTorch CPU and the "
                              "roofline model measured on this machine",
                              f"S={summary['batch']}; quick mode only lowers the repeats" if ctx.quick
                              else f"S={summary['batch']}"), fontsize=10)
    save_figure(fig, ctx.out_dir, "roofline")
    plt.close(fig)
    write_table(ctx.out_dir, "roofline", tables(ctx, summary))
