"""FFTW through pyFFTW: plans built once per memory layout and cached, written straight into strided spectra.

pyFFTW is a declared dependency, but the package stays importable where a platform lacks a wheel: the backend is
then registered as not installed.
"""

from __future__ import annotations

import math
import os
import pickle
import time
import weakref
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

try:
    import pyfftw
except ImportError:  # pragma: no cover - exercised only where pyfftw is missing
    pyfftw = None

from .._cache import LRUCache
from .._parallel import default_threads, fork_safe_lock, parts_for, run_tasks, split
from .base import FFTBackend, _instances, register_backend, share
from .blocks import (Shape, check_half_spectrum, check_out, for_blocks, half_spectrum_array_shape, normalise_axes,
                     split_axis, with_sizes)

#: Forward transforms into a strided output (fftconv's frequency-major spectra) of at least this many bytes go block
#: by block through a stage buffer laid out like the spectrum but without its gaps, then one copy. A map's strided
#: stores touch one cache line per bin; once the spectrum outgrows the last-level cache those lines are evicted
#: before the next maps fill them, and FFTW writing in place runs up to 2x slower. Smaller spectra are written in
#: place. Inverse transforms always go in blocks, for their crops (:meth:`PyfftwBackend.irfftn_blocks`).
STAGE_MIN_BYTES = 8 << 20
#: Blocks of maps whose half spectrum takes at most this many bytes are transformed straight into (forward) or from
#: (inverse, whose c2r may destroy them: :meth:`PyfftwBackend.irfftn_blocks` allows it) the frequency-major spectrum,
#: through its strides; larger maps go through the compact stage buffer. Skipping the stage's copy wins for small
#: maps; for maps of thousands of bins the strided accesses cost more than the copy (docs/transforms.md).
STRIDED_MAX_BYTES = 8 << 10

#: Bytes of plans and buffers one backend keeps by default, least recently used dropped first (``cache_bytes``).
DEFAULT_CACHE_BYTES = 256 << 20
#: What a cached plan is counted for besides its buffers: FFTW's plan and twiddle factors, about this many bytes per
#: point of the transform (an estimate; with FFTW_ESTIMATE a plan of 2^16 points takes under 1 MiB).
PLAN_BYTES_PER_POINT = 16

#: fftconv makes and frees every FFTW plan under this one lock: FFTW's planner is not thread-safe, and pyFFTW makes and
#: destroys plans under a process-wide lock of its own. A fork waits for it (see ``_before_fork``), so that a forked
#: child never inherits pyFFTW's lock held by a thread of fftconv that does not exist in it.
_planner_lock = fork_safe_lock()
_live_backends: "weakref.WeakSet[PyfftwBackend]" = weakref.WeakSet()


class PyfftwBackend(FFTBackend):
    """FFTW through pyFFTW, with plans built once per (direction, shapes, strides, alignment, dtype, axes) and cached.

    Unlike ``pyfftw.builders``, plans are made for the caller's actual output layout: when ``out`` is a transposed
    view (fftconv's frequency-major spectra), FFTW writes through the strides directly and no transpose copy is
    made. Inputs that are not C-contiguous, aligned and already of the transform size are copied once into a
    zero-padded, aligned buffer owned by the plan.

    Threads. FFTW's own threads (OpenMP in pyFFTW's wheels) spin after each transform and steal a core from the
    GEMMs that follow (see :mod:`fftconv._parallel`). So each call is cut into ``threads`` chunks along its largest
    untransformed axis, each chunk has its own single-threaded plan, and the chunks run on fftconv's thread pool.
    Forward transforms into large frequency-major spectra (``STAGE_MIN_BYTES``), and :meth:`irfftn_blocks`, go block
    by block through contiguous stage buffers instead (:func:`fftconv.backends.blocks.for_blocks`); the blocked
    small maps are written into and read from the spectrum directly (``STRIDED_MAX_BYTES``).

    The cache. Plans and their buffers are kept up to ``cache_bytes``, the least recently used dropped first; a
    plan is counted for its buffers, for the arrays its last call handed to FFTW (which it keeps referenced) and
    for FFTW's own tables (:data:`PLAN_BYTES_PER_POINT`). A plan still running in another thread when it is dropped
    is freed when that call ends. Forked children find the cache usable (every lock free).

    Parameters
    ----------
    threads : int, optional
        Chunks run in parallel; defaults to :func:`default_threads`.
    planner_effort : str
        ``"FFTW_ESTIMATE"`` (default), ``"FFTW_MEASURE"``, ``"FFTW_PATIENT"`` or ``"FFTW_EXHAUSTIVE"``. Planning
        time is paid once per cached layout; ``plan_seconds`` accumulates it so benchmarks can report it apart.
        The default is ``FFTW_ESTIMATE``: the timed planners made fftconv's training steps no faster but take many
        times longer to plan (see docs/performance.md).
    cache_bytes : int, default :data:`DEFAULT_CACHE_BYTES` (256 MiB)
        Most bytes of plans and buffers kept (see above). A network whose transforms need more replans some of them
        on every step: raise it, or lower it to bound memory tighter.

    Examples
    --------
    >>> backend = PyfftwBackend(threads=1, cache_bytes=1 << 20)
    >>> spectrum = backend.rfftn(np.ones((2, 8, 8)), (8, 8), (1, 2))
    >>> backend.cached_plans, 0 < backend.cached_bytes <= backend.cache_bytes
    (1, True)
    """

    name = "pyfftw"
    _EFFORTS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")

    def __init__(self, threads: int | None = None, planner_effort: str = "FFTW_ESTIMATE",
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        if pyfftw is None:
            raise ImportError("the 'pyfftw' backend needs pyFFTW: pip install pyfftw")
        if planner_effort not in self._EFFORTS:
            raise ValueError(f"planner_effort must be one of {self._EFFORTS}, got {planner_effort!r}")
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)) or cache_bytes < 0:
            raise ValueError(f"cache_bytes must be a non-negative int, got {cache_bytes!r}")
        self.planner_effort = planner_effort
        self.cache_bytes = int(cache_bytes)
        self._plans: LRUCache[_ChunkPlan] = LRUCache(max_bytes=self.cache_bytes, on_evict=self._retire)
        self._retired: set[_ChunkPlan] = set()  # dropped from the cache while a call was running them
        self.plan_seconds = 0.0
        _live_backends.add(self)

    def empty(self, shape: Shape, dtype) -> np.ndarray:
        """An uninitialised array aligned for FFTW's SIMD code."""
        return pyfftw.empty_aligned(shape, dtype=dtype)

    # ------------------------------------------------------------------ the plan cache (all under _planner_lock)
    def _build(self, in_shape, in_dtype, out_like: np.ndarray, axes: Shape, direction: str,
               in_like: np.ndarray | None = None) -> "_ChunkPlan":
        """Plan on scratch arrays with the same layout as the real ones (planning overwrites its arrays); the input
        is contiguous unless ``in_like`` gives its layout."""
        start = time.perf_counter()
        in_scratch = pyfftw.zeros_aligned(in_shape, dtype=in_dtype) if in_like is None else _scratch_like(in_like)
        flags = (self.planner_effort, "FFTW_DESTROY_INPUT") if direction == "FFTW_BACKWARD" else (self.planner_effort,)
        plan = pyfftw.FFTW(in_scratch, _scratch_like(out_like), axes=axes, direction=direction, flags=flags,
                           threads=1)
        self.plan_seconds += time.perf_counter() - start
        return _ChunkPlan(plan, in_scratch)

    def _acquire(self, key: tuple, build: Callable[[], "_ChunkPlan"]) -> "_ChunkPlan":
        """The cached plan for ``key`` (built if missing), counted as in use until :meth:`_release`."""
        with _planner_lock:
            entry = self._plans.get(key)
            if entry is None:
                entry = build()
                self._plans.put(key, entry, entry.nbytes)
            entry.users += 1
        return entry

    def _release(self, entries: Sequence["_ChunkPlan"]) -> None:
        with _planner_lock:
            for entry in entries:
                entry.users -= 1
                if entry.users == 0 and entry in self._retired:
                    self._retired.discard(entry)
                    entry.free()

    def _retire(self, entry: "_ChunkPlan") -> None:
        """Called by the cache (under the lock) for a plan it drops: freed now, or by the last call running it."""
        if entry.users:
            self._retired.add(entry)
        else:
            entry.free()

    def _forget_users_in_child(self) -> None:
        """In a forked child: the threads that were running plans are gone, so no plan is in use."""
        for entry in self._plans.values():
            entry.users = 0
        for entry in self._retired:
            entry.free()
        self._retired.clear()

    def _plan(self, x: np.ndarray, in_shape: Shape, out: np.ndarray, axes: Shape, direction: str,
              chunk: int) -> "_ChunkPlan":
        """The plan of one chunk; chunks run concurrently, so each has its own plan object and buffers."""
        key = (direction, chunk, x.shape, x.strides, x.dtype.str, in_shape, out.shape, out.strides,
               out.ctypes.data % pyfftw.simd_alignment, axes)

        def build() -> _ChunkPlan:
            entry = self._build(in_shape, x.dtype, out, axes, direction)
            # what the plan holds: its input buffer (made on first need), the last call's arrays, FFTW's tables
            held = math.prod(in_shape) * x.dtype.itemsize + _span_bytes(out)
            entry.nbytes = held + (_span_bytes(x) if x.shape == tuple(in_shape) else 0) + _plan_bytes(in_shape, axes)
            return entry

        return self._acquire(key, build)

    def _execute(self, x: np.ndarray, in_shape: Shape, out: np.ndarray, axes: Shape, direction: str,
                 reuse_input: bool, scale: float = 1.0) -> np.ndarray:
        axis = split_axis(x.shape, axes)
        tasks, entries = [], []
        parts = parts_for(max(x.size, out.size), "elements", self.threads)
        try:
            for chunk, (start, stop) in enumerate(split(x.shape[axis], parts) if axis is not None else [(0, 0)]):
                part = (slice(None),) * axis + (slice(start, stop),) if axis is not None else ()
                x_part, out_part = x[part], out[part]
                chunk_shape = with_sizes(in_shape, (axis,), (stop - start,)) if axis is not None else in_shape
                entries.append(self._plan(x_part, chunk_shape, out_part, axes, direction, chunk))
                tasks.append(lambda e=entries[-1], xp=x_part, op=out_part: e.run(xp, op, reuse_input, scale))
            run_tasks(tasks)
        finally:
            self._release(entries)
        return out

    def _staged_plan(self, x: np.ndarray, strides: Shape, sizes: Shape, axes: Shape, direction: str,
                     task: int, in_place: bool) -> "_ChunkPlan":
        """The plan of one block of a staged transform, with its own aligned buffers laid out like the strided array
        (axes in the order of ``strides``, but without gaps): the forward's output, the inverse's input, so that
        the copy between buffer and spectrum moves whole runs of maps. The inverse's output is contiguous; with
        ``in_place`` it reads ``x`` itself (its strides and alignment are part of the plan)."""
        forward = direction == "FFTW_FORWARD"
        in_shape = with_sizes(x.shape, axes, sizes) if forward else x.shape
        out_shape = half_spectrum_array_shape(x.shape, axes, sizes) if forward else with_sizes(x.shape, axes, sizes)
        out_dtype = np.result_type(x.dtype, np.complex64) if forward else np.finfo(x.dtype).dtype
        order = _memory_order(strides)
        key = ("staged", direction, task, x.shape, x.strides, x.dtype.str, in_shape, out_shape, axes, order,
               _alignment_offset(x) if in_place else None)

        def build() -> _ChunkPlan:
            stage = _compact(out_shape, order, out_dtype) if forward else self.empty(out_shape, out_dtype)
            in_like = None if forward else x if in_place else _compact(in_shape, order, x.dtype)
            entry = self._build(in_shape, x.dtype, stage, axes, direction, in_like)
            entry.stage, entry.in_buffer = stage, None if in_place else in_like
            input_side = math.prod(in_shape) * x.dtype.itemsize  # its buffer, or the maps it reads in place
            entry.nbytes = stage.nbytes + input_side + _plan_bytes(in_shape if forward else out_shape, axes)
            return entry

        return self._acquire(key, build)

    def _run_staged(self, x: np.ndarray, strided: np.ndarray, sizes: Shape, axes: Shape, direction: str,
                    deliver: Callable[[tuple, np.ndarray], object], scale: float = 1.0) -> None:
        """Transform ``x`` block of maps by block (blocks cut along ``strided``'s layout, see :func:`stage_blocks`)
        through stage buffers; ``deliver(block, stage)`` takes each block's result while it is in cache. ``scale``
        multiplies the blocks FFTW writes straight into ``strided`` (``deliver`` scales the staged ones)."""
        forward = direction == "FFTW_FORWARD"
        # small maps: FFTW writes (forward) or reads (inverse) the spectrum itself, see STRIDED_MAX_BYTES; forward
        # inputs are read in place when they can be, larger inverse maps are gathered into the plan's buffer
        direct = math.prod(strided.shape[axis] for axis in axes) * strided.itemsize <= STRIDED_MAX_BYTES

        def run_block(block: tuple, task: int) -> None:
            x_block = x[block]
            if forward and direct:
                out_block = strided[block]
                entry = self._plan(x_block, with_sizes(x_block.shape, axes, sizes), out_block, axes, direction, task)
                try:
                    entry.run(x_block, out_block, reuse_input=True, scale=scale)
                finally:
                    self._release([entry])
                return
            entry = self._staged_plan(x_block, strided.strides, sizes, axes, direction, task, direct and not forward)
            try:
                entry.run_staged(x_block, forward or direct, lambda stage: deliver(block, stage))
            finally:
                self._release([entry])

        for_blocks(strided, axes, self.threads, run_block)

    # ------------------------------------------------------------------ the interface
    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """Unnormalised inverse transform, block of maps by block: ``consume(block, maps)`` gets each block's real
        maps (valid only during the call) and its index over ``spectrum``'s axes; see
        :meth:`FFTBackend.irfftn_blocks`."""
        axes = normalise_axes(axes, spectrum.ndim)
        check_half_spectrum(spectrum, shape, axes)
        self._run_staged(spectrum, spectrum, shape, axes, "FFTW_BACKWARD", consume)

    def rfftn_scaled(self, x: np.ndarray, shape: Shape, axes: Shape, scale: float,
                     out: np.ndarray | None = None) -> np.ndarray:
        return self.rfftn(x, shape, axes, out, scale=scale)

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None,
              scale: float = 1.0) -> np.ndarray:
        """The half spectrum of ``x``, times ``scale``: the factor is applied while the maps are copied into the
        plan's buffer or out of the stage (a separate pass only when FFTW reads the caller's maps in place)."""
        axes = normalise_axes(axes, x.ndim)
        in_shape = with_sizes(x.shape, axes, shape)
        out_shape = half_spectrum_array_shape(x.shape, axes, shape)
        complex_dtype = np.result_type(x.dtype, np.complex64)
        if out is None:
            out = self.empty(out_shape, complex_dtype)
        check_out(out, out_shape, complex_dtype)
        if not out.flags.c_contiguous and out.size * out.itemsize >= STAGE_MIN_BYTES:
            # a large frequency-major view: see STAGE_MIN_BYTES
            self._run_staged(x, out, shape, axes, "FFTW_FORWARD",
                             lambda block, stage: _copy_scaled(stage, out[block], scale), scale)
            return out
        return self._execute(x, in_shape, out, axes, "FFTW_FORWARD", reuse_input=True, scale=scale)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        axes = normalise_axes(axes, spectrum.ndim)
        out_shape = with_sizes(spectrum.shape, axes, shape)
        real_dtype = np.finfo(spectrum.dtype).dtype
        out = self.empty(out_shape, real_dtype)
        check_half_spectrum(spectrum, shape, axes)
        # c2r transforms destroy their input: use the caller's array only when it allows that.
        self._execute(spectrum, spectrum.shape, out, axes, "FFTW_BACKWARD", reuse_input=overwrite_input)
        if normalise:
            out *= 1.0 / math.prod(shape)  # FFTW's inverse is unnormalised; numpy's convention divides by N
        return out

    @property
    def cached_plans(self) -> int:
        """Number of plans in the cache."""
        return len(self._plans)

    @property
    def cached_bytes(self) -> int:
        """Bytes the cached plans are counted for (see the class notes); at most ``cache_bytes`` plus one plan."""
        return self._plans.nbytes

    def clear(self) -> None:
        """Forget cached plans (FFTW's wisdom stays)."""
        with _planner_lock:
            self._plans.clear()

    def __repr__(self) -> str:
        cache = "" if self.cache_bytes == DEFAULT_CACHE_BYTES else f", cache_bytes={self.cache_bytes}"
        return f"PyfftwBackend(threads={self.threads}, planner_effort={self.planner_effort!r}{cache})"


class _ChunkPlan:
    """A cached single-threaded FFTW plan, and the zero-padded input buffer it copies into when it must.

    The buffer is made on first need: an inverse transform allowed to destroy its contiguous, aligned input never
    needs one. The planning arrays are not kept (FFTW only needs their layout), so a cached plan holds at most one
    input-sized buffer plus its last call's arrays; a staged plan (one block of maps) also holds its output buffer.
    One call at a time per plan: convolutions may run in several user threads. ``users`` counts the calls that have
    it (under the planner lock), so that a plan the cache drops meanwhile is freed only when they are done.
    """

    def __init__(self, plan, in_like: np.ndarray):
        self.plan, self.in_shape, self.in_strides, self.in_dtype = plan, in_like.shape, in_like.strides, in_like.dtype
        self.in_offset = _alignment_offset(in_like)  # the plan reads arrays in place only at this offset
        self.in_buffer: np.ndarray | None = None
        self.stage: np.ndarray | None = None  # the output buffer of a staged plan
        self.busy = fork_safe_lock()
        self.users = 0
        self.nbytes = 0

    def free(self) -> None:
        """Destroy the FFTW plan and drop the buffers (under the planner lock: pyFFTW destroys plans under its own)."""
        self.plan = self.in_buffer = self.stage = None

    def run(self, x: np.ndarray, out: np.ndarray, reuse_input: bool, scale: float = 1.0) -> None:
        with self.busy:
            self._transform(x, out, reuse_input, scale)

    def run_staged(self, x: np.ndarray, reuse_input: bool, deliver: Callable[[np.ndarray], object]) -> None:
        """Transform into the stage buffer and hand it to ``deliver`` (see ``STAGE_MIN_BYTES``), all under the lock."""
        with self.busy:
            self._transform(x, self.stage, reuse_input)
            deliver(self.stage)

    def _transform(self, x: np.ndarray, out: np.ndarray, reuse_input: bool, scale: float = 1.0) -> None:
        if (reuse_input and x.shape == self.in_shape and x.strides == self.in_strides
                and _alignment_offset(x) == self.in_offset):
            source = x
        else:
            if self.in_buffer is None:
                self.in_buffer = pyfftw.zeros_aligned(self.in_shape, dtype=self.in_dtype)
            # the rest stays zero (r2c keeps its input); the factor is exact for powers of two, and free here
            _copy_scaled(x, self.in_buffer[tuple(slice(0, n) for n in x.shape)], scale)
            source, scale = self.in_buffer, 1.0
        self.plan.update_arrays(source, out)
        self.plan.execute()
        if scale != 1.0:
            out *= scale


def _copy_scaled(source: np.ndarray, target: np.ndarray, scale: float) -> None:
    if scale == 1.0:
        np.copyto(target, source)
    else:
        np.multiply(source, scale, out=target, casting="same_kind")


def _span_bytes(array: np.ndarray) -> int:
    """Bytes from the lowest to the highest address ``array`` reaches (what a reference to it keeps alive, at least)."""
    if array.size == 0:
        return 0
    reach = sum((n - 1) * abs(step) for n, step in zip(array.shape, array.strides))
    return reach + array.itemsize


def _plan_bytes(shape: Shape, axes: Shape) -> int:
    return PLAN_BYTES_PER_POINT * math.prod(shape[axis] for axis in axes)


def _memory_order(strides: Shape) -> tuple[int, ...]:
    """Axes from outermost to innermost in memory."""
    return tuple(sorted(range(len(strides)), key=lambda axis: -abs(strides[axis])))


def _compact(shape: Shape, order: Sequence[int], dtype) -> np.ndarray:
    """An aligned, uninitialised array of ``shape`` whose axes lie in memory in ``order`` (outermost first), gapless."""
    buffer = pyfftw.empty_aligned(tuple(shape[axis] for axis in order), dtype=dtype)
    return buffer.transpose(np.argsort(order))


def _alignment_offset(array: np.ndarray) -> int:
    return array.ctypes.data % pyfftw.simd_alignment


def _scratch_like(array: np.ndarray) -> np.ndarray:
    """Scratch memory laid out exactly like ``array``: same shape, strides and offset from SIMD alignment.

    ``array`` may be a strided view (a chunk of a transposed spectrum); the plan made on the scratch then accepts
    ``array`` itself in ``update_arrays``, so FFTW writes straight into the caller's memory.
    """
    lowest = sum((n - 1) * st for n, st in zip(array.shape, array.strides) if st < 0)
    span = sum((n - 1) * abs(st) for n, st in zip(array.shape, array.strides)) + array.itemsize
    offset = array.ctypes.data % pyfftw.simd_alignment
    raw = pyfftw.empty_aligned(span + offset, dtype=np.uint8)
    return np.ndarray(array.shape, array.dtype, buffer=raw, offset=offset - lowest, strides=array.strides)


def export_wisdom(path: Union[str, Path]) -> None:
    """Save FFTW's accumulated wisdom so later processes can skip planning. See :func:`import_wisdom`."""
    if pyfftw is None:
        raise ImportError("wisdom needs pyFFTW: pip install pyfftw")
    Path(path).write_bytes(pickle.dumps(pyfftw.export_wisdom()))


def import_wisdom(path: Union[str, Path]) -> tuple[bool, bool, bool]:
    """Load wisdom saved by :func:`export_wisdom`; return FFTW's success flags (double, single, long double)."""
    if pyfftw is None:
        raise ImportError("wisdom needs pyFFTW: pip install pyfftw")
    return pyfftw.import_wisdom(pickle.loads(Path(path).read_bytes()))


def configure_pyfftw(threads: int | None = None, planner_effort: str = "FFTW_ESTIMATE",
                     cache_bytes: int = DEFAULT_CACHE_BYTES) -> PyfftwBackend:
    """Replace the shared ``"pyfftw"`` backend with one using these settings, and return it.

    The one it replaces forgets its plans (a caller still holding it builds them again as needed).

    Examples
    --------
    >>> configure_pyfftw(cache_bytes=64 << 20).cache_bytes == 64 << 20
    True
    >>> _ = configure_pyfftw()  # back to the defaults
    """
    replaced = _instances.get("pyfftw")
    backend = share(PyfftwBackend(threads=threads, planner_effort=planner_effort, cache_bytes=cache_bytes))
    if isinstance(replaced, PyfftwBackend) and replaced is not backend:
        replaced.clear()  # its plans are freed under the planner lock now, not whenever it is collected
    return backend


def _before_fork() -> None:
    _planner_lock.acquire()  # wait for a plan being made or freed: pyFFTW's own lock is then free at the fork


def _after_fork_in_parent() -> None:
    _planner_lock.release()


def _after_fork_in_child() -> None:
    # fftconv._parallel's hook frees every lock (this one, which the forking thread took, and each plan's)
    for backend in list(_live_backends):
        backend._forget_users_in_child()


register_backend("pyfftw", PyfftwBackend, available=pyfftw is not None)
if pyfftw is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
