"""Keeping PyTorch's OpenMP threads and fftconv's thread pool from running at the same time.

fftconv splits its work over its own pool, whose idle threads block (:mod:`fftconv._parallel`). PyTorch's CPU
kernels run on an OpenMP team (GNU libgomp in the Linux wheels), whose worker threads *spin* after each parallel
region before they sleep: about 8 ms of a core after every torch operation on the project's machine (measured with
``/proc/self/task/*/schedstat``; ``OMP_WAIT_POLICY=PASSIVE`` took it to 0). An fftconv operator that starts right
after a torch operation (a ReLU, a batch norm) would share the cores with those spinning threads.

So every fftconv operator first releases the calling thread's OpenMP team with ``omp_pause_resource_all``
(OpenMP 5.0): libgomp wakes its docked workers and lets them exit, and the next torch parallel region starts a new
team. That costs a thread wake-up and, later, a thread start (tens of microseconds each), against milliseconds of a
stolen core. It is skipped where there is nothing to release: one torch thread, or an OpenMP runtime told not to
spin (``OMP_WAIT_POLICY=PASSIVE`` or ``GOMP_SPINCOUNT=0`` when torch was imported). Set
``FFTCONV_TORCH_RELEASE_OPENMP=0`` to turn it off (for example to measure its effect).

Only libgomp is handled: its pause affects the calling thread's team alone, so other threads running torch are not
disturbed. Other OpenMP runtimes (Intel's or LLVM's, in some conda builds) are left alone; with them, set
``OMP_WAIT_POLICY=PASSIVE`` (or ``KMP_BLOCKTIME=0``) before starting Python.
"""

from __future__ import annotations

import ctypes
import os
from typing import Callable

import torch

from .._parallel import fork_safe_lock

_OMP_PAUSE_SOFT = 1
_VARIABLE = "FFTCONV_TORCH_RELEASE_OPENMP"
_pauses: list[Callable[[int], int]] | None = None
_lock = fork_safe_lock()


def _loaded_libgomp_paths() -> list[str]:
    """Paths of the libgomp copies mapped into this process (torch's; pyFFTW may bring its own)."""
    try:
        with open("/proc/self/maps") as maps:
            fields = [line.split(None, 5) for line in maps if "libgomp" in line]
    except OSError:  # not Linux
        return []
    return sorted({f[5].strip() for f in fields if len(f) == 6 and f[5].startswith("/")})


def _pause_functions() -> list[Callable[[int], int]]:
    """``omp_pause_resource_all`` of every libgomp already loaded (never loads a new copy: ``RTLD_NOLOAD``)."""
    global _pauses
    with _lock:
        if _pauses is None:
            found = []
            for path in _loaded_libgomp_paths():
                try:
                    library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
                except OSError:
                    continue
                pause = getattr(library, "omp_pause_resource_all", None)
                if pause is not None:
                    pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
                    found.append(pause)
            _pauses = found
        return _pauses


def _openmp_spins() -> bool:
    """Whether the OpenMP settings torch started with let idle workers spin (libgomp reads them at load time)."""
    if os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive":
        return False
    return os.environ.get("GOMP_SPINCOUNT", "").strip() not in ("0",)


def release_enabled() -> bool:
    """Whether fftconv operators release torch's OpenMP team before they run (see the module notes)."""
    setting = os.environ.get(_VARIABLE, "1").strip().lower()
    if setting not in ("0", "1", "false", "true", "off", "on"):
        raise ValueError(f"{_VARIABLE} must be 0 or 1, got {os.environ[_VARIABLE]!r}")
    return setting in ("1", "true", "on")


def release_torch_threads() -> int:
    """Let the spinning OpenMP workers of the calling thread's team exit before fftconv's pool starts.

    Returns how many OpenMP runtimes were asked (0 when skipped).
    """
    if not release_enabled() or torch.get_num_threads() < 2 or not _openmp_spins():
        return 0
    pauses = _pause_functions()
    for pause in pauses:
        pause(_OMP_PAUSE_SOFT)  # returns non-zero inside a parallel region, where there is nothing to do
    return len(pauses)
