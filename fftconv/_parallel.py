"""Per-bin complex GEMMs split across threads, each with single-threaded BLAS.

numpy's ``matmul`` over a stack of small matrices calls BLAS once per matrix; with a multi-threaded BLAS every one of
those calls wakes, splits and joins the thread pool, and on the project's 2-core machine the pool's spinning also
fights FFTW's. Giving each thread a contiguous range of frequency bins and limiting BLAS to one thread meanwhile
measured 1.4-2.5x faster for the paper's layer shapes (``experiments/defaults.py`` and README).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backends import default_threads

_executor: ThreadPoolExecutor | None = None
_controller = None


def _pool(threads: int) -> ThreadPoolExecutor:
    global _executor
    if _executor is None or _executor._max_workers != threads:
        _executor = ThreadPoolExecutor(threads, thread_name_prefix="fftconv-gemm")
    return _executor


def _single_threaded_blas():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def batched_matmul(left: np.ndarray, right: np.ndarray, out: np.ndarray, threads: int | None = None) -> np.ndarray:
    """``np.matmul(left, right, out=out)`` for stacks of matrices, the stack split across ``threads`` threads.

    ``left`` and ``right`` have the same leading (stack) shape; ``out`` is contiguous.
    """
    threads = default_threads() if threads is None else threads
    stack = out.shape[:-2]
    count = int(np.prod(stack))
    if threads <= 1 or count < 2 * threads:
        return np.matmul(left, right, out=out)
    left3 = left.reshape(count, *left.shape[-2:])
    right3 = right.reshape(count, *right.shape[-2:])
    out3 = out.reshape(count, *out.shape[-2:])
    cuts = np.linspace(0, count, threads + 1).astype(int)
    with _single_threaded_blas():
        futures = [_pool(threads).submit(np.matmul, left3[a:b], right3[a:b], out=out3[a:b])
                   for a, b in zip(cuts[:-1], cuts[1:])]
        for future in futures:
            future.result()
    return out
