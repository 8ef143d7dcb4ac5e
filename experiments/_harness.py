"""What every experiment shares: resumable results files, atomic writes, run metadata, the run context.

An experiment is a module with ``NAME``, ``DESCRIPTION``, an optional ``add_arguments(parser)``, ``measure(ctx)``
and ``plot(ctx)``. ``measure`` appends one JSON line per measured point to ``ctx.results`` and skips points already
there, so an interrupted sweep resumes where it stopped. ``plot`` reads ``ctx.results.rows()`` only (it never
measures) and writes figures and markdown tables into ``ctx.out_dir``.

This module must stay importable without numpy: the command line sets the thread variables first
(``experiments/__main__.py``), and numpy reads them when it is first imported.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

#: The repository root: ``paper_figures/`` lives here.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Environment variables worth recording: they change thread pools, allocator behaviour or fftconv defaults.
ENV_PREFIXES = ("OMP_", "OPENBLAS_", "MKL_", "MALLOC_", "FFTCONV_", "GOMP_", "KMP_", "PYTHONHASHSEED")
#: Set from ``--threads`` before numpy is imported.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FFTCONV_THREADS")
#: Packages whose versions go into the metadata (read with importlib.metadata: nothing gets imported).
PACKAGES = ("fftconv", "numpy", "scipy", "pyfftw", "matplotlib", "torch", "tqdm", "threadpoolctl")


# ---------------------------------------------------------------------------------------------------- file writing
def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one, never a part.

    The data goes to a temporary file in the same folder (same file system), is flushed to disk, then renamed over
    ``path`` with :func:`os.replace`, which is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


def save_figure(fig, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` (for the README) and ``stem.svg`` (vector), each atomically.

    The SVG gets no date and a fixed salt for its element ids (matplotlib otherwise salts them randomly), so
    redrawing unchanged results gives byte-identical files and committed figures can be compared with a redraw.
    """
    import matplotlib

    written = []
    for fmt, extra in (("png", {"dpi": 120}), ("svg", {"metadata": {"Date": None}})):
        buffer = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": "fftconv"}):
            fig.savefig(buffer, format=fmt, bbox_inches="tight", **extra)
        written.append(write_atomic(Path(out_dir) / f"{stem}.{fmt}", buffer.getvalue()))
    return written


def write_table(out_dir: str | os.PathLike, stem: str, markdown: str) -> Path:
    """Write a markdown table (or any markdown text) to ``out_dir/stem.md`` atomically."""
    return write_atomic(Path(out_dir) / f"{stem}.md", markdown if markdown.endswith("\n") else markdown + "\n")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table from a header and rows of already formatted cells."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- results
def _normalised(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, numpy scalars become Python numbers)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays without importing numpy here
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"results rows must hold JSON values, got {type(value).__name__}: {value!r}")


class ResultsFile:
    """Tidy results as JSON lines: one measured point per line, appended as soon as it is measured.

    Each :meth:`append` writes one whole line and fsyncs it, so a killed run loses at most the row in flight. A torn
    last line (the process died mid-write) is ignored on load and cut off before the next append.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> results = ResultsFile(pathlib.Path(tempfile.mkdtemp()) / "results.jsonl")
    >>> results.append({"n": 8, "pass": "forward", "seconds": 0.5})
    >>> results.has({"n": 8, "pass": "forward"}), results.has({"n": 16})
    (True, False)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._rows: list[dict] | None = None
        self._repaired = False

    def _load(self) -> list[dict]:
        if self._rows is None:
            rows = []
            if self.path.exists():
                for line in self.path.read_text().splitlines():
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # torn line from an interrupted write: that row is re-measured
                        continue
                    if isinstance(row, dict):
                        rows.append(row)
            self._rows = rows
        return self._rows

    def rows(self) -> list[dict]:
        """All complete rows, in the order they were measured (copies: callers may modify them)."""
        return [dict(row) for row in self._load()]

    def has(self, key: dict) -> bool:
        """Whether some row has every field of ``key`` with an equal value (used to resume)."""
        wanted = _normalised(key)
        return any(all(field in row and row[field] == value for field, value in wanted.items())
                   for row in self._load())

    def _repair_torn_tail(self) -> None:
        """Cut an unterminated last line so that the next row starts on a line of its own."""
        if self._repaired or not self.path.exists():
            self._repaired = True
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
        self._repaired = True

    def append(self, row: dict) -> None:
        """Append one row as a single JSON line; flushed and fsynced before returning."""
        if not isinstance(row, dict):
            raise TypeError(f"row must be a dict, got {type(row).__name__}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = self._load()  # read before writing, or the new row would be loaded twice
        self._repair_torn_tail()
        line = json.dumps(row, default=_json_default)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        rows.append(json.loads(line))

    def clear(self) -> None:
        """Delete the file (``--force``)."""
        self.path.unlink(missing_ok=True)
        self._rows, self._repaired = None, False

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r})"


# ---------------------------------------------------------------------------------------------------- metadata
def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata: importing torch here would start its thread pool."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_info() -> dict[str, Any]:
    """CPU model and counts from ``/proc/cpuinfo`` and the affinity mask."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        info["usable_cpus"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return info
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    info["model"] = fields.get("model name", info["model"])
    info["family"], info["model_number"] = fields.get("cpu family"), fields.get("model")
    flags = set(fields.get("flags", "").split())
    info["simd"] = [flag for flag in ("sse2", "avx", "avx2", "fma", "avx512f") if flag in flags]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:  # pragma: no cover
        pass
    return info


def git_state() -> dict[str, Any]:
    """Commit and whether tracked files outside ``paper_figures/`` had uncommitted changes (``git`` failures give
    ``None``). The outputs are left out: in ``make figures`` every experiment after the first would otherwise see
    the files its predecessors just rewrote and call the tree dirty."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)paper_figures")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def fft_backend_settings() -> dict[str, Any]:
    """Each installed fftconv FFT backend as configured now (threads, planner effort) and the default one."""
    import fftconv  # numpy gets imported here, after the CLI has set the thread variables

    settings: dict[str, Any] = {"default": fftconv.get_backend().name}
    for name in fftconv.available_backends():
        settings[name] = repr(fftconv.get_backend(name))
    try:
        import pyfftw

        settings["pyfftw_simd_alignment"] = pyfftw.simd_alignment
    except ImportError:  # pragma: no cover
        pass
    return settings


def blas_info() -> list[dict[str, Any]]:
    """Thread pools loaded into this process (OpenBLAS kernel, threads), via threadpoolctl, if installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return []
    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "prefix")
    return [{key: pool.get(key) for key in keep if key in pool} for pool in threadpool_info()]


def collect_metadata(quick: bool, options: argparse.Namespace | None = None) -> dict[str, Any]:
    """Everything needed to interpret a results file later: versions, machine, threads, environment, commit, date."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "argv": list(sys.argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "cpu": cpu_info(),
        "threads": getattr(options, "threads", None),
        "environment": {key: value for key, value in sorted(os.environ.items()) if key.startswith(ENV_PREFIXES)},
        "fft_backends": fft_backend_settings(),
        "thread_pools": blas_info(),
        "git": git_state(),
        "options": {key: value for key, value in vars(options).items() if key != "handler"} if options else {},
    }


# ---------------------------------------------------------------------------------------------------- context
class Context:
    """What ``measure`` and ``plot`` receive.

    Attributes
    ----------
    name : str
    quick : bool
        Quick mode shrinks the problem (the batch, unless the experiment says otherwise) to fit the time budget.
    out_dir : Path
        ``paper_figures/<name>/`` in quick mode, ``paper_figures/<name>/full/`` in full mode; created.
    results : ResultsFile
        ``out_dir/results.jsonl``.
    options : argparse.Namespace
        ``algos``, ``backends``, ``threads``, ``force``, ``plot_only`` and the experiment's own options.
    """

    def __init__(self, name: str, quick: bool, options: argparse.Namespace | None = None,
                 output_root: str | os.PathLike | None = None):
        self.name = name
        self.quick = bool(quick)
        self.options = options if options is not None else argparse.Namespace(
            algos=None, backends=None, threads=None, force=False, plot_only=False)
        root = Path(output_root) if output_root is not None else REPO_ROOT / "paper_figures"
        self.out_dir = root / name if self.quick else root / name / "full"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.results = ResultsFile(self.out_dir / "results.jsonl")
        self._metadata: dict | None = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def metadata_path(self) -> Path:
        return self.out_dir / "metadata.json"

    def write_metadata(self) -> dict:
        """Record this run's metadata (called by the harness before ``measure``)."""
        metadata = collect_metadata(self.quick, self.options)
        metadata["experiment"] = self.name
        metadata["rows_before_run"] = len(self.results)
        write_atomic(self.metadata_path, json.dumps(metadata, indent=2, default=str) + "\n")
        self._metadata = metadata
        return metadata

    def record_settings(self, **fields) -> None:
        """Add or replace metadata fields once ``measure`` has configured something (e.g. FFT planner effort).

        ``record_settings(fft_backends=fft_backend_settings())`` after reconfiguring a backend keeps the metadata
        true to what was measured.
        """
        metadata = dict(self.metadata)
        metadata.update(fields)
        write_atomic(self.metadata_path, json.dumps(metadata, indent=2, default=str) + "\n")
        self._metadata = metadata

    @property
    def metadata(self) -> dict:
        """The metadata recorded with the results (so that a redraw names the machine that measured)."""
        if self._metadata is None:
            if self.metadata_path.exists():
                self._metadata = json.loads(self.metadata_path.read_text())
            else:
                self._metadata = {"cpu": cpu_info(), "threads": getattr(self.options, "threads", None),
                                  "mode": self.mode}
        return self._metadata

    @property
    def machine(self) -> str:
        """For figure titles: CPU model, cores used and threads, e.g. ``"AMD EPYC, 2 cores, 2 threads"``."""
        cpu = self.metadata.get("cpu", {})
        threads = self.metadata.get("threads")
        text = f"{cpu.get('model', 'unknown CPU')}, {cpu.get('usable_cpus', '?')} cores"
        return text + (f", {threads} threads" if threads else "")

    def describe(self, compares: str, scaling: str | None = None) -> str:
        """A caption line: machine, scaling (quick/full plus ``scaling``) and what the figure compares."""
        scale = f"{self.mode} mode" + (f" ({scaling})" if scaling else "")
        return f"{compares}\n{self.machine}; {scale}"

    def pending(self, keys: Iterable[dict]) -> list[dict]:
        """The keys that have no row yet: what a resumed sweep still has to measure."""
        return [key for key in keys if not self.results.has(key)]

    def progress(self, iterable: Iterable, total: int | None = None, desc: str | None = None) -> Iterator:
        """A tqdm progress bar on stderr (plain iteration if tqdm is missing)."""
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            return iter(iterable)
        return iter(tqdm(iterable, total=total, desc=desc or self.name, file=sys.stderr, dynamic_ncols=True,
                         mininterval=0.5, leave=False))

    def selected(self, option: str, available: Sequence[str], default: Sequence[str] | None = None) -> list[str]:
        """The values of list option ``option`` (e.g. ``"algos"``) this experiment supports, in the user's order.

        Raises ``ValueError`` naming the option if the user asked only for values the experiment cannot run.
        """
        asked = getattr(self.options, option, None)
        if not asked:
            return list(default if default is not None else available)
        chosen = [value for value in asked if value in available]
        ignored = [value for value in asked if value not in available]
        if ignored and chosen:
            print(f"{self.name}: ignoring --{option} {' '.join(ignored)} (supported here: {' '.join(available)})",
                  file=sys.stderr)
        if not chosen:
            raise ValueError(f"--{option} {' '.join(asked)}: experiment {self.name!r} supports only "
                             f"{' '.join(available)}")
        return chosen

    def __repr__(self) -> str:
        return f"Context(name={self.name!r}, mode={self.mode!r}, out_dir={str(self.out_dir)!r})"


def run(module, options: argparse.Namespace) -> Context:
    """Run one experiment module: ``--force`` clears, metadata, ``measure`` (unless ``--plot-only``), ``plot``."""
    ctx = Context(module.NAME, quick=not options.full, options=options, output_root=options.output_root)
    if options.plot_only:
        if not len(ctx.results):
            raise SystemExit(f"{module.NAME}: no results at {ctx.results.path}; run without --plot-only first")
    else:
        if options.force:
            ctx.results.clear()
        ctx.write_metadata()
        try:
            module.measure(ctx)
        except KeyboardInterrupt:
            print(f"\n{module.NAME}: interrupted with {len(ctx.results)} rows saved in {ctx.results.path}; "
                  "rerun the same command to resume", file=sys.stderr)
            raise
    module.plot(ctx)
    return ctx
