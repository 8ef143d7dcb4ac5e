"""One thread pool for all of fftconv's parallel work: FFT chunks, per-bin GEMMs, DFT-matrix products, im2col's
GEMMs and large crops.

Why one pool. Each library's own threads spin-wait after a parallel region (OpenBLAS for up to ~0.1 s, pyFFTW's
OpenMP likewise): when the FFTs of one pass and the GEMMs of the next use different pools, the idle pool steals a core
from the busy one. So fftconv runs every library single-threaded and splits the work itself, over ``threads``
workers of one :class:`~concurrent.futures.ThreadPoolExecutor` whose idle threads block instead of spinning. numpy,
scipy.fft and pyFFTW all release the GIL in their kernels. docs/algorithm.md ("Threads") has the measurements.

Forks. A forked child (multiprocessing's default start method on Linux) has only the thread that forked: a lock
another thread of the parent held stays held for ever, and the pool's threads are gone. Every lock of fftconv is made
by :func:`fork_safe_lock`, which a child finds free; the child also gets its own pool and BLAS's thread count as it
was outside fftconv (see :func:`_after_fork_in_child`).
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_controller = None
#: Every lock :func:`fork_safe_lock` made that is still alive.
_fork_safe_locks: "weakref.WeakSet" = weakref.WeakSet()


def fork_safe_lock(reentrant: bool = False):
    """A new ``threading.Lock`` (or ``RLock``) that a forked child finds released.

    A thread of the parent that held it at the fork does not exist in the child, and would never release it; the
    child reinitialises every such lock before it runs any Python code of its own.

    Examples
    --------
    >>> lock = fork_safe_lock()
    >>> with lock:
    ...     lock.locked()
    True
    """
    lock = threading.RLock() if reentrant else threading.Lock()
    _fork_safe_locks.add(lock)
    return lock


def default_threads() -> int:
    """Threads used by multi-threaded backends: ``FFTCONV_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("FFTCONV_THREADS")
    if env:
        try:
            value = int(env)
            if value >= 1:
                return value
        except ValueError:
            pass
        raise ValueError(f"FFTCONV_THREADS must be a positive integer, got {env!r}")
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_pool_lock = fork_safe_lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _executor, _executor_pid
    # A forked child inherits the executor but not its threads: its tasks would never run. So each process makes its
    # own (the fork hook forgets the parent's; the pid also catches a fork made from C, which runs no hook).
    with _pool_lock:
        if _executor is None or _executor._max_workers < workers or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(workers, thread_name_prefix="fftconv")
            _executor_pid = os.getpid()
        return _executor


def _blas_libraries() -> list:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas").lib_controllers
    return _controller


_blas_limit_depth = 0
_blas_saved_threads: list[int] = []
_blas_limit_lock = fork_safe_lock()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """A context in which BLAS uses one thread (process-wide: OpenBLAS's setting is global).

    Talks to the BLAS libraries found once by threadpoolctl directly (``ThreadpoolController.limit`` re-queries
    every library and costs ~70 us). Uses nest and overlap, also from several threads: the first to enter saves the
    libraries' thread counts and the last to leave restores them.
    """
    global _blas_limit_depth, _blas_saved_threads
    with _blas_limit_lock:
        if _blas_limit_depth == 0:
            _blas_saved_threads = [library.num_threads for library in _blas_libraries()]
            for library in _blas_libraries():
                library.set_num_threads(1)
        _blas_limit_depth += 1
    try:
        yield
    finally:
        with _blas_limit_lock:
            _blas_limit_depth -= 1
            if _blas_limit_depth == 0:
                for library, threads in zip(_blas_libraries(), _blas_saved_threads):
                    library.set_num_threads(threads)


def blas_single_threaded_within(function: Callable) -> Callable:
    """Decorator: the whole call runs with single-threaded BLAS (one limit for all its stages)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return function(*args, **kwargs)

    return wrapper


def run_tasks(tasks: Sequence[Callable[[], object]]) -> None:
    """Run independent tasks concurrently: the first in the calling thread, the rest in the pool.

    BLAS is single-threaded meanwhile, so a task's matrix products never wake OpenBLAS's own threads. Tasks must
    not call ``run_tasks`` themselves (the pool is small and would wait on itself). Each task runs in a copy of the
    caller's context, so ``numpy.errstate`` (a context variable) applies in the pool too.
    """
    if len(tasks) == 1:
        tasks[0]()
        return
    if not tasks:
        return
    with single_threaded_blas():
        futures = [_pool(len(tasks) - 1).submit(contextvars.copy_context().run, task) for task in tasks[1:]]
        try:
            tasks[0]()
        finally:
            for future in futures:
                future.result()


#: Least work worth a task of its own, by kind: a hand-off to the pool costs about as much (~30 us) as 2^15 elements
#: of an FFT or a copy, or 2^18 complex multiply-adds of a GEMM, on one core. (The tests lower these to 1 so that
#: tiny arrays exercise the chunked code paths.)
MIN_WORK_PER_TASK = {"elements": 1 << 15, "multiply_adds": 1 << 18}


def parts_for(work: int, kind: str, threads: int | None = None) -> int:
    """How many tasks to cut ``work`` of a ``kind`` in :data:`MIN_WORK_PER_TASK` into: up to ``threads``.

    Examples
    --------
    >>> parts_for(10_000, "elements", threads=2), parts_for(1 << 20, "elements", threads=2)
    (1, 2)
    """
    threads = default_threads() if threads is None else threads
    return max(1, min(threads, work // max(MIN_WORK_PER_TASK[kind], 1)))


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges cutting ``range(count)`` into at most ``parts`` near-equal, non-empty pieces.

    Examples
    --------
    >>> split(7, 2), split(1, 4)
    ([(0, 4), (4, 7)], [(0, 1)])
    """
    parts = max(1, min(parts, count))
    cuts = [round(i * count / parts) for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def batched_matmul(left: np.ndarray, right: np.ndarray, out: np.ndarray, threads: int | None = None) -> np.ndarray:
    """``np.matmul(left, right, out=out)`` for stacks of matrices, the stack split across ``threads`` threads.

    ``left``, ``right`` and ``out`` have the same leading (stack) shape and any strides (fftconv's spectra have
    padded gaps between frequency bins); the split is along the first stack axis. numpy calls BLAS once per matrix,
    and a multi-threaded BLAS would wake, split and join its pool for every one of them; contiguous ranges of bins
    per thread avoid that.
    """
    multiply_adds = out.size * left.shape[-1]
    ranges = split(out.shape[0], parts_for(multiply_adds, "multiply_adds", threads)) if out.ndim > 2 else [(0, None)]
    with single_threaded_blas():  # even for one task: numpy's stacked matmul calls BLAS once per matrix
        run_tasks([lambda a=a, b=b: np.matmul(left[a:b], right[a:b], out=out[a:b]) for a, b in ranges])
    return out


def parallel_matmul(left: np.ndarray, right: np.ndarray, out: np.ndarray | None = None,
                    threads: int | None = None) -> np.ndarray:
    """``np.matmul(left, right)`` for a few large matrices, split over fftconv's pool.

    ``left`` is ``(..., M, K)`` and ``right`` ``(..., K, N)`` with broadcasting stack axes; ``out``, if given, is the
    ``(..., M, N)`` array to write (a strided view is fine). Used for im2col's GEMMs and for DFT matrices applied to
    many maps at once (:mod:`fftconv._kernel_dft`). OpenBLAS's own threads would do the same work but spin
    afterwards and slow the FFT stages of the next layer; here each task runs single-threaded BLAS on a band of the
    largest dimension: rows of ``left``, columns of ``right``, or (both outputs small, as in a weight gradient) the
    shared dimension, whose partial products are then summed.
    """
    (m, k), n = left.shape[-2:], right.shape[-1]
    if out is None:
        stack = np.broadcast_shapes(left.shape[:-2], right.shape[:-2])
        out = np.empty((*stack, m, n), dtype=np.result_type(left, right))
    parts = parts_for(out.size * k, "multiply_adds", threads)
    largest = max(m, n, k)
    if parts == 1 or largest < 2 * parts:
        with single_threaded_blas():
            return np.matmul(left, right, out=out)
    if largest == m:
        run_tasks([lambda a=a, b=b: np.matmul(left[..., a:b, :], right, out=out[..., a:b, :])
                   for a, b in split(m, parts)])
    elif largest == n:
        run_tasks([lambda a=a, b=b: np.matmul(left, right[..., a:b], out=out[..., a:b])
                   for a, b in split(n, parts)])
    else:
        ranges = split(k, parts)
        partial = np.empty((len(ranges) - 1, *out.shape), dtype=out.dtype)
        targets = [out, *partial]
        run_tasks([lambda a=a, b=b, t=t: np.matmul(left[..., a:b], right[..., a:b, :], out=t)
                   for (a, b), t in zip(ranges, targets)])
        out += partial.sum(axis=0)
    return out


def _after_fork_in_child() -> None:
    """Make fftconv usable in a forked child: every lock free, no pool, BLAS's thread count as outside fftconv.

    A parent thread inside :func:`single_threaded_blas` at the fork left BLAS at one thread; the child gets back the
    count saved when that limit began. (OpenBLAS shuts its own thread pool down around a fork itself.)
    """
    global _executor, _executor_pid, _blas_limit_depth
    for lock in list(_fork_safe_locks):
        lock._at_fork_reinit()  # what threading and logging do for their own locks in a child
    _executor, _executor_pid = None, None
    if _blas_limit_depth:
        _blas_limit_depth = 0
        for library, threads in zip(_blas_libraries(), _blas_saved_threads):
            library.set_num_threads(threads)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
