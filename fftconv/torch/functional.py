"""``conv{1,2,3}d`` and ``conv_transpose{1,2,3}d`` with PyTorch's signatures, differentiable by autograd.

Six thin wrappers, made by :func:`_make_public`, over two N-dimensional functions, :func:`conv` and
:func:`conv_transpose`. A convolution is fftconv's forward pass; a transposed convolution *is* its input-gradient
pass (``conv_input``), so its gradients are the forward and weight passes. Each gradient is computed only when
autograd asks for it.
"""

from __future__ import annotations

import inspect
from typing import Sequence, Union

import torch

from ..geometry import IntOrTuple, Padding, _expand
from ._ops import apply_pass
from ._tensors import check_tensor

Tensor = torch.Tensor
FFTSize = Union[str, Sequence[int], None]


def _batched(tensor: Tensor, ndim: int, name: str, function: str) -> tuple[Tensor, bool]:
    """``tensor`` with a batch axis, and whether one was added (PyTorch accepts unbatched ``(C, *space)``)."""
    check_tensor(tensor, name, function)
    if tensor.dim() == ndim + 1:
        return tensor.unsqueeze(0), True
    if tensor.dim() != ndim + 2:
        raise ValueError(f"{function}: {name} must have {ndim + 2} dimensions (batch, channels, {ndim} spatial) or "
                         f"{ndim + 1} (unbatched), got shape {tuple(tensor.shape)}")
    return tensor, False


def _check_weight(weight: Tensor, ndim: int, layout: str, function: str) -> None:
    check_tensor(weight, "weight", function)
    if weight.dim() != ndim + 2:
        raise ValueError(f"{function}: weight must have {ndim + 2} dimensions ({layout}, {ndim} spatial), got shape "
                         f"{tuple(weight.shape)}")


def _sizes(tensor: Tensor) -> tuple:
    """The shape: ints, or symbols while ``torch.compile`` traces with dynamic shapes (the operator's fake rule then
    specialises on them: FFT sizes, spectra and ``algo="auto"``'s choices depend on the shapes)."""
    return tuple(tensor.shape)


def _hyper(value, ndim: int, name: str):
    """An int or sequence of ints as a tuple (hashable); strings (``padding="same"``) pass through."""
    return value if isinstance(value, str) else _expand(value, ndim, name)


def conv(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1, padding: Padding = 0,
         dilation: IntOrTuple = 1, groups: int = 1, *, algo: str = "auto", backend: str | None = None,
         fft_size: FFTSize = None, memory: str = "reuse", ndim: int) -> Tensor:
    """N-dimensional convolution (cross-correlation); see :func:`conv2d`."""
    function = f"fftconv.torch.conv{ndim}d"
    input, unbatched = _batched(input, ndim, "input", function)
    _check_weight(weight, ndim, "out_channels, in_channels // groups", function)
    y = apply_pass(function, "forward", input, weight, bias, _sizes(input), _sizes(weight),
                   _hyper(stride, ndim, "stride"), _hyper(padding, ndim, "padding"), _hyper(dilation, ndim, "dilation"),
                   groups, algo, backend, fft_size, memory)
    return y.squeeze(0) if unbatched else y


def transposed_output_size(input_size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                           padding: Sequence[int], output_padding: Sequence[int],
                           dilation: Sequence[int]) -> tuple[int, ...]:
    """Spatial output size of a transposed convolution, PyTorch's formula:
    ``(n - 1) * s - 2 p + d (k - 1) + output_padding + 1``.

    Examples
    --------
    >>> transposed_output_size((8,), (3,), (2,), (1,), (1,), (1,))
    (16,)
    """
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, op, d in zip(
        input_size, kernel, stride, padding, output_padding, dilation))


def conv_transpose(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,
                   padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                   dilation: IntOrTuple = 1, *, algo: str = "auto", backend: str | None = None,
                   fft_size: FFTSize = None, memory: str = "reuse", ndim: int) -> Tensor:
    """N-dimensional transposed convolution: the input-gradient pass of the convolution it transposes."""
    function = f"fftconv.torch.conv_transpose{ndim}d"
    input, unbatched = _batched(input, ndim, "input", function)
    _check_weight(weight, ndim, "in_channels, out_channels // groups", function)
    if isinstance(padding, str):
        raise ValueError(f"{function}: padding must be an int or a tuple of ints (no 'same' or 'valid' for "
                         f"transposed convolutions, as in PyTorch), got {padding!r}")
    stride, padding, dilation = (_expand(v, ndim, n) for v, n in ((stride, "stride"), (padding, "padding"),
                                                                   (dilation, "dilation")))
    output_padding = _expand(output_padding, ndim, "output_padding")
    if any(op < 0 or op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{function}: output_padding={output_padding} must be non-negative and smaller than either "
                         f"stride={stride} or dilation={dilation} in each dimension")
    input_size, kernel = _sizes(input), _sizes(weight)
    if input_size[1] != kernel[0]:
        raise ValueError(f"{function}: input has {input_size[1]} channels but weight.shape[0] = {kernel[0]}; "
                         "a transposed convolution's weight is (in_channels, out_channels // groups, *kernel)")
    size = transposed_output_size(input_size[2:], kernel[2:], stride, padding, output_padding, dilation)
    if any(n < 1 for n in size):
        raise ValueError(f"{function}: the output would have spatial size {size}; reduce padding={padding} or use a "
                         "larger input or kernel")
    input_shape = (input_size[0], kernel[1] * groups, *size)
    # output_padding >= stride (allowed when the dilation is larger) gives outputs that only the convolution of the
    # output size would read: zero rows appended to the input make it that convolution's output gradient.
    read = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(size, padding, dilation,
                                                                            kernel[2:], stride))
    if read != input_size[2:]:
        extra = [0] * (2 * ndim)
        extra[1::2] = reversed([r - n for r, n in zip(read, input_size[2:])])
        input = torch.nn.functional.pad(input, extra)
    y = apply_pass(function, "input", input, weight, bias, input_shape, kernel, stride, padding,
                   dilation, groups, algo, backend, fft_size, memory)
    return y.squeeze(0) if unbatched else y


# ---------------------------------------------------------------------- public 1-d/2-d/3-d wrappers
_OPTIONS = """\
algo : {"auto", "fft", "im2col", "direct"}, default "auto"
    ``"fft"``: the paper's per-frequency complex GEMMs; ``"im2col"``: unfold + GEMM; ``"direct"``: a float64
    reference loop; ``"auto"``: per pass, the algorithm :func:`fftconv.explain` reports for this geometry.
backend : str, optional
    FFT library for ``"fft"``: ``"pyfftw"``, ``"scipy"`` or ``"numpy"``; default :func:`fftconv.get_backend`.
fft_size : {"fast", "pow2", "minimal"} or tuple of int, optional
    FFT size policy for ``"fft"``; default ``"fast"``.
memory : {"reuse", "recompute"}, default "reuse"
    ``"reuse"``: the forward keeps the spectra its backward reads (each map and kernel transformed once per
    step); ``"recompute"``: nothing spectral is kept, the backward transforms the saved tensors again (less memory,
    and gradients of gradients work)."""

_DOCS = {
    "conv": """{n}-d convolution (cross-correlation) with ``torch.nn.functional.conv{n}d``'s signature, computed by
fftconv and differentiable by autograd.

Parameters
----------
input : Tensor, shape (batch, in_channels, {dims}) or (in_channels, {dims})
    CPU, float32 or float64; shared with numpy without a copy.
weight : Tensor, shape (out_channels, in_channels // groups, {kdims})
bias : Tensor, shape (out_channels,), optional
stride, padding, dilation, groups
    As in PyTorch; ``padding`` may be an int, a tuple, ``"valid"`` or ``"same"``.
{options}

Returns
-------
Tensor, shape (batch, out_channels, {odims})

Examples
--------
>>> import torch, fftconv.torch as ft
>>> x = torch.randn({xs}, dtype=torch.float64, requires_grad=True)
>>> w = torch.randn({ws}, dtype=torch.float64, requires_grad=True)
>>> y = ft.conv{n}d(x, w, padding="same", algo="fft")
>>> torch.allclose(y, torch.nn.functional.conv{n}d(x, w, padding="same"))
True
>>> y.square().sum().backward()
>>> x.grad.shape == x.shape, w.grad.shape == w.shape
(True, True)
""",
    "conv_transpose": """{n}-d transposed convolution with ``torch.nn.functional.conv_transpose{n}d``'s signature,
computed by fftconv's input-gradient pass and differentiable by autograd.

Parameters
----------
input : Tensor, shape (batch, in_channels, {dims}) or (in_channels, {dims})
weight : Tensor, shape (in_channels, out_channels // groups, {kdims})
bias : Tensor, shape (out_channels,), optional
stride, padding, output_padding, groups, dilation
    As in PyTorch (integer padding only).
{options}

Returns
-------
Tensor, shape (batch, out_channels, {odims}), with ``o = (n - 1) * stride - 2 * padding + dilation * (k - 1) +
output_padding + 1``

Examples
--------
>>> import torch, fftconv.torch as ft
>>> x = torch.randn({xs}, dtype=torch.float64)
>>> w = torch.randn({wts}, dtype=torch.float64)
>>> y = ft.conv_transpose{n}d(x, w, stride=2, padding=1, output_padding=1)
>>> torch.allclose(y, torch.nn.functional.conv_transpose{n}d(x, w, stride=2, padding=1, output_padding=1))
True
""",
}

_EXAMPLE_SHAPES = {1: ((2, 3, 16), (4, 3, 5), (3, 4, 5)), 2: ((2, 3, 8, 8), (4, 3, 3, 3), (3, 4, 3, 3)),
                   3: ((1, 2, 6, 6, 6), (3, 2, 3, 3, 3), (2, 3, 3, 3, 3))}


def _make_public(kind: str, ndim: int):
    implementation = {"conv": conv, "conv_transpose": conv_transpose}[kind]
    name = f"{kind}{ndim}d"

    def wrapper(*args, **kwargs):
        return implementation(*args, ndim=ndim, **kwargs)

    letters = "dhw"[-ndim:]
    xs, ws, wts = _EXAMPLE_SHAPES[ndim]
    signature = inspect.signature(implementation)
    wrapper.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "ndim"])
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__module__ = __name__
    wrapper.__doc__ = _DOCS[kind].format(
        n=ndim, options=_OPTIONS, xs=xs, ws=ws, wts=wts, dims=", ".join(f"{c}_in" for c in letters),
        kdims=", ".join(f"k{c}" for c in letters), odims=", ".join(f"{c}_out" for c in letters))
    return wrapper


conv1d, conv2d, conv3d = (_make_public("conv", n) for n in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_make_public("conv_transpose", n) for n in (1, 2, 3))
