"""fftconv against PyTorch on the paper's five layers at batch 32, and against a roofline measured here.

Four parts, all measured by this script on this machine (docs/experiments.md describes the method):

1. **Rates.** The batched real-FFT rate of fftconv's default backend, in GFLOP/s at ``2.5 N log2 N`` flops per real
   map of ``N = n^2`` points (float32 in, complex64 out, written into a preallocated output), for n = 16 and 32, in
   the map-major layout ``(B, n, n)`` and in the frequency-major layout ``(n, n, B)`` that fftconv's spectra use;
   and the complex64 GEMM rate (8 flops per complex multiply-add) for a square 1024 product and for the three
   batched per-frequency-bin products of each layer (the best of ``numpy.matmul`` and fftconv's own stacked GEMM,
   which splits the bins across threads; numpy's stacked matmul with a 2-thread OpenBLAS is erratic at some shapes).
2. **Layers.** For (k, n, f, f') in the paper's table at S = 32, float32: the time of each pass with fftconv's FFT
   algorithm (the functional API: each call transforms what it needs) and PyTorch CPU, and of a training step.
   The step is one layer forward + backward: ``fftconv.nn.Conv2d(algo=ALGO)`` (bias off, ``memory="reuse"``; with
   ``algo="fft"`` every input map, kernel and output-gradient map is transformed once, the paper's scheme) against a
   PyTorch autograd ``F.conv2d`` + ``backward`` with the input gradient required, so both compute all three passes.
   ``ALGO`` is ``--algo`` (default ``"auto"``, passed to the layer as it is); its step rows carry the method label
   ``<algo>-<backend>`` (``fft-pyfftw``, ``auto-pyfftw``; ``im2col`` alone), so steps of different algorithms are
   never mixed and a run resumes per algorithm. The tables show the ratio under two protocols, labelled: this step
   (all three passes), and the paper's protocol, the sum of the separately timed FFT passes without the first
   layer's updateGradInput (a network never needs the gradient of its input image).
3. **Forward sweep.** S = 32, f = 16, f' = 32, n in {32, 64}, k in {3, 5, ..., 13}: fftconv's functional forward
   with ``--algo`` (``auto``: the algorithm fftconv picks; rows of older runs timed ``fft``) vs PyTorch forward.
4. **Training-step sweep.** S = 32, f = f' = 64, n in {32, 64} (no padding), k in {3, 5, ..., 13}: the layer step of
   part 2 (``fftconv.nn.Conv2d(algo=ALGO)``) against PyTorch's autograd step, timed by the same task.

The roofline model of one step: each of the S f input maps, f f' kernels and S f'
output-gradient maps is transformed once forward and its result set once inverse, i.e. ``2 (S f + f f' + S f')``
real 2-d FFTs of size n at the best measured batched forward FFT rate for that n (over the two layouts; the
inverse rates are reported too), plus three per-bin complex GEMMs,
``3 * 8 S f f' n (n/2 + 1)`` flops, at the measured square cgemm rate ("peak" model). The "attainable" model uses
instead the rates measured at each layer's own per-bin GEMM shapes. Fraction of roofline = model time / fftconv's
step time (1 = at the roofline).

The speed targets (PyTorch time / fftconv time; :data:`TARGETS`, :data:`ROOFLINE_TARGET`, :func:`sweep_targets`):
every layer's step at least 2x and at least 70 % of its peak roofline model; the step sweep at least 1x from k = 5
up and 0.8x (within 1.25x of PyTorch) at k = 3; the forward sweep at least 1x from k = 5 up. A verdict is marked
"within noise" where the 95 % interval of the ratio, from a hierarchical bootstrap of the rounds' calls, does not
lie wholly on the ratio's side of the target (the rule of :mod:`experiments.defaults`; :func:`target_verdict`).

Layers and sweeps are timed in ``ROUNDS`` = 3 rounds (quick mode: ``QUICK_ROUNDS`` = 2), fftconv and PyTorch
alternating, each round in new worker processes; each point counts with its lowest median. Quick mode keeps S = 32
and every point and only lowers the number of repeats and rounds, to fit ``make figures``' budget; the step sweep's
quick timing also takes 1 warm-up call and at least 2 timed ones (:func:`step_sweep_timing`), since PyTorch's step
at n = 64, k = 13 takes seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator

from .defaults import DRAWS, bootstrap_medians, hash_seed, interval, verdict
from .harness import fftconv_api, methods, points
from .harness.jobs import Job, measure_jobs
from .harness.provenance import group_of
from .harness.style import fmt_ms, fmt_ratio, markdown_table, save_figure, write_table
from .harness.timing import TimingSettings

NAME = "roofline"
DESCRIPTION = ("fftconv vs PyTorch on the five layers and a training-step sweep at S=32, fraction of the measured "
               "FFT/GEMM roofline")

LAYERS = ((11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384))
BATCH = 32
SWEEP = {"S": 32, "f": 16, "fp": 32, "n": (32, 64), "k": (3, 5, 7, 9, 11, 13)}
#: The training-step sweep (no padding): the step of part 2 at every (n, k).
STEP_SWEEP = {"S": 32, "f": 64, "fp": 64, "n": (32, 64), "k": (3, 5, 7, 9, 11, 13)}
#: The layer's algorithm of the steps unless ``--algo`` says otherwise; passed to ``fftconv.nn.Conv2d`` as it is.
DEFAULT_ALGO = "auto"
#: Input bytes of a batched FFT rate measurement: large enough to leave the caches of one core behind.
FFT_RATE_BYTES = 16 * 2**20
SQUARE_GEMM = 1024
#: Map sizes of the FFT rate measurements (the paper's layers have n = 16 and 32).
RATE_SIZES = (16, 32)
#: Layers and sweeps are timed in this many rounds, the methods alternating, each round in new worker processes; a
#: point counts with its lowest median. On the project's machine the same call moved by up to 2x between processes
#: and over minutes, and one round put fftconv and PyTorch in different states.
ROUNDS = 3
#: Quick mode's rounds: the roofline is the longest experiment of ``make figures`` (about a minute per round).
QUICK_ROUNDS = 2
#: The paper's protocol leaves out updateGradInput of its first layer (no layer needs the input image's gradient).
PAPER_SKIPS = {(11, 32, 3, 96): ("input",)}

#: The speed targets of the layers: PyTorch step time / fftconv step time at least this much ...
TARGETS = {layer: 2.0 for layer in LAYERS}
#: ... and fftconv's step at least this fraction of its (peak) roofline model: model time / step time.
ROOFLINE_TARGET = 0.7
#: The sweeps' targets: fftconv faster than PyTorch (ratio at least 1) from this kernel size up ...
SWEEP_TARGET_FROM_K = 5
#: ... and the step sweep's below it (k = 3): within 1.25x of PyTorch.
STEP_SWEEP_TARGET_SMALL_K = 0.8


def sweep_targets(ks, small_k: float | None = None) -> dict[str, float]:
    """PyTorch time / fftconv time each kernel size of a sweep must reach: 1 from :data:`SWEEP_TARGET_FROM_K` up,
    ``small_k`` below (no target where ``None``). Keyed by ``str(k)``, as the targets read back from the rows.

    Examples
    --------
    >>> sweep_targets((3, 5, 7), small_k=0.8)
    {'3': 0.8, '5': 1.0, '7': 1.0}
    >>> sweep_targets((3, 5))
    {'5': 1.0}
    """
    targets = {str(k): 1.0 if k >= SWEEP_TARGET_FROM_K else small_k for k in ks}
    return {k: target for k, target in targets.items() if target is not None}


def layer_algorithms() -> list[str]:
    """What ``--algo`` accepts: ``"auto"`` and fftconv's registry of algorithms (the layer's ``algo`` values)."""
    return ["auto", *methods.algorithms()]


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None, help=f"batch of the layer part (default {BATCH})")
    parser.add_argument("--algo", default=DEFAULT_ALGO, choices=layer_algorithms(),
                        help=f"algo of fftconv.nn.Conv2d in the layers' and the sweep's training steps (default "
                             f"{DEFAULT_ALGO}); the passes are always timed with the FFT algorithm, for the model")


def timing_settings(quick: bool) -> TimingSettings:
    # Three warm-up calls: the first plans the FFTs, and the next one or two still grow malloc's heap and wake the
    # thread pools (a 7 ms forward took 21, 9-13, then 7-8 ms in its first three calls).
    return (TimingSettings(warmup=3, min_repeats=5, max_repeats=9, budget_seconds=0.5) if quick
            else TimingSettings(warmup=3, min_repeats=7, max_repeats=15, budget_seconds=2.0))


def step_sweep_timing(quick: bool) -> TimingSettings:
    """The step sweep's timing: the layers' in full mode. In quick mode PyTorch's steps at n = 64, k >= 9 take
    seconds each, so one warm-up call (planning and heap growth are small beside such a call) and at least two timed
    ones; steps under a quarter of a second still get four or more within the budget."""
    return TimingSettings(warmup=1, min_repeats=2, max_repeats=9, budget_seconds=1.0) if quick \
        else timing_settings(False)


def layer_points(batch: int, layers=LAYERS) -> list[dict]:
    return [points.conv_point(S=batch, f=f, fp=fp, n=n, k=k) for k, n, f, fp in layers]


def sweep_points(sweep: dict = SWEEP) -> list[dict]:
    """The points of a sweep (``SWEEP`` or ``STEP_SWEEP``): every (n, k) at its S, f and f', no padding."""
    return [points.conv_point(S=sweep["S"], f=sweep["f"], fp=sweep["fp"], n=n, k=k)
            for n in sweep["n"] for k in sweep["k"]]


def step_method(algo: str, backend: str) -> str:
    """The method label of fftconv's step with the layer's ``algo``: ``"<algo>-<backend>"`` where the algorithm may
    use FFTs, the bare name otherwise (the labels of :mod:`experiments.harness.methods`).

    Examples
    --------
    >>> step_method("fft", "pyfftw"), step_method("auto", "pyfftw"), step_method("im2col", "pyfftw")
    ('fft-pyfftw', 'auto-pyfftw', 'im2col')
    """
    return algo if algo in methods.NO_FFT_BACKEND else f"{algo}-{backend}"


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


def layer_jobs(order: list[str], fft: str, step: str, layers: list[dict], quick: bool) -> list[Job]:
    """The layers' jobs of one round, methods in ``order``: the three passes for the FFT method ``fft`` and PyTorch,
    the step for the step method ``step`` and PyTorch (one job, one worker, where ``fft`` is ``step``)."""
    jobs = []
    for method in order:
        todo = [*(points.PASSES if method in (fft, "torch") else ()), *(("step",) if method in (step, "torch") else ())]
        jobs += points.conv_jobs([method], layers, quick, todo)
    return jobs


def measure(ctx) -> None:
    settings = timing_settings(ctx.quick)
    batch = getattr(ctx.options, "batch", None) or BATCH
    algo = getattr(ctx.options, "algo", None) or DEFAULT_ALGO
    rounds = rounds_for(ctx.quick)
    backend = methods.default_backend_name()
    fft, step = f"fft-{backend}", step_method(algo, backend)
    ctx.record_settings(batch=batch, layers=[list(layer) for layer in LAYERS], sweep=SWEEP, step_sweep=STEP_SWEEP,
                        rounds=rounds, square_gemm=SQUARE_GEMM, algo=algo, step_method=step,
                        **target_settings(LAYERS, SWEEP, STEP_SWEEP),
                        paper_skips={_label(c): list(p) for c, p in PAPER_SKIPS.items()})
    labels = list(dict.fromkeys([fft, step] + (["torch"] if methods.torch_available() else [])))
    layers = layer_points(batch, LAYERS)
    measure_jobs(ctx, rate_jobs(fft, RATE_SIZES, layers), "experiments.roofline:rates", settings,
                 desc="roofline rates")
    for round_ in range(rounds):
        order = labels if round_ % 2 == 0 else labels[::-1]  # neither is always measured first
        jobs = in_round(layer_jobs(order, fft, step, layers, ctx.quick), round_)
        measure_jobs(ctx, jobs, "experiments.roofline:passes_and_step", settings,
                     desc=f"roofline layers, round {round_ + 1}/{rounds}")
        jobs = in_round(points.conv_jobs([m for m in order if m in (step, "torch")], sweep_points(SWEEP),
                                         ctx.quick, ("forward",)), round_)
        measure_jobs(ctx, jobs, "experiments.harness.points:conv_passes", settings,
                     desc=f"roofline sweep, round {round_ + 1}/{rounds}")
        jobs = in_round(points.conv_jobs([m for m in order if m in (step, "torch")], sweep_points(STEP_SWEEP),
                                         ctx.quick, ("step",)), round_)
        measure_jobs(ctx, jobs, "experiments.roofline:passes_and_step", step_sweep_timing(ctx.quick),
                     desc=f"roofline step sweep, round {round_ + 1}/{rounds}")


def target_settings(layers, sweep: dict, step_sweep: dict) -> dict:
    """The speed targets as they are stored with the rows (JSON keys)."""
    return {"targets": {_label(c): t for c, t in TARGETS.items() if c in layers},
            "roofline_target": ROOFLINE_TARGET,
            "sweep_targets": sweep_targets(sweep["k"]),
            "step_sweep_targets": sweep_targets(step_sweep["k"], STEP_SWEEP_TARGET_SMALL_K)}


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
    """One training step of a bias-free conv layer, forward + backward, for fftconv or PyTorch.

    fftconv's is ``fftconv.nn.Conv2d`` with the session's algorithm as ``algo`` (``"auto"`` passed as it is) and
    ``memory="reuse"``; PyTorch's is autograd's ``conv2d`` + ``backward`` with the input gradient required."""
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
                      backend=session.backend, memory="reuse")
    layer.weight = arrays["w"]
    x, gy = arrays["x"], arrays["gy"]

    def step():
        layer.forward(x)
        return layer.backward(gy)
    step.algorithms = lambda: {str(p): a for p, a in layer.algorithms(x.shape).items()}  # what each pass ran
    return step


def passes_and_step(case: dict, session) -> Iterator[dict]:
    """Task: the three passes (functional API) and a layer step (forward + backward), as listed in ``todo``; a
    step row of fftconv records the layer's ``algo`` and the algorithm each of its passes ran."""
    todo = case["todo"]
    passes = [s for s in todo if s["pass"] != "step"]
    if passes:
        yield from points.conv_passes({**case, "todo": passes}, session)
    for subkey in (s for s in todo if s["pass"] == "step"):
        step = step_function(session, case)
        row = session.measure(step)
        row["gflops"] = 3 * points.direct_flops(case) / row["median_s"] / 1e9
        if session.torch is None:
            row["algo"] = session.parsed["algo"]
            row["pass_algorithms"] = step.algorithms()
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
    """Batch, layers, sweeps, rounds, algorithm, targets and the paper's skips stored with the rows (else the code's
    values; rows written before the step's algorithm was an option timed ``algo="fft"``)."""
    defaults = {"batch": getattr(ctx.options, "batch", None) or BATCH, "layers": [list(c) for c in LAYERS],
                "sweep": SWEEP, "step_sweep": STEP_SWEEP, "rounds": rounds_for(ctx.quick),
                "square_gemm": SQUARE_GEMM, "algo": "fft", "step_method": None,
                **target_settings(LAYERS, SWEEP, STEP_SWEEP),
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


class RoundSamples:
    """Every round's timed calls of each (point, method, pass), for the intervals of ratios.

    Only the rows of the (commit, machine) group :class:`~experiments.harness.points.ConvResults` chose at a point
    count, so an interval describes the rows the table shows."""

    def __init__(self, rows: list[dict], results: points.ConvResults):
        self.results = results
        self._rounds: dict[tuple, list[list[float]]] = {}
        for row in points.timed_rows(rows):
            if points.has_point(row) and "pass" in row and "method" in row and row.get("samples_s"):
                key = (points.point_key(row), row["method"], row["pass"], group_of(row))
                self._rounds.setdefault(key, []).append(row["samples_s"])

    def medians(self, point: dict, method: str | None, pass_: str):
        """Bootstrap medians (seconds) of one pass or step over its rounds, resampled as the defaults experiment
        does (:func:`experiments.defaults.bootstrap_medians`); ``None`` where it was not timed."""
        kept = self.results.row(point, method, pass_) if method else None
        if kept is None or "median_s" not in kept:
            return None
        rounds = self._rounds.get((points.point_key(point), method, pass_, group_of(kept)))
        return bootstrap_medians(rounds, seed=hash_seed(points.point_key(point), (method, pass_))) if rounds else None


def target_verdict(ratio: float | None, target: float | None,
                   bounds: tuple[float, float] | None = None) -> str:
    """``"met"`` where ``ratio >= target``, else ``"missed"``; ``" (within noise)"`` is added where the 95 % interval
    ``bounds`` of the ratio does not lie wholly on the ratio's side of the target: where it contains the target (the
    defaults experiment's rule, :func:`experiments.defaults.verdict`), or, since the ratio is that of the rounds'
    lowest medians and the interval pools all rounds, where it lies on the other side. ``"-"`` without a ratio or a
    target.

    Examples
    --------
    >>> target_verdict(2.01, 2.0), target_verdict(1.99, 2.0), target_verdict(1.99, 2.0, (1.8, 2.1))
    ('met', 'missed', 'missed (within noise)')
    >>> target_verdict(0.81, 0.8, (0.81, 0.83)), target_verdict(0.81, 0.8, (0.7, 0.79)), target_verdict(None, 1.0)
    ('met', 'met (within noise)', '-')
    """
    if ratio is None or not target:
        return "-"
    met = ratio >= target
    text = "met" if met else "missed"
    if bounds is not None:
        # defaults.verdict reads an interval of time ratios: "slower" lies above 1, "faster" below, "~" contains it
        side = verdict(bounds[0] / target, bounds[1] / target)
        if side != ("slower" if met else "faster"):
            text += " (within noise)"
    return text


def against_target(ratio: float | None, draws, target: float | None) -> dict:
    """A ratio with its 95 % interval (from bootstrap ``draws`` of it, if any), its target and the verdict."""
    bounds = interval(draws) if draws is not None and ratio is not None else None
    return {"ratio": ratio, "interval": bounds, "target": target, "verdict": target_verdict(ratio, target, bounds)}


def _quotient(numerator, denominator):
    """``numerator / denominator`` (seconds, or arrays of bootstrap medians); ``None`` where either is missing."""
    return None if numerator is None or denominator is None else numerator / denominator


def sweep_summary(results: points.ConvResults, samples: RoundSamples, sweep: dict, method: str | None, pass_: str,
                  targets: dict) -> list[dict]:
    """Per point of a sweep: fftconv's (``method``) and PyTorch's seconds for ``pass_`` and PyTorch / fftconv
    against the target of its k (:func:`against_target`)."""
    entries = []
    for point in sweep_points(sweep):
        mine = results.seconds(point, method, pass_) if method else None
        theirs = results.seconds(point, "torch", pass_)
        draws = _quotient(samples.medians(point, "torch", pass_), samples.medians(point, method, pass_))
        row = results.row(point, method, pass_) if method else None
        entries.append({"point": point, "fftconv": mine, "torch": theirs, "ran": ran_by_pass(row),
                        **against_target(_quotient(theirs, mine), draws, targets.get(str(point["k"])))})
    return entries


def ran_by_pass(row: dict | None) -> str:
    """``"fft/fft/fft"``: the algorithm of the forward, input-gradient and weight-gradient passes a step row ran;
    for one functional pass of ``algo="auto"``, the algorithm it chose (``"-"`` for rows without that record:
    PyTorch's, a named algorithm's, older runs).

    Examples
    --------
    >>> ran_by_pass({"pass_algorithms": {"forward": "winograd", "input": "fft", "weight": "fft"}})
    'winograd/fft/fft'
    >>> ran_by_pass({"choice": "winograd", "options": {"tile": [4, 4]}}), ran_by_pass(None)
    ('winograd', '-')
    """
    ran = (row or {}).get("pass_algorithms")
    if ran:
        return "/".join(ran.get(p, "?") for p in points.PASSES)
    return (row or {}).get("choice", "-")


def summarise(ctx) -> dict:
    """Everything the tables and the figure show, from the saved rows only."""
    settings = saved(ctx)
    rows = ctx.rows()
    batch = settings["batch"]
    fft_best, by_key, square = rate_table(rows)
    results = points.ConvResults(rows)
    samples = RoundSamples(rows, results)
    labels = results.methods()
    fft = next((m for m in labels if methods.parse_method(m)["algo"] == "fft"), None)
    step = settings["step_method"] or fft
    layers = []
    for point in layer_points(batch, [tuple(c) for c in settings["layers"]]):
        shape_rates = {p: by_key.get(("gemm", *s), {}).get("gflops") for p, s in gemm_shapes(point).items()}
        peak = model_seconds(point, fft_best.get(point["n"]), {p: square for p in points.PASSES})
        attainable = model_seconds(point, fft_best.get(point["n"]), shape_rates)
        entry = {"point": point, "peak": peak, "attainable": attainable, "shape_rates": shape_rates,
                 "paper_passes": paper_passes(point, settings["paper_skips"])}
        for method, name in ((fft, "fftconv"), ("torch", "torch")):
            entry[name] = {p: results.seconds(point, method, p) for p in points.PASSES} if method else {}
            entry[name]["sum"] = results.total(point, method) if method else None
            entry[name]["paper_sum"] = results.total(point, method, entry["paper_passes"]) if method else None
        for method, name in ((step, "fftconv"), ("torch", "torch")):
            entry[name]["step"] = results.seconds(point, method, "step") if method else None
        mine, theirs = samples.medians(point, step, "step"), samples.medians(point, "torch", "step")
        entry["ratio"] = against_target(_quotient(entry["torch"]["step"], entry["fftconv"]["step"]),
                                        _quotient(theirs, mine), settings["targets"].get(_layer_label(point)))
        model = peak["total"] if peak else None
        entry["ran"] = ran_by_pass(results.row(point, step, "step") if step else None)
        entry["fraction"] = against_target(_quotient(model, entry["fftconv"]["step"]), _quotient(model, mine),
                                           settings["roofline_target"])
        layers.append(entry)
    sweep_method = step if any(results.seconds(p, step, "forward") for p in sweep_points(settings["sweep"])) else fft
    sweep = sweep_summary(results, samples, settings["sweep"], sweep_method, "forward", settings["sweep_targets"])
    step_sweep = sweep_summary(results, samples, settings["step_sweep"], step, "step",
                               settings["step_sweep_targets"])
    return {"fft_method": fft, "step_method": step, "sweep_method": sweep_method, "algo": settings["algo"], "fft_best": fft_best,
            "square": square, "rates": by_key, "layers": layers, "sweep": sweep, "step_sweep": step_sweep,
            "batch": batch, "settings": settings}


def _fraction(model, measured) -> str:
    return f"{model / measured:.0%}" if model and measured else "-"


def _layer_label(point: dict) -> str:
    return f"({point['k']},{point['n']},{point['f']},{point['fp']})"


def _ratio_cell(comparison: dict, percent: bool = False) -> str:
    """``"2.31x [2.10, 2.45]"`` (or ``"72% [70%, 75%]"``): a ratio and its 95 % interval where there is one."""
    ratio, bounds = comparison["ratio"], comparison["interval"]
    if ratio is None:
        return "-"
    shown = (lambda value: f"{value:.0%}") if percent else (lambda value: f"{value:.2f}")
    return (shown(ratio) + ("" if percent else "x")
            + (f" [{shown(bounds[0])}, {shown(bounds[1])}]" if bounds is not None else ""))


def _target_cell(comparison: dict, percent: bool = False) -> str:
    """``">= 2x: met"``, ``">= 70%: missed (within noise)"``, or ``"-"`` without a target."""
    target = comparison["target"]
    if not target:
        return "-"
    return f">= {f'{target:.0%}' if percent else f'{target:g}x'}: {comparison['verdict']}"


def _step_words(summary: dict) -> str:
    return (f"fftconv.nn.Conv2d(algo={summary['algo']!r}, memory='reuse') forward + backward (rows of method "
            f"{summary['step_method'] or '-'}) against PyTorch autograd conv2d + backward, all three passes, the "
            "input gradient included")


def noise_rule(rounds: int) -> str:
    """How the intervals and "within noise" are read (the defaults experiment's rule)."""
    return (f"Ratios are those of the lowest of the rounds' medians; in brackets their 95 % interval from {DRAWS} "
            "hierarchical bootstrap resamples of all rounds' calls (rounds drawn with replacement, then each drawn "
            "round's calls with replacement), as in the defaults experiment. A verdict is \"within noise\" where "
            "that interval does not lie wholly on the ratio's side of the target (it contains the target or, since "
            "the ratio takes the rounds' lowest medians and the interval pools them, lies beyond it): these runs "
            "cannot tell whether the target is met."
            + (" With one round the interval covers only the call-to-call spread within one process: too narrow."
               if rounds == 1 else ""))


def tables(ctx, summary: dict) -> str:
    fft = summary["fft_method"] or "fftconv"
    settings = summary["settings"]
    lines = [f"# Roofline benchmark ({ctx.mode} mode, batch {summary['batch']})\n",
             ctx.describe(f"{fft} (passes) and {summary['step_method'] or '-'} (steps) vs PyTorch CPU, float32, "
                          f"batch S={summary['batch']}; times in ms (layers and sweeps: the lowest of "
                          f"{settings['rounds']} rounds' medians, methods alternating)") + "\n",
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
              "model (peak)", "fraction of roofline", "target", "model (attainable)", "fraction (attainable)",
              "step's passes (fwd/input/weight)"]
    rows = []
    for entry in summary["layers"]:
        p, mine, theirs = entry["point"], entry["fftconv"], entry["torch"]
        peak, attainable = entry["peak"], entry["attainable"]
        rows.append([_layer_label(p),
                     *(fmt_ms(mine.get(x)) for x in (*points.PASSES, "sum", "step")),
                     *(fmt_ms(theirs.get(x)) for x in (*points.PASSES, "sum", "step")),
                     _ratio_cell(entry["ratio"]), _target_cell(entry["ratio"]),
                     fmt_ms(peak["total"] if peak else None),
                     _ratio_cell(entry["fraction"], percent=True), _target_cell(entry["fraction"], percent=True),
                     fmt_ms(attainable["total"] if attainable else None),
                     _fraction(attainable["total"] if attainable else None, mine.get("step")), entry["ran"]])
    plans = [row["plan_s"] for row in ctx.rows() if row.get("plan_s") and "pass" in row]
    lines.append(f"## The five layers at batch {summary['batch']}: passes, steps, ratio, roofline\n\n"
                 + markdown_table(header, rows)
                 + f"\nPasses: {fft}, one functional call each. step = {_step_words(summary)}. Fraction of "
                   "roofline = model time / fftconv step time. The speed targets: every layer's step at least "
                   f"the target ratio, and at least {settings['roofline_target']:.0%} of its peak roofline model. "
                 + noise_rule(settings["rounds"])
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
    sweep = settings["sweep"]
    lines.append(f"## Forward sweep, S={sweep['S']}, f={sweep['f']}, f'={sweep['fp']}\n\n"
                 + sweep_table(summary["sweep"], "forward")
                 + f"\nfftconv: {summary['sweep_method']}, one functional forward call. The speed target: fftconv faster than PyTorch "
                   f"(ratio at least 1) from k={SWEEP_TARGET_FROM_K} up, at every n.\n")
    step_sweep = settings["step_sweep"]
    lines.append(f"## Training-step sweep, S={step_sweep['S']}, f={step_sweep['f']}, f'={step_sweep['fp']}, "
                 "no padding\n\n" + sweep_table(summary["step_sweep"], "step")
                 + f"\nstep = {_step_words(summary)}. The speed targets: PyTorch step / fftconv step at least the "
                   "target of each k: 1 (fftconv faster) from "
                   f"k={SWEEP_TARGET_FROM_K} up, {STEP_SWEEP_TARGET_SMALL_K:g} (within "
                   f"{1 / STEP_SWEEP_TARGET_SMALL_K:g}x of PyTorch) below. " + noise_rule(settings["rounds"])
                 + ("" if any(e["fftconv"] or e["torch"] for e in summary["step_sweep"]) else
                    " These results hold no step-sweep rows: a run without --plot-only measures them.") + "\n")
    errors = sorted({f"{row.get('method')}: {row['error']}" for row in ctx.rows() if "error" in row})
    if errors:
        lines.append("Failed points:\n\n" + "\n".join(f"- {e}" for e in errors) + "\n")
    return "\n".join(lines)


def sweep_table(entries: list[dict], what: str) -> str:
    """One sweep: per (n, k) both times, PyTorch / fftconv with its interval, the target of that k, and what
    fftconv ran where its rows say: the algorithm of each pass of a step, or auto's pick for one pass."""
    recorded = any(e["ran"] != "-" for e in entries)
    heading = "fftconv passes (fwd/input/weight)" if what == "step" else "auto chose"
    rows = [[e["point"]["n"], e["point"]["k"], fmt_ms(e["fftconv"]), fmt_ms(e["torch"]), _ratio_cell(e),
             _target_cell(e), *([e["ran"]] if recorded else [])] for e in entries]
    return markdown_table(["n", "k", f"fftconv {what} ms", f"torch {what} ms", "torch / fftconv [95 % interval]",
                           "target", *([heading] if recorded else [])], rows)


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
            f"- **A, with the input gradient**: what a layer of a network computes in training; the step "
            f"(fftconv.nn.Conv2d(algo={summary['algo']!r}) forward + backward) and the sum of the three FFT passes "
            "timed separately.\n"
            "- **B, the paper's protocol**: the sum of the separately timed FFT passes without updateGradInput of "
            "the first layer (11,32,3,96), which no layer needs: the gradient of the input image. The layers table "
            "(`layers.md`) uses this protocol at its own batch.\n\n"
            + markdown_table(["(k,n,f,f')", "A: step", "A: sum of passes", "B: sum, paper's protocol",
                              "B counts"], rows))


def _sweep_panel(axis, entries: list[dict], sweep: dict, title: str) -> None:
    """PyTorch / fftconv against k, one line per n with 95 % interval bars, and the target of each k dashed."""
    for n, marker in zip(sweep["n"], ("o", "s", "^", "D")):
        data = [e for e in entries if e["point"]["n"] == n and e["ratio"] is not None]
        if not data:
            continue
        ks = [e["point"]["k"] for e in data]
        ratios = [e["ratio"] for e in data]
        below = [e["ratio"] - e["interval"][0] if e["interval"] else 0.0 for e in data]
        above = [e["interval"][1] - e["ratio"] if e["interval"] else 0.0 for e in data]
        axis.errorbar(ks, ratios, yerr=[[max(v, 0.0) for v in below], [max(v, 0.0) for v in above]],
                      marker=marker, capsize=2, label=f"n={n}")
    targets = sorted({(e["point"]["k"], e["target"]) for e in entries if e["target"]})
    for index, (k, target) in enumerate(targets):  # a dash across each k: that k's target
        axis.hlines(target, k - 0.9, k + 0.9, color="black", linestyle="--", linewidth=1.2,
                    label="speed target at this k" if index == 0 else None)
    axis.axhline(1.0, color="black", linewidth=0.5)
    axis.set_xticks(list(sweep["k"]))
    axis.set_xlabel("kernel size k")
    axis.set_ylabel("PyTorch time / fftconv time (above 1: fftconv faster)", fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7)


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = summarise(ctx)
    sweep, step_sweep = summary["settings"]["sweep"], summary["settings"]["step_sweep"]
    fig, axes = plt.subplot_mosaic([["layers", "protocols"], ["forward", "steps"]], figsize=(13.3, 10.4),
                                   layout="constrained", width_ratios=(1.2, 1))
    left, middle = axes["layers"], axes["protocols"]
    labels = [_layer_label(e["point"]) for e in summary["layers"]]
    positions = np.arange(len(labels))
    series = [("PyTorch step", [e["torch"].get("step") for e in summary["layers"]], "#d62728"),
              (f"fftconv step (algo={summary['algo']!r})", [e["fftconv"].get("step") for e in summary["layers"]],
               "#1b9e3e"),
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
    left.set_title(f"Paper's layers (k,n,f,f'), batch {summary['batch']}:\nA step = all three passes, input "
                   "gradient included", fontsize=9)
    left.legend(fontsize=7)
    left.grid(axis="y", alpha=0.3)
    protocols = [("A: step, with the input gradient", "step", ""),
                 ("B: paper's protocol, sum of FFT passes\nwithout the first layer's updateGradInput", "paper_sum",
                  "//")]
    width = 0.38
    for index, (name, key, hatch) in enumerate(protocols):
        ratios = [e["torch"].get(key) / e["fftconv"].get(key) if e["torch"].get(key) and e["fftconv"].get(key)
                  else float("nan") for e in summary["layers"]]
        middle.bar(positions + (index - 0.5) * width, ratios, width, color="#1b9e3e" if not hatch else "#a1d99b",
                   hatch=hatch, edgecolor="black", linewidth=0.5, label=name)
    layer_targets = [e["ratio"]["target"] or float("nan") for e in summary["layers"]]
    if any(not math.isnan(t) for t in layer_targets):
        middle.scatter(positions - 0.5 * width, layer_targets, marker="_", s=400, color="black", zorder=3,
                       label="speed target of the step")
    middle.axhline(1.0, color="black", linewidth=1)
    middle.set_xticks(positions, labels, fontsize=7, rotation=15)
    middle.set_ylabel("PyTorch time / fftconv time (above 1: fftconv faster)", fontsize=8)
    middle.set_title("The layers' ratio under both protocols", fontsize=9)
    middle.legend(fontsize=7)
    middle.grid(axis="y", alpha=0.3)
    _sweep_panel(axes["forward"], summary["sweep"], sweep,
                 f"Forward sweep: {summary['sweep_method']} forward vs PyTorch,\nS={sweep['S']}, f={sweep['f']}, "
                 f"f'={sweep['fp']}, no padding (bars: 95 % interval)")
    _sweep_panel(axes["steps"], summary["step_sweep"], step_sweep,
                 f"Training-step sweep: fftconv.nn.Conv2d(algo={summary['algo']!r}) forward + backward\nvs "
                 f"PyTorch autograd, S={step_sweep['S']}, f={step_sweep['f']}, f'={step_sweep['fp']}, no padding "
                 "(bars: 95 % interval)")
    fig.suptitle(ctx.describe(f"Roofline benchmark, float32: {summary['fft_method']} passes and "
                              f"{summary['step_method']} steps vs PyTorch CPU and the roofline model measured on "
                              "this machine",
                              f"S={summary['batch']}; quick mode only lowers the repeats" if ctx.quick
                              else f"S={summary['batch']}"), fontsize=10)
    save_figure(fig, ctx.out_dir, "roofline")
    plt.close(fig)
    write_table(ctx.out_dir, "roofline", tables(ctx, summary))
