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

``algo="auto"`` asks :func:`fftconv.choose.choose` which algorithm runs each pass, once per input shape. The passes
it gives the FFT run on the layer's plan as above, under the layer's memory policy, and share spectra: a gradient
pass reads the spectrum forward kept (``"reuse"``), and the output gradient is transformed once for both gradient
passes. The other passes run the registry entry the chooser named, with its options (a tile). Forward keeps copies
of the input and the weights whatever the choices (under ``"reuse"`` on top of the spectra its FFT gradient passes
read): a non-FFT gradient pass reads them, and any pass that meets NaN, inf or an overflow is computed from them
with ``"im2col"``, which keeps NaN and inf where PyTorch puts them, as the functional API's ``"auto"`` does.

Whatever the policy and algorithm, ``backward`` computes the gradients of the ``forward`` that ran: with the input
and the weights as they were then, even if the caller changes either array in place in between (an optimiser step
before ``backward``, a reused input buffer). ``"reuse"`` has them as spectra; the other modes copy them in forward.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence, TypeVar, Union

import numpy as np

from .. import functional
from .._cache import LRUCache
from .._finite import NonFiniteInput, SpectralOverflow
from ..algorithms import ALGORITHMS
from ..backends import FFTBackend
from ..choose import decide
from ..choose.calibration import calibrate_once
from ..geometry import ConvGeometry, parse_shape
from ..params import ConvParams, IntOrTuple, Padding, _expand, _require_positive
from ..passes import PASSES
from ..sizes import parse_fft_size
from ..spectral import FFTSizePolicy, SpectralPlan
from .module import (Module, _one_thread_at_a_time, check_input, fan_in_uniform, positive_int, resolve_dtype,
                     resolve_rng)
from .workspace import Workspace, default_workspace

MemoryPolicy = Literal["reuse", "recompute"]
MEMORY_POLICIES = ("reuse", "recompute")
#: Input shapes a layer keeps the geometry and plan of, least recently used dropped first (``plan_cache_size``).
PLAN_CACHE_SIZE = 8
#: The ``algo`` that asks :func:`fftconv.choose.choose` for each pass's algorithm.
AUTO = "auto"
#: What ``algo="auto"`` computes a pass with when its pick meets NaN, inf or an overflow, as the functional API's.
NONFINITE_FALLBACK = decide.NONFINITE_FALLBACK
GRADIENT_PASSES = ("input", "weight")

Result = TypeVar("Result")


class _ShapeState(NamedTuple):
    """What a layer keeps per input shape: the geometry, the plan when some pass runs the FFT, and with
    ``algo="auto"`` the chooser's :class:`~fftconv.choose.Choice` for each pass (``None`` otherwise, and for a batch
    of zero samples, which runs nothing)."""

    geometry: ConvGeometry
    plan: SpectralPlan | None
    choices: Mapping[str, decide.Choice] | None

    def runs_fft(self, pass_name: str) -> bool:
        """Whether ``pass_name`` runs on the layer's plan: ``algo="fft"``, or ``"auto"`` picking the FFT."""
        return self.plan is not None and (self.choices is None or self.choices[pass_name].algo == "fft")


def _run_entry(entry: Any, pass_name: str, g: ConvGeometry, left: np.ndarray, right: np.ndarray,
               bias: np.ndarray | None, backend: Any, fft_size: Any, options: Mapping[str, Any]) -> np.ndarray:
    """One pass of a registry entry. The operands come in the order the entries take them: forward ``(input,
    weight)``, input gradient ``(grad_output, weight)``, weight gradient ``(input, grad_output)``."""
    if pass_name == "forward":
        return entry.forward(left, right, bias, g, backend, fft_size, **options)
    if pass_name == "input":
        return entry.grad_input(left, right, g, backend, fft_size, **options)
    return entry.grad_weight(left, right, g, backend, fft_size, **options)


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
    algo : {"fft", "im2col", "direct", "winograd", "tiled", "auto"}, default "fft"
        As in :func:`fftconv.conv2d`; ``"winograd"`` needs stride and dilation 1. ``"auto"``: per pass and input
        shape, the algorithm :func:`fftconv.choose.choose` picks (see the notes).
    backend : str or FFTBackend, optional
        FFT library for the FFT passes; default :func:`fftconv.get_backend` when the first plan is made.
    fft_size : {"fast", "pow2", "minimal"}, int or tuple of int, optional
        FFT size policy, or size, for the FFT passes (checked when the layer is built, and against each input).
    memory : {"reuse", "recompute"}, default "reuse"
        Keep spectra from forward to backward, or recompute them into a shared workspace (the FFT passes of
        ``algo="fft"`` and ``"auto"``).
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
    first input of each shape; one :class:`fftconv.SpectralPlan` is cached per input shape, for the last
    ``plan_cache_size`` shapes (default :data:`PLAN_CACHE_SIZE`; the plans hold no buffers, the backend's cache does,
    within its own bound).

    ``backward`` uses the input and the weights as they were in ``forward``, for every ``memory`` policy and
    ``algo``: ``"reuse"`` keeps their spectra, the other modes keep private copies (the input copy replaces the
    reference a layer would otherwise hold, so in a network it costs a copy, not memory; the weight copy is small
    next to any spectrum). PyTorch raises instead when a saved tensor is modified in place; here the gradients are
    those of the computation that ran, so a step taken before ``backward`` applies last step's gradients.

    ``algo="auto"`` decides the three passes (forward, input gradient, weight gradient) at the first input of each
    shape, with :func:`fftconv.choose.choose_step` in the layer's dtype, backend and FFT size (calibrating an
    uncalibrated machine once first, as the functional API does): each pass's own pick, unless under ``"reuse"``
    the FFT for all three passes, transforming each operand once, is estimated faster. It keeps the decisions with
    that shape's plan
    (:meth:`algorithms` shows them; :meth:`clear_plan_cache` makes the layer decide again, after
    :func:`fftconv.choose.set_accuracy` or a calibration). A pass given the FFT runs exactly as with ``algo="fft"``,
    sharing spectra with the other FFT passes of the step; another pass runs the chosen algorithm with the chosen
    options (a Winograd or tiled tile). Forward keeps copies of the input and the weights whatever the choices:
    under ``"reuse"`` that is one copy of the input more than ``algo="fft"`` holds, next to the input spectrum (kept
    only when the weight gradient is an FFT pass) and the weight spectrum (only when the input gradient is).

    With ``algo="fft"`` a NaN or inf in the input, the weights or the output gradient raises ``ValueError`` (the
    transform would spread it over whole maps), and so does an overflow of float32 (``OverflowError``); use
    ``algo="im2col"`` to keep them local as PyTorch does (docs/bad-input.md). ``algo="auto"`` never raises for them:
    a pass whose pick meets one is computed with ``"im2col"`` from the kept copies, so NaN and inf land where
    PyTorch puts them (:meth:`algorithms` still reports the pick).

    ``weight`` and ``bias`` may be changed in place at any time; rebinding them to arrays of another shape or dtype
    is refused by the next ``forward`` or ``backward`` with a message naming the attribute.

    One layer serves one thread at a time (its saved state and its plan cache are per layer): a second thread
    entering ``forward``, ``backward``, :meth:`algorithms` or :meth:`clear_plan_cache` while another is inside one
    of them raises ``RuntimeError``. Layers in different threads may share a :class:`~fftconv.nn.Workspace`: each
    pass holds it while it uses the buffer (see its notes); the chooser's own cache is thread-safe.
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
        if not isinstance(algo, str) or (algo not in ALGORITHMS and algo != AUTO):
            raise ValueError(f"algo={algo!r} is unknown; valid: {[*sorted(ALGORITHMS), AUTO]}")
        if memory not in MEMORY_POLICIES:
            raise ValueError(f"memory={memory!r} is unknown; valid: {MEMORY_POLICIES}")
        if workspace is not None and memory != "recompute":
            raise ValueError("workspace is only used with memory='recompute'; pass memory='recompute' or drop it")
        if workspace is not None and not isinstance(workspace, Workspace):
            raise TypeError(f"workspace must be a fftconv.nn.Workspace, got {type(workspace).__name__}")
        parse_fft_size(fft_size, self.ndim)  # its form now; whether it is large enough, at each input shape
        self.algo, self.backend, self.fft_size, self.memory = algo, backend, fft_size, memory
        may_run_fft = algo in ("fft", AUTO)
        self.workspace = (workspace or default_workspace()) if memory == "recompute" and may_run_fft else None
        self.dtype = resolve_dtype(dtype)
        self.grad_weight = np.zeros(shapes["weight"], dtype=self.dtype)
        self.grad_bias = np.zeros(shapes["bias"], dtype=self.dtype) if bias else None
        self._plans: LRUCache[_ShapeState] = LRUCache(max_entries=PLAN_CACHE_SIZE)
        self.reset_parameters(rng)

    @classmethod
    def parameter_shapes(cls, in_channels: int, out_channels: int, kernel_size: IntOrTuple, *args: Any,
                         groups: int = 1, bias: bool = True, **kwargs: Any) -> dict[str, tuple[int, ...]]:
        """``{"weight": (f', f/groups, *k), "bias": (f',)}`` (no bias entry with ``bias=False``).

        Examples
        --------
        >>> Conv2d.parameter_shapes(1, 100, 10)  # 100 filters of 10x10 on a one-channel image
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

    # ------------------------------------------------------------------ geometry, plan and choices per input shape
    @property
    def plan_cache_size(self) -> int:
        """How many input shapes the layer keeps the geometry, plan and ``"auto"`` decisions of (least recently used
        dropped first)."""
        return self._plans.max_entries

    @plan_cache_size.setter
    def plan_cache_size(self, size: int) -> None:
        self._plans.max_entries = positive_int(size, "plan_cache_size")
        while len(self._plans) > self._plans.max_entries:
            self._plans.evict_oldest()

    @_one_thread_at_a_time
    def clear_plan_cache(self) -> None:
        """Forget every input shape's geometry, plan and ``"auto"`` decisions: the next input of each shape makes
        them again (with ``algo="auto"``, under the accuracy bound and rates in use then).

        A ``forward`` whose ``backward`` has not run yet keeps what it used, so that ``backward`` is unaffected.
        """
        self._plans.clear()

    @_one_thread_at_a_time
    def algorithms(self, input_shape: Sequence[int]) -> dict[str, str]:
        """The algorithm each pass runs on inputs of ``input_shape``: ``{"forward": ..., "input": ..., "weight": ...}``.

        With ``algo="auto"`` these are the chooser's picks, made now if no input of this shape has run yet and kept
        with the shape's plan; a pass whose pick meets NaN, inf or an overflow computes with ``"im2col"`` instead.
        Any other ``algo`` runs every pass. A batch of zero samples computes nothing, and reports the layer's
        ``algo``.

        Examples
        --------
        >>> import numpy as np
        >>> from fftconv.nn import Conv2d
        >>> layer = Conv2d(3, 8, 3, padding=1, algo="auto", dtype=np.float64, rng=0)
        >>> picks = layer.algorithms((4, 3, 16, 16))
        >>> sorted(picks), set(picks.values()) <= {"fft", "im2col", "direct", "winograd", "tiled"}
        (['forward', 'input', 'weight'], True)
        >>> Conv2d(3, 8, 3).algorithms((4, 3, 16, 16))
        {'forward': 'fft', 'input': 'fft', 'weight': 'fft'}
        """
        self._check_parameters()
        state = self._shape_state(parse_shape(input_shape, "input_shape"))
        if state.choices is None:
            return dict.fromkeys(PASSES, self.algo)
        return {pass_name: choice.algo for pass_name, choice in state.choices.items()}

    def _shape_state(self, input_shape: tuple[int, ...]) -> _ShapeState:
        cached = self._plans.get(input_shape)
        if cached is None:
            geometry = ConvGeometry.from_params(self._params, input_shape, self.weight.shape)
            # zero samples: nothing to choose or plan, the functional API gives PyTorch's result
            choices = self._choose(geometry) if self.algo == AUTO and geometry.batch else None
            runs_fft = self.algo == "fft" or (choices is not None and any(c.algo == "fft" for c in choices.values()))
            plan = (SpectralPlan.create(geometry, self.dtype, self.backend, self.fft_size)
                    if runs_fft and geometry.batch else None)
            cached = _ShapeState(geometry, plan, choices)
            self._plans.put(input_shape, cached)
        return cached

    def _choose(self, geometry: ConvGeometry) -> dict[str, decide.Choice]:
        calibrate_once()  # as the functional API's "auto": an uncalibrated machine is measured once, first
        return decide.choose_step(geometry, self.dtype, backend=self.backend, fft_size=self.fft_size,
                                  reuse=self.memory == "reuse")

    # ------------------------------------------------------------------ updateOutput
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``updateOutput``: ``y = conv(x, weight) + bias``; keeps the spectra (``"reuse"``) and/or copies of ``x``
        and ``weight`` for :meth:`backward` (see the class notes for which)."""
        check_input(x, self.dtype, self.ndim + 2, self)
        self._check_parameters()
        state = self._shape_state(x.shape)
        weight, spectra = self.weight, {}
        if state.runs_fft("forward"):
            y, spectra = self._on_plan(lambda: self._spectral_forward(state, x, weight),
                                       lambda: (self._fallback("forward", state, x, weight, self.bias), {}))
        else:
            y = self._spatial("forward", state, x, weight, self.bias)
        # backward needs only the spectra for algo="fft" under "reuse"; every other mode keeps copies of backward's
        # operands as they are now, whatever the caller does to them ("auto": for its non-FFT passes and its NaN
        # fallback; a batch of zero samples has no plan)
        spectra_suffice = self.algo == "fft" and self.memory == "reuse" and state.plan is not None
        if self.training:
            copies = {} if spectra_suffice else {"input": np.array(x), "weight": weight.copy()}
            self._save(state=state, **spectra, **copies)
        return y

    def _spectral_forward(self, state: _ShapeState, x: np.ndarray,
                          weight: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The forward pass on the plan, and the spectra kept for the FFT gradient passes that read them."""
        plan = state.plan
        if self.memory == "recompute":
            with self.workspace.borrow(plan) as buffers:
                input_spectrum = plan.transform_input(x, out=buffers["input"])
                weight_spectrum = plan.transform_weight(weight, out=buffers["weight"])
                return plan.forward(input_spectrum, weight_spectrum, self.bias), {}
        spectra = {"input_spectrum": plan.transform_input(x), "weight_spectrum": plan.transform_weight(weight)}
        y = plan.forward(spectra["input_spectrum"], spectra["weight_spectrum"], self.bias)
        reader = {"input_spectrum": "weight", "weight_spectrum": "input"}  # the gradient pass that reads each
        return y, {name: spectrum for name, spectrum in spectra.items() if state.runs_fft(reader[name])}

    # ------------------------------------------------------------------ updateGradInput + accGradParameters
    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Return ``dL/dx`` and add ``dL/dw``, ``dL/db`` into ``grad_weight``, ``grad_bias``."""
        check_input(grad_output, self.dtype, self.ndim + 2, self, "grad_output")
        self._check_parameters()
        with self._consuming_saved() as saved:
            state: _ShapeState = saved["state"]
            state.geometry.check_grad_output(grad_output.shape)
            grad_input, grad_weight = self._input_and_weight_gradients(saved, grad_output)
            self.grad_weight += grad_weight
            if self.has_bias:
                self.grad_bias += grad_output.sum(axis=(0, *range(2, 2 + self.ndim)))
        return grad_input

    def _input_and_weight_gradients(self, saved: dict[str, Any],
                                    grad_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        state: _ShapeState = saved["state"]
        on_plan = [pass_name for pass_name in GRADIENT_PASSES if state.runs_fft(pass_name)]
        grads = {pass_name: self._spatial(pass_name, state, *_gradient_operands(pass_name, saved, grad_output))
                 for pass_name in GRADIENT_PASSES if pass_name not in on_plan}
        if on_plan and self.memory == "recompute":
            with self.workspace.borrow(state.plan) as buffers:
                grads.update(self._spectral_gradients(on_plan, saved, grad_output, buffers))
        elif on_plan:
            grads.update(self._spectral_gradients(on_plan, saved, grad_output, {}))
        return grads["input"], grads["weight"]

    def _spectral_gradients(self, pass_names: Sequence[str], saved: dict[str, Any], grad_output: np.ndarray,
                            buffers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradient passes on the plan. The output gradient is transformed once for both; the input and weight
        spectra are those forward kept (``"reuse"``), or transformed now from its copies (into ``buffers`` when
        given)."""
        state: _ShapeState = saved["state"]
        plan = state.plan
        grad_output_spectrum = functools.cache(
            lambda: plan.transform_grad_output(grad_output, out=buffers.get("grad_output")))
        transforms = {"input": plan.transform_input, "weight": plan.transform_weight}

        def spectrum(role: str) -> np.ndarray:
            kept = saved.get(f"{role}_spectrum")
            return kept if kept is not None else transforms[role](saved[role], out=buffers.get(role))

        runs = {"input": lambda: plan.grad_input(grad_output_spectrum(), spectrum("weight")),
                "weight": lambda: plan.grad_weight(spectrum("input"), grad_output_spectrum())}
        return {pass_name: self._on_plan(runs[pass_name], functools.partial(
                    self._fallback, pass_name, state, *_gradient_operands(pass_name, saved, grad_output)))
                for pass_name in pass_names}

    # ------------------------------------------------------------------ running one pass
    def _on_plan(self, run: Callable[[], Result], fallback: Callable[[], Result]) -> Result:
        """``run()``, a pass on the plan. The plan raises rather than spread NaN, inf or an overflow; with
        ``algo="auto"`` that is caught and ``fallback()`` computes the pass with :data:`NONFINITE_FALLBACK`."""
        if self.algo != AUTO:
            return run()
        try:
            return run()
        except (NonFiniteInput, SpectralOverflow):
            return fallback()

    def _spatial(self, pass_name: str, state: _ShapeState, left: np.ndarray, right: np.ndarray,
                 bias: np.ndarray | None = None) -> np.ndarray:
        """A pass off the plan, operands in :func:`_run_entry`'s order: with ``algo="auto"`` the registry entry the
        chooser picked, with its options, as the functional API's ``"auto"`` runs it
        (:func:`fftconv.choose.decide.keeping_nonfinite_local`);
        otherwise the functional API with the layer's ``algo``."""
        if state.choices is None:
            hyper = (self.stride, self.padding, self.dilation, self.groups)
            if pass_name == "forward":
                return functional.conv(left, right, bias, *hyper, algo=self.algo)
            if pass_name == "input":
                return functional.conv_input(state.geometry.full_input_shape, right, left, *hyper, algo=self.algo)
            return functional.conv_weight(left, state.geometry.full_weight_shape, right, *hyper, algo=self.algo)
        choice = state.choices[pass_name]
        return decide.keeping_nonfinite_local(
            ALGORITHMS[choice.algo], choice.options,
            lambda entry, options: _run_entry(entry, pass_name, state.geometry, left, right, bias, self.backend,
                                              self.fft_size, options))

    def _fallback(self, pass_name: str, state: _ShapeState, left: np.ndarray, right: np.ndarray,
                  bias: np.ndarray | None = None) -> np.ndarray:
        """The pass with :data:`NONFINITE_FALLBACK`, which keeps NaN and inf where PyTorch puts them."""
        return _run_entry(ALGORITHMS[NONFINITE_FALLBACK], pass_name, state.geometry, left, right, bias,
                          self.backend, self.fft_size, {})

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


def _gradient_operands(pass_name: str, saved: Mapping[str, Any],
                       grad_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A gradient pass's operands from forward's copies, in :func:`_run_entry`'s order."""
    return (grad_output, saved.get("weight")) if pass_name == "input" else (saved.get("input"), grad_output)


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
