"""Functional API with PyTorch's semantics: ``conv{1,2,3}d``, ``conv{1,2,3}d_input``, ``conv{1,2,3}d_weight``.

All nine public functions are thin wrappers, made by :func:`_make_public`, over three N-dimensional
implementations: :func:`conv`, :func:`conv_input` and :func:`conv_weight`. They validate with
:class:`~fftconv.geometry.ConvGeometry` and dispatch to one algorithm from :data:`ALGORITHMS`.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Sequence, Union

import numpy as np

from . import direct, im2col
from ._spatial import check_spatial_memory
from .backends import FFTBackend, get_backend
from .geometry import ConvGeometry, IntOrTuple, Padding, check_arrays, parse_size
from .spectral import FFTSizePolicy, SpectralPlan, fft_shape_for

BackendArg = Union[str, FFTBackend, None]
FFTSizeArg = Union[FFTSizePolicy, Sequence[int], None]


class _FFTAlgorithm:
    """Adapter giving the spectral plan the same three-function shape as the spatial algorithms."""

    @staticmethod
    def forward(x, w, bias, g, backend=None, fft_size=None):
        plan = SpectralPlan.create(g, x.dtype, backend, fft_size)
        return plan.forward(plan.transform_input(x), plan.transform_weight(w), bias)

    @staticmethod
    def grad_input(grad_output, w, g, backend=None, fft_size=None):
        plan = SpectralPlan.create(g, grad_output.dtype, backend, fft_size)
        return plan.grad_input(plan.transform_grad_output(grad_output), plan.transform_weight(w))

    @staticmethod
    def grad_weight(x, grad_output, g, backend=None, fft_size=None):
        plan = SpectralPlan.create(g, x.dtype, backend, fft_size)
        return plan.grad_weight(plan.transform_input(x), plan.transform_grad_output(grad_output))


class _SpatialAlgorithm:
    """A spatial-domain algorithm module, with its memory estimate checked before it allocates.

    ``working_dtype`` is the precision it computes in (``None``: the input's); ``direct`` always uses float64.
    """

    def __init__(self, module: ModuleType, name: str, working_dtype=None):
        self.module, self.name, self.working_dtype = module, name, working_dtype

    def _check(self, g: ConvGeometry, dtype, backend: BackendArg, fft_size: FFTSizeArg) -> None:
        """FFT-only options are validated (a typo must not pass silently), then ignored; memory is estimated."""
        get_backend(backend)
        fft_shape_for(g, fft_size)
        check_spatial_memory(g, self.working_dtype or dtype, self.name)

    def forward(self, x, w, bias, g, backend=None, fft_size=None):
        self._check(g, x.dtype, backend, fft_size)
        return self.module.forward(x, w, bias, g)

    def grad_input(self, grad_output, w, g, backend=None, fft_size=None):
        self._check(g, grad_output.dtype, backend, fft_size)
        return self.module.grad_input(grad_output, w, g)

    def grad_weight(self, x, grad_output, g, backend=None, fft_size=None):
        self._check(g, x.dtype, backend, fft_size)
        return self.module.grad_weight(x, grad_output, g)


#: The algorithms every pass offers. Tests parametrise over this registry.
ALGORITHMS = {"fft": _FFTAlgorithm(), "im2col": _SpatialAlgorithm(im2col, "im2col"),
              "direct": _SpatialAlgorithm(direct, "direct", np.float64)}


class _AutoAlgorithm:
    """``algo="auto"``: per pass, the algorithm :func:`fftconv.choose.choose` picks for this geometry."""

    @staticmethod
    def _pick(g, pass_name, dtype, backend, fft_size):
        from .choose import choose  # choose imports this module to time candidates

        return ALGORITHMS[choose(g, pass_name, dtype, backend=backend, fft_size=fft_size).algo]

    def forward(self, x, w, bias, g, backend=None, fft_size=None):
        return self._pick(g, "forward", x.dtype, backend, fft_size).forward(x, w, bias, g, backend, fft_size)

    def grad_input(self, grad_output, w, g, backend=None, fft_size=None):
        chosen = self._pick(g, "input", grad_output.dtype, backend, fft_size)
        return chosen.grad_input(grad_output, w, g, backend, fft_size)

    def grad_weight(self, x, grad_output, g, backend=None, fft_size=None):
        return self._pick(g, "weight", x.dtype, backend, fft_size).grad_weight(x, grad_output, g, backend, fft_size)


_AUTO = _AutoAlgorithm()


def _algorithm(algo: str):
    if algo == "auto":
        return _AUTO
    if algo not in ALGORITHMS:
        raise ValueError(f"algo={algo!r} is unknown; valid: {sorted([*ALGORITHMS, 'auto'])}")
    return ALGORITHMS[algo]


def _check_ndim(ndim: int | None, array: np.ndarray, name: str) -> None:
    if ndim is not None and array.ndim != ndim + 2:
        layout = "out_channels, in_channels // groups" if name == "weight" else "batch, channels"
        raise ValueError(f"{name} must have {ndim + 2} dimensions ({layout}, {ndim} spatial) for a "
                         f"{ndim}-d convolution, got shape {array.shape}")


def conv(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
         padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
         backend: BackendArg = None, fft_size: FFTSizeArg = None, ndim: int | None = None) -> np.ndarray:
    """N-dimensional forward pass (``updateOutput``); see :func:`conv2d`."""
    check_arrays(input=input, weight=weight, bias=bias)
    _check_ndim(ndim, input, "input")
    _check_ndim(ndim, weight, "weight")
    g = ConvGeometry.from_shapes(input.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None and bias.shape != (g.out_channels,):
        raise ValueError(f"bias must have shape (out_channels,) = ({g.out_channels},), got {bias.shape}")
    return _algorithm(algo).forward(input, weight, bias, g, backend, fft_size)


def conv_input(input_size: Sequence[int], weight: np.ndarray, grad_output: np.ndarray, stride: IntOrTuple = 1,
               padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
               backend: BackendArg = None, fft_size: FFTSizeArg = None, ndim: int | None = None) -> np.ndarray:
    """N-dimensional input gradient (``updateGradInput``); see :func:`conv2d_input`."""
    check_arrays(weight=weight, grad_output=grad_output)
    _check_ndim(ndim, weight, "weight")
    size = parse_size(input_size, weight.ndim, "input_size")
    g = ConvGeometry.from_shapes(size, weight.shape, stride, padding, dilation, groups, input_name="input_size")
    g.check_grad_output(grad_output.shape)
    return _algorithm(algo).grad_input(grad_output, weight, g, backend, fft_size)


def conv_weight(input: np.ndarray, weight_size: Sequence[int], grad_output: np.ndarray, stride: IntOrTuple = 1,
                padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                backend: BackendArg = None, fft_size: FFTSizeArg = None, ndim: int | None = None) -> np.ndarray:
    """N-dimensional weight gradient (``accGradParameters``); see :func:`conv2d_weight`."""
    check_arrays(input=input, grad_output=grad_output)
    _check_ndim(ndim, input, "input")
    size = parse_size(weight_size, input.ndim, "weight_size")
    g = ConvGeometry.from_shapes(input.shape, size, stride, padding, dilation, groups, weight_name="weight_size")
    g.check_grad_output(grad_output.shape)
    return _algorithm(algo).grad_weight(input, grad_output, g, backend, fft_size)


# ---------------------------------------------------------------------- public 1-d/2-d/3-d wrappers
_SHARED_PARAMETERS = """\
stride : int or tuple of int, default 1
    Step between applications of the kernel, per spatial dimension.
padding : int, tuple of int, "valid" or "same", default 0
    Implicit zero padding on both sides. ``"same"`` keeps the spatial size (stride 1 only; an odd total puts the
    extra row after, as PyTorch does).
dilation : int or tuple of int, default 1
    Spacing between kernel taps.
groups : int, default 1
    Split channels into this many independent groups; must divide both channel counts.
algo : {"fft", "im2col", "direct", "auto"}, default "fft"
    ``"fft"``: Mathieu et al.'s per-frequency complex GEMM; ``"im2col"``: unfold + one GEMM in the input dtype;
    ``"direct"``: a readable loop accumulated in float64; ``"auto"``: per pass, the cheapest by a cost model
    calibrated on the machine, timing close candidates once on small problems (``FFTCONV_AUTO``: ``"hybrid"``,
    the default, ``"model"`` or ``"measure"``); see :func:`fftconv.explain`.
backend : str or FFTBackend, optional
    FFT library for ``algo="fft"`` (``"pyfftw"``, ``"scipy"``, ``"numpy"``); default :func:`fftconv.get_backend`.
fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
    FFT size policy for ``algo="fft"``; default ``"fast"`` (next ``2^a 3^b 5^c 7^d``).

Notes
-----
Cross-correlation, as in PyTorch. Output size per spatial dimension:
``floor((n + p_before + p_after - dilation * (k - 1) - 1) / stride) + 1``. float32 and float64 are supported end to
end; the result has the input's dtype. Errors name the offending argument: shapes, channels, groups, kernel larger
than the padded input, non-positive stride or dilation, mixed or unsupported dtypes, and problems whose buffers
would not fit in the available memory (``MemoryError``, raised before allocating)."""

_EXAMPLE_SHAPES = {1: ((2, 3, 16), (4, 3, 5)), 2: ((2, 3, 16, 16), (4, 3, 5, 5)), 3: ((2, 3, 8, 8, 8), (4, 3, 3, 3, 3))}

_DOCS = {
    "conv": """{n}-d convolution (cross-correlation) forward pass, ``torch.nn.functional.conv{n}d``'s semantics.

This is the paper's ``updateOutput``: ``y[f'] = sum_f x[f] * w[f', f]``.

Parameters
----------
input : ndarray, shape (batch, in_channels, {dims})
weight : ndarray, shape (out_channels, in_channels // groups, {kdims})
bias : ndarray, shape (out_channels,), optional
{shared}

Returns
-------
ndarray, shape (batch, out_channels, {odims})

Examples
--------
>>> import numpy as np, fftconv
>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal({xs}), rng.standard_normal({ws})
>>> y = fftconv.conv{n}d(x, w, padding="same")
>>> y.shape == x.shape[:1] + w.shape[:1] + x.shape[2:]
True
>>> bool(np.allclose(y, fftconv.conv{n}d(x, w, padding="same", algo="direct")))
True
""",
    "conv_input": """Gradient of a {n}-d convolution with respect to its input, as ``torch.nn.grad.conv{n}d_input``.

This is the paper's ``updateGradInput``: ``dL/dx[f] = sum_f' dL/dy[f'] * w^T[f', f]``.

Parameters
----------
input_size : sequence of int
    Shape of the forward input, ``(batch, in_channels, {dims})``.
weight : ndarray, shape (out_channels, in_channels // groups, {kdims})
grad_output : ndarray, shape (batch, out_channels, {odims})
    Must equal the forward output's shape for ``input_size`` and ``weight``.
{shared}

Returns
-------
ndarray of shape ``input_size``

Examples
--------
>>> import numpy as np, fftconv
>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal({xs}), rng.standard_normal({ws})
>>> gy = rng.standard_normal(fftconv.conv{n}d(x, w).shape)
>>> gx = fftconv.conv{n}d_input(x.shape, w, gy)
>>> # adjoint identity: <conv(x, w), gy> == <x, conv_input(gy, w)>
>>> bool(np.isclose(np.vdot(fftconv.conv{n}d(x, w), gy), np.vdot(x, gx)))
True
""",
    "conv_weight": """Gradient of a {n}-d convolution with respect to its weight, as ``torch.nn.grad.conv{n}d_weight``.

This is the paper's ``accGradParameters``: ``dL/dw[f', f] = sum_s dL/dy[s, f'] * x[s, f]``.

Parameters
----------
input : ndarray, shape (batch, in_channels, {dims})
weight_size : sequence of int
    Shape of the weight, ``(out_channels, in_channels // groups, {kdims})``.
grad_output : ndarray, shape (batch, out_channels, {odims})
{shared}

Returns
-------
ndarray of shape ``weight_size``

Examples
--------
>>> import numpy as np, fftconv
>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal({xs}), rng.standard_normal({ws})
>>> gy = rng.standard_normal(fftconv.conv{n}d(x, w).shape)
>>> gw = fftconv.conv{n}d_weight(x, w.shape, gy)
>>> bool(np.isclose(np.vdot(fftconv.conv{n}d(x, w), gy), np.vdot(w, gw)))
True
""",
}


def _make_public(kind: str, ndim: int):
    implementation = {"conv": conv, "conv_input": conv_input, "conv_weight": conv_weight}[kind]
    name = kind.replace("conv", f"conv{ndim}d", 1)

    def wrapper(*args, **kwargs):
        return implementation(*args, ndim=ndim, **kwargs)

    letters = "dhw"[-ndim:] if ndim <= 3 else None
    xs, ws = _EXAMPLE_SHAPES[ndim]
    signature = inspect.signature(implementation)
    wrapper.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "ndim"])
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__module__ = "fftconv"
    wrapper.__doc__ = _DOCS[kind].format(
        n=ndim, shared=_SHARED_PARAMETERS, xs=xs, ws=ws,
        dims=", ".join(f"{c}_in" for c in letters), kdims=", ".join(f"k{c}" for c in letters),
        odims=", ".join(f"{c}_out" for c in letters))
    return wrapper


conv1d, conv1d_input, conv1d_weight = (_make_public(k, 1) for k in ("conv", "conv_input", "conv_weight"))
conv2d, conv2d_input, conv2d_weight = (_make_public(k, 2) for k in ("conv", "conv_input", "conv_weight"))
conv3d, conv3d_input, conv3d_weight = (_make_public(k, 3) for k in ("conv", "conv_input", "conv_weight"))
