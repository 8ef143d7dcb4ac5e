"""fftconv: the three convolutions of a conv layer's training step in the Fourier domain (Mathieu et al. 2014).

Functional API (numpy arrays, PyTorch semantics): :func:`conv1d`, :func:`conv2d`, :func:`conv3d` and their
``*_input`` / ``*_weight`` gradients. FFT backends: :func:`get_backend`, :func:`set_backend`. ``algo="auto"``:
:func:`explain`, :func:`calibrate`. Layers: :mod:`fftconv.nn`.
"""

from . import nn
from .algorithms import ALGORITHMS
from .backends import (FFTBackend, NumpyBackend, PyfftwBackend, ScipyBackend, available_backends, configure_pyfftw,
                       configure_scipy, export_wisdom, get_backend, import_wisdom, set_backend)
from .choose import calibrate, explain
from .functional import (conv, conv1d, conv1d_input, conv1d_weight, conv2d, conv2d_input, conv2d_weight, conv3d,
                         conv3d_input, conv3d_weight, conv_input, conv_weight)
from .geometry import ConvGeometry
from .params import ConvParams
from .passes import Pass
from .sizes import FFT_SIZE_POLICIES, fft_shape_for, next_fast_size, next_power_of_two
from .spectral import SpectralPlan

__version__ = "0.1.0"

__all__ = [
    "conv1d", "conv1d_input", "conv1d_weight", "conv2d", "conv2d_input", "conv2d_weight",
    "conv3d", "conv3d_input", "conv3d_weight", "conv", "conv_input", "conv_weight", "ALGORITHMS",
    "ConvGeometry", "ConvParams", "Pass", "SpectralPlan", "FFT_SIZE_POLICIES", "fft_shape_for", "next_fast_size",
    "next_power_of_two", "FFTBackend", "NumpyBackend", "ScipyBackend", "PyfftwBackend", "available_backends",
    "get_backend", "set_backend", "configure_pyfftw", "configure_scipy", "export_wisdom", "import_wisdom",
    "explain", "calibrate", "nn",
]
