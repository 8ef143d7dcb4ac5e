"""Batched real-FFT rates into and out of fftconv's frequency-major spectra, against the same library map-major.

For each installed FFT backend (one worker process each, threads pinned to ``--threads``) and each point
``(n, S, f, k)``, the ``S f`` maps of ``n x n`` points are transformed in several ways, all timed in one process in
interleaved rounds (each round runs every way once, in a rotated order; each inverse gets its spectrum restored,
untimed, before the call, since inverses may destroy their input):

- **forward map-major**: ``backend.rfftn`` of a contiguous ``(S f, n, n)`` float32 array into a contiguous
  ``(S f, n, n/2+1)`` complex64 array: the library's plain batched rate;
- **forward frequency-major**: ``SpectralPlan.transform_input`` of the ``(S, f, n, n)`` input into its spectrum,
  as the passes run it;
- **inverse map-major**: ``backend.irfftn`` of a contiguous ``(S f, n, n/2+1)`` spectrum, unnormalised;
- **inverse frequency-major + crop**: the blocked inverse of an ``(*bins, 1, S, f)`` product spectrum with the
  forward pass's crop of ``(n-k+1)^2`` outputs and its ``1/N`` scale, as ``SpectralPlan.forward`` runs it after the
  per-bin products (the products themselves are not timed);
- **candidates**: other ways into and out of the same spectra (:data:`CANDIDATES`), measured against the current
  ones in the same rounds.

Rates are GFLOP/s at ``fftconv.costs.real_fft_flops`` (2.5 N log2 N) per map. The speed target: the transforms into
and out of the frequency-major layout reach at least :data:`TARGET` of the map-major rate of the same library,
measured in the same run. The ratio is taken per round (both ways measured back to back), and its median, minimum
and maximum over the rounds are reported. Quick mode shrinks the points (one map count per n, batch 8 at n = 64)
and the rounds; full mode runs S = 32 with f = 96, 256 and 384 at every n. Every row carries its provenance and the
run's settings (docs/experiments.md); the table is drawn from the saved rows only. docs/transforms.md gives the
results and what was decided from them.
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Iterator

from .harness.jobs import Job, measure_jobs
from .harness.methods import parse_method
from .harness.points import timed_rows
from .harness.results import missing_fields
from .harness.style import markdown_table, write_table
from .harness.timing import Timing, TimingSettings

if TYPE_CHECKING:
    from .harness.workers import Session

NAME = "transform_rates"
DESCRIPTION = "Batched real-FFT rates into/out of the frequency-major spectra vs map-major, per backend"

#: The speed target: frequency-major rate / map-major rate of the same library, same run.
TARGET = 0.8
#: Kernel size per n: the output crop of the inverse is (n - k + 1)^2 (the paper's layers at n = 16 and 32).
KERNELS = {16: 5, 32: 7, 64: 7}
#: (n, S, f) per mode, keyed by ``quick``; the maps are S * f, the paper's counts.
POINTS = {True: [(16, 32, 256), (32, 32, 96), (64, 8, 96)],
          False: [(n, 32, f) for n in (16, 32, 64) for f in (96, 256, 384)]}
#: Interleaved rounds per point, keyed by ``quick`` (``--rounds`` overrides).
ROUNDS = {True: 7, False: 15}
#: Untimed calls of every variant before the rounds: plans, page faults, thread pools.
WARMUP = 2
#: The backends measured unless ``--backends`` says otherwise (numpy's pocketfft has no thread or layout settings).
DEFAULT_BACKENDS = ("pyfftw", "ducc0", "scipy")
#: The current paths, then the candidates. A candidate a backend does not have is not measured there.
CURRENT = ("forward map-major", "forward frequency-major", "inverse map-major", "inverse frequency-major + crop")
CANDIDATES = {
    "forward channels-last": "input stored (n, n, S f), batch innermost, into a contiguous (n, n/2+1, S f) spectrum",
    "forward frequency-major, map-major stage": "blocks of maps transformed map-major into a buffer, then copied "
                                                "(transposed) into the spectrum",
    "forward frequency-major, strided writes": "maps transformed straight into the spectrum through its strides, "
                                               "no stage buffer (pyFFTW; ducc0 always writes so)",
    "forward frequency-major, compact stage": "blocks transformed into a buffer laid out like the spectrum without "
                                              "its gaps, then copied into it",
    "forward frequency-major, strided writes in blocks": "blocks of maps (cut as the staged path cuts them) "
                                                         "transformed straight into the spectrum through its strides",
    "inverse frequency-major, no crop": "the current blocked inverse handing its blocks to a consumer that does "
                                        "nothing: how much of the gap to map-major the crop is",
    "inverse frequency-major + crop, map-major gather": "blocks of the spectrum copied (transposed) into a map-major "
                                                        "buffer, then inverse-transformed map-major and cropped",
    "inverse frequency-major + crop, compact gather": "blocks of the spectrum copied into a buffer laid out like the "
                                                      "spectrum without its gaps, then inverse-transformed",
    "inverse frequency-major + crop, strided reads": "blocks inverse-transformed straight from the spectrum through "
                                                     "its strides",
}
#: Which candidates are alternatives for which backend (the others already work that way, or cannot).
BACKEND_CANDIDATES = {
    "pyfftw": ("forward channels-last", "forward frequency-major, map-major stage",
               "forward frequency-major, strided writes", "forward frequency-major, compact stage",
               "forward frequency-major, strided writes in blocks", "inverse frequency-major, no crop",
               "inverse frequency-major + crop, map-major gather",
               "inverse frequency-major + crop, compact gather", "inverse frequency-major + crop, strided reads"),
    "ducc0": ("forward channels-last", "forward frequency-major, map-major stage", "inverse frequency-major, no crop",
              "inverse frequency-major + crop, map-major gather"),
    "scipy": ("forward channels-last", "inverse frequency-major, no crop",
              "inverse frequency-major + crop, map-major gather"),
    "numpy": ("forward channels-last", "inverse frequency-major, no crop"),
}
#: The map-major variant each other one is compared with (the speed target), and the current path each candidate is
#: compared with (whether it wins).
BASELINE = {"forward": "forward map-major", "inverse": "inverse map-major"}
CURRENT_PATH = {"forward": "forward frequency-major", "inverse": "inverse frequency-major + crop"}
#: Libraries whose versions go into every row (the provenance names numpy, scipy, pyfftw and torch; these add ducc0,
#: MKL's FFT and FFTW's own version).
LIBRARIES = ("numpy", "scipy", "pyfftw", "ducc0", "mkl_fft", "threadpoolctl")
#: What a sample measures: elapsed time, or the CPU time of the whole process (all its threads). On a machine that
#: other processes load, CPU time is what the layouts themselves cost (a descheduled thread does not count); the
#: speed target is about wall-clock time on a quiet machine.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
#: The fields that identify a point of this experiment (with ``method`` and ``variant``, a row).
POINT_FIELDS = ("n", "S", "f", "k", "maps", "clock", "threads")


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds per point, at least 3 (default {ROUNDS[True]} quick, "
                             f"{ROUNDS[False]} full)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: the process's CPU time, which other processes "
                             "loading the machine do not inflate (use with --threads 1 on a shared machine)")


def validate(row: dict) -> str | None:
    """Why a saved row cannot be tabulated (``None``: it can): the point, the method and the variant, and either a
    timing with its per-round samples and flops, or a reason (``error``, ``skipped``).

    Examples
    --------
    >>> validate({"n": 16, "S": 2, "f": 4, "k": 5, "maps": 8, "clock": "wall", "threads": 1, "method": "fft-numpy",
    ...           "variant": "forward map-major", "error": "MemoryError"}) is None
    True
    >>> validate({"n": 16, "method": "fft-numpy"})
    'missing fields: S, f, k, maps, clock, threads, variant'
    """
    problem = missing_fields(row, *POINT_FIELDS, "method", "variant")
    if problem:
        return problem
    if "median_s" in row:
        return missing_fields(row, "min_s", "max_s", "samples_s", "repeats", "flops", "gflops", "gflops_best")
    if "error" not in row and "skipped" not in row:
        return "neither a timing (median_s) nor a reason (error, skipped)"
    return None


def library_versions() -> dict:
    """Versions of the FFT and BLAS libraries (FFTW's own version from pyFFTW; BLAS from threadpoolctl)."""
    versions: dict = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import pyfftw

        versions["fftw"] = dict(pyfftw._fftw_version_dict)
    except (ImportError, AttributeError):
        versions["fftw"] = None
    from threadpoolctl import threadpool_info

    versions["blas"] = [{key: pool.get(key) for key in ("internal_api", "version", "architecture")}
                        for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return versions


def variants_for(backend: str) -> list[str]:
    """The current paths, then the candidates of ``backend`` (by name)."""
    return [*CURRENT, *BACKEND_CANDIDATES.get(backend, ())]


def run_settings(ctx) -> tuple[int, str, int]:
    """``(rounds, clock, threads)`` of this run: the experiment's options, or their defaults where the context has
    only the common options (an experiment called from Python)."""
    rounds = getattr(ctx.options, "rounds", None) or ROUNDS[ctx.quick]
    if rounds < 3:
        raise ValueError(f"--rounds must be at least 3 for a median with a spread, got {rounds}")
    clock = getattr(ctx.options, "clock", None) or "wall"
    if clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(sorted(CLOCKS))}, got {clock!r}")
    threads = getattr(ctx.options, "threads", None) or len(os.sched_getaffinity(0))
    return rounds, clock, threads


def timing_settings(rounds: int) -> TimingSettings:
    """What every worker runs, as the rows' ``timing`` field records it: :data:`WARMUP` untimed calls, then exactly
    ``rounds`` timed calls per variant (the rounds, not a time budget, set the count)."""
    return TimingSettings(warmup=WARMUP, min_repeats=rounds, max_repeats=rounds, budget_seconds=0.0)


def measure(ctx) -> None:
    import fftconv

    available = fftconv.available_backends()
    backends = ctx.selected("backends", available, [b for b in DEFAULT_BACKENDS if b in available])
    rounds, clock, threads = run_settings(ctx)
    ctx.record_settings(target=TARGET, candidates=dict(CANDIDATES))
    jobs = []
    for n, batch, maps_per_image in POINTS[ctx.quick]:
        key = {"n": n, "S": batch, "f": maps_per_image, "k": KERNELS[n], "maps": batch * maps_per_image,
               "clock": clock, "threads": threads}
        for backend in backends:
            jobs.append(Job(f"fft-{backend}", key, [{"variant": v} for v in variants_for(backend)], case=dict(key)))
    measure_jobs(ctx, jobs, f"experiments.{NAME}:rates_task", timing_settings(rounds), threads=threads, desc=NAME)


# ---------------------------------------------------------------------------------------------------- worker side
def rates_task(case: dict, session: Session) -> Iterator[dict]:
    """Task: every variant in ``case["todo"]`` at one point, timed in interleaved rounds in this process
    (``session.settings``: the warm-up calls and the rounds)."""
    from fftconv.costs import real_fft_flops

    wanted = [subkey["variant"] for subkey in case["todo"]]
    calls = variant_calls(session.backend, case, wanted).calls
    clock = CLOCKS[case["clock"]]
    plan_before = session.plan_seconds()
    warmup_seconds = {}
    for name, (call, restore) in calls.items():
        start = clock()
        for _ in range(session.settings.warmup):
            if restore is not None:
                restore()
            call()
        warmup_seconds[name] = clock() - start
    planned = session.plan_seconds() - plan_before
    samples = interleaved_rounds(calls, session.settings.max_repeats, clock)
    planned_in_timing = session.plan_seconds() - plan_before - planned
    flops = case["maps"] * real_fft_flops((case["n"], case["n"]))
    libraries = library_versions()
    for name in wanted:
        timing = Timing.from_samples(samples[name], session.settings.warmup, warmup_seconds[name])
        yield {"variant": name, **timing.as_row(), "gflops": flops / timing.median / 1e9,
               "gflops_best": flops / timing.min / 1e9, "flops": flops, "plan_s": planned,
               "plan_s_in_timing": planned_in_timing, "libraries": libraries, "dtype": "float32"}


def interleaved_rounds(calls: dict[str, tuple[Callable[[], object], Callable[[], object] | None]], rounds: int,
                       clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of every call in each of ``rounds`` rounds, in round order.

    ``calls`` maps a name to ``(call, restore)``. Each round runs every call once, the order rotated by one per round
    so that no call always goes first (or always follows the same one); ``restore`` (when not ``None``) runs untimed
    just before its call, to refill an input the call may destroy.

    Examples
    --------
    >>> order, ticks = [], iter(range(100))
    >>> calls = {name: (lambda name=name: order.append(name), None) for name in "abc"}
    >>> samples = interleaved_rounds(calls, 3, clock=lambda: float(next(ticks)))
    >>> "".join(order), samples["a"]
    ('abcbcacab', [1.0, 1.0, 1.0])
    """
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            call, restore = calls[name]
            if restore is not None:
                restore()
            start = clock()
            call()
            samples[name].append(clock() - start)
    return samples


def fftconv_internals() -> SimpleNamespace:
    """The fftconv names beyond its public API that this experiment uses; imported here only, and lazily (numpy
    loads after the command line has pinned the thread counts).

    ``progressions`` and ``gather_into`` crop and scale the inverse as the forward pass does
    (``SpectralPlan.forward``); ``for_blocks`` is the block loop of the blocked transforms; ``pyfftw_backend`` is
    the module whose layout thresholds (``STAGE_MIN_BYTES``, ``STRIDED_MAX_BYTES``) some candidates force.
    """
    from fftconv._cyclic import gather_into, progressions
    from fftconv.backends import blocks
    from fftconv.backends import pyfftw as pyfftw_backend

    return SimpleNamespace(gather_into=gather_into, progressions=progressions, for_blocks=blocks.for_blocks,
                           pyfftw_backend=pyfftw_backend)


def variant_calls(backend, case: dict, wanted: list[str]) -> SimpleNamespace:
    """The work of one point: ``calls``, ``name -> (call, restore)``, the timed call of each variant and, for
    inverses, the untimed refill of the spectrum it may destroy; and the arrays they read and write (``x``, the
    input; ``spectrum_mm``, ``input_view`` and ``spectrum_cl``, where the forward variants write; ``maps``, the
    real maps whose spectra the inverses read, and ``crop``, where the frequency-major inverses write)."""
    import numpy as np

    import fftconv

    internals = fftconv_internals()
    n, batch, f, k = case["n"], case["S"], case["f"], case["k"]
    maps, half, shape = batch * f, n // 2 + 1, (n, n)
    rng = np.random.default_rng(0)
    geometry = fftconv.ConvGeometry.from_shapes((batch, f, n, n), (f, f, k, k))
    plan = fftconv.SpectralPlan.create(geometry, np.float32, backend=backend, fft_size=shape)
    layout, axes = plan.layout, plan.layout.axes
    x = backend.empty((batch, f, n, n), np.float32)
    x[...] = rng.standard_normal(x.shape, dtype=np.float32)
    map_major = x.reshape(maps, n, n)
    spectrum_mm = backend.empty((maps, n, half), np.complex64)
    input_spectrum = layout.new_spectrum("input")
    # the forward pass's product spectrum, (*bins, groups, S, f'), and its crop, as SpectralPlan.forward reads it
    product = layout.empty((*input_spectrum.shape[:-1], f))
    product_view = layout.channels_first(product)
    real_maps = rng.standard_normal(product_view.shape[:3] + shape, dtype=np.float32)
    np.copyto(product_view, np.fft.rfftn(real_maps, axes=axes))  # spectra of real maps: Hermitian where they must be
    saved = product.copy()
    saved_mm = np.ascontiguousarray(product_view.reshape(maps, n, half))
    # the forward pass reads output i at kernel_shift + i (stride 1, no padding), kernel_shift = k - 1
    reads = internals.progressions(geometry.output_shape, (1, 1), [d - 1 for d in geometry.dilated_kernel_shape],
                                   shape)
    crop = np.empty((batch, 1, f, *geometry.output_shape), np.float32)
    scale = 1.0 / (n * n)

    def crop_block(block, block_maps):
        internals.gather_into(crop[block[:3]], block_maps, reads, scale)

    def ignore_block(block, block_maps):
        pass

    def restore_product():
        np.copyto(product, saved)

    def restore_map_major():
        np.copyto(spectrum_mm, saved_mm)

    calls: dict[str, tuple[Callable, Callable | None]] = {
        "forward map-major": (lambda: backend.rfftn(map_major, shape, (1, 2), out=spectrum_mm), None),
        "forward frequency-major": (lambda: plan.transform_input(x, out=input_spectrum), None),
        "inverse map-major": (lambda: backend.irfftn(spectrum_mm, shape, (1, 2), overwrite_input=True,
                                                     normalise=False), restore_map_major),
        "inverse frequency-major + crop": (lambda: backend.irfftn_blocks(product_view, shape, axes, crop_block),
                                           restore_product),
        "inverse frequency-major, no crop": (lambda: backend.irfftn_blocks(product_view, shape, axes, ignore_block),
                                             restore_product),
    }
    spectrum_cl = None
    if "forward channels-last" in wanted:
        channels_last = backend.empty((n, n, maps), np.float32)
        channels_last[...] = map_major.transpose(1, 2, 0)
        spectrum_cl = backend.empty((n, half, maps), np.complex64)
        calls["forward channels-last"] = (lambda: backend.rfftn(channels_last, shape, (0, 1), out=spectrum_cl), None)
    threads = getattr(backend, "threads", None) or getattr(backend, "workers", 1)
    single = [single_threaded(backend) for _ in range(threads)]  # one per task: plans and buffers unshared
    spectrum_view = layout.channels_first(input_spectrum)
    input_maps = x.reshape(batch, 1, f, n, n)
    if "forward frequency-major, map-major stage" in wanted:
        def map_major_stage():
            internals.for_blocks(spectrum_view, axes, threads, lambda block, task: np.copyto(
                spectrum_view[block], single[task].rfftn(input_maps[block], shape, axes)))
        calls["forward frequency-major, map-major stage"] = (map_major_stage, None)
    if "forward frequency-major, strided writes in blocks" in wanted:
        def strided_blocks():
            internals.for_blocks(spectrum_view, axes, threads, lambda block, task: single[task].rfftn(
                input_maps[block], shape, axes, out=spectrum_view[block]))
        calls["forward frequency-major, strided writes in blocks"] = (strided_blocks, None)
    if backend.name == "pyfftw":  # the same calls with pyFFTW's layout rules forced one way or the other
        forward_pass, inverse_pass = calls["forward frequency-major"][0], calls["inverse frequency-major + crop"][0]
        for name, setting, value, call in (
                ("forward frequency-major, strided writes", "STAGE_MIN_BYTES", 1 << 62, forward_pass),
                ("forward frequency-major, compact stage", "STRIDED_MAX_BYTES", 0, forward_pass),
                ("inverse frequency-major + crop, compact gather", "STRIDED_MAX_BYTES", 0, inverse_pass),
                ("inverse frequency-major + crop, strided reads", "STRIDED_MAX_BYTES", 1 << 62, inverse_pass)):
            if name in wanted:
                restore = restore_product if name.startswith("inverse") else None
                calls[name] = (with_setting(internals.pyfftw_backend, setting, value, call), restore)
    if "inverse frequency-major + crop, map-major gather" in wanted:
        def map_major_gather():
            def run_block(block, task):
                part = product_view[block]
                buffer = single[task].empty(part.shape, part.dtype)
                np.copyto(buffer, part)
                crop_block(block, single[task].irfftn(buffer, shape, axes, overwrite_input=True, normalise=False))
            internals.for_blocks(product_view, axes, threads, run_block)
        calls["inverse frequency-major + crop, map-major gather"] = (map_major_gather, restore_product)
    unknown = [name for name in wanted if name not in calls]
    if unknown:
        raise ValueError(f"variants {unknown} are not measured with backend {backend.name!r}; its variants are "
                         f"{variants_for(backend.name)}")
    return SimpleNamespace(calls={name: calls[name] for name in wanted}, x=x, spectrum_mm=spectrum_mm,
                           input_view=spectrum_view, spectrum_cl=spectrum_cl, maps=real_maps, crop=crop)


def with_setting(module, name: str, value, call: Callable) -> Callable:
    """``call`` run with the module constant ``name`` set to ``value`` (restored afterwards). Only for the worker
    process, which runs one variant at a time."""
    def run():
        saved = getattr(module, name)
        setattr(module, name, value)
        try:
            call()
        finally:
            setattr(module, name, saved)
    return run


def single_threaded(backend):
    """A one-thread instance of ``backend``'s library, with the same settings otherwise."""
    import fftconv

    if backend.name == "pyfftw":
        return fftconv.PyfftwBackend(threads=1, planner_effort=backend.planner_effort)
    if backend.name == "ducc0":
        return fftconv.backends.Ducc0Backend(threads=1)
    if backend.name == "scipy":
        return fftconv.ScipyBackend(workers=1)
    return fftconv.NumpyBackend()


# ---------------------------------------------------------------------------------------------------- summary
def direction(variant: str) -> str:
    return variant.split()[0]


def paired_ratios(variant_row: dict, baseline_row: dict) -> list[float]:
    """Per-round rate ratios ``variant / baseline`` = baseline seconds / variant seconds, round by round (one worker
    measured both, its samples in round order).

    Examples
    --------
    >>> paired_ratios({"samples_s": [2.0, 4.0]}, {"samples_s": [1.0, 3.0]})
    [0.5, 0.75]
    """
    return [base / mine for base, mine in zip(baseline_row["samples_s"], variant_row["samples_s"])]


def spread(ratios: list[float] | None) -> dict:
    """Median, minimum and maximum of per-round ratios (``None`` each without ratios).

    Examples
    --------
    >>> spread([1.0, 0.5, 2.0]), spread(None)["median"]
    ({'median': 1.0, 'min': 0.5, 'max': 2.0}, None)
    """
    if not ratios:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def summary_rows(rows: list[dict]) -> list[dict]:
    """One entry per (clock, threads, backend, point, variant) with its rate and, for the variants that are not
    map-major baselines, the per-round ratio to the baseline of the same direction."""
    fields = ("clock", "threads", "method", "n", "S", "f")
    index = {(*(row.get(f) for f in fields), row["variant"]): row for row in timed_rows(rows)}
    entries = []
    def order(item):  # clock, threads and backend as text; the sizes as numbers; the variants in list order
        (clock, threads, method, *sizes, variant), _ = item
        return (str(clock), str(threads), str(method), *sizes, variant_order(variant))

    for key, row in sorted(index.items(), key=order):
        *point, variant = key
        baseline = index.get((*point, BASELINE[direction(variant)]))
        current = index.get((*point, CURRENT_PATH[direction(variant)])) if variant not in CURRENT else None
        entries.append({**dict(zip(fields, point)), "maps": row["maps"], "variant": variant,
                        "gflops": row["gflops"], "gflops_min": row["flops"] / row["max_s"] / 1e9,
                        "gflops_max": row["gflops_best"], "median_ms": row["median_s"] * 1e3,
                        "to_map_major": spread(paired_ratios(row, baseline) if baseline not in (None, row) else None),
                        "to_current": spread(paired_ratios(row, current) if current is not None else None),
                        "rounds": row["repeats"]})
    return entries


def variant_order(variant: str) -> tuple:
    ordered = [*CURRENT, *CANDIDATES]
    return (ordered.index(variant) if variant in ordered else len(ordered), variant)


def percent(ratios: dict) -> str:
    """``"93% [71%-120%]"`` from :func:`spread`'s fields, '-' without ratios.

    Examples
    --------
    >>> percent({"median": 0.93, "min": 0.71, "max": 1.2}), percent(spread(None))
    ('93% [71%-120%]', '-')
    """
    if ratios["median"] is None:
        return "-"
    return f"{ratios['median']:.0%} [{ratios['min']:.0%}-{ratios['max']:.0%}]"


def libraries_note(rows: list[dict]) -> str:
    """The libraries the rows' workers ran with, one line per distinct set (newest first)."""
    lines = []
    for row in reversed(rows):
        libraries = row.get("libraries")
        if not isinstance(libraries, dict):
            continue
        versions = ", ".join(f"{name} {version}" for name, version in libraries.items()
                             if name not in ("fftw", "blas") and version)
        fftw = (libraries.get("fftw") or {}).get("32")
        blas = "; ".join(f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')})"
                         for pool in libraries.get("blas") or [])
        line = f"Libraries: {versions}" + (f"; FFTW {fftw}" if fftw else "") + (f"; BLAS {blas}" if blas else "")
        if line not in lines:
            lines.append(line)
    return "".join(f"{line}.\n" for line in lines)


def table(ctx, rows: list[dict]) -> str:
    """The markdown page: every timed variant with its rate and per-round ratios, the failures, the candidates."""
    stored, recorded = ctx.saved_settings({"target": TARGET, "candidates": dict(CANDIDATES)})
    target = stored["target"]
    header = ["clock, threads", "backend", "n", "maps (S x f)", "variant", "GFLOP/s median [min-max]", "ms",
              "rate / map-major's, per round: median [min-max]", f"target >= {target:.0%}",
              "rate / current path's, per round"]
    body = []
    for e in summary_rows(rows):
        to_map_major, to_current = e["to_map_major"], e["to_current"]
        verdict = "-" if to_map_major["median"] is None else "met" if to_map_major["median"] >= target else "missed"
        body.append([f"{e['clock']}, {e['threads']}", parse_method(e["method"])["backend"], e["n"],
                     f"{e['maps']} ({e['S']} x {e['f']})", e["variant"],
                     f"{e['gflops']:.1f} [{e['gflops_min']:.1f}-{e['gflops_max']:.1f}]", f"{e['median_ms']:.2f}",
                     percent(to_map_major), verdict, percent(to_current)])
    failures = sorted({f"{row['method']}, n = {row['n']}, {row['variant']}: {row.get('error') or row['skipped']}"
                       for row in rows if "median_s" not in row})
    notes = "\n".join(f"- **{name}**: {text}." for name, text in stored["candidates"].items())
    return (f"# Batched real-FFT rates: frequency-major vs map-major, {ctx.mode} mode\n\n"
            + ctx.describe("float32 maps of n x n points, GFLOP/s at 2.5 N log2 N per map; each backend in its own "
                           "process, all variants of a point in the same interleaved rounds") + "\n\n"
            + ctx.provenance_note() + libraries_note(rows)
            + ("" if recorded else "The settings were not stored with these rows; the target and the candidates' "
                                   "descriptions are the code's current values.\n")
            + "\n" + markdown_table(header, body)
            + "\nEach ratio is the other variant's time over this one's, round by round (both measured back to back, "
              "so a loaded machine slows both sides of a ratio alike); the map-major ratio is the speed target, the "
              "current path's says whether a candidate wins.\n"
            + ("\nNot measured:\n\n" + "\n".join(f"- {line}" for line in failures) + "\n" if failures else "")
            + "\nCandidates:\n\n" + notes + "\n")


def plot(ctx) -> None:
    rows = ctx.rows()
    if rows:
        write_table(ctx.out_dir, NAME, table(ctx, rows))
