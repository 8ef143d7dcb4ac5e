"""Where a row comes from: the commit, the machine fingerprint and the time, recorded in every results row.

A row's ``provenance`` is ``{"commit", "dirty", "utc", "fingerprint", "machine", ...}``. ``machine`` names the CPU
(model and family from ``/proc/cpuinfo``), the core count, the BLAS libraries and kernels threadpoolctl finds and the
versions of numpy, scipy, pyfftw and torch; ``fingerprint`` is a hash of it, so identical machines share one.
Figures and tables use the rows of one (commit, machine) group unless ``--mix`` asks for all: :func:`select`.
docs/experiments.md ("Provenance") explains the rules.

Nothing here imports numpy at module level: the command line sets the thread variables before numpy loads.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

#: The repository root (git runs here).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Packages whose versions are part of the machine fingerprint (read from package metadata: nothing is imported).
FINGERPRINT_PACKAGES = ("numpy", "scipy", "pyfftw", "torch")
#: Environment variables worth recording with a row: they change thread pools, the allocator or fftconv defaults.
ENV_PREFIXES = ("OMP_", "OPENBLAS_", "MKL_", "MALLOC_", "FFTCONV_", "GOMP_", "KMP_", "PYTHONHASHSEED")
#: What a row without provenance (written before rows carried it) is called in figures and tables.
NOT_RECORDED = "provenance not recorded"


def package_versions(names: Sequence[str] = FINGERPRINT_PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (importing torch would start its thread pool here)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_info() -> dict[str, Any]:
    """CPU model name, family and model number from ``/proc/cpuinfo``; logical and usable core counts."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "family": None,
                            "model_number": None, "logical_cpus": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        info["usable_cpus"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return info
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            fields.setdefault(key.strip(), value.strip())
    info["model"] = fields.get("model name", info["model"])
    info["family"], info["model_number"] = fields.get("cpu family"), fields.get("model")
    return info


def blas_libraries() -> list[dict[str, Any]]:
    """The BLAS libraries numpy and scipy load (library, version, kernel), as threadpoolctl reports them.

    numpy and ``scipy.linalg`` are imported first so that the answer does not depend on what the caller loaded.
    """
    try:
        import numpy  # noqa: F401  - loads numpy's BLAS
        import scipy.linalg  # noqa: F401  - loads scipy's BLAS
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return []
    found = {(pool.get("internal_api"), pool.get("prefix"), pool.get("version"), pool.get("architecture"))
             for pool in threadpool_info() if pool.get("user_api") == "blas"}
    return [{"api": api, "library": library, "version": version, "kernel": kernel}
            for api, library, version, kernel in sorted(found, key=lambda entry: tuple(map(str, entry)))]


def machine() -> dict[str, Any]:
    """What identifies a machine for timing purposes (no host name: identical machines share a fingerprint)."""
    cpu = cpu_info()
    return {"cpu": cpu["model"], "cpu_family": cpu["family"], "cpu_model_number": cpu["model_number"],
            "cores": cpu["logical_cpus"], "blas": blas_libraries(), "packages": package_versions()}


def fingerprint(machine_record: dict) -> str:
    """A short stable hash of a :func:`machine` record.

    Examples
    --------
    >>> fingerprint({"cpu": "x", "cores": 2}) == fingerprint({"cores": 2, "cpu": "x"})
    True
    """
    return hashlib.sha256(json.dumps(machine_record, sort_keys=True).encode()).hexdigest()[:12]


def git_state(root: Path | None = None) -> dict[str, Any]:
    """Commit and whether tracked files outside ``paper_figures/`` differ from it (``None`` where git fails).

    The outputs are left out: in ``make figures`` every experiment after the first would otherwise see the files
    its predecessors just rewrote and call the tree dirty.
    """
    root = root or REPO_ROOT

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)paper_figures")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, str]:
    return {key: value for key, value in sorted(os.environ.items()) if key.startswith(ENV_PREFIXES)}


@functools.lru_cache(maxsize=1)
def _this_machine() -> tuple[dict, str]:
    record = machine()
    return record, fingerprint(record)


@functools.lru_cache(maxsize=1)
def _this_checkout() -> tuple:
    return tuple(git_state().items())


def current_git() -> dict[str, Any]:
    """This process's commit and dirty flag, computed once: a run keeps the state it started with, so that an edit
    made while it runs does not split its rows into two groups (the first call fixes it)."""
    return dict(_this_checkout())


def stamp(git: dict | None = None, **extra: Any) -> dict[str, Any]:
    """The ``provenance`` of a row measured now, in this process; ``git`` is the run's commit and dirty flag (a
    worker gets its parent's), else this process's."""
    record, print_ = _this_machine()
    git = git or current_git()
    return {"commit": git["commit"], "dirty": git["dirty"], "utc": utc_now(), "fingerprint": print_,
            "machine": record, "environment": environment(), **extra}


# ---------------------------------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """Rows measured at one commit (and dirty flag) on one kind of machine; ``recorded`` is False for old rows."""

    commit: str | None
    dirty: bool | None
    fingerprint: str | None
    recorded: bool

#: The one group of every row written before rows carried their provenance.
UNRECORDED = Group(None, None, None, False)


def group_of(row: dict) -> Group:
    """The (commit, machine) group of a row; all rows written before provenance was recorded form one group."""
    record = row.get("provenance")
    if isinstance(record, dict):
        return Group(record.get("commit"), record.get("dirty"), record.get("fingerprint"), True)
    return UNRECORDED


def threads_of(row: dict) -> int | None:
    """The thread count a row was measured with (a worker's ``threads`` field, or the provenance's)."""
    if isinstance(row.get("threads"), int):
        return row["threads"]
    record = row.get("provenance")
    return record.get("threads") if isinstance(record, dict) else None


def row_time(row: dict) -> str:
    record = row.get("provenance")
    return record.get("utc", "") if isinstance(record, dict) else ""


@dataclass
class Selection:
    """The rows a figure uses, the group(s) they come from, and what was left out."""

    rows: list[dict]
    groups: list[Group]
    machines: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)
    mixed: bool = False
    #: Commits named by the older rows' own ``git_commit`` field (rows without provenance).
    legacy_commits: list = field(default_factory=list)

    def describe(self, legacy: dict | None = None) -> str:
        """One or two sentences naming the commit(s), the CPU(s) and what other rows were left out."""
        parts = []
        for group in self.groups:
            parts.append(_describe_group(group, self.machines.get(group), self.times.get(group), legacy,
                                         self.legacy_commits))
        text = ("Rows from " + "; ".join(parts) + "." if len(parts) == 1 else
                f"Rows from {len(parts)} commits or machines, mixed on request (--mix); each point's ratios use "
                "one machine: " + "; ".join(parts) + ".")
        if self.left_out:
            count = sum(self.left_out.values())
            text += (f" {count} row(s) of {len(self.left_out)} other commit(s) or machine(s) in the results file are "
                     "not shown (--mix shows them).")
        return text

    def cpu(self, legacy: dict | None = None) -> str:
        """The CPU of the shown rows, e.g. ``"AMD EPYC (family 25), 2 cores"``."""
        names = []
        for group in self.groups:
            record = self.machines.get(group)
            if record:
                names.append(f"{record.get('cpu')} (family {record.get('cpu_family')}), {record.get('cores')} cores")
            elif legacy and legacy.get("cpu"):
                cpu = legacy["cpu"]
                names.append(f"{cpu.get('model', 'unknown CPU')}, {cpu.get('usable_cpus', '?')} cores")
        return " / ".join(dict.fromkeys(names)) or "unknown CPU"


def _describe_group(group: Group, record: dict | None, times: tuple | None, legacy: dict | None,
                    legacy_commits: Sequence[str] = ()) -> str:
    commit = (group.commit or "unknown")[:10] + (" (uncommitted changes)" if group.dirty else "")
    if not group.recorded:
        text = NOT_RECORDED
        commits = list(legacy_commits) or ([legacy["git"]["commit"]] if (legacy or {}).get("git", {}).get("commit")
                                           else [])
        if commits:
            text += f" (the rows or their run's metadata name commit {', '.join(c[:10] for c in commits)})"
        if legacy and legacy.get("cpu"):
            text += f"; machine per the run's metadata: {legacy['cpu'].get('model', 'unknown CPU')}"
        return text
    blas = ", ".join(f"{b.get('library')} {b.get('version')} ({b.get('kernel')})" for b in (record or {}).get("blas", []))
    packages = ", ".join(f"{name} {version}" for name, version in (record or {}).get("packages", {}).items() if version)
    when = f", {times[0][:16]}-{times[1][11:16]} UTC" if times and times[0] else ""
    return (f"commit {commit}, {record.get('cpu')} (family {record.get('cpu_family')}), {record.get('cores')} cores, "
            f"{blas}; {packages}{when}") if record else f"commit {commit}"


def select(rows: Iterable[dict], mix: bool = False) -> Selection:
    """The rows of the newest (commit, machine) group, or every row with ``mix``.

    The newest group is the one whose latest row is latest; rows without provenance count as oldest.

    Examples
    --------
    >>> old = {"n": 1, "git_commit": "a" * 40}
    >>> new = {"n": 1, "provenance": {"commit": "b" * 40, "dirty": False, "fingerprint": "f", "utc": "2026-01-01",
    ...                                "machine": {"cpu": "x"}}}
    >>> chosen = select([old, new])
    >>> [row["n"] for row in chosen.rows], chosen.groups[0].commit[:1], sum(chosen.left_out.values())
    ([1], 'b', 1)
    """
    rows = list(rows)
    by_group: dict[Group, list[dict]] = {}
    for row in rows:
        by_group.setdefault(group_of(row), []).append(row)
    if not by_group:
        return Selection([], [])
    latest = {group: max(row_time(row) for row in members) for group, members in by_group.items()}
    machines = {group: next((row["provenance"].get("machine") for row in members
                             if isinstance(row.get("provenance"), dict)), None) for group, members in by_group.items()}
    times = {group: (min(row_time(row) for row in members), latest[group]) for group, members in by_group.items()}
    legacy = sorted({row["git_commit"] for row in by_group.get(UNRECORDED, []) if row.get("git_commit")})
    if mix:
        order = sorted(by_group, key=lambda group: latest[group])
        return Selection(rows, order, machines, times, {}, mixed=len(order) > 1, legacy_commits=legacy)
    newest = max(by_group, key=lambda group: (latest[group], len(by_group[group])))
    left_out = {group: len(members) for group, members in by_group.items() if group != newest}
    return Selection(by_group[newest], [newest], machines, times, left_out,
                     legacy_commits=legacy if newest == UNRECORDED else [])


def counts_for_resume(mix: bool = False, git: dict | None = None):
    """Which saved rows a rerun treats as done: rows of this commit (and dirty flag) on any machine, or every row
    with ``mix``. Rows of other commits stay in the file but are measured again, so a figure never needs to mix."""
    if mix:
        return lambda row: True
    git = git or current_git()

    def counts(row: dict) -> bool:
        record = row.get("provenance")
        return (isinstance(record, dict) and record.get("commit") == git["commit"]
                and record.get("dirty") == git["dirty"])
    return counts


def derived_metadata(rows: Sequence[dict], experiment: str, mode: str, legacy: dict | None = None) -> dict:
    """``metadata.json``: a summary of the rows themselves (groups, machines, times, settings), never of a run that
    measured nothing. ``legacy`` keeps what an older metadata file said about rows without provenance."""
    by_group: dict[Group, list[dict]] = {}
    for row in rows:
        by_group.setdefault(group_of(row), []).append(row)
    groups = []
    for group, members in sorted(by_group.items(), key=lambda item: max(row_time(r) for r in item[1])):
        record = next((r["provenance"] for r in members if isinstance(r.get("provenance"), dict)), {})
        times = sorted(row_time(r) for r in members if row_time(r))
        settings = []
        for row in members:
            if "settings" in row and row["settings"] not in settings:
                settings.append(row["settings"])
        groups.append({"commit": group.commit, "dirty": group.dirty, "fingerprint": group.fingerprint,
                       "provenance_recorded": group.recorded, "rows": len(members),
                       "first_utc": times[0] if times else None, "last_utc": times[-1] if times else None,
                       "machine": record.get("machine"), "environment": record.get("environment"),
                       "threads": sorted({t for t in map(threads_of, members) if isinstance(t, int)}),
                       "settings": settings})
    metadata = {"experiment": experiment, "mode": mode, "rows": len(rows), "groups": groups,
                "note": "Derived from results.jsonl: one entry per (commit, machine) group of rows."}
    if legacy and any(not g["provenance_recorded"] for g in groups):
        metadata["metadata_of_rows_without_provenance"] = legacy
    return metadata
