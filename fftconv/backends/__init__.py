"""FFT backends behind one interface, :class:`FFTBackend` (:mod:`fftconv.backends.base`).

Four ship, one module each: ``"pyfftw"`` (the default when installed: FFTW plans built once per layout and cached,
planner effort and threads configurable, wisdom export/import), ``"scipy"`` (``scipy.fft`` with ``workers``),
``"numpy"`` (``numpy.fft``, single-threaded) and ``"ducc0"`` (``ducc0.fft``; optional, ``pip install
fftconv[ducc0]``). The multi-threaded ones split each call into blocks run on fftconv's one thread pool
(:mod:`fftconv._parallel`, :mod:`fftconv.backends.blocks`). :func:`set_backend` changes the process-wide default;
every convolution also takes ``backend=``.
"""

from .base import FFTBackend, available_backends, get_backend, register_backend, set_backend
from .numpy import NumpyBackend
from .scipy import ScipyBackend, configure_scipy
from .pyfftw import PyfftwBackend, configure_pyfftw, export_wisdom, import_wisdom
from .ducc0 import Ducc0Backend, configure_ducc0

__all__ = ["FFTBackend", "NumpyBackend", "ScipyBackend", "PyfftwBackend", "Ducc0Backend", "available_backends",
           "get_backend", "set_backend", "register_backend", "configure_pyfftw", "configure_scipy", "configure_ducc0",
           "export_wisdom", "import_wisdom"]
