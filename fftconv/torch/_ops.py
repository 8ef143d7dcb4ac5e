"""fftconv's passes as PyTorch custom operators: ``fftconv::conv_pass`` and ``fftconv::conv_pass_backward``.

``conv_pass`` runs one of the three passes (:mod:`fftconv.torch._passes`) and returns ``(result, a_spectrum,
b_spectrum)``: with ``memory="reuse"`` and the FFT algorithm, the spectra of its two operands are extra complex
outputs, flat 1-d tensors (their frequency-major layout, bin padding included, is the plan's business), which
autograd saves for the backward. They are outputs rather than state kept on the side because that is the one form
``torch.compile`` and ``torch.export`` can trace: the fake rule gives their sizes, AOTAutograd saves them between
its forward and backward graphs like any activation, and the reuse works in compiled code as in eager mode. Where a
spectrum is not kept (``memory="recompute"``, no gradient needed, a spatial algorithm) the output is empty.

``conv_pass_backward`` computes both operand gradients of a ``conv_pass`` in one call, transforming the output
gradient once and reading the kept spectra, or transforming the saved operands again (``"recompute"``).

Gradients of gradients. With nothing spectral kept, a backward run with ``create_graph=True`` is built from
differentiable ``conv_pass`` calls (the passes are closed under differentiation), so double backward works. Kept
spectra are not differentiable: a second derivative through them raises an error that says so.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from .. import functional
from ..backends import get_backend
from ..nn import MEMORY_POLICIES
from ..spectral import FFT_SIZE_POLICIES
from . import _passes
from ._passes import OPERANDS, PASSES, PRODUCES, ConvSpec, gradient_pass
from ._tensors import check_tensor, from_numpy, to_numpy
from ._threads import release_torch_threads

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


# ---------------------------------------------------------------------- operator arguments -> ConvSpec
def spec_from_config(dtype: torch.dtype, input_shape, weight_shape, stride, padding, padding_name, dilation, groups,
                     algo, backend, fft_policy, fft_shape) -> ConvSpec:
    """The spec of a call from the operator's arguments (sizes specialised to ints)."""
    valid = (*functional.ALGORITHMS, "auto")
    if algo not in valid:
        raise ValueError(f"algo={algo!r} is unknown; valid: {sorted(valid)}")
    return ConvSpec(_ints(input_shape), _ints(weight_shape), tuple(stride), padding_name or tuple(padding),
                    tuple(dilation), int(groups), _DTYPE_NAMES[dtype], algo, backend,
                    fft_policy if fft_shape is None else tuple(fft_shape))


def _ints(sizes) -> tuple[int, ...]:
    """Sizes as ints; a fake rule traced with symbolic sizes specialises on their values here."""
    return tuple(int(size) for size in sizes)


def _checked_spec(function: str, pass_name: str, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None,
                  config: Sequence) -> ConvSpec:
    """Validate the operands against the convolution the arguments describe; return its spec."""
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    roles = OPERANDS[pass_name]
    check_tensor(a, roles[0], function)
    check_tensor(b, roles[1], function, like=a)
    spec = spec_from_config(a.dtype, *config)
    for role, tensor in zip(roles, (a, b)):
        if _ints(tensor.shape) != spec.shape(role):
            raise ValueError(f"{function}: the {role} operand has shape {_ints(tensor.shape)}, but the convolution "
                             f"{spec.geometry} needs {spec.shape(role)}")
    if bias is not None:
        check_tensor(bias, "bias", function, like=a)
        if pass_name == "weight":
            raise ValueError(f"{function}: the weight pass takes no bias")
        channels = spec.shape(PRODUCES[pass_name])[1]
        if _ints(bias.shape) != (channels,):
            raise ValueError(f"{function}: bias must have shape ({channels},), one value per output channel, got "
                             f"{tuple(bias.shape)}")
    return spec


def _kept_elements(spec: ConvSpec, pass_name: str, keep: Sequence[bool]) -> list[int]:
    """Sizes of the spectrum outputs: the storage of each operand's spectrum where kept, else 0.

    Operand ``i``'s spectrum is kept only if asked, computed (the pass uses the FFT) and read again: by the gradient
    with respect to the other operand, when that gradient's pass uses the FFT too.
    """
    if spec.algo_of(pass_name) != "fft":
        return [0, 0]
    return [spec.spectrum_elements(role) if kept and spec.algo_of(gradient_pass(pass_name, 1 - i)) == "fft"
            else 0 for i, (role, kept) in enumerate(zip(OPERANDS[pass_name], keep))]


# ---------------------------------------------------------------------- fftconv::conv_pass
@torch.library.custom_op("fftconv::conv_pass", mutates_args=())
def conv_pass(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor], pass_name: str,
              input_shape: List[int], weight_shape: List[int], stride: List[int], padding: List[int],
              padding_name: str, dilation: List[int], groups: int, algo: str, backend: Optional[str],
              fft_policy: Optional[str], fft_shape: Optional[List[int]],
              keep: List[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass of a convolution on operands ``a``, ``b`` (see :data:`fftconv.torch._passes.OPERANDS`)."""
    config = (input_shape, weight_shape, stride, padding, padding_name, dilation, groups, algo, backend, fft_policy,
              fft_shape)
    spec = _checked_spec("fftconv::conv_pass", pass_name, a, b, bias, config)
    spectra = [torch.empty(n, dtype=_COMPLEX[a.dtype]) for n in _kept_elements(spec, pass_name, keep)]
    release_torch_threads()
    storages = [s.numpy() if s.numel() else None for s in spectra]
    result = _passes.run_pass(spec, pass_name, to_numpy(a), to_numpy(b), storages)
    result = _passes.add_bias(result, to_numpy(bias))
    return from_numpy(result, a, b, bias), spectra[0], spectra[1]


@conv_pass.register_fake
def _conv_pass_fake(a, b, bias, pass_name, *config_and_keep):
    *config, keep = config_and_keep
    spec = _checked_spec("fftconv::conv_pass", pass_name, a, b, bias, config)
    spectra = [a.new_empty((n,), dtype=_COMPLEX[a.dtype]) for n in _kept_elements(spec, pass_name, keep)]
    return a.new_empty(spec.shape(PRODUCES[pass_name])), spectra[0], spectra[1]


def _setup_context(ctx, inputs, output) -> None:
    a, b, bias, pass_name, *config_and_keep = inputs
    _, a_spectrum, b_spectrum = output
    ctx.mark_non_differentiable(a_spectrum, b_spectrum)
    ctx.pass_name, ctx.config = pass_name, tuple(config_and_keep[:-1])
    ctx.argument_count = len(inputs)
    needs_a, needs_b = ctx.needs_input_grad[:2]
    # The gradient with respect to one operand reads the other operand: its spectrum where kept, else the tensor.
    a_kept, b_kept = a_spectrum.numel() > 0, b_spectrum.numel() > 0
    ctx.save_for_backward(a if needs_b and not a_kept else None, b if needs_a and not b_kept else None,
                          a_spectrum if needs_b and a_kept else None, b_spectrum if needs_a and b_kept else None)


def _backward(ctx, grad, _a_spectrum_grad, _b_spectrum_grad):
    a, b, a_spectrum, b_spectrum = ctx.saved_tensors
    needs = [bool(n) for n in ctx.needs_input_grad[:2]]
    grads: list = [None, None]
    if any(needs):
        if torch.is_grad_enabled() and a_spectrum is None and b_spectrum is None:
            grads = _differentiable_gradients(ctx.pass_name, ctx.config, grad, (a, b), needs)
        else:
            grad_a, grad_b = torch.ops.fftconv.conv_pass_backward(grad, a, b, a_spectrum, b_spectrum, ctx.pass_name,
                                                                  *ctx.config, needs)
            grads = [grad_a if needs[0] else None, grad_b if needs[1] else None]
    grad_bias = grad.sum(dim=(0, *range(2, grad.dim()))) if ctx.needs_input_grad[2] else None
    return (grads[0], grads[1], grad_bias, *(None,) * (ctx.argument_count - 3))


def _differentiable_gradients(pass_name: str, config: tuple, grad: torch.Tensor, operands, needs) -> list:
    """Operand gradients as ``conv_pass`` calls, which autograd can differentiate again (``create_graph=True``)."""
    grads: list = [None, None]
    grad_role = PRODUCES[pass_name]
    for index in (0, 1):
        if needs[index]:
            target = gradient_pass(pass_name, index)
            given = {OPERANDS[pass_name][1 - index]: operands[1 - index], grad_role: grad}
            left, right = (given[role] for role in OPERANDS[target])
            grads[index] = torch.ops.fftconv.conv_pass(left, right, None, target, *config, [False, False])[0]
    return grads


conv_pass.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------- fftconv::conv_pass_backward
def _backward_spec(grad, a, b, pass_name, config) -> ConvSpec:
    function = "fftconv::conv_pass_backward"
    if pass_name not in PASSES:
        raise ValueError(f"{function}: pass_name must be one of {PASSES}, got {pass_name!r}")
    check_tensor(grad, "grad", function)
    spec = spec_from_config(grad.dtype, *config)
    if _ints(grad.shape) != spec.shape(PRODUCES[pass_name]):
        raise ValueError(f"{function}: grad has shape {_ints(grad.shape)}; the {pass_name!r} pass of {spec.geometry} "
                         f"produces {spec.shape(PRODUCES[pass_name])}")
    return spec


@torch.library.custom_op("fftconv::conv_pass_backward", mutates_args=())
def conv_pass_backward(grad: torch.Tensor, a: Optional[torch.Tensor], b: Optional[torch.Tensor],
                       a_spectrum: Optional[torch.Tensor], b_spectrum: Optional[torch.Tensor], pass_name: str,
                       input_shape: List[int], weight_shape: List[int], stride: List[int], padding: List[int],
                       padding_name: str, dilation: List[int], groups: int, algo: str, backend: Optional[str],
                       fft_policy: Optional[str], fft_shape: Optional[List[int]],
                       needs: List[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``conv_pass``'s result with respect to ``a`` and ``b`` (empty where ``needs`` is false)."""
    config = (input_shape, weight_shape, stride, padding, padding_name, dilation, groups, algo, backend, fft_policy,
              fft_shape)
    spec = _backward_spec(grad, a, b, pass_name, config)
    release_torch_threads()
    spectra = [None if s is None else s.numpy() for s in (a_spectrum, b_spectrum)]
    grads = _passes.run_gradients(spec, pass_name, to_numpy(grad), [to_numpy(a), to_numpy(b)], spectra, needs)
    return tuple(grad.new_empty((0,)) if g is None else from_numpy(g, grad, a, b) for g in grads)


@conv_pass_backward.register_fake
def _conv_pass_backward_fake(grad, a, b, a_spectrum, b_spectrum, pass_name, *config_and_needs):
    *config, needs = config_and_needs
    spec = _backward_spec(grad, a, b, pass_name, config)
    return tuple(grad.new_empty(spec.shape(role) if need else (0,)) for role, need in zip(OPERANDS[pass_name], needs))


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        "fftconv.torch: a second derivative (double backward) cannot go through a convolution whose forward kept its "
        "spectra (memory='reuse' with the FFT algorithm): the kept spectra are not differentiable. Use "
        "memory='recompute' (in fftconv.torch.conv*d, FFTConv*d or convert), whose backward is built from "
        "differentiable fftconv operators.")


conv_pass_backward.register_autograd(_no_double_backward)


# ---------------------------------------------------------------------- the call as a Python function sees it
@torch.compiler.assume_constant_result  # options only: torch.compile evaluates it once, at trace time
def checked_call_options(function: str, algo: str, backend, fft_size, memory: str) -> tuple:
    """Validate what a call needs no shapes for; return ``(backend name, FFT size policy, explicit FFT size)``."""
    valid = (*functional.ALGORITHMS, "auto")
    if algo not in valid:
        raise ValueError(f"{function}: algo={algo!r} is unknown; valid: {sorted(valid)}")
    if memory not in MEMORY_POLICIES:
        raise ValueError(f"{function}: memory={memory!r} is unknown; valid: {MEMORY_POLICIES}")
    if isinstance(fft_size, (list, tuple)):
        return backend_name_of(backend, function), None, [int(n) for n in fft_size]
    if fft_size is not None and fft_size not in FFT_SIZE_POLICIES:
        raise ValueError(f"{function}: fft_size must be one of {FFT_SIZE_POLICIES}, a tuple of ints or None, got "
                         f"{fft_size!r}")
    return backend_name_of(backend, function), fft_size, None


def backend_name_of(backend, function: str) -> str | None:
    """A backend argument as an operator can carry it: its registered name (or ``None``, the default)."""
    if backend is None or isinstance(backend, str):
        if backend is not None:
            get_backend(backend)  # raises for unknown or unavailable names
        return backend
    name = getattr(backend, "name", None)
    if isinstance(name, str) and get_backend(name) is backend:
        return name
    raise TypeError(f"{function}: backend must be a backend name such as 'pyfftw', 'scipy' or 'numpy' (configure "
                    f"it with fftconv.configure_pyfftw / configure_scipy), got {backend!r}")


def apply_pass(function: str, pass_name: str, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None,
               input_shape: tuple, weight_shape: tuple, stride: tuple, padding, dilation: tuple, groups: int,
               algo: str, backend, fft_size, memory: str) -> torch.Tensor:
    """Check the tensors and options and run ``fftconv::conv_pass``; the result only.

    The operator validates the geometry and resolves ``algo="auto"`` itself, when it runs (or when its fake rule
    runs under ``torch.compile``, which then specialises on the shapes: FFT sizes, spectra and auto's choices
    depend on them). So this function needs no concrete sizes and traces with dynamic shapes too.
    """
    check_tensor(a, "input", function)
    check_tensor(b, "weight", function, like=a)
    if bias is not None:
        check_tensor(bias, "bias", function, like=a)
    backend_name, fft_policy, fft_shape = checked_call_options(function, algo, backend, fft_size, memory)
    training = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    # Keep operand i's spectrum when the gradient with respect to the other operand will be computed (the operator
    # keeps it only if both passes use the FFT).
    keep = [memory == "reuse" and training and b.requires_grad, memory == "reuse" and training and a.requires_grad]
    padding_sizes, padding_name = ((), padding) if isinstance(padding, str) else (padding, "")
    return torch.ops.fftconv.conv_pass(a, b, bias, pass_name, list(input_shape), list(weight_shape), list(stride),
                                       list(padding_sizes), padding_name, list(dilation), groups, algo,
                                       backend_name, fft_policy, fft_shape, keep)[0]
