"""The registry of convolution algorithms: name -> an object with ``forward``, ``grad_input`` and ``grad_weight``.

Each entry takes validated arrays and a :class:`~fftconv.geometry.ConvGeometry`, plus the FFT options ``backend``
and ``fft_size`` (checked by every algorithm, so that a typo never passes silently, and used by ``"fft"`` only).
:mod:`fftconv.functional` dispatches to it, :mod:`fftconv.choose` times its entries.
"""

from __future__ import annotations

from types import ModuleType
from typing import Sequence, Union

import numpy as np

from . import _memory, direct, im2col
from .backends import FFTBackend, get_backend
from .costs import spatial_workspace_bytes
from .geometry import ConvGeometry
from .sizes import FFTSizePolicy, fft_shape_for
from .spectral import SpectralPlan

BackendArg = Union[str, FFTBackend, None]
FFTSizeArg = Union[FFTSizePolicy, Sequence[int], None]


class FFTAlgorithm:
    """The paper's algorithm: one :class:`~fftconv.spectral.SpectralPlan` per call, transforms not kept."""

    name = "fft"

    @staticmethod
    def forward(x, w, bias, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
        plan = SpectralPlan.create(g, x.dtype, backend, fft_size)
        return plan.forward(plan.transform_input(x), plan.transform_weight(w), bias)

    @staticmethod
    def grad_input(grad_output, w, g: ConvGeometry, backend: BackendArg = None,
                   fft_size: FFTSizeArg = None) -> np.ndarray:
        plan = SpectralPlan.create(g, grad_output.dtype, backend, fft_size)
        return plan.grad_input(plan.transform_grad_output(grad_output), plan.transform_weight(w))

    @staticmethod
    def grad_weight(x, grad_output, g: ConvGeometry, backend: BackendArg = None,
                    fft_size: FFTSizeArg = None) -> np.ndarray:
        plan = SpectralPlan.create(g, x.dtype, backend, fft_size)
        return plan.grad_weight(plan.transform_input(x), plan.transform_grad_output(grad_output))


class SpatialAlgorithm:
    """A spatial-domain algorithm module, with its memory estimate checked before it allocates.

    ``working_dtype`` is the precision it computes in (``None``: the input's); ``direct`` always uses float64.
    """

    def __init__(self, module: ModuleType, name: str, working_dtype=None):
        self.module, self.name, self.working_dtype = module, name, working_dtype

    def _check(self, g: ConvGeometry, dtype, backend: BackendArg, fft_size: FFTSizeArg) -> None:
        get_backend(backend)
        fft_shape_for(g, fft_size)
        other = "fft" if self.name == "im2col" else "im2col"
        _memory.check_fits(spatial_workspace_bytes(g, self.working_dtype or dtype, self.name),
                           f"algo={self.name!r} for {g}", f"use a smaller batch or algo={other!r}")

    def forward(self, x, w, bias, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None):
        self._check(g, x.dtype, backend, fft_size)
        return self.module.forward(x, w, bias, g)

    def grad_input(self, grad_output, w, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None):
        self._check(g, grad_output.dtype, backend, fft_size)
        return self.module.grad_input(grad_output, w, g)

    def grad_weight(self, x, grad_output, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None):
        self._check(g, x.dtype, backend, fft_size)
        return self.module.grad_weight(x, grad_output, g)


#: The algorithms every pass offers. Tests parametrise over this registry.
ALGORITHMS = {"fft": FFTAlgorithm(), "im2col": SpatialAlgorithm(im2col, "im2col"),
              "direct": SpatialAlgorithm(direct, "direct", np.float64)}
