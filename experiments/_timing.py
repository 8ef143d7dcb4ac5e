"""The one timing helper of the speed experiments: how a number in ``paper_figures/`` was measured.

Methodology (``experiments/README_timing.md`` says the same for users):

1. **Warm-up, then the median of repeats.** :func:`time_function` calls the function ``warmup`` times untimed (this
   builds FFTW plans, faults in pages, fills caches), then times single calls with :func:`time.perf_counter` until
   it has ``min_repeats`` calls and has spent ``budget_seconds``, or reaches ``max_repeats``. It keeps the median,
   the minimum and the maximum (and every sample).
2. **Threads pinned and recorded.** Each worker process starts with ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
   ``MKL_NUM_THREADS`` and ``FFTCONV_THREADS`` set to ``--threads`` before numpy loads, then also limits BLAS with
   threadpoolctl, configures fftconv's pyfftw/scipy backends with that many threads and calls
   ``torch.set_num_threads`` (torch workers only). What the worker actually got (threadpoolctl's report, torch's
   thread count, the backend's settings) is written into every results row.
3. **One process per method.** Every method (one fftconv algorithm with one FFT backend, or PyTorch) runs in its
   own worker process, ``python -m experiments._timing worker``, which reads a JSON spec on stdin and writes one
   JSON line per measured point on stdout. OpenBLAS's pthreads, FFTW's OpenMP pool and torch's GOMP pool spin-wait
   after parallel work, and on a 2-core machine they steal the cores from each other when they share a process
   (``cpu-baseline.md`` saw rfft2 slow down 2x right after a torch call). The parent process never imports torch.
   Inside an fftconv FFT worker, FFTW's pool and OpenBLAS still coexist: that is the algorithm itself.
4. **Plan and wisdom time excluded.** The warm-up call builds the FFT plans; the pyfftw backend's ``plan_seconds``
   before and after it is reported as ``plan_s`` (and any planning during the timed calls as
   ``plan_s_in_timing``, which should be 0). FFTW wisdom is loaded from and saved to a cache file
   (:func:`wisdom_path`) so that later workers plan faster; the load time is reported as ``wisdom_load_s``.
   ``FFTCONV_BENCH_PLANNER=FFTW_ESTIMATE`` (for example) overrides the planner effort; the backend's settings,
   recorded in every row, show which one ran.
5. **Memory behaviour controlled.** Workers run with glibc's ``MALLOC_MMAP_THRESHOLD_`` and
   ``MALLOC_TRIM_THRESHOLD_`` raised (:data:`TUNED_MALLOC`), so that large temporaries freed by one call are
   reused by the next instead of being unmapped and page-faulted in again; ``cpu-baseline.md`` measured that this
   alone changes PyTorch's 3x3 times by 3-4x and makes them bimodal between processes. Inputs are generated once
   per point, inside the worker, from a seed (nothing big is pickled) and reused by every call. The setting is
   recorded in every row (``malloc``).

Rows carry ``median_s``, ``min_s``, ``max_s``, ``repeats``, ``samples_s``, ``warmup_s``, ``plan_s``, ``threads``,
the git commit that measured them (a resumed run may mix commits: ``--force`` measures everything again) and a
``worker`` description. Noise: another process using the CPU at the same time slows every method; compare
methods measured in one run, and treat differences under ~15 % as noise (``cpu-baseline.md`` section 4).

Examples
--------
>>> ticks = iter([0.0, 0.0, 0.0, 1.0, 1.0, 3.0, 3.0, 4.0])  # fake clock: no warm-up, calls take 1, 2 and 1 s
>>> t = time_function(lambda: None, warmup=0, min_repeats=3, max_repeats=3, clock=lambda: next(ticks))
>>> t.median, t.min, t.max, t.repeats
(1.0, 1.0, 2.0, 3)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

#: The repository root; workers run there so that ``experiments`` is importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: glibc settings that stop large freed buffers from being returned to the OS and faulted in again on every call.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
#: Thread-count variables a worker gets before numpy (or torch) loads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FFTCONV_THREADS")
#: The three convolutions of a training step, with the paper's (Torch 7) names.
PASSES = ("forward", "grad_input", "grad_weight")
PAPER_NAMES = {"forward": "updateOutput", "grad_input": "updateGradInput", "grad_weight": "accGradParameters"}
#: fftconv algorithms that never use an FFT backend.
SPATIAL_ALGOS = ("im2col", "direct")
#: ``algo="direct"`` is a float64 reference: einsum per tap runs at roughly this many flop/s here (measured ~2e9 on
#: the 2-core machine; taken lower to be safe). Used only to decide what to skip.
DIRECT_FLOPS_PER_SECOND = 1.5e9
#: Skip ``direct`` at a point when one call is expected to take longer than this (quick mode, full mode).
DIRECT_MAX_SECONDS_PER_CALL = {True: 0.5, False: 5.0}
#: Set to a path to choose where FFTW wisdom is cached, or to "off" to neither load nor save wisdom.
WISDOM_VARIABLE = "FFTCONV_BENCH_WISDOM"
#: Set to an FFTW planner effort (e.g. "FFTW_ESTIMATE") to override the pyfftw backend's default in the workers.
PLANNER_VARIABLE = "FFTCONV_BENCH_PLANNER"


# ---------------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min and max of the timed repeats, plus the warm-up time and every sample."""

    median: float
    min: float
    max: float
    repeats: int
    warmup: int
    warmup_seconds: float
    samples: tuple[float, ...] = field(repr=False)

    @classmethod
    def from_samples(cls, samples: Sequence[float], warmup: int = 0, warmup_seconds: float = 0.0) -> "Timing":
        """Summarise ``samples`` (seconds per call).

        Examples
        --------
        >>> Timing.from_samples([3.0, 1.0, 2.0, 10.0]).median
        2.5
        """
        if not samples:
            raise ValueError("samples must hold at least one timed call, got none")
        return cls(median=float(statistics.median(samples)), min=float(min(samples)), max=float(max(samples)),
                   repeats=len(samples), warmup=warmup, warmup_seconds=float(warmup_seconds),
                   samples=tuple(float(s) for s in samples))

    def as_row(self) -> dict[str, Any]:
        """Fields for a results row (seconds)."""
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "repeats": self.repeats,
                "warmup_calls": self.warmup, "warmup_s": self.warmup_seconds, "samples_s": list(self.samples)}


def time_function(fn: Callable[[], Any], *, warmup: int = 1, min_repeats: int = 3, max_repeats: int = 7,
                  budget_seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then timed calls until both ``min_repeats`` calls and
    ``budget_seconds`` of timed calls are done, or ``max_repeats`` calls are.

    The result of ``fn`` is dropped after each call (inside the timed region, as a caller would drop it), so its
    memory is freed and reused by the next call.

    Parameters
    ----------
    fn : callable with no arguments
    warmup : int
        Untimed calls first (plans, page faults, caches). Their total time is kept as ``warmup_seconds``.
    min_repeats, max_repeats : int
        Bounds on the number of timed calls; ``1 <= min_repeats <= max_repeats``.
    budget_seconds : float
        Keep timing (up to ``max_repeats``) until this much timed time has passed: fast calls get more repeats.
    clock : callable
        Seconds as a float; :func:`time.perf_counter` unless a test passes a fake clock.

    Examples
    --------
    >>> t = time_function(lambda: sum(range(100)), warmup=1, min_repeats=5, max_repeats=5)
    >>> t.repeats, t.min <= t.median <= t.max
    (5, True)
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got min_repeats={min_repeats}, "
                         f"max_repeats={max_repeats}")
    start = clock()
    for _ in range(warmup):
        fn()
    warmup_seconds = clock() - start
    samples: list[float] = []
    while len(samples) < max_repeats:
        start = clock()
        fn()
        samples.append(clock() - start)
        if len(samples) >= min_repeats and sum(samples) >= budget_seconds:
            break
    return Timing.from_samples(samples, warmup, warmup_seconds)


def time_phases(phases: Sequence[Callable[[], Any]], *, warmup: int = 1, min_repeats: int = 3,
                max_repeats: int = 7, budget_seconds: float = 1.0,
                clock: Callable[[], float] = time.perf_counter) -> tuple[list[Timing], Timing]:
    """Time consecutive phases of one iteration (e.g. forward then backward), each call of each phase separately.

    Every repeat runs ``phases`` in order, reading the clock between them, so phases that depend on each other
    (backward needs the forward's saved state) are timed as they run in training. Same repeat rule as
    :func:`time_function`; returns one :class:`Timing` per phase and one for the whole iteration.

    Examples
    --------
    >>> ticks = iter([0.0, 0.0, 0.0, 1.0, 3.0, 3.0, 4.0, 6.0])  # no warm-up; then phases take 1 s and 2 s, twice
    >>> (first, second), whole = time_phases([lambda: 0, lambda: 1], warmup=0, min_repeats=2, max_repeats=2,
    ...                                      clock=lambda: next(ticks))
    >>> first.median, second.median, whole.median
    (1.0, 2.0, 3.0)
    """
    if not phases:
        raise ValueError("phases must hold at least one callable")
    if warmup < 0 or not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"need warmup >= 0 and 1 <= min_repeats <= max_repeats, got warmup={warmup}, "
                         f"min_repeats={min_repeats}, max_repeats={max_repeats}")
    start = clock()
    for _ in range(warmup):
        for phase in phases:
            phase()
    warmup_seconds = clock() - start
    samples: list[list[float]] = [[] for _ in phases]
    totals: list[float] = []
    while len(totals) < max_repeats:
        marks = [clock()]
        for phase in phases:
            phase()
            marks.append(clock())
        for index in range(len(phases)):
            samples[index].append(marks[index + 1] - marks[index])
        totals.append(marks[-1] - marks[0])
        if len(totals) >= min_repeats and sum(totals) >= budget_seconds:
            break
    return ([Timing.from_samples(s, warmup, warmup_seconds) for s in samples],
            Timing.from_samples(totals, warmup, warmup_seconds))


@dataclass(frozen=True)
class TimingSettings:
    """How many calls :func:`time_function` makes; quick mode uses fewer repeats than full mode."""

    warmup: int = 1
    min_repeats: int = 5
    max_repeats: int = 11
    budget_seconds: float = 2.0

    @classmethod
    def for_mode(cls, quick: bool) -> "TimingSettings":
        return cls(warmup=1, min_repeats=3, max_repeats=7, budget_seconds=0.5) if quick else cls()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------- methods
def parse_method(label: str) -> dict[str, str | None]:
    """``"torch"`` -> PyTorch; ``"fft-pyfftw"`` -> fftconv ``algo="fft"`` with that backend; any other name is an
    fftconv algorithm (``"im2col"``, ``"direct"``, ...).

    Examples
    --------
    >>> parse_method("fft-scipy")
    {'library': 'fftconv', 'algo': 'fft', 'backend': 'scipy'}
    >>> parse_method("torch")
    {'library': 'torch', 'algo': None, 'backend': None}
    """
    if label == "torch":
        return {"library": "torch", "algo": None, "backend": None}
    algo, _, backend = label.partition("-")
    return {"library": "fftconv", "algo": algo, "backend": backend or None}


def torch_available() -> bool:
    """Whether PyTorch is installed, found without importing it (importing would start its thread pool here)."""
    return importlib.util.find_spec("torch") is not None


def default_backend_name() -> str:
    """fftconv's default FFT backend in this environment."""
    import fftconv

    return fftconv.get_backend().name


def select_methods(ctx, default_algos: Sequence[str] = ("fft", "im2col", "direct", "torch"),
                   default_backends: Sequence[str] | None = None) -> list[str]:
    """Method labels for this run from ``--algos`` and ``--backends`` (``fft`` expands to one label per backend).

    ``torch`` is dropped, with a message, when PyTorch is not installed.
    """
    import fftconv

    algos = list(getattr(ctx.options, "algos", None) or default_algos)
    backends = list(getattr(ctx.options, "backends", None) or default_backends or [default_backend_name()])
    known_algos = set(fftconv.ALGORITHMS) | {"torch"}
    unknown = [a for a in algos if a not in known_algos]
    if unknown:
        raise ValueError(f"--algos {' '.join(unknown)}: unknown; valid: {' '.join(sorted(known_algos))}")
    missing = [b for b in backends if b not in fftconv.available_backends()]
    if missing:
        raise ValueError(f"--backends {' '.join(missing)}: not available here; available: "
                         f"{' '.join(fftconv.available_backends())}")
    labels: list[str] = []
    for algo in algos:
        if algo == "fft":
            labels += [f"fft-{backend}" for backend in backends]
        elif algo == "torch" and not torch_available():
            print(f"{ctx.name}: PyTorch is not installed; the torch baseline is skipped", file=sys.stderr)
        else:
            labels.append(algo)
    return labels


def output_size(n: int, k: int, padding: int = 0) -> int:
    return n + 2 * padding - k + 1


def direct_flops(case: dict) -> int:
    """Multiply-adds x 2 of one pass done directly: ``2 S f f' m^2 k^2`` (the same for all three passes)."""
    m = output_size(case["n"], case["k"], case.get("padding", 0))
    return 2 * case["S"] * case["f"] * case["fp"] * m * m * case["k"] ** 2


def direct_too_slow(case: dict, limit_seconds: float = DIRECT_MAX_SECONDS_PER_CALL[False]) -> str | None:
    """Why ``direct`` is skipped at ``case`` (or ``None`` if it is fast enough to time)."""
    estimate = direct_flops(case) / DIRECT_FLOPS_PER_SECOND
    if estimate > limit_seconds:
        return (f"direct (a float64 reference) would take ~{estimate:.0f} s per call here "
                f"(limit {limit_seconds:g} s); not timed")
    return None


# ---------------------------------------------------------------------------------------------------- parent side
def wisdom_path() -> Path | None:
    """Where workers cache FFTW wisdom (``$FFTCONV_BENCH_WISDOM``, default ``~/.cache/fftconv/``); ``None``: off."""
    value = os.environ.get(WISDOM_VARIABLE)
    if value == "off":
        return None
    if value:
        return Path(value)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fftconv" / "fftw-wisdom-benchmarks.pickle"


def worker_environment(threads: int, malloc: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: the parent's, threads pinned, malloc tuned (unless ``malloc={}``)."""
    env = dict(os.environ)
    for variable in THREAD_VARIABLES:
        env[variable] = str(threads)
    env.update(TUNED_MALLOC if malloc is None else malloc)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class WorkerError(RuntimeError):
    """A worker process died; its stderr tail is in the message."""


def run_worker(spec: dict, threads: int, malloc: dict[str, str] | None = None) -> Iterator[dict]:
    """Start one worker for ``spec`` and yield its JSON lines as they arrive (rows stream: resumable).

    ``spec`` = ``{"method": label, "task": "module:function", "settings": {...}, "cases": [...]}``. The worker
    writes ``{"case": i, ...row...}`` per measured point, ``{"worker": info}`` once at start and
    ``{"done": true}`` at the end. Raises :class:`WorkerError` if it exits without ``done``.
    """
    spec = dict(spec, threads=threads)
    process = subprocess.Popen([sys.executable, "-m", "experiments._timing", "worker"], cwd=REPO_ROOT,
                               env=worker_environment(threads, malloc), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []

    def drain_stderr():  # keep the pipe from filling; keep the tail for error messages
        for line in process.stderr:
            stderr_lines.append(line)
            del stderr_lines[:-40]

    import threading

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    done = False
    try:
        process.stdin.write(json.dumps(spec))
        process.stdin.close()
        for line in process.stdout:
            if not line.startswith("{"):
                continue  # a library printed something: not ours
            message = json.loads(line)
            if message.get("done"):
                done = True
            yield message
    finally:
        if process.poll() is None and not done:
            process.kill()
        process.wait()
        reader.join(timeout=5)
    if not done:
        raise WorkerError(f"worker for {spec['method']} exited with code {process.returncode} before finishing:\n"
                          + "".join(stderr_lines[-20:]))


@dataclass
class Job:
    """One point of a sweep for one method: ``case`` (sent to the worker) and the rows it must produce.

    Every row gets ``key`` (the identity used to resume: ``ResultsFile.has``) plus ``method`` plus one of
    ``subkeys`` (e.g. ``{"pass": "forward"}``), plus what the worker measured.
    """

    method: str
    key: dict
    subkeys: list[dict]
    case: dict = field(default_factory=dict)
    skip_reason: str | None = None

    def row_key(self, subkey: dict) -> dict:
        return {**self.key, "method": self.method, **subkey}


def measure_jobs(ctx, jobs: Sequence[Job], task: str, settings: TimingSettings | None = None,
                 threads: int | None = None, desc: str | None = None,
                 malloc: dict[str, str] | None = None) -> None:
    """Measure every row of ``jobs`` that ``ctx.results`` does not hold yet, one worker process per method.

    Rows are appended as soon as the worker reports them (an interrupted run resumes from the next row); a progress
    bar counts rows. Jobs with ``skip_reason`` get a row with ``skipped`` and no timing. A worker that dies (for
    example killed for memory) gets an ``error`` row for the point in flight, and a new worker continues with the
    rest.
    """
    settings = settings or TimingSettings.for_mode(ctx.quick)
    threads = threads or getattr(ctx.options, "threads", None) or len(os.sched_getaffinity(0))
    pending: dict[str, list[tuple[Job, list[dict]]]] = {}
    total = 0
    for job in jobs:
        todo = [s for s in job.subkeys if not ctx.results.has(job.row_key(s))]
        if not todo:
            continue
        if job.skip_reason:
            for subkey in todo:
                ctx.results.append({**job.row_key(subkey), "skipped": job.skip_reason})
            continue
        pending.setdefault(job.method, []).append((job, todo))
        total += len(todo)
    if not total:
        return
    bar = ctx.progress(range(total), total=total, desc=desc or ctx.name)
    git = (getattr(ctx, "metadata", None) or {}).get("git") or {}
    common = {"threads": threads, "malloc": TUNED_MALLOC if malloc is None else malloc,
              "timing": settings.as_dict(), "git_commit": git.get("commit"), "git_dirty": git.get("dirty")}
    for method, items in pending.items():
        remaining = list(items)
        while remaining:
            spec = {"method": method, "task": task, "settings": settings.as_dict(),
                    "cases": [{**job.case, "todo": todo} for job, todo in remaining]}
            worker_info: dict = {}
            try:
                for message in run_worker(spec, threads, malloc):
                    if "worker" in message:
                        worker_info = message["worker"]
                    elif "case" in message:
                        index = message.pop("case")
                        job, todo = remaining[index]
                        subkey = {k: message.pop(k) for k in list(todo[0]) if k in message}
                        ctx.results.append({**job.row_key(subkey), **common, **message, "worker": worker_info})
                        next(bar, None)
                remaining = []
            except WorkerError as error:
                # The point in flight is the first whose rows are not all saved: record the failure there.
                print(f"{ctx.name}: {error}", file=sys.stderr)
                if not worker_info:  # it died before measuring anything: every point would fail the same way
                    for job, todo in remaining:
                        for subkey in todo:
                            ctx.results.append({**job.row_key(subkey), **common,
                                                "error": f"worker failed to start: {str(error).splitlines()[0]}"})
                            next(bar, None)
                    remaining = []
                    continue
                in_flight = next((i for i, (job, todo) in enumerate(remaining)
                                  if not all(ctx.results.has(job.row_key(s)) for s in todo)), None)
                if in_flight is None:
                    remaining = []
                    continue
                job, todo = remaining[in_flight]
                for subkey in todo:
                    if not ctx.results.has(job.row_key(subkey)):
                        ctx.results.append({**job.row_key(subkey), **common,
                                            "error": f"worker died: {str(error).splitlines()[0]}"})
                        next(bar, None)
                remaining = [(j, [s for s in t if not ctx.results.has(j.row_key(s))])
                             for j, t in remaining[in_flight + 1:]]
                remaining = [(j, t) for j, t in remaining if t]
    for _ in bar:  # close the bar
        pass


def timed_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows with a timing (neither skipped nor failed)."""
    return [row for row in rows if "median_s" in row]


# ---------------------------------------------------------------------------------------------------- conv sweeps
#: The fields that identify one convolution point (all stride 1, square, float32).
CONV_FIELDS = ("S", "f", "fp", "n", "k", "padding", "seed")


def conv_point(S: int, f: int, fp: int, n: int, k: int, padding: int = 0, seed: int = 0) -> dict:
    """One conv point: batch ``S``, ``f`` -> ``fp`` maps, ``n x n`` input, ``k x k`` kernel."""
    if output_size(n, k, padding) < 1:
        raise ValueError(f"kernel k={k} does not fit input n={n} with padding={padding}")
    return {"S": int(S), "f": int(f), "fp": int(fp), "n": int(n), "k": int(k), "padding": int(padding),
            "seed": int(seed)}


def conv_jobs(methods: Sequence[str], points: Iterable[dict], quick: bool,
              passes: Sequence[str] = PASSES) -> list[Job]:
    """One :class:`Job` per (point, method) with one row per pass; ``direct`` is skipped where it is too slow."""
    jobs = []
    for point in points:
        for method in methods:
            skip = direct_too_slow(point, DIRECT_MAX_SECONDS_PER_CALL[quick]) if method == "direct" else None
            jobs.append(Job(method, dict(point), [{"pass": p} for p in passes], case=dict(point), skip_reason=skip))
    return jobs


def measure_conv(ctx, methods: Sequence[str], points: Iterable[dict], passes: Sequence[str] = PASSES,
                 desc: str | None = None) -> None:
    """Time every pass of every point for every method (resumable): the common case of the speed experiments."""
    measure_jobs(ctx, conv_jobs(methods, points, ctx.quick, passes), "experiments._timing:conv_passes", desc=desc)


class ConvResults:
    """Lookup of conv timing rows by point, method and pass.

    A point measured several times (in rounds) counts with its lowest median; untimed rows (skipped, failed) count
    only where no row has a timing, the last one winning.
    """

    def __init__(self, rows: Iterable[dict]):
        self.rows = list(rows)
        self._index = {}
        for row in self.rows:
            if all(f in row for f in CONV_FIELDS) and "method" in row and "pass" in row:
                key = (*(row[f] for f in CONV_FIELDS), row["method"], row["pass"])
                kept = self._index.get(key)
                if kept is None or "median_s" not in kept or row.get("median_s", math.inf) < kept["median_s"]:
                    self._index[key] = row

    def row(self, point: dict, method: str, pass_: str) -> dict | None:
        return self._index.get((*(point[f] for f in CONV_FIELDS), method, pass_))

    def seconds(self, point: dict, method: str, pass_: str, stat: str = "median_s") -> float | None:
        """Seconds of one pass, or ``None`` if not timed (missing, skipped or failed)."""
        row = self.row(point, method, pass_)
        return row.get(stat) if row else None

    def total(self, point: dict, method: str, passes: Sequence[str] = PASSES, stat: str = "median_s") -> float | None:
        """Sum over ``passes`` (``None`` if any is missing)."""
        parts = [self.seconds(point, method, p, stat) for p in passes]
        return None if any(t is None for t in parts) else sum(parts)

    def methods(self) -> list[str]:
        """Methods present, in a fixed order: FFT variants first, then fftconv baselines, then torch."""
        return sorted({row["method"] for row in self.rows if "method" in row}, key=method_order)


# ---------------------------------------------------------------------------------------------------- plotting
def method_order(label: str) -> tuple:
    rank = {"fft": 0, "auto": 1, "im2col": 2, "direct": 3, "torch": 4}
    return (rank.get(parse_method(label)["algo"] or "torch", 5), label)


_BACKEND_COLORS = {"pyfftw": "#1b9e3e", "scipy": "#66c2a4", "numpy": "#a6d96a"}


def method_style(label: str) -> dict[str, Any]:
    """Matplotlib style of a method, the same in every figure (FFT green as in the paper, PyTorch red)."""
    parsed = parse_method(label)
    if parsed["library"] == "torch":
        return {"color": "#d62728", "marker": "s", "label": "PyTorch CPU (oneDNN)"}
    algo = parsed["algo"]
    if algo == "fft":
        return {"color": _BACKEND_COLORS.get(parsed["backend"], "#238b45"), "marker": "o",
                "label": f"fftconv FFT ({parsed['backend']})"}
    styles = {"im2col": {"color": "#ff7f0e", "marker": "^", "label": "fftconv im2col + GEMM"},
              "direct": {"color": "#7f7f7f", "marker": "x", "label": "fftconv direct (float64 reference)"},
              "auto": {"color": "#1f77b4", "marker": "D", "label": "fftconv auto"}}
    return styles.get(algo, {"color": "#9467bd", "marker": "v", "label": f"fftconv {algo}"})


def provenance(rows: Iterable[dict]) -> str:
    """A line naming the git commit(s) the timed rows were measured at (more than one: a resumed, mixed run)."""
    commits = sorted({(row.get("git_commit") or "unknown")[:10] + ("+changes" if row.get("git_dirty") else "")
                      for row in rows if "median_s" in row})
    if not commits:
        return ""
    if len(commits) == 1:
        return f"Measured at commit {commits[0]}.\n"
    return (f"Measured at {len(commits)} commits ({', '.join(commits)}): the rows come from runs of different code; "
            "rerun with --force for a consistent set.\n")


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds for tables: 3 significant digits, '-' if missing."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(numerator: float | None, denominator: float | None) -> str:
    """``numerator / denominator`` as ``"2.3x"``, '-' if either is missing."""
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


# ---------------------------------------------------------------------------------------------------- worker side
class Session:
    """What a task function gets inside a worker: the method, its libraries configured, and the timer."""

    def __init__(self, method: str, threads: int, settings: dict):
        self.method = method
        self.parsed = parse_method(method)
        self.threads = threads
        self.settings = TimingSettings(**settings)
        self.torch = None
        self.backend = None
        self.wisdom_file = None
        self.wisdom_load_s = None
        self.info = self._configure()

    def _configure(self) -> dict:
        from threadpoolctl import threadpool_info, threadpool_limits

        import fftconv

        threadpool_limits(self.threads)  # BLAS pools (OpenBLAS from numpy and scipy); also OpenMP
        fftconv.configure_scipy(workers=self.threads)
        if "pyfftw" in fftconv.available_backends():
            effort = os.environ.get(PLANNER_VARIABLE)
            fftconv.configure_pyfftw(threads=self.threads, **({"planner_effort": effort} if effort else {}))
        info: dict[str, Any] = {"method": self.method, "pid": os.getpid(),
                                "malloc": {k: os.environ.get(k) for k in TUNED_MALLOC}}
        if self.parsed["library"] == "torch":
            import torch

            torch.set_num_threads(self.threads)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # already set
                pass
            self.torch = torch
            info["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                             "mkldnn": bool(torch.backends.mkldnn.is_available())}
        elif self.parsed["algo"] not in SPATIAL_ALGOS:  # "fft" (and any algorithm that may use FFTs)
            name = self.parsed["backend"] or fftconv.get_backend().name
            self.backend = fftconv.get_backend(name)
            info["backend"] = repr(self.backend)
            if self.backend.name == "pyfftw":
                self._load_wisdom()
        info["thread_pools"] = [{k: pool.get(k) for k in ("internal_api", "num_threads", "architecture")}
                                for pool in threadpool_info()]
        info["wisdom_load_s"] = self.wisdom_load_s
        return info

    def _load_wisdom(self) -> None:
        import fftconv

        self.wisdom_file = wisdom_path()
        if self.wisdom_file is not None and self.wisdom_file.exists():
            start = time.perf_counter()
            try:
                fftconv.import_wisdom(self.wisdom_file)
            except Exception as error:  # a corrupt cache only costs planning time
                print(f"ignoring FFTW wisdom at {self.wisdom_file}: {error}", file=sys.stderr)
            self.wisdom_load_s = time.perf_counter() - start

    def save_wisdom(self) -> None:
        if self.wisdom_file is None:
            return
        import fftconv

        self.wisdom_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.wisdom_file.with_name(f".{self.wisdom_file.name}.{os.getpid()}.tmp")
        fftconv.export_wisdom(temporary)
        os.replace(temporary, self.wisdom_file)

    def plan_seconds(self) -> float:
        return float(getattr(self.backend, "plan_seconds", 0.0) or 0.0)

    def measure(self, fn: Callable[[], Any], **overrides) -> dict:
        """A results-row fragment for ``fn``: timing statistics plus plan time, with the planning in warm-up
        separated from planning during the timed calls."""
        settings = {**self.settings.as_dict(), **overrides}
        before = self.plan_seconds()
        if settings["warmup"] > 0:
            start = time.perf_counter()
            for _ in range(settings["warmup"]):
                fn()
            warmup_seconds = time.perf_counter() - start
        else:
            warmup_seconds = 0.0
        planned = self.plan_seconds() - before
        timing = time_function(fn, **{**settings, "warmup": 0})
        timing = Timing(timing.median, timing.min, timing.max, timing.repeats, settings["warmup"], warmup_seconds,
                        timing.samples)
        row = timing.as_row()
        if self.backend is not None:
            row["plan_s"] = planned
            row["plan_s_in_timing"] = self.plan_seconds() - before - planned
        return row


def conv_inputs(case: dict) -> dict:
    """Seeded float32 input, weight and output gradient of a conv point (generated in the worker)."""
    import numpy as np

    rng = np.random.default_rng(case.get("seed", 0))
    S, f, fp, n, k = case["S"], case["f"], case["fp"], case["n"], case["k"]
    m = output_size(n, k, case.get("padding", 0))
    dtype = np.dtype(case.get("dtype", "float32"))
    return {"x": rng.standard_normal((S, f, n, n), dtype=np.float32).astype(dtype, copy=False),
            "w": rng.standard_normal((fp, f, k, k), dtype=np.float32).astype(dtype, copy=False),
            "gy": rng.standard_normal((S, fp, m, m), dtype=np.float32).astype(dtype, copy=False)}


def conv_pass_functions(session: Session, case: dict) -> dict[str, Callable[[], Any]]:
    """The three passes of a conv point as no-argument callables, for fftconv or PyTorch."""
    arrays = conv_inputs(case)
    padding = case.get("padding", 0)
    if session.torch is not None:
        torch = session.torch
        x, w, gy = (torch.from_numpy(arrays[name]) for name in ("x", "w", "gy"))
        F, grad = torch.nn.functional, torch.nn.grad

        def no_grad(fn):
            def call():
                with torch.no_grad():
                    return fn()
            return call

        return {"forward": no_grad(lambda: F.conv2d(x, w, padding=padding)),
                "grad_input": no_grad(lambda: grad.conv2d_input(x.shape, w, gy, padding=padding)),
                "grad_weight": no_grad(lambda: grad.conv2d_weight(x, w.shape, gy, padding=padding))}
    import fftconv

    x, w, gy = arrays["x"], arrays["w"], arrays["gy"]
    options = {"algo": session.parsed["algo"], "padding": padding}
    if session.backend is not None:
        options["backend"] = session.backend
    return {"forward": lambda: fftconv.conv2d(x, w, **options),
            "grad_input": lambda: fftconv.conv2d_input(x.shape, w, gy, **options),
            "grad_weight": lambda: fftconv.conv2d_weight(x, w.shape, gy, **options)}


def conv_passes(case: dict, session: Session) -> Iterator[dict]:
    """Task: time the passes listed in ``case["todo"]`` (``[{"pass": ...}, ...]``) at one conv point."""
    functions = conv_pass_functions(session, case)
    for subkey in case["todo"]:
        row = session.measure(functions[subkey["pass"]])
        row["gflops"] = direct_flops(case) / row["median_s"] / 1e9
        yield {**subkey, **row}


def _resolve_task(name: str) -> Callable[[dict, Session], Iterator[dict]]:
    module_name, _, function = name.partition(":")
    if not module_name.startswith("experiments."):
        raise ValueError(f"task {name!r} must live in the experiments package ('experiments.module:function')")
    return getattr(importlib.import_module(module_name), function)


def worker_main(stdin=None, stdout=None) -> int:
    """Entry point of ``python -m experiments._timing worker``: read the spec, measure, stream JSON lines."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    spec = json.loads(stdin.read())

    def emit(message: dict) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    session = Session(spec["method"], int(spec["threads"]), spec["settings"])
    emit({"worker": session.info})
    task = _resolve_task(spec["task"])
    for index, case in enumerate(spec["cases"]):
        reported = []
        try:
            for row in task(case, session):
                emit({"case": index, **row})
                reported.append({key: row.get(key) for key in case["todo"][0]})
        except Exception as error:  # one bad point (e.g. MemoryError) must not lose the rest of the sweep
            traceback.print_exc()
            for subkey in case["todo"]:
                if subkey not in reported:
                    emit({"case": index, **subkey, "error": f"{type(error).__name__}: {error}"})
        if session.backend is not None and session.backend.name == "pyfftw":
            session.save_wisdom()
    emit({"done": True})
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(worker_main())
    sys.exit("usage: python -m experiments._timing worker  (reads a JSON spec on stdin; used by the experiments)")
