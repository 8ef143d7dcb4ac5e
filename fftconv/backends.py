"""FFT backends behind one small interface.

A backend provides two methods, both over an explicit list of axes and an explicit transform size (inputs are
zero-padded at the end of each transformed axis, exactly like ``numpy.fft.rfftn(x, s=shape, axes=axes)``):

- ``rfftn(x, shape, axes, out=None)``: real input, Hermitian half-spectrum out (the last axis in ``axes`` is
  halved), written into ``out`` when given (workspaces preallocate it);
- ``irfftn(X, shape, axes)``: the inverse, real output of size ``shape`` along ``axes``.

Outputs are always fresh arrays owned by the caller; float32 stays complex64/float32 and float64 stays
complex128/float64.

Three backends ship: ``"numpy"`` (``numpy.fft``), ``"scipy"`` (``scipy.fft`` with ``workers``) and ``"pyfftw"``
(FFTW plans built once per shape, dtype and axes and then cached; planner effort and threads configurable; wisdom
export/import). :func:`set_backend` changes the process-wide default; every convolution also takes ``backend=``.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Callable, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import scipy.fft

try:  # pyfftw is a declared dependency, but keep the package importable if a platform lacks a wheel.
    import pyfftw
    import pyfftw.builders
except ImportError:  # pragma: no cover - exercised only where pyfftw is missing
    pyfftw = None

Shape = tuple[int, ...]


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


@runtime_checkable
class FFTBackend(Protocol):
    """What fftconv needs from an FFT library."""

    name: str

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray: ...

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape) -> np.ndarray: ...


def _into(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Return ``result``, or copy it into the caller's preallocated ``out`` (checked, never broadcast)."""
    if out is None:
        return result
    if out.shape != result.shape or out.dtype != result.dtype:
        raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}; the transform needs shape "
                         f"{result.shape} and dtype {result.dtype}")
    np.copyto(out, result)
    return out


class NumpyBackend:
    """``numpy.fft``: always available, single-threaded, no plan reuse. The slowest choice."""

    name = "numpy"

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        return _into(np.fft.rfftn(x, s=shape, axes=axes), out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape) -> np.ndarray:
        return np.fft.irfftn(spectrum, s=shape, axes=axes)

    def __repr__(self) -> str:
        return "NumpyBackend()"


class ScipyBackend:
    """``scipy.fft`` (pocketfft) with ``workers`` threads."""

    name = "scipy"

    def __init__(self, workers: int | None = None):
        self.workers = default_threads() if workers is None else int(workers)

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        return _into(scipy.fft.rfftn(x, s=shape, axes=axes, workers=self.workers), out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape) -> np.ndarray:
        return scipy.fft.irfftn(spectrum, s=shape, axes=axes, workers=self.workers)

    def __repr__(self) -> str:
        return f"ScipyBackend(workers={self.workers})"


class PyfftwBackend:
    """FFTW through pyFFTW, with one plan per (direction, input shape, dtype, size, axes) built once and cached.

    Parameters
    ----------
    threads : int, optional
        FFTW threads; defaults to :func:`default_threads`.
    planner_effort : str
        ``"FFTW_ESTIMATE"``, ``"FFTW_MEASURE"`` (default), ``"FFTW_PATIENT"`` or ``"FFTW_EXHAUSTIVE"``. Planning
        time is paid once per cached shape; ``plan_seconds`` accumulates it so benchmarks can report it apart.
    """

    name = "pyfftw"
    _EFFORTS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")

    def __init__(self, threads: int | None = None, planner_effort: str = "FFTW_MEASURE"):
        if pyfftw is None:
            raise ImportError("the 'pyfftw' backend needs pyFFTW: pip install pyfftw")
        if planner_effort not in self._EFFORTS:
            raise ValueError(f"planner_effort must be one of {self._EFFORTS}, got {planner_effort!r}")
        self.threads = default_threads() if threads is None else int(threads)
        self.planner_effort = planner_effort
        self._plans: dict[tuple, Callable[[np.ndarray], np.ndarray]] = {}
        self._lock = threading.Lock()
        self.plan_seconds = 0.0

    def _plan(self, builder, x: np.ndarray, shape: Shape, axes: Shape):
        key = (builder.__name__, x.shape, x.dtype.str, tuple(shape), tuple(axes))
        plan = self._plans.get(key)
        if plan is None:
            import time

            start = time.perf_counter()
            template = pyfftw.empty_aligned(x.shape, dtype=x.dtype)
            plan = builder(template, s=shape, axes=axes, threads=self.threads, planner_effort=self.planner_effort,
                           avoid_copy=False, auto_align_input=True, auto_contiguous=True)
            with self._lock:
                self._plans[key] = plan
                self.plan_seconds += time.perf_counter() - start
        return plan

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        # The plan returns its own output buffer; copy so that callers own the result.
        result = self._plan(pyfftw.builders.rfftn, x, shape, axes)(x)
        return result.copy() if out is None else _into(result, out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape) -> np.ndarray:
        return self._plan(pyfftw.builders.irfftn, spectrum, shape, axes)(spectrum).copy()

    @property
    def cached_plans(self) -> int:
        """Number of plans built so far."""
        return len(self._plans)

    def clear(self) -> None:
        """Forget cached plans (FFTW's wisdom stays)."""
        self._plans.clear()

    def __repr__(self) -> str:
        return f"PyfftwBackend(threads={self.threads}, planner_effort={self.planner_effort!r})"


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

    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        self.forward_maps += self._maps(x, axes)
        self.calls.append(("rfftn", x.shape))
        return self.inner.rfftn(x, shape, axes, out=out)

    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape) -> np.ndarray:
        self.inverse_maps += self._maps(spectrum, axes)
        self.calls.append(("irfftn", spectrum.shape))
        return self.inner.irfftn(spectrum, shape, axes)


_FACTORIES: dict[str, Callable[[], FFTBackend]] = {
    "numpy": NumpyBackend,
    "scipy": ScipyBackend,
    "pyfftw": PyfftwBackend,
}
_instances: dict[str, FFTBackend] = {}
_default_name: str | None = None


def available_backends() -> list[str]:
    """Names of the backends that can be used in this environment."""
    return [name for name in _FACTORIES if name != "pyfftw" or pyfftw is not None]


def _fastest_installed() -> str:
    # Measured on the project's 2-core machine (README, "Choosing defaults"): pyFFTW with cached plans is the
    # fastest batched real FFT in the convolution pipeline; scipy.fft comes next; numpy.fft is 3-15x slower.
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
        backend = _default_name or os.environ.get("FFTCONV_BACKEND") or _fastest_installed()
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
    """Set the process-wide default backend (``None`` restores the built-in choice).

    Examples
    --------
    >>> set_backend("scipy"); get_backend().name
    'scipy'
    >>> set_backend(None)
    """
    global _default_name
    if backend is None or isinstance(backend, str):
        if backend is not None:
            get_backend(backend)  # validate now, not at first use
        _default_name = backend
        return
    instance = get_backend(backend)
    _instances[instance.name] = instance
    _default_name = instance.name


def configure_pyfftw(threads: int | None = None, planner_effort: str = "FFTW_MEASURE") -> PyfftwBackend:
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
