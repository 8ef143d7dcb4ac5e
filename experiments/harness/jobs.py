"""Resumable sweeps of timed jobs, run locally (default) or on a dask.distributed cluster (``--dask ADDRESS``).

A :class:`Job` is one point for one method and the rows it must produce (one per subkey, e.g. per pass). Rows
already in the results file (at this commit, see :func:`experiments.harness.provenance.counts_for_resume`) are not
measured again, so an interrupted run resumes where it stopped, in either mode.

- Locally, each method runs in its own worker process over all its pending points (:func:`workers.measure_cases`).
- With dask, every timed comparison (all methods of one point) is one task and runs wholly on one dask worker,
  which starts one worker process per method there, as locally. Each row carries the provenance (machine
  fingerprint) of the process that measured it, and the dask worker's address. Workers must run one task at a time
  (``dask worker ADDRESS --nthreads 1``), or two timings would share the machine.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from . import provenance
from .timing import TimingSettings
from .workers import TUNED_MALLOC, measure_cases


@dataclass
class Job:
    """One point of a sweep for one method: ``case`` (sent to the worker) and the rows it must produce.

    Every row gets ``key`` (the identity used to resume) plus ``method`` plus one of ``subkeys`` (e.g.
    ``{"pass": "forward"}``), plus what the worker measured.
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
    """Measure every row of ``jobs`` that ``ctx.results`` does not hold yet.

    Rows are appended as soon as they arrive (locally: as each is measured; with dask: as each point's task ends);
    a progress bar counts rows. Jobs with ``skip_reason`` get a row with ``skipped`` and no timing.
    """
    settings = settings or TimingSettings.for_mode(ctx.quick)
    threads = threads or getattr(ctx.options, "threads", None) or len(os.sched_getaffinity(0))
    pending: list[tuple[Job, list[dict]]] = []
    for job in jobs:
        todo = [s for s in job.subkeys if not ctx.results.has(job.row_key(s))]
        if not todo:
            continue
        if job.skip_reason:
            for subkey in todo:
                ctx.append({**job.row_key(subkey), "skipped": job.skip_reason})
            continue
        pending.append((job, todo))
    total = sum(len(todo) for _, todo in pending)
    if not total:
        return
    common = {"threads": threads, "malloc": TUNED_MALLOC if malloc is None else malloc, "timing": settings.as_dict()}
    if ctx.run_settings:
        common["settings"] = ctx.run_settings
    bar = ctx.progress(range(total), total=total, desc=desc or ctx.name)
    executor = getattr(ctx, "executor", None) or LocalExecutor()
    git = provenance.current_git()
    for index, row in executor.run(ctx, pending, task, settings.as_dict(), threads, malloc, git):
        job, _ = pending[index]
        subkey = {k: row.pop(k) for k in list(job.subkeys[0]) if k in row}
        full = {**job.row_key(subkey), **common, **row}
        if "provenance" not in full:  # an error row written here, not by a worker
            full["provenance"] = ctx.stamp()
        ctx.results.append(full)
        next(bar, None)
    for _ in bar:  # close the bar
        pass


class LocalExecutor:
    """One worker process per method on this machine, methods one after another."""

    def run(self, ctx, pending: list[tuple[Job, list[dict]]], task: str, settings: dict, threads: int,
            malloc: dict | None, git: dict | None = None) -> Iterator[tuple[int, dict]]:
        by_method: dict[str, list[int]] = {}
        for index, (job, _) in enumerate(pending):
            by_method.setdefault(job.method, []).append(index)
        for method, indices in by_method.items():
            cases = [{**pending[i][0].case, "todo": pending[i][1]} for i in indices]
            log = lambda message: print(f"{ctx.name}: {message}", file=sys.stderr)  # noqa: E731
            for case_index, row in measure_cases(method, task, settings, cases, threads, malloc, log, git):
                yield indices[case_index], row


class DaskExecutor:
    """Every point's methods as one task on a dask.distributed cluster (one task at a time per worker)."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError as error:
            raise SystemExit("--dask needs dask.distributed: pip install 'fftconv[distributed]' "
                             f"(or dask[distributed]); {error}") from error
        self.address = address
        self.client = Client(address, set_as_default=False)
        workers = self.client.scheduler_info().get("workers", {})
        if not workers:
            raise SystemExit(f"--dask {address}: the cluster has no workers; start some with "
                             f"'dask worker {address} --nthreads 1'")
        busy = {name: info.get("nthreads") for name, info in workers.items() if info.get("nthreads", 1) != 1}
        if busy:
            raise SystemExit(f"--dask {address}: workers {busy} run several tasks at once, so timings would share "
                             f"their machine; start workers with 'dask worker {address} --nthreads 1'")

    def run(self, ctx, pending: list[tuple[Job, list[dict]]], task: str, settings: dict, threads: int,
            malloc: dict | None, git: dict | None = None) -> Iterator[tuple[int, dict]]:
        from distributed import as_completed

        by_point: dict[str, list[int]] = {}
        for index, (job, _) in enumerate(pending):
            by_point.setdefault(json.dumps(job.key, sort_keys=True), []).append(index)
        futures = {}
        for indices in by_point.values():
            items = [(pending[i][0].method, {**pending[i][0].case, "todo": pending[i][1]}) for i in indices]
            future = self.client.submit(run_point, items, task, settings, threads, malloc, git, pure=False)
            futures[future] = indices
        failed, warned = 0, False
        for future in as_completed(futures):
            indices = futures[future]
            try:
                rows = future.result()
            except Exception as error:  # e.g. KilledWorker: the point's rows are not written; a rerun retries it
                failed += 1
                print(f"{ctx.name}: a point failed on the cluster ({type(error).__name__}: {error}); rerun to "
                      "measure it again", file=sys.stderr)
                continue
            for item_index, row in rows:
                if "worker_git" in row.get("provenance", {}) and not warned:
                    warned = True
                    print(f"{ctx.name}: the dask worker at {row.get('dask_worker')} runs another checkout "
                          f"({row['provenance']['worker_git']}) than this run ({git}); its rows record both",
                          file=sys.stderr)
                yield indices[item_index], row
        if failed:
            print(f"{ctx.name}: {failed} point(s) failed on the cluster and were not written", file=sys.stderr)

    def close(self) -> None:
        self.client.close()


def run_point(items: list[tuple[str, dict]], task: str, settings: dict, threads: int,
              malloc: dict | None, git: dict | None = None) -> list[tuple[int, dict]]:
    """Dask task: measure every method of one point on this dask worker, one worker process per method.

    Rows record the run's ``git`` state; where this worker's checkout differs, its own state is added as
    ``worker_git``."""
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = None
    own = provenance.current_git()
    rows = []
    for index, (method, case) in enumerate(items):
        for _, row in measure_cases(method, task, settings, [case], threads, malloc,
                                    log=lambda message: print(message, file=sys.stderr), git=git):
            if git is not None and own != git and "provenance" in row:
                row["provenance"] = {**row["provenance"], "worker_git": own}
            rows.append((index, {**row, "dask_worker": address}))
    return rows
