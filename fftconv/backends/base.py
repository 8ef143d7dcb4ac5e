"""The FFT backend interface, and the registry that resolves backend names to shared instances.

A backend transforms real maps over an explicit list of axes at an explicit transform size (inputs are zero-padded
at the end of each transformed axis, exactly like ``numpy.fft.rfftn(x, s=shape, axes=axes)``). Outputs are fresh
arrays owned by the caller; float32 stays complex64/float32 and float64 stays complex128/float64.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Callable, Sequence, Union

import numpy as np

from .. import _kernel_dft
from .._parallel import default_threads
from .blocks import Shape, check_half_spectrum, for_blocks, normalise_axes


class FFTBackend(ABC):
    """What fftconv needs from an FFT library.

    Subclasses implement :meth:`rfftn` and :meth:`irfftn`; the other methods have shared implementations that a
    library with a faster way overrides.
    """

    #: The name :func:`get_backend` knows the backend by.
    name: str = ""

    @abstractmethod
    def rfftn(self, x: np.ndarray, shape: Shape, axes: Shape, out: np.ndarray | None = None) -> np.ndarray:
        """Real input, Hermitian half spectrum out (the last axis in ``axes`` halved).

        Written into ``out`` when given: a preallocated array of the result's shape and complex dtype, possibly a
        strided view (fftconv's frequency-major spectra).
        """

    @abstractmethod
    def irfftn(self, spectrum: np.ndarray, shape: Shape, axes: Shape, overwrite_input: bool = False,
               normalise: bool = True) -> np.ndarray:
        """The inverse: real output of size ``shape`` along ``axes``.

        ``overwrite_input=True`` lets the backend destroy ``spectrum`` (FFTW's c2r does) instead of copying it
        first; ``normalise=False`` skips the ``1/prod(shape)`` factor (fftconv applies it while cropping).
        """

    def rfftn_scaled(self, x: np.ndarray, shape: Shape, axes: Shape, scale: float,
                     out: np.ndarray | None = None) -> np.ndarray:
        """``scale * rfftn(x, shape, axes)``, into ``out`` when given.

        fftconv scales the spectra of kernels and output gradients by a power of two before their per-bin products,
        so that the unnormalised inverse cannot overflow (:class:`fftconv.SpectralPlan`). This shared implementation
        multiplies after the transform; the shipped backends take a ``scale`` keyword in :meth:`rfftn` and fold the
        factor into a copy they make anyway.

        Examples
        --------
        >>> x = np.arange(8.0)
        >>> bool(np.allclose(get_backend("numpy").rfftn_scaled(x, (8,), (0,), 0.5), np.fft.rfft(x) / 2))
        True
        """
        result = self.rfftn(x, shape, axes, out=out)
        result *= scale
        return result

    def irfftn_blocks(self, spectrum: np.ndarray, shape: Shape, axes: Shape,
                      consume: Callable[[tuple, np.ndarray], object]) -> None:
        """The unnormalised inverse of ``spectrum`` (which may be destroyed), handed to ``consume`` in blocks.

        ``consume(block, maps)`` receives the real maps of a block of the untransformed axes and the block's index
        (a tuple of slices over ``spectrum``'s axes, whole along ``axes``), possibly from several threads at once
        and only valid during the call: it copies out what it needs, such as a crop. Reading each block while it is
        in cache saves writing and reading the whole spatial result. This shared implementation computes the whole
        inverse, then cuts it; backends that can transform block by block override it.

        Examples
        --------
        >>> spectrum = np.fft.rfftn(np.ones((3, 4, 4)), axes=(1, 2))
        >>> corners = np.empty((3,))
        >>> get_backend("numpy").irfftn_blocks(spectrum, (4, 4), (1, 2),
        ...                                    lambda block, maps: corners.__setitem__(block[0], maps[:, 0, 0] / 16))
        >>> corners.tolist()
        [1.0, 1.0, 1.0]
        """
        axes = normalise_axes(axes, spectrum.ndim)
        check_half_spectrum(spectrum, shape, axes)
        maps = self.irfftn(spectrum, shape, axes, overwrite_input=True, normalise=False)
        for_blocks(spectrum, axes, default_threads(), lambda block, task: consume(block, maps[block]))

    def empty(self, shape: Shape, dtype) -> np.ndarray:
        """An uninitialised array for this backend to read or write (aligned, where the library cares)."""
        return np.empty(shape, dtype)

    def rfftn_by_matrix(self, maps: np.ndarray, positions: Sequence[Sequence[int]], fft_shape: Shape,
                        out: np.ndarray) -> np.ndarray:
        """Half spectra of small maps ``(*k, B)`` placed at ``positions`` of an ``fft_shape`` buffer, into ``out``.

        By dense DFT matrices, one axis at a time (:func:`fftconv._kernel_dft.forward`): kernels have few non-zero
        taps, and a GEMM over all of them beats an FFT of the mostly-zero buffer.
        """
        return _kernel_dft.forward(maps, positions, fft_shape, out)

    def irfftn_by_matrix(self, spectrum: np.ndarray, positions: Sequence[Sequence[int]], fft_shape: Shape,
                         real_dtype) -> np.ndarray:
        """The inverse of ``(*bins, B)`` half spectra read only at ``positions``, ``(*k, B)`` real maps, by DFT
        matrices (:func:`fftconv._kernel_dft.inverse`); normalised like ``numpy.fft.irfftn``."""
        return _kernel_dft.inverse(spectrum, positions, fft_shape, real_dtype)


# ---------------------------------------------------------------------- the registry
_FACTORIES: dict[str, Callable[[], FFTBackend]] = {}
_AVAILABLE: dict[str, bool] = {}
_instances: dict[str, FFTBackend] = {}
_default: Union[str, FFTBackend, None] = None
#: Names the default backend when :func:`set_backend` has not set one.
ENVIRONMENT_VARIABLE = "FFTCONV_BACKEND"
#: The preferred default, first installed wins: pyFFTW writes straight into fftconv's strided spectra, pocketfft
#: (scipy) needs a copy, numpy.fft is single-threaded.
_PREFERENCE = ("pyfftw", "scipy", "numpy")


def register_backend(name: str, factory: Callable[[], FFTBackend], available: bool = True) -> None:
    """Make ``name`` resolve to a shared instance made by ``factory`` (``available=False``: known, not installed)."""
    _FACTORIES[name] = factory
    _AVAILABLE[name] = available


def available_backends() -> list[str]:
    """Names of the backends that can be used in this environment.

    Examples
    --------
    >>> "numpy" in available_backends()
    True
    """
    return [name for name in _FACTORIES if _AVAILABLE[name]]


def get_backend(backend: Union[str, FFTBackend, None] = None) -> FFTBackend:
    """Resolve ``backend`` (a name, an instance or ``None`` for the global default) to a backend instance.

    Instances made from names are shared, so their plan caches persist across calls.

    Examples
    --------
    >>> get_backend("numpy").name
    'numpy'
    """
    if backend is None:
        backend = _default or _from_environment() or next(name for name in _PREFERENCE if _AVAILABLE.get(name))
    if isinstance(backend, str):
        if backend not in _FACTORIES:
            raise ValueError(f"backend {backend!r} is unknown; valid names: {sorted(_FACTORIES)}")
        if not _AVAILABLE[backend]:
            raise ValueError(f"backend {backend!r} is not installed here; available: {available_backends()}")
        if backend not in _instances:
            _instances[backend] = _FACTORIES[backend]()
        return _instances[backend]
    if isinstance(backend, FFTBackend):
        return backend
    raise TypeError(f"backend must be a name ({sorted(_FACTORIES)}), an FFTBackend instance or None, got {backend!r}")


def _from_environment() -> str | None:
    """The backend ``FFTCONV_BACKEND`` names, checked; None when it is unset or empty."""
    name = os.environ.get(ENVIRONMENT_VARIABLE)
    if not name:
        return None
    if name not in _FACTORIES:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={name!r} is not a backend fftconv knows; valid values: "
                         f"{sorted(_FACTORIES)} (installed here: {available_backends()}), or unset it for the default")
    if not _AVAILABLE[name]:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={name!r} names a backend that is not installed here; installed: "
                         f"{available_backends()}")
    return name


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


def share(instance: FFTBackend) -> FFTBackend:
    """Make ``instance`` the shared backend its name resolves to, and return it (the ``configure_*`` functions)."""
    _instances[instance.name] = instance
    return instance
