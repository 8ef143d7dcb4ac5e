"""``--dask``: timed points on a dask.distributed cluster, resumable across local and dask runs, one worker killed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from experiments import kernel_window
from experiments.__main__ import build_parser
from experiments.harness import points, provenance
from experiments.harness.context import run
from experiments.harness.results import ResultsFile

distributed = pytest.importorskip("distributed")


def options(tmp_path, input_size: int, *extra: str):
    return build_parser(kernel_window).parse_args(
        ["kernel_window", "--output-root", str(tmp_path), "--threads", "1", "--batch", "1", "--maps", "2", "3",
         "--input-size", str(input_size), "--algos", "im2col", "fft", "--backends", "numpy", *extra])


def worker_fingerprint() -> str:
    """Run on a dask worker: the fingerprint of its machine."""
    return provenance.fingerprint(provenance.machine())


def test_dask_run_resumes_a_local_one_survives_a_killed_worker_and_keeps_each_rows_fingerprint(tmp_path):
    path = tmp_path / "kernel_window" / "results.jsonl"
    run(kernel_window, options(tmp_path, 11))  # locally: k = 3, 5, ..., 11; then keep k = 3 and 5 only, as if the
    lines = [line for line in path.read_text().splitlines() if '"k": 3,' in line or '"k": 5,' in line]
    path.write_text("\n".join(lines) + "\n")  # local run had been interrupted there
    local_rows = ResultsFile(path).rows()
    assert len(local_rows) == 2 * 2 * 3 and not any("dask_worker" in row for row in local_rows)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        fingerprints = set(client.run(worker_fingerprint).values())
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        killed = threading.Event()

        def kill_one_worker_once_rows_arrive():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed.is_set():
                text = path.read_text() if path.exists() else ""
                if "dask_worker" in text:
                    os.kill(victim, signal.SIGKILL)  # a worker process this test's cluster started
                    killed.set()
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_worker_once_rows_arrive, daemon=True)
        killer.start()
        # On the cluster: the two kernel sizes measured locally are kept, not measured again.
        run(kernel_window, options(tmp_path, 11, "--dask", cluster.scheduler_address))
        killer.join(timeout=5)
        assert killed.is_set()
        first = ResultsFile(path).rows()
        # A rerun on the cluster measures whatever the killed worker's point lost, and nothing twice.
        run(kernel_window, options(tmp_path, 11, "--dask", cluster.scheduler_address))
        # and a local rerun finds everything done
        run(kernel_window, options(tmp_path, 11))

    rows = ResultsFile(path).rows()
    keys = [(points.point_key(row), row["method"], row["pass"]) for row in rows]
    assert len(keys) == len(set(keys)), "a row was written twice"
    assert len(rows) == 5 * 2 * 3, "a row was lost"  # k = 3, 5, ..., 11; two methods; three passes
    assert rows[:len(local_rows)] == local_rows and len(first) >= len(local_rows)
    dask_rows = [row for row in rows if "dask_worker" in row]
    assert {row["k"] for row in dask_rows} == {7, 9, 11}
    for row in dask_rows:
        assert "median_s" in row, row
        assert row["provenance"]["fingerprint"] in fingerprints  # the machine of the worker that measured it
        assert row["provenance"]["fingerprint"] == provenance.fingerprint(row["provenance"]["machine"])
    for k in (7, 9, 11):  # every comparison (all methods of one point) ran on one dask worker
        assert len({row["dask_worker"] for row in dask_rows if row["k"] == k}) == 1
