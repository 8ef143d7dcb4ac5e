"""The paper's algorithm: the three convolutions of a training step as per-frequency complex matrix products.

:class:`SpectralPlan` (:mod:`fftconv.spectral.plan`) runs the transforms and the three passes; the storage of the
spectra is :mod:`fftconv.spectral.layout`; :func:`hermitian_matmul` multiplies half spectra per bin. The transform
sizes live in :mod:`fftconv.sizes` and are re-exported here.
"""

from ..sizes import (DEFAULT_FFT_SIZE, FFT_SIZE_POLICIES, FFTSizePolicy, fft_shape_for, multiplied_bins,
                     next_fast_size, next_power_of_two)
from .hermitian import hermitian_matmul
from .layout import SpectrumLayout
from .plan import SpectralPlan

__all__ = ["SpectralPlan", "SpectrumLayout", "hermitian_matmul", "multiplied_bins", "fft_shape_for",
           "next_fast_size", "next_power_of_two", "FFT_SIZE_POLICIES", "FFTSizePolicy", "DEFAULT_FFT_SIZE"]
