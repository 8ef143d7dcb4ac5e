"""FFTW through pyFFTW: plans built once per memory layout and cached, written straight into strided spectra.

pyFFTW is a declared dependency, but the package stays importable where a platform lacks a wheel: the backend is
then registered as not installed.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

try:
    import pyfftw
except ImportError:  # pragma: no cover - exercised only where pyfftw is missing
    pyfftw = None

from .._parallel import default_threads, parts_for, run_tasks, split
from .base import FFTBackend, register_backend, share
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

    Parameters
    ----------
    threads : int, optional
        Chunks run in parallel; defaults to :func:`default_threads`.
    planner_effort : str
        ``"FFTW_ESTIMATE"`` (default), ``"FFTW_MEASURE"``, ``"FFTW_PATIENT"`` or ``"FFTW_EXHAUSTIVE"``. Planning
        time is paid once per cached layout; ``plan_seconds`` accumulates it so benchmarks can report it apart.
        The default is ``FFTW_ESTIMATE``: the timed planners made fftconv's training steps no faster but take many
        times longer to plan (see docs/performance.md).
    """

    name = "pyfftw"
    _EFFORTS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")

    def __init__(self, threads: int | None = None, planner_effort: str = "FFTW_ESTIMATE"):
        if pyfftw is None:
            raise ImportError("the 'pyfftw' backend needs pyFFTW: pip install pyfftw")
        if planner_effort not in self._EFFORTS:
            raise ValueError(f"planner_effort must be one of {self._EFFORTS}, got {planner_effort!r}")
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        self.planner_effort = planner_effort
        self._plans: dict[tuple, tuple] = {}
        self._lock = threading.Lock()
        self.plan_seconds = 0.0

    def empty(self, shape: Shape, dtype) -> np.ndarray:
        """An uninitialised array aligned for FFTW's SIMD code."""
        return pyfftw.empty_aligned(shape, dtype=dtype)

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

    def _plan(self, x: np.ndarray, in_shape: Shape, out: np.ndarray, axes: Shape, direction: str,
              chunk: int) -> "_ChunkPlan":
        """The plan of one chunk; chunks run concurrently, so each has its own plan object and buffers."""
        key = (direction, chunk, x.shape, x.strides, x.dtype.str, in_shape, out.shape, out.strides,
               out.ctypes.data % pyfftw.simd_alignment, axes)
        with self._lock:  # FFTW's planner is not thread-safe
            entry = self._plans.get(key)
            if entry is None:
                entry = self._plans[key] = self._build(in_shape, x.dtype, out, axes, direction)
        return entry

    def _execute(self, x: np.ndarray, in_shape: Shape, out: np.ndarray, axes: Shape, direction: str,
                 reuse_input: bool) -> np.ndarray:
        axis = split_axis(x.shape, axes)
        tasks = []
        parts = parts_for(max(x.size, out.size), "elements", self.threads)
        for chunk, (start, stop) in enumerate(split(x.shape[axis], parts) if axis is not None else [(0, 0)]):
            part = (slice(None),) * axis + (slice(start, stop),) if axis is not None else ()
            x_part, out_part = x[part], out[part]
            chunk_shape = with_sizes(in_shape, (axis,), (stop - start,)) if axis is not None else in_shape
            entry = self._plan(x_part, chunk_shape, out_part, axes, direction, chunk)
            tasks.append(lambda e=entry, xp=x_part, op=out_part: e.run(xp, op, reuse_input))
        run_tasks(tasks)
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
        with self._lock:
            entry = self._plans.get(key)
            if entry is None:
                stage = _compact(out_shape, order, out_dtype) if forward else self.empty(out_shape, out_dtype)
                in_like = None if forward else x if in_place else _compact(in_shape, order, x.dtype)
                entry = self._plans[key] = self._build(in_shape, x.dtype, stage, axes, direction, in_like)
                entry.stage, entry.in_buffer = stage, None if in_place else in_like
        return entry

    def _run_staged(self, x: np.ndarray, strided: np.ndarray, sizes: Shape, axes: Shape, direction: str,
                    deliver: Callable[[tuple, np.ndarray], object]) -> None:
        """Transform ``x`` block of maps by block (blocks cut along ``strided``'s layout, see :func:`stage_blocks`)
        through stage buffers; ``deliver(block, stage)`` takes each block's result while it is in cache."""
        forward = direction == "FFTW_FORWARD"
        # small maps: FFTW writes (forward) or reads (inverse) the spectrum itself, see STRIDED_MAX_BYTES; forward
        # inputs are read in place when they can be, larger inverse maps are gathered into the plan's buffer
        direct = math.prod(strided.shape[axis] for axis in axes) * strided.itemsize <= STRIDED_MAX_BYTES

        def run_block(block: tuple, task: int) -> None:
            x_block = x[block]
            if forward and direct:
                out_block = strided[block]
                entry = self._plan(x_block, with_sizes(x_block.shape, axes, sizes), out_block, axes, direction, task)
                entry.run(x_block, out_block, reuse_input=True)
                return
            entry = self._staged_plan(x_block, strided.strides, sizes, axes, direction, task, direct and not forward)
            entry.run_staged(x_block, forward or direct, lambda stage: deliver(block, stage))

        for_blocks(strided, axes, self.threads, run_block)

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """Unnormalised inverse transform, block of maps by block: ``consume(block, maps)`` gets each block's real
        maps (valid only during the call) and its index over ``spectrum``'s axes; see
        :meth:`FFTBackend.irfftn_blocks`."""
        axes = normalise_axes(axes, spectrum.ndim)
        check_half_spectrum(spectrum, shape, axes)
        self._run_staged(spectrum, spectrum, shape, axes, "FFTW_BACKWARD", consume)

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        axes = normalise_axes(axes, x.ndim)
        in_shape = with_sizes(x.shape, axes, shape)
        out_shape = half_spectrum_array_shape(x.shape, axes, shape)
        complex_dtype = np.result_type(x.dtype, np.complex64)
        if out is None:
            out = self.empty(out_shape, complex_dtype)
        check_out(out, out_shape, complex_dtype)
        if not out.flags.c_contiguous and out.size * out.itemsize >= STAGE_MIN_BYTES:
            # a large frequency-major view: see STAGE_MIN_BYTES
            self._run_staged(x, out, shape, axes, "FFTW_FORWARD", lambda block, stage: np.copyto(out[block], stage))
            return out
        return self._execute(x, in_shape, out, axes, "FFTW_FORWARD", reuse_input=True)

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
        """Number of plans built so far."""
        return len(self._plans)

    def clear(self) -> None:
        """Forget cached plans (FFTW's wisdom stays)."""
        self._plans.clear()

    def __repr__(self) -> str:
        return f"PyfftwBackend(threads={self.threads}, planner_effort={self.planner_effort!r})"


class _ChunkPlan:
    """A cached single-threaded FFTW plan, and the zero-padded input buffer it copies into when it must.

    The buffer is made on first need: an inverse transform allowed to destroy its contiguous, aligned input never
    needs one. The planning arrays are not kept (FFTW only needs their layout), so a cached plan holds at most one
    input-sized buffer plus its last call's arrays; a staged plan (one block of maps) also holds its output buffer.
    One call at a time per plan: convolutions may run in several user threads.
    """

    def __init__(self, plan, in_like: np.ndarray):
        self.plan, self.in_shape, self.in_strides, self.in_dtype = plan, in_like.shape, in_like.strides, in_like.dtype
        self.in_offset = _alignment_offset(in_like)  # the plan reads arrays in place only at this offset
        self.in_buffer: np.ndarray | None = None
        self.stage: np.ndarray | None = None  # the output buffer of a staged plan
        self.busy = threading.Lock()

    def run(self, x: np.ndarray, out: np.ndarray, reuse_input: bool) -> None:
        with self.busy:
            self._transform(x, out, reuse_input)

    def run_staged(self, x: np.ndarray, reuse_input: bool, deliver: Callable[[np.ndarray], object]) -> None:
        """Transform into the stage buffer and hand it to ``deliver`` (see ``STAGE_MIN_BYTES``), all under the lock."""
        with self.busy:
            self._transform(x, self.stage, reuse_input)
            deliver(self.stage)

    def _transform(self, x: np.ndarray, out: np.ndarray, reuse_input: bool) -> None:
        if (reuse_input and x.shape == self.in_shape and x.strides == self.in_strides
                and _alignment_offset(x) == self.in_offset):
            source = x
        else:
            if self.in_buffer is None:
                self.in_buffer = pyfftw.zeros_aligned(self.in_shape, dtype=self.in_dtype)
            self.in_buffer[tuple(slice(0, n) for n in x.shape)] = x  # the rest stays zero: r2c keeps its input
            source = self.in_buffer
        self.plan.update_arrays(source, out)
        self.plan.execute()


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


def configure_pyfftw(threads: int | None = None, planner_effort: str = "FFTW_ESTIMATE") -> PyfftwBackend:
    """Replace the shared ``"pyfftw"`` backend with one using these settings, and return it."""
    return share(PyfftwBackend(threads=threads, planner_effort=planner_effort))

register_backend("pyfftw", PyfftwBackend, available=pyfftw is not None)
