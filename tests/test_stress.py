"""Threads and forks mixed with every algorithm, FFT backend and memory policy, checked against float64 loops.

Each *job* is one training step of a convolution (forward, input gradient, weight gradient) done one way: through a
layer (``algo="fft"`` with each backend and each memory policy, ``"im2col"``, ``"direct"``) or through the
functional API, in float32 or float64. Many jobs run at once in threads, and in children forked while the parent's
threads are busy with jobs of their own. Every result is compared with ``tests/oracle.py``, computed once, single
threaded, in float64; a forked child that hangs fails its test after a timeout instead of hanging the suite.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import tempfile
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import fftconv
import oracle
from conftest import fft_points_bound, reduction_lengths, relative_error, tolerance
from fftconv import nn

# One geometry with every hyper-parameter away from its default: strided, padded, dilated, grouped.
HYPER = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
INPUT_SHAPE, WEIGHT_SHAPE = (3, 4, 11, 10), (6, 2, 3, 3)
DTYPES = (np.float32, np.float64)
# A healthy child needs about a second. One still running after HANG_S writes where its threads wait and exits.
HANG_S = 20

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock: that is what these tests look for.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
]


@dataclass(frozen=True)
class Problem:
    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    grad_output: np.ndarray
    expected: dict[str, np.ndarray]  # float64 oracle: "forward", "input", "weight", "bias"


def _problem() -> Problem:
    data = np.random.default_rng(20140102)
    x, weight, bias = (data.standard_normal(INPUT_SHAPE), data.standard_normal(WEIGHT_SHAPE),
                       data.standard_normal(WEIGHT_SHAPE[0]))
    y = oracle.forward(x, weight, bias, **HYPER)
    grad_output = data.standard_normal(y.shape)
    expected = {"forward": y, "input": oracle.grad_input(x.shape, weight, grad_output, **HYPER),
                "weight": oracle.grad_weight(x, weight.shape, grad_output, **HYPER), "bias": grad_output.sum((0, 2, 3))}
    return Problem(x, weight, bias, grad_output, expected)


PROBLEM = _problem()
_REDUCTIONS = reduction_lengths(INPUT_SHAPE, WEIGHT_SHAPE, PROBLEM.grad_output.shape, HYPER["groups"])
_FFT_POINTS = fft_points_bound(INPUT_SHAPE, [2 * p for p in HYPER["padding"]])


@dataclass(frozen=True)
class Job:
    """One way to compute a training step; ``run`` returns the four results keyed like ``Problem.expected``."""

    name: str
    dtype: type
    run: Callable[[Problem, type], dict[str, np.ndarray]]

    def errors(self) -> list[str]:
        """Differences from the oracle beyond the tolerance of this dtype, as messages (empty: correct)."""
        results = self.run(PROBLEM, self.dtype)
        wrong = []
        for result, value in results.items():
            reduction = _REDUCTIONS.get(result, INPUT_SHAPE[0] * int(np.prod(PROBLEM.grad_output.shape[2:])))
            limit = tolerance(self.dtype, _FFT_POINTS, reduction)
            error = relative_error(value, PROBLEM.expected[result])
            if not (value.dtype == self.dtype and error <= limit):
                wrong.append(f"{self.name} {np.dtype(self.dtype)} {result}: {value.dtype}, error {error:.2e} "
                             f"> {limit:.1e}")
        return wrong


def _layer_step(options: dict) -> Callable[[Problem, type], dict[str, np.ndarray]]:
    def run(problem: Problem, dtype: type) -> dict[str, np.ndarray]:
        layer = nn.Conv2d(4, 6, 3, **HYPER, dtype=dtype, rng=0, **options)
        layer.weight[...] = problem.weight
        layer.bias[...] = problem.bias
        y = layer.forward(problem.x.astype(dtype))
        grad_input = layer.backward(problem.grad_output.astype(dtype))
        return {"forward": y, "input": grad_input, "weight": layer.grad_weight, "bias": layer.grad_bias}
    return run


def _functional_step(options: dict) -> Callable[[Problem, type], dict[str, np.ndarray]]:
    def run(problem: Problem, dtype: type) -> dict[str, np.ndarray]:
        x, weight, bias, grad_output = (a.astype(dtype) for a in (problem.x, problem.weight, problem.bias,
                                                                  problem.grad_output))
        return {"forward": fftconv.conv2d(x, weight, bias, **HYPER, **options),
                "input": fftconv.conv2d_input(x.shape, weight, grad_output, **HYPER, **options),
                "weight": fftconv.conv2d_weight(x, weight.shape, grad_output, **HYPER, **options)}
    return run


def jobs(backends: list[str]) -> list[Job]:
    """Every algorithm; ``"fft"`` with each of ``backends`` and both memory policies; layers and functions."""
    ways: dict[str, Callable] = {}
    for backend in backends:
        for memory in nn.MEMORY_POLICIES:  # recompute layers share the process-wide workspace
            ways[f"layer fft {backend} {memory}"] = _layer_step(dict(algo="fft", backend=backend, memory=memory))
        ways[f"functional fft {backend}"] = _functional_step(dict(algo="fft", backend=backend))
    for algo in ("im2col", "direct"):
        ways[f"layer {algo}"] = _layer_step(dict(algo=algo))
        ways[f"functional {algo}"] = _functional_step(dict(algo=algo))
    return [Job(name, dtype, run) for name, run in ways.items() for dtype in DTYPES]


def run_in_threads(job_list: list[Job], threads: int, rounds: int) -> list[str]:
    """Run every job ``rounds`` times, all at once on ``threads`` threads; the messages of wrong results."""
    with ThreadPoolExecutor(threads) as pool:
        return [message for errors in pool.map(Job.errors, job_list * rounds) for message in errors]


# ---------------------------------------------------------------------- threads
def test_threads_running_every_algorithm_backend_and_memory_policy_at_once_agree_with_the_oracle():
    job_list = jobs(fftconv.available_backends())
    assert run_in_threads(job_list, threads=8, rounds=10) == []


# ---------------------------------------------------------------------- forks from a busy parent
class BusyThreads:
    """Threads that run ``job_list`` over and over until the ``with`` block ends; a wrong result is kept."""

    def __init__(self, job_list: list[Job], count: int):
        self.job_list, self.count = job_list, count
        self.stop, self.errors, self.steps = threading.Event(), [], 0
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(count)]

    def _loop(self, index: int) -> None:
        while not self.stop.is_set():
            for job in self.job_list[index::self.count]:
                self.errors += job.errors()
                self.steps += 1

    def __enter__(self) -> "BusyThreads":
        for thread in self.threads:
            thread.start()
        while self.steps < 2 * self.count:  # every thread is past its first plans and in steady work
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


class ChildHung(AssertionError):
    """A forked child did not finish: ``dump`` holds the stacks of its threads (:mod:`faulthandler`)."""

    def __init__(self, seconds: float, dump: str):
        super().__init__(f"the forked child did not finish within {seconds} s: deadlocked. Its threads:\n{dump}")
        self.dump = dump


def _child(job_list: list[Job], connection, dump, hang_s: float) -> None:
    """In the forked child: the jobs on two threads (the pool and the workspace are used anew), then report."""
    faulthandler.dump_traceback_later(hang_s, exit=True, file=dump)
    try:
        connection.send(run_in_threads(job_list, threads=2, rounds=1))
    except BaseException:
        connection.send([traceback.format_exc()])
    faulthandler.cancel_dump_traceback_later()


def fork_and_wait(job_list: list[Job], hang_s: float = HANG_S) -> list[str]:
    """Fork a child that runs ``job_list``; its error messages, or :class:`ChildHung` if it does not finish."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    with tempfile.TemporaryFile("w+") as dump:
        child = context.Process(target=_child, args=(job_list, send, dump, hang_s))
        child.start()
        send.close()
        try:  # the child reports, or dumps its stacks and exits at hang_s, which closes the pipe
            errors = receive.recv() if receive.poll(hang_s + 30) else None
        except EOFError:
            errors = None
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
        dump.seek(0)
        stacks = dump.read()
    if errors is None and stacks:
        raise ChildHung(hang_s, stacks)
    assert errors is not None and child.exitcode == 0, f"the forked child exited with {child.exitcode}"
    return errors


def test_children_forked_while_threads_convolve_agree_with_the_oracle():
    """The parent's threads run every job while children are forked; each child runs every job too, on the plans,
    pool and workspace it inherited. A lock held by a parent thread at the fork would hang the child."""
    with BusyThreads(jobs(fftconv.available_backends()), count=3) as busy:
        errors = [message for _ in range(3) for message in fork_and_wait(jobs(fftconv.available_backends()))]
    assert errors == [] and busy.errors == []


def test_child_forked_while_a_parent_thread_limits_blas_threads_can_convolve():
    """Deterministic: a parent thread holds the lock ``single_threaded_blas`` takes on entry when the child forks."""
    from fftconv import _parallel

    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with _parallel._blas_limit_lock:
            inside.set()
            leave.wait(2 * HANG_S)

    parent = threading.Thread(target=hold)
    parent.start()
    try:
        assert inside.wait(10)
        errors = fork_and_wait(jobs(["numpy"])[:2], hang_s=HANG_S)
    finally:
        leave.set()
        parent.join()
    assert errors == []


@pytest.mark.skipif("pyfftw" not in fftconv.available_backends(), reason="needs pyFFTW")
def test_child_forked_while_a_parent_thread_is_inside_a_pyfftw_transform_can_use_it():
    """Deterministic: a parent thread is stopped inside a pyFFTW inverse transform (in the callback that receives
    each block) when the child is forked; the child then runs the same transform and a convolution on pyFFTW."""
    backend = fftconv.get_backend("pyfftw")
    spectrum = np.fft.rfftn(np.random.default_rng(0).standard_normal((6, 16, 16)), axes=(1, 2))
    inside, leave = threading.Event(), threading.Event()

    def stop_inside(block, maps) -> None:
        inside.set()
        leave.wait(2 * HANG_S)

    # the blocked inverse may destroy the spectrum it reads: the parent gets its own copy
    parent = threading.Thread(target=backend.irfftn_blocks, args=(spectrum.copy(), (16, 16), (1, 2), stop_inside))
    parent.start()
    try:
        assert inside.wait(10)
        transform = Job("pyfftw irfftn_blocks", np.float64, lambda problem, dtype: _inverse_by_blocks(spectrum))
        errors = fork_and_wait([transform, *jobs(["pyfftw"])], hang_s=HANG_S)
    finally:
        leave.set()
        parent.join()
    assert errors == []


def _inverse_by_blocks(spectrum: np.ndarray) -> dict[str, np.ndarray]:
    maps = np.empty((spectrum.shape[0], 16, 16))

    def keep(block: tuple, values: np.ndarray) -> None:
        maps[block[:1]] = values  # block indexes the spectrum; its first axis is the maps'

    expected = np.fft.irfftn(spectrum, (16, 16), axes=(1, 2)) * 256  # irfftn_blocks is unnormalised
    fftconv.get_backend("pyfftw").irfftn_blocks(spectrum.copy(), (16, 16), (1, 2), keep)  # it may destroy its input
    assert relative_error(maps, expected) < 1e-12
    return {}


def _blas_threads() -> list[int]:
    """Thread counts of the BLAS libraries fftconv limits (those loaded when it first looked)."""
    from fftconv import _parallel
    return [library.num_threads for library in _parallel._blas_libraries()]


def test_child_forked_inside_a_parent_threads_blas_limit_gets_blas_threads_back_and_a_pool():
    """A parent thread is inside ``single_threaded_blas`` (BLAS at one thread) and the pool's threads are busy when
    the child forks: the child gets BLAS's thread count from before the limit, no limit in force, a pool of its own
    that runs tasks, and correct convolutions."""
    from fftconv import _parallel

    before = _blas_threads()
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with _parallel.single_threaded_blas():
            inside.set()
            leave.wait(2 * HANG_S)

    def state_in_child(problem: Problem, dtype: type) -> dict[str, np.ndarray]:
        assert _parallel._blas_limit_depth == 0, "the parent thread's limit is still counted in the child"
        assert _blas_threads() == before, f"BLAS threads in the child {_blas_threads()}, before the limit {before}"
        ran = []
        _parallel.run_tasks([lambda i=i: ran.append(i) for i in range(4)])  # three of them on the pool
        assert sorted(ran) == [0, 1, 2, 3]
        job = jobs(["numpy"])[0]
        assert job.errors() == []
        return {}

    busy_pool = [_parallel._pool(2).submit(leave.wait, 2 * HANG_S) for _ in range(2)]
    parent = threading.Thread(target=hold)
    parent.start()
    try:
        assert inside.wait(10)
        assert _parallel._blas_limit_depth == 1
        errors = fork_and_wait([Job("child state", np.float64, state_in_child)])  # alone: no limit of its own
    finally:
        leave.set()
        parent.join()
        for future in busy_pool:
            future.result()
    assert errors == []
    assert _blas_threads() == before
