"""Functional API with PyTorch's semantics: ``conv{1,2,3}d``, ``conv{1,2,3}d_input``, ``conv{1,2,3}d_weight``.

The nine public functions are short wrappers over three N-dimensional implementations: :func:`conv`,
:func:`conv_input` and :func:`conv_weight`. These validate the arrays and build a
:class:`~fftconv.geometry.ConvGeometry`, then run one algorithm of :data:`~fftconv.algorithms.ALGORITHMS` with the
options the cost model gives it (a tile), or the one :mod:`fftconv.choose` picks for ``algo="auto"``.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np

from .algorithms import ALGORITHMS, BackendArg, FFTSizeArg
from .choose.decide import dispatcher as _algorithm
from .geometry import ConvGeometry, check_arrays, parse_size
from .params import IntOrTuple, Padding

__all__ = ["conv", "conv_input", "conv_weight", "conv1d", "conv2d", "conv3d", "conv1d_input", "conv2d_input",
           "conv3d_input", "conv1d_weight", "conv2d_weight", "conv3d_weight", "ALGORITHMS"]


def _check_ndim(ndim: int | None, array: np.ndarray, name: str) -> None:
    if ndim is not None and array.ndim != ndim + 2:
        layout = "out_channels, in_channels // groups" if name == "weight" else "batch, channels"
        raise ValueError(f"{name} must have {ndim + 2} dimensions ({layout}, {ndim} spatial) for a "
                         f"{ndim}-d convolution, got shape {array.shape}")


# ---------------------------------------------------------------------- the N-dimensional implementations
def conv(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
         padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
         backend: BackendArg = None, fft_size: FFTSizeArg = None, ndim: int | None = None) -> np.ndarray:
    """N-dimensional forward pass (``updateOutput``); see :func:`conv2d`. ``ndim`` checks the arrays' rank."""
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


# ---------------------------------------------------------------------- the public 1-d, 2-d and 3-d functions
_OPTIONS = """\
stride : int or tuple of int, default 1
    Step between applications of the kernel, per spatial dimension.
padding : int, tuple of int, "valid" or "same", default 0
    Implicit zero padding on both sides. ``"same"`` keeps the spatial size (stride 1 only; an odd total puts the
    extra row after, as PyTorch does).
dilation : int or tuple of int, default 1
    Spacing between kernel taps.
groups : int, default 1
    Split channels into this many independent groups; must divide both channel counts.
algo : {"fft", "im2col", "direct", "winograd", "tiled", "auto"}, default "fft"
    ``"fft"``: Mathieu et al.'s per-frequency complex GEMM; ``"im2col"``: unfold + one GEMM in the input dtype;
    ``"direct"``: a readable loop accumulated in float64; ``"winograd"``: Winograd's minimal filtering
    ``F(m, r)`` (stride and dilation 1 only); ``"tiled"``: the FFT algorithm on tiles of the maps (overlap-save /
    overlap-add), for small kernels on large maps; ``"auto"``: per pass, the cheapest by a cost model calibrated
    on the machine, timing close candidates once on small problems (``FFTCONV_AUTO``: ``"hybrid"``, the default,
    ``"model"`` or ``"measure"``), within the accuracy bound of :func:`fftconv.choose.set_accuracy` and the
    available memory; see :func:`fftconv.explain`. The tiles of ``"winograd"`` and ``"tiled"`` are the cost
    model's cheapest.
backend : str or FFTBackend, optional
    FFT library for ``algo="fft"`` and ``"tiled"`` (``"pyfftw"``, ``"scipy"``, ``"numpy"``); default
    :func:`fftconv.get_backend`.
fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
    FFT size policy for ``algo="fft"`` (of the tiles for ``"tiled"``); default ``"fast"`` (next
    ``2^a 3^b 5^c 7^d``).

Notes
-----
Cross-correlation, as in PyTorch. Output size per spatial dimension:
``floor((n + p_before + p_after - dilation * (k - 1) - 1) / stride) + 1``. float32 and float64 are supported end to
end; the result has the input's dtype. Errors name the offending argument: shapes, channels, groups, kernel larger
than the padded input, non-positive stride or dilation, mixed or unsupported dtypes, and problems whose buffers
would not fit in the available memory (``MemoryError``, raised before allocating)."""

_MARKER = "{options}"
F = TypeVar("F", bound=Callable)


def _with_options(function: F) -> F:
    """Put the options shared by the nine public functions where their docstring says ``{options}``.

    Only ``__doc__`` changes: ``inspect.signature`` and ``help`` show the function's own signature.
    """
    doc = function.__doc__
    line = next(line for line in doc.splitlines() if line.strip() == _MARKER)
    indent = line[:len(line) - len(line.lstrip())]
    options = "\n".join(indent + text if text else "" for text in _OPTIONS.splitlines())
    function.__doc__ = doc.replace(line, options)
    return function


@_with_options
def conv1d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
           padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
           backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """1-d convolution (cross-correlation) forward pass, with ``torch.nn.functional.conv1d``'s semantics.

    This is the paper's ``updateOutput``: ``y[f'] = sum_f x[f] * w[f', f]``.

    Parameters
    ----------
    input : ndarray, shape (batch, in_channels, w_in)
    weight : ndarray, shape (out_channels, in_channels // groups, kw)
    bias : ndarray, shape (out_channels,), optional
    {options}

    Returns
    -------
    ndarray, shape (batch, out_channels, w_out)

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 16)), rng.standard_normal((4, 3, 5))
    >>> y = fftconv.conv1d(x, w, padding="same")
    >>> y.shape
    (2, 4, 16)
    >>> bool(np.allclose(y, fftconv.conv1d(x, w, padding="same", algo="direct")))
    True
    """
    return conv(input, weight, bias, stride, padding, dilation, groups, algo=algo, backend=backend,
                fft_size=fft_size, ndim=1)


@_with_options
def conv2d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
           padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
           backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """2-d convolution (cross-correlation) forward pass, with ``torch.nn.functional.conv2d``'s semantics.

    This is the paper's ``updateOutput``: ``y[f'] = sum_f x[f] * w[f', f]``.

    Parameters
    ----------
    input : ndarray, shape (batch, in_channels, h_in, w_in)
    weight : ndarray, shape (out_channels, in_channels // groups, kh, kw)
    bias : ndarray, shape (out_channels,), optional
    {options}

    Returns
    -------
    ndarray, shape (batch, out_channels, h_out, w_out)

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((4, 3, 5, 5))
    >>> y = fftconv.conv2d(x, w, padding="same")
    >>> y.shape
    (2, 4, 16, 16)
    >>> bool(np.allclose(y, fftconv.conv2d(x, w, padding="same", algo="direct")))
    True
    """
    return conv(input, weight, bias, stride, padding, dilation, groups, algo=algo, backend=backend,
                fft_size=fft_size, ndim=2)


@_with_options
def conv3d(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntOrTuple = 1,
           padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
           backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """3-d convolution (cross-correlation) forward pass, with ``torch.nn.functional.conv3d``'s semantics.

    This is the paper's ``updateOutput``: ``y[f'] = sum_f x[f] * w[f', f]``.

    Parameters
    ----------
    input : ndarray, shape (batch, in_channels, d_in, h_in, w_in)
    weight : ndarray, shape (out_channels, in_channels // groups, kd, kh, kw)
    bias : ndarray, shape (out_channels,), optional
    {options}

    Returns
    -------
    ndarray, shape (batch, out_channels, d_out, h_out, w_out)

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 8, 8, 8)), rng.standard_normal((4, 3, 3, 3, 3))
    >>> y = fftconv.conv3d(x, w, padding="same")
    >>> y.shape
    (2, 4, 8, 8, 8)
    >>> bool(np.allclose(y, fftconv.conv3d(x, w, padding="same", algo="direct")))
    True
    """
    return conv(input, weight, bias, stride, padding, dilation, groups, algo=algo, backend=backend,
                fft_size=fft_size, ndim=3)


@_with_options
def conv1d_input(input_size: Sequence[int], weight: np.ndarray, grad_output: np.ndarray, stride: IntOrTuple = 1,
                 padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                 backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """Gradient of a 1-d convolution with respect to its input, as ``torch.nn.grad.conv1d_input``.

    This is the paper's ``updateGradInput``: ``dL/dx[f] = sum_f' dL/dy[f'] * w^T[f', f]``.

    Parameters
    ----------
    input_size : sequence of int
        Shape of the forward input, ``(batch, in_channels, w_in)``.
    weight : ndarray, shape (out_channels, in_channels // groups, kw)
    grad_output : ndarray, shape (batch, out_channels, w_out)
        Must equal the forward output's shape for ``input_size`` and ``weight``.
    {options}

    Returns
    -------
    ndarray of shape ``input_size``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 16)), rng.standard_normal((4, 3, 5))
    >>> gy = rng.standard_normal(fftconv.conv1d(x, w).shape)
    >>> gx = fftconv.conv1d_input(x.shape, w, gy)
    >>> # adjoint identity: <conv(x, w), gy> == <x, conv_input(gy, w)>
    >>> bool(np.isclose(np.vdot(fftconv.conv1d(x, w), gy), np.vdot(x, gx)))
    True
    """
    return conv_input(input_size, weight, grad_output, stride, padding, dilation, groups, algo=algo,
                      backend=backend, fft_size=fft_size, ndim=1)


@_with_options
def conv2d_input(input_size: Sequence[int], weight: np.ndarray, grad_output: np.ndarray, stride: IntOrTuple = 1,
                 padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                 backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """Gradient of a 2-d convolution with respect to its input, as ``torch.nn.grad.conv2d_input``.

    This is the paper's ``updateGradInput``: ``dL/dx[f] = sum_f' dL/dy[f'] * w^T[f', f]``.

    Parameters
    ----------
    input_size : sequence of int
        Shape of the forward input, ``(batch, in_channels, h_in, w_in)``.
    weight : ndarray, shape (out_channels, in_channels // groups, kh, kw)
    grad_output : ndarray, shape (batch, out_channels, h_out, w_out)
        Must equal the forward output's shape for ``input_size`` and ``weight``.
    {options}

    Returns
    -------
    ndarray of shape ``input_size``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((4, 3, 5, 5))
    >>> gy = rng.standard_normal(fftconv.conv2d(x, w).shape)
    >>> gx = fftconv.conv2d_input(x.shape, w, gy)
    >>> # adjoint identity: <conv(x, w), gy> == <x, conv_input(gy, w)>
    >>> bool(np.isclose(np.vdot(fftconv.conv2d(x, w), gy), np.vdot(x, gx)))
    True
    """
    return conv_input(input_size, weight, grad_output, stride, padding, dilation, groups, algo=algo,
                      backend=backend, fft_size=fft_size, ndim=2)


@_with_options
def conv3d_input(input_size: Sequence[int], weight: np.ndarray, grad_output: np.ndarray, stride: IntOrTuple = 1,
                 padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                 backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """Gradient of a 3-d convolution with respect to its input, as ``torch.nn.grad.conv3d_input``.

    This is the paper's ``updateGradInput``: ``dL/dx[f] = sum_f' dL/dy[f'] * w^T[f', f]``.

    Parameters
    ----------
    input_size : sequence of int
        Shape of the forward input, ``(batch, in_channels, d_in, h_in, w_in)``.
    weight : ndarray, shape (out_channels, in_channels // groups, kd, kh, kw)
    grad_output : ndarray, shape (batch, out_channels, d_out, h_out, w_out)
        Must equal the forward output's shape for ``input_size`` and ``weight``.
    {options}

    Returns
    -------
    ndarray of shape ``input_size``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 8, 8, 8)), rng.standard_normal((4, 3, 3, 3, 3))
    >>> gy = rng.standard_normal(fftconv.conv3d(x, w).shape)
    >>> gx = fftconv.conv3d_input(x.shape, w, gy)
    >>> # adjoint identity: <conv(x, w), gy> == <x, conv_input(gy, w)>
    >>> bool(np.isclose(np.vdot(fftconv.conv3d(x, w), gy), np.vdot(x, gx)))
    True
    """
    return conv_input(input_size, weight, grad_output, stride, padding, dilation, groups, algo=algo,
                      backend=backend, fft_size=fft_size, ndim=3)


@_with_options
def conv1d_weight(input: np.ndarray, weight_size: Sequence[int], grad_output: np.ndarray, stride: IntOrTuple = 1,
                  padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                  backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """Gradient of a 1-d convolution with respect to its weight, as ``torch.nn.grad.conv1d_weight``.

    This is the paper's ``accGradParameters``: ``dL/dw[f', f] = sum_s dL/dy[s, f'] * x[s, f]``.

    Parameters
    ----------
    input : ndarray, shape (batch, in_channels, w_in)
    weight_size : sequence of int
        Shape of the weight, ``(out_channels, in_channels // groups, kw)``.
    grad_output : ndarray, shape (batch, out_channels, w_out)
    {options}

    Returns
    -------
    ndarray of shape ``weight_size``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 16)), rng.standard_normal((4, 3, 5))
    >>> gy = rng.standard_normal(fftconv.conv1d(x, w).shape)
    >>> gw = fftconv.conv1d_weight(x, w.shape, gy)
    >>> bool(np.isclose(np.vdot(fftconv.conv1d(x, w), gy), np.vdot(w, gw)))
    True
    """
    return conv_weight(input, weight_size, grad_output, stride, padding, dilation, groups, algo=algo,
                       backend=backend, fft_size=fft_size, ndim=1)


@_with_options
def conv2d_weight(input: np.ndarray, weight_size: Sequence[int], grad_output: np.ndarray, stride: IntOrTuple = 1,
                  padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                  backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """Gradient of a 2-d convolution with respect to its weight, as ``torch.nn.grad.conv2d_weight``.

    This is the paper's ``accGradParameters``: ``dL/dw[f', f] = sum_s dL/dy[s, f'] * x[s, f]``.

    Parameters
    ----------
    input : ndarray, shape (batch, in_channels, h_in, w_in)
    weight_size : sequence of int
        Shape of the weight, ``(out_channels, in_channels // groups, kh, kw)``.
    grad_output : ndarray, shape (batch, out_channels, h_out, w_out)
    {options}

    Returns
    -------
    ndarray of shape ``weight_size``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((4, 3, 5, 5))
    >>> gy = rng.standard_normal(fftconv.conv2d(x, w).shape)
    >>> gw = fftconv.conv2d_weight(x, w.shape, gy)
    >>> bool(np.isclose(np.vdot(fftconv.conv2d(x, w), gy), np.vdot(w, gw)))
    True
    """
    return conv_weight(input, weight_size, grad_output, stride, padding, dilation, groups, algo=algo,
                       backend=backend, fft_size=fft_size, ndim=2)


@_with_options
def conv3d_weight(input: np.ndarray, weight_size: Sequence[int], grad_output: np.ndarray, stride: IntOrTuple = 1,
                  padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "fft",
                  backend: BackendArg = None, fft_size: FFTSizeArg = None) -> np.ndarray:
    """Gradient of a 3-d convolution with respect to its weight, as ``torch.nn.grad.conv3d_weight``.

    This is the paper's ``accGradParameters``: ``dL/dw[f', f] = sum_s dL/dy[s, f'] * x[s, f]``.

    Parameters
    ----------
    input : ndarray, shape (batch, in_channels, d_in, h_in, w_in)
    weight_size : sequence of int
        Shape of the weight, ``(out_channels, in_channels // groups, kd, kh, kw)``.
    grad_output : ndarray, shape (batch, out_channels, d_out, h_out, w_out)
    {options}

    Returns
    -------
    ndarray of shape ``weight_size``

    Examples
    --------
    >>> import numpy as np, fftconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 8, 8, 8)), rng.standard_normal((4, 3, 3, 3, 3))
    >>> gy = rng.standard_normal(fftconv.conv3d(x, w).shape)
    >>> gw = fftconv.conv3d_weight(x, w.shape, gy)
    >>> bool(np.isclose(np.vdot(fftconv.conv3d(x, w), gy), np.vdot(w, gw)))
    True
    """
    return conv_weight(input, weight_size, grad_output, stride, padding, dilation, groups, algo=algo,
                       backend=backend, fft_size=fft_size, ndim=3)
