"""FFT backends behind one small interface.

A backend provides two methods, both over an explicit list of axes and an explicit transform size (inputs are
zero-padded at the end of each transformed axis, exactly like ``numpy.fft.rfftn(x, s=shape, axes=axes)``):

- ``rfftn(x, shape, axes, out=None)``: real input, Hermitian half-spectrum out (the last axis in ``axes`` is
  halved), written into ``out`` when given (workspaces preallocate it);
- ``irfftn(X, shape, axes, overwrite_input=False, normalise=True)``: the inverse, real output of size ``shape``
  along ``axes``; ``overwrite_input=True`` lets the backend destroy ``X`` (FFTW's c2r does) instead of copying it
  first; ``normalise=False`` skips the ``1/prod(shape)`` factor (fftconv applies it while cropping, for free).

An optional third method, ``irfftn_blocks(X, shape, axes, consume)``, hands the unnormalised inverse to
``consume(block, maps)`` block of maps by block, so that fftconv crops each block while it is in cache; backends
without it get the same results through :func:`irfftn_blocks`'s fallback (the whole inverse, then cut).

Outputs are always fresh arrays owned by the caller; float32 stays complex64/float32 and float64 stays
complex128/float64.

Three backends ship: ``"pyfftw"`` (the default when installed: FFTW plans built once per layout and cached,
planner effort and threads configurable, wisdom export/import), ``"scipy"`` (``scipy.fft`` with ``workers``) and
``"numpy"`` (``numpy.fft``, single-threaded). The multi-threaded ones split each call into chunks run on fftconv's
one thread pool (:mod:`fftconv._parallel`). :func:`set_backend` changes the process-wide default; every
convolution also takes ``backend=``.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import scipy.fft

try:  # pyfftw is a declared dependency, but keep the package importable if a platform lacks a wheel.
    import pyfftw
    import pyfftw.builders
except ImportError:  # pragma: no cover - exercised only where pyfftw is missing
    pyfftw = None

from ._parallel import default_threads, parts_for, run_tasks, split

Shape = tuple[int, ...]


@runtime_checkable
class FFTBackend(Protocol):
    """What fftconv needs from an FFT library."""

    name: str

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray: ...

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray: ...


def _into(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Return ``result``, or copy it into the caller's preallocated ``out`` (checked, never broadcast)."""
    if out is None:
        return result
    _check_out(out, result.shape, result.dtype)
    np.copyto(out, result)
    return out


class NumpyBackend:
    """``numpy.fft``: always available, single-threaded, no plan reuse. The slowest choice."""

    name = "numpy"

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        return _into(np.fft.rfftn(x, s=shape, axes=axes), out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        return np.fft.irfftn(spectrum, s=shape, axes=axes, norm="backward" if normalise else "forward")

    def __repr__(self) -> str:
        return "NumpyBackend()"


class ScipyBackend:
    """``scipy.fft`` (pocketfft) with ``workers`` threads."""

    name = "scipy"

    def __init__(self, workers: int | None = None):
        self.workers = default_threads() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return scipy.fft.rfftn(x, s=shape, axes=axes, workers=self.workers)
        # pocketfft has no ``out``: blocks of maps transformed on fftconv's pool are copied into ``out`` while in
        # cache, as the inverse does. Transforming and copying in parallel measured 1.2-1.7x faster than workers=2
        # followed by one single-threaded copy into the frequency-major view; blocks as fast as one chunk per thread.
        axes = _normalise_axes(axes, x.ndim)
        _check_out(out, _half_spectrum_shape(x.shape, axes, shape), np.result_type(x.dtype, np.complex64))
        for_blocks(out, axes, self.workers, lambda block, task: np.copyto(
            out[block], scipy.fft.rfftn(x[block], s=shape, axes=axes, workers=1)))
        return out

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        return scipy.fft.irfftn(spectrum, s=shape, axes=axes, workers=self.workers, overwrite_x=overwrite_input,
                                norm="backward" if normalise else "forward")

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """Unnormalised inverse, block of maps by block, in parallel; see :func:`irfftn_blocks`."""
        axes = _normalise_axes(axes, spectrum.ndim)
        _check_half_spectrum(spectrum, shape, axes)
        for_blocks(spectrum, axes, self.workers, lambda block, task: consume(
            block, scipy.fft.irfftn(spectrum[block], s=shape, axes=axes, workers=1, norm="forward")))

    def __repr__(self) -> str:
        return f"ScipyBackend(workers={self.workers})"


class PyfftwBackend:
    """FFTW through pyFFTW, with plans built once per (direction, shapes, strides, alignment, dtype, axes) and cached.

    Unlike ``pyfftw.builders``, plans are made for the caller's actual output layout: when ``out`` is a transposed
    view (fftconv's frequency-major spectra), FFTW writes through the strides directly and no transpose copy is
    made. Inputs that are not C-contiguous, aligned and already of the transform size are copied once into a
    zero-padded, aligned buffer owned by the plan.

    Threads. FFTW's own threads (OpenMP in pyFFTW's wheels) spin after each transform and steal a core from the
    GEMMs that follow (see :mod:`fftconv._parallel`). So each call is cut into ``threads`` chunks along its largest
    untransformed axis, each chunk has its own single-threaded plan, and the chunks run on fftconv's thread pool.
    Forward transforms into large frequency-major spectra, and :meth:`irfftn_blocks`, go block by block through
    contiguous stage buffers instead (``STAGE_BYTES``).

    Parameters
    ----------
    threads : int, optional
        Chunks run in parallel; defaults to :func:`default_threads`.
    planner_effort : str
        ``"FFTW_ESTIMATE"`` (default), ``"FFTW_MEASURE"``, ``"FFTW_PATIENT"`` or ``"FFTW_EXHAUSTIVE"``. Planning
        time is paid once per cached layout; ``plan_seconds`` accumulates it so benchmarks can report it apart.
        ``FFTW_MEASURE`` plans measured no faster in fftconv's training steps on the project's machine (within
        +-6 % on three paper layers) but took 5-40x longer to make (1.2 s against 0.2 s for the (7, 32, 96, 256)
        layer), so the default is ``FFTW_ESTIMATE``.
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

    @staticmethod
    def empty(shape: Shape, dtype) -> np.ndarray:
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
        return _ChunkPlan(plan, in_scratch.shape, in_scratch.strides, in_scratch.dtype)

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
        axis = _split_axis(x.shape, axes)
        tasks = []
        parts = parts_for(max(x.size, out.size), "elements", self.threads)
        for chunk, (start, stop) in enumerate(split(x.shape[axis], parts) if axis is not None else [(0, 0)]):
            part = (slice(None),) * axis + (slice(start, stop),) if axis is not None else ()
            x_part, out_part = x[part], out[part]
            chunk_shape = _with_sizes(in_shape, (axis,), (stop - start,)) if axis is not None else in_shape
            entry = self._plan(x_part, chunk_shape, out_part, axes, direction, chunk)
            tasks.append(lambda e=entry, xp=x_part, op=out_part: e.run(xp, op, reuse_input))
        run_tasks(tasks)
        return out

    def _staged_plan(self, x: np.ndarray, strides: Shape, sizes: Shape, axes: Shape, direction: str,
                     task: int) -> "_ChunkPlan":
        """The plan of one block of a staged transform, with its own aligned buffers laid out like the strided array
        (axes in the order of ``strides``, but without gaps): the forward's output, the inverse's input, so that
        the copy between buffer and spectrum moves whole runs of maps. The inverse's output is contiguous."""
        forward = direction == "FFTW_FORWARD"
        in_shape = _with_sizes(x.shape, axes, sizes) if forward else x.shape
        out_shape = _half_spectrum_shape(x.shape, axes, sizes) if forward else _with_sizes(x.shape, axes, sizes)
        out_dtype = np.result_type(x.dtype, np.complex64) if forward else np.finfo(x.dtype).dtype
        order = _memory_order(strides)
        key = ("staged", direction, task, x.shape, x.strides, x.dtype.str, in_shape, out_shape, axes, order)
        with self._lock:
            entry = self._plans.get(key)
            if entry is None:
                stage = _compact(out_shape, order, out_dtype) if forward else self.empty(out_shape, out_dtype)
                in_like = None if forward else _compact(in_shape, order, x.dtype)
                entry = self._plans[key] = self._build(in_shape, x.dtype, stage, axes, direction, in_like)
                entry.stage, entry.in_buffer = stage, in_like
        return entry

    def _run_staged(self, x: np.ndarray, strided: np.ndarray, sizes: Shape, axes: Shape, direction: str,
                    deliver: Callable[[tuple, np.ndarray], object]) -> None:
        """Transform ``x`` block of maps by block (blocks cut along ``strided``'s layout, see :func:`stage_blocks`)
        through stage buffers; ``deliver(block, stage)`` takes each block's result while it is in cache."""
        forward = direction == "FFTW_FORWARD"

        def run_block(block: tuple, task: int) -> None:
            x_block = x[block]
            entry = self._staged_plan(x_block, strided.strides, sizes, axes, direction, task)
            # forward: the maps are read in place when they can be; inverse: the strided spectrum is gathered into
            # the plan's contiguous buffer (which FFTW may destroy), the point of staging it
            entry.run_staged(x_block, forward, lambda stage: deliver(block, stage))

        for_blocks(strided, axes, self.threads, run_block)

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """Unnormalised inverse transform, block of maps by block: ``consume(block, maps)`` gets each block's real
        maps (valid only during the call) and its index over ``spectrum``'s axes; see :func:`irfftn_blocks`."""
        axes = _normalise_axes(axes, spectrum.ndim)
        _check_half_spectrum(spectrum, shape, axes)
        self._run_staged(spectrum, spectrum, shape, axes, "FFTW_BACKWARD", consume)

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        axes = _normalise_axes(axes, x.ndim)
        in_shape = _with_sizes(x.shape, axes, shape)
        out_shape = _half_spectrum_shape(x.shape, axes, shape)
        complex_dtype = np.result_type(x.dtype, np.complex64)
        if out is None:
            out = self.empty(out_shape, complex_dtype)
        _check_out(out, out_shape, complex_dtype)
        if not out.flags.c_contiguous and out.size * out.itemsize >= STAGE_MIN_BYTES:
            # a frequency-major view: see STAGE_BYTES
            self._run_staged(x, out, shape, axes, "FFTW_FORWARD", lambda block, stage: np.copyto(out[block], stage))
            return out
        return self._execute(x, in_shape, out, axes, "FFTW_FORWARD", reuse_input=True)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        axes = _normalise_axes(axes, spectrum.ndim)
        out_shape = _with_sizes(spectrum.shape, axes, shape)
        real_dtype = np.finfo(spectrum.dtype).dtype
        out = self.empty(out_shape, real_dtype)
        _check_half_spectrum(spectrum, shape, axes)
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

    def __init__(self, plan, in_shape: Shape, in_strides: Shape, in_dtype: np.dtype):
        self.plan, self.in_shape, self.in_strides, self.in_dtype = plan, in_shape, in_strides, in_dtype
        self.in_buffer: np.ndarray | None = None
        self.stage: np.ndarray | None = None  # the output buffer of a staged plan
        self.busy = threading.Lock()

    def run(self, x: np.ndarray, out: np.ndarray, reuse_input: bool) -> None:
        with self.busy:
            self._transform(x, out, reuse_input)

    def run_staged(self, x: np.ndarray, reuse_input: bool, deliver: Callable[[np.ndarray], object]) -> None:
        """Transform into the stage buffer and hand it to ``deliver`` (see ``STAGE_BYTES``), all under the lock."""
        with self.busy:
            self._transform(x, self.stage, reuse_input)
            deliver(self.stage)

    def _transform(self, x: np.ndarray, out: np.ndarray, reuse_input: bool) -> None:
        if reuse_input and x.shape == self.in_shape and x.strides == self.in_strides and _is_aligned(x):
            source = x
        else:
            if self.in_buffer is None:
                self.in_buffer = pyfftw.zeros_aligned(self.in_shape, dtype=self.in_dtype)
            self.in_buffer[tuple(slice(0, n) for n in x.shape)] = x  # the rest stays zero: r2c keeps its input
            source = self.in_buffer
        self.plan.update_arrays(source, out)
        self.plan.execute()


def _normalise_axes(axes: Shape, ndim: int) -> Shape:
    return tuple(a % ndim for a in axes)


def _with_sizes(shape: Shape, axes: Shape, sizes: Sequence[int]) -> Shape:
    """``shape`` with the entries at ``axes`` replaced by ``sizes``."""
    result = list(shape)
    for axis, size in zip(axes, sizes):
        result[axis] = int(size)
    return tuple(result)


def _half_spectrum_shape(shape: Shape, axes: Shape, sizes: Sequence[int]) -> Shape:
    """Shape of ``rfftn`` of an array of ``shape`` at ``sizes`` over ``axes`` (the last one halved)."""
    full = _with_sizes(shape, axes, sizes)
    return _with_sizes(full, axes[-1:], (full[axes[-1]] // 2 + 1,))


def _check_out(out: np.ndarray, shape: Shape, dtype) -> None:
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}; the transform needs shape "
                         f"{tuple(shape)} and dtype {np.dtype(dtype)}")


def _memory_order(strides: Shape) -> tuple[int, ...]:
    """Axes from outermost to innermost in memory."""
    return tuple(sorted(range(len(strides)), key=lambda axis: -abs(strides[axis])))


def _compact(shape: Shape, order: Sequence[int], dtype) -> np.ndarray:
    """An aligned, uninitialised array of ``shape`` whose axes lie in memory in ``order`` (outermost first), gapless."""
    buffer = pyfftw.empty_aligned(tuple(shape[axis] for axis in order), dtype=dtype)
    return buffer.transpose(np.argsort(order))


def _is_aligned(array: np.ndarray) -> bool:
    return array.ctypes.data % pyfftw.simd_alignment == 0


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


#: Forward transforms into a strided output (fftconv's frequency-major spectra) of at least ``STAGE_MIN_BYTES`` go
#: block by block through a stage buffer of at most ``STAGE_BYTES`` per thread, laid out like the spectrum but without
#: its gaps, then one copy. Each map's strided stores touch one cache line per bin, which the next maps would fill;
#: when the lines are evicted before then and the spectrum is larger than the last-level cache, FFTW ran up to 2x
#: slower than into contiguous memory. Measured on the project's machine (pyFFTW, 32 MiB L3), two runs: staged
#: 1.19-1.56x faster at 32 x 32 to 64 x 64 with 25 MB spectra, 0.98-1.32x at 8 x 8 to 28 x 28; at 32 x 32, 0.65-0.75x
#: for 2-4 MB spectra, 1.3x at 9 MB. Inverse transforms are always done in blocks, for their crops
#: (:func:`irfftn_blocks`).
STAGE_BYTES = 1 << 19
STAGE_MIN_BYTES = 8 << 20


def stage_blocks(shape: Shape, strides: Shape, axes: Shape, budget: int) -> list[tuple[slice, ...]]:
    """Index tuples cutting an array's untransformed axes into blocks of at most ``budget`` elements (one map at least).

    The axes innermost in memory are kept whole first, so a block of a frequency-major spectrum is a few long runs in
    every bin's row, and copying it in is cheap.

    Examples
    --------
    >>> blocks = stage_blocks((4, 6, 8, 5), (480, 8, 0, 0), (2, 3), budget=480)  # 12 maps of 40 elements per block
    >>> len(blocks), blocks[1]
    (2, (slice(2, 4, None), slice(0, 6, None), slice(None, None, None), slice(None, None, None)))
    """
    per_map = math.prod(shape[axis] for axis in axes)
    capacity = max(1, budget // per_map)
    sizes = list(shape)
    for axis in sorted((a for a in range(len(shape)) if a not in axes), key=lambda a: abs(strides[a])):
        sizes[axis] = max(1, min(shape[axis], capacity))
        capacity = max(1, capacity // max(shape[axis], 1))
    ranges = [[slice(None)] if axis in axes else
              [slice(start, min(start + sizes[axis], shape[axis])) for start in range(0, shape[axis], sizes[axis])]
              for axis in range(len(shape))]
    return list(itertools.product(*ranges))


def for_blocks(strided: np.ndarray, axes: Shape, threads: int,
               run_block: Callable[[tuple, int], object]) -> None:
    """``run_block(block, task)`` over blocks of ``strided``'s maps, on up to ``threads`` tasks of fftconv's pool.

    The maps are first cut into one near-equal chunk per task, along the untransformed axis outermost in memory
    (the largest one if it is too short to share), then each chunk into its :func:`stage_blocks`. ``task`` numbers
    the tasks, so that each can own its buffers.
    """
    free = [axis for axis in range(strided.ndim) if axis not in axes and strided.shape[axis] > 1]
    parts = parts_for(strided.size, "elements", threads)
    whole = (slice(None),) * strided.ndim
    chunks = [whole]
    if free and parts > 1:
        axis = max(free, key=lambda a: abs(strided.strides[a]))
        if strided.shape[axis] < parts:
            axis = max(free, key=lambda a: strided.shape[a])
        chunks = [whole[:axis] + (slice(a, b),) + whole[axis + 1:] for a, b in split(strided.shape[axis], parts)]

    def task(index: int, chunk: tuple) -> None:
        part = strided[chunk]
        for block in stage_blocks(part.shape, part.strides, axes, STAGE_BYTES // strided.itemsize):
            run_block(tuple(inner if axis in axes else _within(outer, inner, n)  # transformed axes stay whole
                            for axis, (outer, inner, n) in enumerate(zip(chunk, block, strided.shape))), index)

    run_tasks([lambda i=i, c=c: task(i, c) for i, c in enumerate(chunks)])


def _within(outer: slice, inner: slice, size: int) -> slice:
    """The slice ``inner`` of the part ``outer`` of an axis of ``size``, as a slice of the whole axis."""
    picked = range(size)[outer][inner]
    return slice(picked.start, picked.stop)


def irfftn_blocks(backend: "FFTBackend", spectrum: np.ndarray, shape: Shape, axes: Shape,
                  consume: Callable[[tuple, np.ndarray], object]) -> None:
    """The unnormalised inverse transform of ``spectrum`` (which may be destroyed), handed to ``consume`` in blocks.

    ``consume(block, maps)`` receives the real maps of a block of the untransformed axes and the block's index
    (a tuple of slices over ``spectrum``'s axes, whole along ``axes``), possibly from several threads at once and
    only valid during the call: it copies out what it needs, such as a crop. Reading each block while it is in
    cache saves writing and reading the whole spatial result (fftconv's crops keep a fraction of it). Backends with
    an ``irfftn_blocks`` method do it block by block; for others, the whole inverse is cut into blocks afterwards.

    Examples
    --------
    >>> spectrum = np.fft.rfftn(np.ones((3, 4, 4)), axes=(1, 2))
    >>> corners = np.empty((3,))
    >>> irfftn_blocks(get_backend("numpy"), spectrum, (4, 4), (1, 2),
    ...               lambda block, maps: corners.__setitem__(block[0], maps[:, 0, 0] / 16))
    >>> corners.tolist()
    [1.0, 1.0, 1.0]
    """
    method = getattr(backend, "irfftn_blocks", None)
    if method is not None:
        method(spectrum, shape, axes, consume)
        return
    axes = _normalise_axes(axes, spectrum.ndim)
    _check_half_spectrum(spectrum, shape, axes)
    maps = backend.irfftn(spectrum, shape, axes, overwrite_input=True, normalise=False)
    for_blocks(spectrum, axes, default_threads(), lambda block, task: consume(block, maps[block]))


def _check_half_spectrum(spectrum: np.ndarray, shape: Shape, axes: Shape) -> None:
    expected = _half_spectrum_shape(spectrum.shape, axes, shape)
    if spectrum.shape != expected:
        raise ValueError(f"spectrum has shape {spectrum.shape}; irfftn to size {tuple(shape)} over axes {axes} "
                         f"needs {expected}")


def _split_axis(shape: Shape, axes: Shape) -> int | None:
    """The largest untransformed axis (where a call is cut into independent chunks), or None if there is none."""
    free = [axis for axis in range(len(shape)) if axis not in axes and shape[axis] > 1]
    return max(free, key=lambda axis: shape[axis]) if free else None


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


class CountingBackend:
    """Wrap a backend and count the maps it transforms: the proof of the paper's transform reuse.

    Every call transforms ``prod(x.shape) / prod(x.shape[axes])`` independent maps.

    Examples
    --------
    >>> counter = CountingBackend(NumpyBackend())
    >>> _ = counter.rfftn(np.ones((2, 3, 4, 4)), (4, 4), (2, 3))
    >>> counter.forward_maps, counter.inverse_maps
    (6, 0)
    """

    def __init__(self, inner: FFTBackend):
        self.inner = inner
        self.name = f"counting[{inner.name}]"
        self.reset()

    def reset(self) -> None:
        self.forward_maps = 0
        self.inverse_maps = 0
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    @staticmethod
    def _maps(array: np.ndarray, axes: Shape) -> int:
        return int(np.prod([s for i, s in enumerate(array.shape) if i not in set(a % array.ndim for a in axes)]))

    def record(self, direction: str, maps: int) -> None:
        """Count transforms a plan did without this backend (kernel DFTs by matrix product)."""
        if direction == "forward":
            self.forward_maps += maps
        else:
            self.inverse_maps += maps
        self.calls.append(("rfftn" if direction == "forward" else "irfftn", ("dft by gemm", maps)))

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        self.forward_maps += self._maps(x, axes)
        self.calls.append(("rfftn", x.shape))
        return self.inner.rfftn(x, shape, axes, out=out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        self.inverse_maps += self._maps(spectrum, axes)
        self.calls.append(("irfftn", spectrum.shape))
        return self.inner.irfftn(spectrum, shape, axes, overwrite_input=overwrite_input, normalise=normalise)

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        self.inverse_maps += self._maps(spectrum, axes)
        self.calls.append(("irfftn", spectrum.shape))
        irfftn_blocks(self.inner, spectrum, shape, axes, consume)


_FACTORIES: dict[str, Callable[[], FFTBackend]] = {
    "numpy": NumpyBackend,
    "scipy": ScipyBackend,
    "pyfftw": PyfftwBackend,
}
_instances: dict[str, FFTBackend] = {}
_default: Union[str, FFTBackend, None] = None


def available_backends() -> list[str]:
    """Names of the backends that can be used in this environment."""
    return [name for name in _FACTORIES if name != "pyfftw" or pyfftw is not None]


def _fastest_installed() -> str:
    # Measured on whole training steps on the project's 2-core machine (README, "Choosing the defaults";
    # paper_figures/defaults/): pyFFTW, run as single-threaded chunks on fftconv's pool, was the fastest or tied in
    # fftconv's pipeline in three runs (geometric mean 1.08-1.10x of the best per point, scipy.fft 1.09-1.16x,
    # numpy.fft 1.63-2.04x). FFTW writes straight into the frequency-major spectra; pocketfft needs a copy.
    return "pyfftw" if pyfftw is not None else "scipy"


def get_backend(backend: Union[str, FFTBackend, None] = None) -> FFTBackend:
    """Resolve ``backend`` (a name, an instance or ``None`` for the global default) to a backend instance.

    Instances made from names are shared, so their plan caches persist across calls.

    Examples
    --------
    >>> get_backend("numpy").name
    'numpy'
    """
    if backend is None:
        backend = _default or os.environ.get("FFTCONV_BACKEND") or _fastest_installed()
    if isinstance(backend, str):
        if backend not in _FACTORIES:
            raise ValueError(f"backend {backend!r} is unknown; valid names: {sorted(_FACTORIES)}")
        if backend not in available_backends():
            raise ValueError(f"backend {backend!r} is not installed here; available: {available_backends()}")
        if backend not in _instances:
            _instances[backend] = _FACTORIES[backend]()
        return _instances[backend]
    if isinstance(backend, FFTBackend):
        return backend
    raise TypeError(f"backend must be a name ({sorted(_FACTORIES)}), an FFTBackend instance or None, got {backend!r}")


def set_backend(backend: Union[str, FFTBackend, None]) -> None:
    """Set the process-wide default backend: a name, an instance, or ``None`` to restore the built-in choice.

    Examples
    --------
    >>> set_backend("scipy"); get_backend().name
    'scipy'
    >>> set_backend(None)
    """
    global _default
    if backend is not None:
        instance = get_backend(backend)  # validate now, not at first use
        if not isinstance(backend, str) and instance.name in _FACTORIES:
            _instances[instance.name] = instance  # a configured "scipy" instance also answers to "scipy"
    _default = backend


def configure_pyfftw(threads: int | None = None, planner_effort: str = "FFTW_ESTIMATE") -> PyfftwBackend:
    """Replace the shared ``"pyfftw"`` backend with one using these settings, and return it."""
    instance = PyfftwBackend(threads=threads, planner_effort=planner_effort)
    _instances["pyfftw"] = instance
    return instance


def configure_scipy(workers: int | None = None) -> ScipyBackend:
    """Replace the shared ``"scipy"`` backend with one using ``workers`` threads, and return it."""
    instance = ScipyBackend(workers=workers)
    _instances["scipy"] = instance
    return instance


def smooth_sizes_between(low: int, high: int, primes: Sequence[int] = (2, 3, 5, 7)) -> list[int]:
    """All ``primes``-smooth integers in ``[low, high]``, sorted (fbfft's autotuner candidates)."""
    sizes = []
    for n in range(max(low, 1), high + 1):
        m = n
        for p in primes:
            while m % p == 0:
                m //= p
        if m == 1:
            sizes.append(n)
    return sizes
