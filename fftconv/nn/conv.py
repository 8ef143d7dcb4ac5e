"""Convolution layers ``Conv1d``, ``Conv2d``, ``Conv3d``: one N-d class, three one-line subclasses.

With ``algo="fft"`` a training step is the paper's: each input map, each kernel and each output-gradient map is
transformed once, and the three convolutions of the step are per-frequency complex matrix products
(:class:`fftconv.SpectralPlan`). Two memory policies decide what lives between forward and backward:

``memory="reuse"`` (default)
    forward keeps the input and kernel spectra; backward transforms the output gradient once and reuses all three.
    One forward plus one backward costs ``S*f + f'*f/groups + S*f'`` forward transforms.
``memory="recompute"``
    the paper's memory-efficient mode: nothing spectral is kept; each pass transforms what it needs into one
    :class:`~fftconv.nn.Workspace` shared by all layers and sized by the largest. Backward re-transforms the input
    and the kernels from copies of both kept by forward.

Other algorithms (``"im2col"``, ``"direct"``, ``"winograd"``, ``"tiled"``) call the functional API and keep the same
copies.

Whatever the policy and algorithm, ``backward`` computes the gradients of the ``forward`` that ran: with the input
and the weights as they were then, even if the caller changes either array in place in between (an optimiser step
before ``backward``, a reused input buffer). ``"reuse"`` has them as spectra; the other modes copy them in forward.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence, Union

import numpy as np

from .. import functional
from ..backends import FFTBackend
from ..geometry import ConvGeometry
from ..params import ConvParams, IntOrTuple, Padding, _expand, _require_positive
from ..spectral import FFTSizePolicy, SpectralPlan
from .module import Module, check_input, fan_in_uniform, positive_int, resolve_dtype, resolve_rng
from .workspace import Workspace, default_workspace

MemoryPolicy = Literal["reuse", "recompute"]
MEMORY_POLICIES = ("reuse", "recompute")


class _ConvNd(Module):
    """N-dimensional convolution layer (cross-correlation, PyTorch's semantics); use Conv1d/Conv2d/Conv3d.

    Parameters
    ----------
    in_channels, out_channels : int
        ``f`` and ``f'``.
    kernel_size : int or tuple of int
    stride, padding, dilation, groups
        As in :func:`fftconv.conv2d` (``padding`` may be ``"same"`` or ``"valid"``).
    bias : bool, default True
    algo : {"fft", "im2col", "direct", "winograd", "tiled"}, default "fft"
        As in :func:`fftconv.conv2d`; ``"winograd"`` needs stride and dilation 1.
    backend : str or FFTBackend, optional
        FFT library for ``algo="fft"``; default :func:`fftconv.get_backend` when the first plan is made.
    fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
        FFT size policy for ``algo="fft"``.
    memory : {"reuse", "recompute"}, default "reuse"
        Keep spectra from forward to backward, or recompute them into a shared workspace (``algo="fft"`` only).
    workspace : Workspace, optional
        The workspace a ``"recompute"`` layer writes into; default :func:`~fftconv.nn.default_workspace`.
    dtype : float32 or float64, default float32
    rng : int or numpy.random.Generator, optional
        Seed or generator for the initial weights: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weight and bias with
        ``fan_in = in_channels / groups * prod(kernel_size)``, PyTorch's default.

    Attributes
    ----------
    weight, grad_weight : ndarray, shape (out_channels, in_channels // groups, *kernel_size)
    bias, grad_bias : ndarray, shape (out_channels,), or None without bias

    Notes
    -----
    The geometry is validated by :class:`fftconv.ConvGeometry` when the layer is built (hyper-parameters) and at the
    first input of each shape; one :class:`fftconv.SpectralPlan` is cached per input shape.

    ``backward`` uses the input and the weights as they were in ``forward``, for every ``memory`` policy and
    ``algo``: ``"reuse"`` keeps their spectra, the other modes keep private copies (the input copy replaces the
    reference a layer would otherwise hold, so in a network it costs a copy, not memory; the weight copy is small
    next to any spectrum). PyTorch raises instead when a saved tensor is modified in place; here the gradients are
    those of the computation that ran, so a step taken before ``backward`` applies last step's gradients.

    ``weight`` and ``bias`` may be changed in place at any time; rebinding them to arrays of another shape or dtype
    is refused by the next ``forward`` or ``backward`` with a message naming the attribute.

    One layer serves one thread at a time (its saved state is per layer). Layers in different threads may share a
    :class:`~fftconv.nn.Workspace`: each pass holds it while it uses the buffer (see its notes).
    """

    ndim: int = 0  # set by the subclasses
    _parameter_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True, *,
                 algo: str = "fft", backend: Union[str, FFTBackend, None] = None,
                 fft_size: Union[FFTSizePolicy, Sequence[int], None] = None, memory: MemoryPolicy = "reuse",
                 workspace: Workspace | None = None, dtype: Any = np.float32,
                 rng: int | np.random.Generator | None = None):
        shapes = self.parameter_shapes(in_channels, out_channels, kernel_size, groups=groups, bias=bias)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = shapes["weight"][2:]
        self._params = ConvParams.create(self.ndim, stride, padding, dilation, groups)  # checked now, not at forward
        self.stride, self.padding, self.dilation = self._params.stride, self._params.padding, self._params.dilation
        if algo not in functional.ALGORITHMS:
            raise ValueError(f"algo={algo!r} is unknown; valid: {sorted(functional.ALGORITHMS)}")
        if memory not in MEMORY_POLICIES:
            raise ValueError(f"memory={memory!r} is unknown; valid: {MEMORY_POLICIES}")
        if workspace is not None and memory != "recompute":
            raise ValueError("workspace is only used with memory='recompute'; pass memory='recompute' or drop it")
        if workspace is not None and not isinstance(workspace, Workspace):
            raise TypeError(f"workspace must be a fftconv.nn.Workspace, got {type(workspace).__name__}")
        self.algo, self.backend, self.fft_size, self.memory = algo, backend, fft_size, memory
        self.workspace = (workspace or default_workspace()) if memory == "recompute" and algo == "fft" else None
        self.dtype = resolve_dtype(dtype)
        self.grad_weight = np.zeros(shapes["weight"], dtype=self.dtype)
        self.grad_bias = np.zeros(shapes["bias"], dtype=self.dtype) if bias else None
        self._plans: dict[tuple[int, ...], tuple[ConvGeometry, SpectralPlan | None]] = {}
        self.reset_parameters(rng)

    @classmethod
    def parameter_shapes(cls, in_channels: int, out_channels: int, kernel_size: IntOrTuple, *args: Any,
                         groups: int = 1, bias: bool = True, **kwargs: Any) -> dict[str, tuple[int, ...]]:
        """``{"weight": (f', f/groups, *k), "bias": (f',)}`` (no bias entry with ``bias=False``).

        Examples
        --------
        >>> Conv2d.parameter_shapes(1, 100, 10)  # the lecture's 100 filters of 10x10
        {'weight': (100, 1, 10, 10), 'bias': (100,)}
        """
        in_channels, out_channels = positive_int(in_channels, "in_channels"), positive_int(out_channels, "out_channels")
        groups = positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide both in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        kernel = _expand(kernel_size, cls.ndim, "kernel_size")
        _require_positive(kernel, "kernel_size")
        shapes = {"weight": (out_channels, in_channels // groups, *kernel)}
        if bias:
            shapes["bias"] = (out_channels,)
        return shapes

    def reset_parameters(self, rng: int | np.random.Generator | None = None) -> None:
        """Draw weight, then bias, from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's default), in place.

        The arrays stay the same objects, so an optimiser built on :meth:`parameters` keeps updating them.
        """
        generator = resolve_rng(rng)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        self._initialise("weight", fan_in_uniform(generator, self.grad_weight.shape, fan_in, self.dtype))
        self._initialise("bias", fan_in_uniform(generator, self.grad_bias.shape, fan_in, self.dtype)
                         if self.has_bias else None)

    @property
    def has_bias(self) -> bool:
        return self.grad_bias is not None

    # ------------------------------------------------------------------ geometry and plan per input shape
    def _geometry_and_plan(self, input_shape: tuple[int, ...]) -> tuple[ConvGeometry, SpectralPlan | None]:
        cached = self._plans.get(input_shape)
        if cached is None:
            geometry = ConvGeometry.from_params(self._params, input_shape, self.weight.shape)
            plan = (SpectralPlan.create(geometry, self.dtype, self.backend, self.fft_size)
                    if self.algo == "fft" else None)
            cached = self._plans[input_shape] = (geometry, plan)
        return cached

    # ------------------------------------------------------------------ updateOutput
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``updateOutput``: ``y = conv(x, weight) + bias``; keeps the spectra (``"reuse"``) or copies of ``x`` and
        ``weight`` for :meth:`backward`."""
        check_input(x, self.dtype, self.ndim + 2, self)
        self._check_parameters()
        geometry, plan = self._geometry_and_plan(x.shape)
        if plan is None:
            y = functional.conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                                algo=self.algo)
        elif self.memory == "reuse":
            input_spectrum, weight_spectrum = plan.transform_input(x), plan.transform_weight(self.weight)
            self._save(geometry=geometry, plan=plan, input_spectrum=input_spectrum, weight_spectrum=weight_spectrum)
            return plan.forward(input_spectrum, weight_spectrum, self.bias)
        else:
            with self.workspace.borrow(plan) as buffers:
                input_spectrum = plan.transform_input(x, out=buffers["input"])
                weight_spectrum = plan.transform_weight(self.weight, out=buffers["weight"])
                y = plan.forward(input_spectrum, weight_spectrum, self.bias)
        if self.training:  # backward's operands as they are now (np.array copies), whatever the caller does to them
            self._save(geometry=geometry, plan=plan, input=np.array(x), weight=self.weight.copy())
        return y

    # ------------------------------------------------------------------ updateGradInput + accGradParameters
    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Return ``dL/dx`` and add ``dL/dw``, ``dL/db`` into ``grad_weight``, ``grad_bias``."""
        check_input(grad_output, self.dtype, self.ndim + 2, self, "grad_output")
        self._check_parameters()
        with self._consuming_saved() as saved:
            geometry: ConvGeometry = saved["geometry"]
            geometry.check_grad_output(grad_output.shape)
            grad_input, grad_weight = self._input_and_weight_gradients(saved, grad_output)
            self.grad_weight += grad_weight
            if self.has_bias:
                self.grad_bias += grad_output.sum(axis=(0, *range(2, 2 + self.ndim)))
        return grad_input

    def _input_and_weight_gradients(self, saved: dict[str, Any],
                                    grad_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        plan: SpectralPlan | None = saved["plan"]
        if plan is None:
            hyper = (self.stride, self.padding, self.dilation, self.groups)
            weight = saved["weight"]
            grad_input = functional.conv_input(saved["geometry"].full_input_shape, weight, grad_output, *hyper,
                                               algo=self.algo)
            grad_weight = functional.conv_weight(saved["input"], weight.shape, grad_output, *hyper, algo=self.algo)
            return grad_input, grad_weight
        if self.memory == "reuse":
            grad_output_spectrum = plan.transform_grad_output(grad_output)
            return (plan.grad_input(grad_output_spectrum, saved["weight_spectrum"]),
                    plan.grad_weight(saved["input_spectrum"], grad_output_spectrum))
        with self.workspace.borrow(plan) as buffers:
            grad_output_spectrum = plan.transform_grad_output(grad_output, out=buffers["grad_output"])
            weight_spectrum = plan.transform_weight(saved["weight"], out=buffers["weight"])
            grad_input = plan.grad_input(grad_output_spectrum, weight_spectrum)
            input_spectrum = plan.transform_input(saved["input"], out=buffers["input"])
            return grad_input, plan.grad_weight(input_spectrum, grad_output_spectrum)

    # ------------------------------------------------------------------ memory and repr
    def workspaces(self) -> list[Workspace]:
        return [self.workspace] if self.workspace is not None else []

    def extra_repr(self) -> str:
        parts = [str(self.in_channels), str(self.out_channels), f"kernel_size={self.kernel_size}"]
        defaults = {"stride": (1,) * self.ndim, "padding": (0,) * self.ndim, "dilation": (1,) * self.ndim,
                    "groups": 1}
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        if not self.has_bias:
            parts.append("bias=False")
        for name, value, default in (("algo", self.algo, "fft"), ("backend", self.backend, None),
                                     ("fft_size", self.fft_size, None), ("memory", self.memory, "reuse")):
            if value != default:
                parts.append(f"{name}={getattr(value, 'name', value)!r}")
        if self.dtype != np.float32:
            parts.append(f"dtype={self.dtype}")
        return ", ".join(parts)


class Conv1d(_ConvNd):
    """1-d convolution layer; see :class:`_ConvNd` for the parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Conv1d
    >>> layer = Conv1d(3, 4, 5, padding="same", dtype=np.float64, rng=0)
    >>> x = np.random.default_rng(1).standard_normal((2, 3, 16))
    >>> y = layer.forward(x)
    >>> y.shape
    (2, 4, 16)
    >>> layer.backward(np.ones_like(y)).shape, layer.grad_weight.shape
    ((2, 3, 16), (4, 3, 5))
    """

    ndim = 1


class Conv2d(_ConvNd):
    """2-d convolution layer; see :class:`_ConvNd` for the parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Conv2d
    >>> fft = Conv2d(3, 8, 5, stride=2, padding=2, dtype=np.float64, rng=0)
    >>> gemm = Conv2d(3, 8, 5, stride=2, padding=2, algo="im2col", dtype=np.float64, rng=0)
    >>> fft
    Conv2d(3, 8, kernel_size=(5, 5), stride=(2, 2), padding=(2, 2), dtype=float64)
    >>> x = np.random.default_rng(1).standard_normal((4, 3, 16, 16))
    >>> bool(np.allclose(fft.forward(x), gemm.forward(x)))
    True
    >>> gy = np.ones((4, 8, 8, 8))
    >>> bool(np.allclose(fft.backward(gy), gemm.backward(gy))), bool(np.allclose(fft.grad_weight, gemm.grad_weight))
    (True, True)
    """

    ndim = 2


class Conv3d(_ConvNd):
    """3-d convolution layer; see :class:`_ConvNd` for the parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Conv3d
    >>> layer = Conv3d(2, 4, 3, groups=2, memory="recompute", dtype=np.float64, rng=0)
    >>> layer.forward(np.zeros((1, 2, 6, 6, 6))).shape
    (1, 4, 4, 4, 4)
    """

    ndim = 3
