"""Fresh worker processes for timing: one process per method, thread counts pinned, glibc's malloc tuned.

The parent starts ``python -m experiments.harness.workers worker``, writes a JSON spec on its stdin and reads one JSON
line per measured row from its stdout (:func:`run_worker`). Inside, :class:`Session` configures the libraries and
times calls; :func:`worker_main` runs the task over the spec's cases. Why each setting: docs/experiments.md
("How a time is measured").
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .methods import NO_FFT_BACKEND, parse_method
from .timing import Timing, TimingSettings, time_function

#: The repository root; workers run there so that ``experiments`` is importable.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: glibc settings that stop large freed buffers from being returned to the OS and faulted in again on every call.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
#: Thread-count variables a worker gets before numpy (or torch) loads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FFTCONV_THREADS")
#: Set to a path to choose where FFTW wisdom is cached, or to "off" to neither load nor save wisdom.
WISDOM_VARIABLE = "FFTCONV_BENCH_WISDOM"
#: Set to an FFTW planner effort (e.g. "FFTW_ESTIMATE") to override the pyfftw backend's default in the workers.
PLANNER_VARIABLE = "FFTCONV_BENCH_PLANNER"


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


# ---------------------------------------------------------------------------------------------------- worker side
class Session:
    """What a task function gets inside a worker: the method, its libraries configured, and the timer."""

    def __init__(self, method: str, threads: int, settings: dict, git: dict | None = None):
        self.method = method
        self.git = git
        self.parsed = parse_method(method)
        self.threads = threads
        self.settings = TimingSettings(**settings)
        self.torch = None
        self.backend = None
        self.wisdom_file = None
        self.wisdom_load_s = None
        self.provenance: dict[str, Any] = {}
        self.info = self._configure()

    def _configure(self) -> dict:
        from threadpoolctl import threadpool_info, threadpool_limits

        import fftconv

        from . import provenance

        threadpool_limits(self.threads)  # BLAS pools (OpenBLAS from numpy and scipy); also OpenMP
        fftconv.configure_scipy(workers=self.threads)
        if "pyfftw" in fftconv.available_backends():
            effort = os.environ.get(PLANNER_VARIABLE)
            fftconv.configure_pyfftw(threads=self.threads, **({"planner_effort": effort} if effort else {}))
        # The machine is fingerprinted before torch loads, so that every worker of one machine reports the same one.
        self.provenance = provenance.stamp(self.git, threads=self.threads)
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
        elif self.parsed["algo"] not in NO_FFT_BACKEND:  # "fft", "tiled", "auto": they may use FFTs
            name = self.parsed["backend"] or fftconv.get_backend().name
            self.backend = fftconv.get_backend(name)
            info["backend"] = repr(self.backend)
            if self.backend.name == "pyfftw":
                self._load_wisdom()
        info["thread_pools"] = [{k: pool.get(k) for k in ("internal_api", "num_threads", "architecture")}
                                for pool in threadpool_info()]
        info["wisdom_load_s"] = self.wisdom_load_s
        return info

    def row_provenance(self) -> dict:
        """This worker's provenance with the current time (one per measured row)."""
        from .provenance import utc_now

        return {**self.provenance, "utc": utc_now()}

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


def _resolve_task(name: str) -> Callable[[dict, Session], Iterator[dict]]:
    module_name, _, function = name.partition(":")
    if not module_name.startswith("experiments."):
        raise ValueError(f"task {name!r} must live in the experiments package ('experiments.module:function')")
    return getattr(importlib.import_module(module_name), function)


def worker_main(stdin=None, stdout=None) -> int:
    """Entry point of ``python -m experiments.harness.workers worker``: read the spec, measure, stream JSON lines."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    spec = json.loads(stdin.read())

    def emit(message: dict) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    session = Session(spec["method"], int(spec["threads"]), spec["settings"], spec.get("git"))
    emit({"worker": session.info})
    task = _resolve_task(spec["task"])
    for index, case in enumerate(spec["cases"]):
        reported = []
        try:
            for row in task(case, session):
                emit({"case": index, **row, "provenance": session.row_provenance()})
                reported.append({key: row.get(key) for key in case["todo"][0]})
        except Exception as error:  # one bad point (e.g. MemoryError) must not lose the rest of the sweep
            traceback.print_exc()
            for subkey in case["todo"]:
                if subkey not in reported:
                    emit({"case": index, **subkey, "error": f"{type(error).__name__}: {error}",
                          "provenance": session.row_provenance()})
        if session.backend is not None and session.backend.name == "pyfftw":
            session.save_wisdom()
    emit({"done": True})
    return 0


# ---------------------------------------------------------------------------------------------------- parent side
class WorkerError(RuntimeError):
    """A worker process died; its stderr tail is in the message."""


def run_worker(spec: dict, threads: int, malloc: dict[str, str] | None = None) -> Iterator[dict]:
    """Start one worker for ``spec`` and yield its JSON lines as they arrive (rows stream: resumable).

    ``spec`` = ``{"method": label, "task": "module:function", "settings": {...}, "cases": [...]}``. The worker
    writes ``{"worker": info}`` once at start, ``{"case": i, ...row...}`` per measured row and ``{"done": true}`` at
    the end. Raises :class:`WorkerError` if it exits without ``done``.
    """
    spec = dict(spec, threads=threads)
    process = subprocess.Popen([sys.executable, "-m", "experiments.harness.workers", "worker"], cwd=REPO_ROOT,
                               env=worker_environment(threads, malloc), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []

    def drain_stderr():  # keep the pipe from filling; keep the tail for error messages
        for line in process.stderr:
            stderr_lines.append(line)
            del stderr_lines[:-40]

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


def measure_cases(method: str, task: str, settings: dict, cases: Sequence[dict], threads: int,
                  malloc: dict[str, str] | None = None, log: Callable[[str], None] | None = None,
                  git: dict | None = None) -> Iterator[tuple[int, dict]]:
    """Measure ``cases`` (each with its ``todo`` subkeys) in worker processes for one method: ``(case index, row)``.

    ``git`` is the run's commit and dirty flag, recorded in every row (default: the worker's own checkout).

    A worker that dies (for example killed for memory) gets an ``error`` row for every subkey of the case in
    flight, and a new worker continues with the rest; one that dies before measuring anything gets an ``error`` row
    for every case (they would all fail the same way).
    """
    cases = list(cases)
    remaining = list(range(len(cases)))
    done: dict[int, set] = {index: set() for index in remaining}
    while remaining:
        spec = {"method": method, "task": task, "settings": settings, "cases": [cases[i] for i in remaining],
                "git": git}
        worker_info: dict = {}
        try:
            for message in run_worker(spec, threads, malloc):
                if "worker" in message:
                    worker_info = message["worker"]
                elif "case" in message:
                    index = remaining[message.pop("case")]
                    done[index].add(json.dumps({k: message.get(k) for k in cases[index]["todo"][0]}, sort_keys=True))
                    yield index, {**message, "worker": worker_info}
            return
        except WorkerError as error:
            if log:
                log(f"{error}")
            first_line = str(error).splitlines()[0]
            if not worker_info:
                for index in remaining:
                    for subkey in _missing(cases[index], done[index]):
                        yield index, {**subkey, "error": f"worker failed to start: {first_line}"}
                return
            in_flight = next((i for i in remaining if _missing(cases[i], done[i])), None)
            if in_flight is None:
                return
            for subkey in _missing(cases[in_flight], done[in_flight]):
                yield in_flight, {**subkey, "error": f"worker died: {first_line}", "worker": worker_info}
            remaining = [i for i in remaining[remaining.index(in_flight) + 1:] if _missing(cases[i], done[i])]
            for index in remaining:
                cases[index] = {**cases[index], "todo": _missing(cases[index], done[index])}


def _missing(case: dict, done: set) -> list[dict]:
    return [subkey for subkey in case["todo"] if json.dumps(subkey, sort_keys=True) not in done]


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(worker_main())
    sys.exit("usage: python -m experiments.harness.workers worker  (reads a JSON spec on stdin; used by the "
             "experiments)")
