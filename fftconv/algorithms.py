"""The registry of convolution algorithms: name -> an object with ``forward``, ``grad_input`` and ``grad_weight``.

Each entry takes validated arrays and a :class:`~fftconv.geometry.ConvGeometry`, the FFT options ``backend`` and
``fft_size`` (checked by every algorithm, so that a typo never passes silently), and its own keyword options:

============  ================================================  ===========================  ===============
name          what it is                                        geometries                   options
============  ================================================  ===========================  ===============
``fft``       the paper's per-bin complex GEMMs                 all                          -
``im2col``    unfold, then one real GEMM per group              all                          -
``direct``    a float64 reference loop over kernel taps         all                          -
``winograd``  Winograd's minimal filtering ``F(m, r)``          stride 1 and dilation 1      ``tile``
``tiled``     the FFT algorithm on tiles (overlap-save/-add)    all                          ``tile``
============  ================================================  ===========================  ===============

``unsupported_reason(g)`` says why an entry cannot run a geometry (``None`` if it can); asked anyway, it raises
``ValueError`` with that reason. ``options`` names the keyword options; the public functions and ``algo="auto"``
take their values from the cost model (:func:`fftconv.choose.best_options`). :mod:`fftconv.functional` dispatches
to the registry through :mod:`fftconv.choose`, which also times its entries.
"""

from __future__ import annotations

from types import ModuleType
from typing import Sequence, Union

import numpy as np

from . import _memory, direct, im2col, tiled, winograd
from .backends import FFTBackend, get_backend
from .costs import spatial_workspace_bytes
from .geometry import ConvGeometry
from .passes import Pass
from .sizes import FFTSizePolicy, fft_shape_for
from .spectral import SpectralPlan

BackendArg = Union[str, FFTBackend, None]
FFTSizeArg = Union[FFTSizePolicy, Sequence[int], None]
TileArg = Union[int, Sequence[int], None]


class FFTAlgorithm:
    """The paper's algorithm: one :class:`~fftconv.spectral.SpectralPlan` per call, transforms not kept."""

    name = "fft"
    options: tuple[str, ...] = ()

    @staticmethod
    def unsupported_reason(g: ConvGeometry) -> str | None:
        return None

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


def _check_fft_options(g: ConvGeometry, backend: BackendArg, fft_size: FFTSizeArg) -> None:
    """Validate the FFT options an algorithm does not use: a typo must fail the same way whatever the algorithm."""
    get_backend(backend)
    fft_shape_for(g, fft_size)


class SpatialAlgorithm:
    """A spatial-domain algorithm module (``im2col``, ``direct``), with its memory estimate
    (:func:`fftconv.costs.spatial_workspace_bytes`) checked before it allocates."""

    options: tuple[str, ...] = ()

    def __init__(self, module: ModuleType, name: str):
        self.module, self.name = module, name

    @staticmethod
    def unsupported_reason(g: ConvGeometry) -> str | None:
        return None

    def _check(self, g: ConvGeometry, dtype, backend: BackendArg, fft_size: FFTSizeArg, pass_name: Pass) -> None:
        _check_fft_options(g, backend, fft_size)
        other = "fft" if self.name == "im2col" else "im2col"
        _memory.check_fits(spatial_workspace_bytes(g, dtype, self.name, pass_name),
                           f"algo={self.name!r} for {g}", f"use a smaller batch or algo={other!r}")

    def forward(self, x, w, bias, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None):
        self._check(g, x.dtype, backend, fft_size, Pass.FORWARD)
        return self.module.forward(x, w, bias, g)

    def grad_input(self, grad_output, w, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None):
        self._check(g, grad_output.dtype, backend, fft_size, Pass.INPUT)
        return self.module.grad_input(grad_output, w, g)

    def grad_weight(self, x, grad_output, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None):
        self._check(g, x.dtype, backend, fft_size, Pass.WEIGHT)
        return self.module.grad_weight(x, grad_output, g)


class WinogradAlgorithm:
    """:mod:`fftconv.winograd`; ``tile=None`` is :func:`fftconv.winograd.default_tile`. It checks its memory."""

    name = "winograd"
    options = ("tile",)

    @staticmethod
    def unsupported_reason(g: ConvGeometry) -> str | None:
        return winograd.unsupported_reason(g)

    @staticmethod
    def forward(x, w, bias, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None, *,
                tile: TileArg = None) -> np.ndarray:
        _check_fft_options(g, backend, fft_size)
        return winograd.forward(x, w, bias, g, tile=tile)

    @staticmethod
    def grad_input(grad_output, w, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None, *,
                   tile: TileArg = None) -> np.ndarray:
        _check_fft_options(g, backend, fft_size)
        return winograd.grad_input(grad_output, w, g, tile=tile)

    @staticmethod
    def grad_weight(x, grad_output, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None, *,
                    tile: TileArg = None) -> np.ndarray:
        _check_fft_options(g, backend, fft_size)
        return winograd.grad_weight(x, grad_output, g, tile=tile)


class TiledAlgorithm:
    """:mod:`fftconv.tiled`: ``fft_size`` is the tiles' FFT size policy, ``tile`` is required. It checks its memory."""

    name = "tiled"
    options = ("tile",)

    @staticmethod
    def unsupported_reason(g: ConvGeometry) -> str | None:
        return tiled.unsupported_reason(g)

    @staticmethod
    def forward(x, w, bias, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None, *,
                tile) -> np.ndarray:
        return tiled.forward(x, w, bias, g, backend, fft_size, tile=tile)

    @staticmethod
    def grad_input(grad_output, w, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None, *,
                   tile) -> np.ndarray:
        return tiled.grad_input(grad_output, w, g, backend, fft_size, tile=tile)

    @staticmethod
    def grad_weight(x, grad_output, g: ConvGeometry, backend: BackendArg = None, fft_size: FFTSizeArg = None, *,
                    tile) -> np.ndarray:
        return tiled.grad_weight(x, grad_output, g, backend, fft_size, tile=tile)


#: The algorithms every pass offers. Tests parametrise over this registry.
ALGORITHMS = {"fft": FFTAlgorithm(), "im2col": SpatialAlgorithm(im2col, "im2col"),
              "direct": SpatialAlgorithm(direct, "direct"), "winograd": WinogradAlgorithm(),
              "tiled": TiledAlgorithm()}
