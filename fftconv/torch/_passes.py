"""The numpy side of fftconv.torch's operators: the three passes of one convolution, and what they share.

A convolution relates three arrays, here called *roles* after the spectra of :class:`~fftconv.SpectralPlan`:
``"input"`` (x), ``"weight"`` (w) and ``"grad_output"`` (y, or the gradient of y). Each of the paper's passes takes
two roles and produces the third:

===========  ============================  ==============  ==========================================
pass         operands (in call order)      produces        PyTorch op it is
===========  ============================  ==============  ==========================================
forward      input, weight                 grad_output     ``conv{n}d``
input        grad_output, weight           input           ``conv_transpose{n}d``, ``grad.conv{n}d_input``
weight       input, grad_output            weight          ``grad.conv{n}d_weight``
===========  ============================  ==============  ==========================================

The gradient of a pass with respect to one operand is the pass that produces that operand's role from the other
operand and the gradient of the result: the three passes are closed under differentiation. So one operator with a
``pass_name`` serves convolution, transposed convolution and every derivative of either, and the spectra of a
pass's operands are exactly the spectra its backward needs (the paper's reuse).

Nothing here imports torch: the operators in :mod:`fftconv.torch._ops` hand numpy views of tensors to these
functions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .. import functional
from ..choose import choose
from ..geometry import ConvGeometry
from ..passes import PASSES
from ..spectral import SpectralPlan

ROLES = ("input", "weight", "grad_output")
#: The role each pass produces and the roles of its operands, in the order the pass takes them.
PRODUCES = {"forward": "grad_output", "input": "input", "weight": "weight"}
OPERANDS = {"forward": ("input", "weight"), "input": ("grad_output", "weight"), "weight": ("input", "grad_output")}
PASS_PRODUCING = {role: pass_name for pass_name, role in PRODUCES.items()}

FFTSize = Union[str, tuple[int, ...], None]


def gradient_pass(pass_name: str, operand: int) -> str:
    """The pass that computes the gradient of ``pass_name``'s result with respect to operand ``operand`` (0 or 1).

    Examples
    --------
    >>> [gradient_pass("forward", i) for i in (0, 1)]
    ['input', 'weight']
    >>> [gradient_pass("input", i) for i in (0, 1)]  # transposed convolution: back through conv and weight pass
    ['forward', 'weight']
    """
    return PASS_PRODUCING[OPERANDS[pass_name][operand]]


@dataclass(frozen=True)
class ConvSpec:
    """Everything that fixes one convolution's computation except the data: shapes, hyper-parameters, dtype,
    algorithm (``"fft"``, ``"im2col"``, ``"direct"`` or ``"auto"``), backend and FFT size.

    ``padding`` is a tuple of ints, ``"same"`` or ``"valid"`` (as :meth:`ConvGeometry.from_shapes` takes it).
    Hashable: plans and geometries are cached per spec.
    """

    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Union[tuple[int, ...], str]
    dilation: tuple[int, ...]
    groups: int
    dtype: str
    algo: str
    backend: str | None = None
    fft_size: FFTSize = None

    @property
    def geometry(self) -> ConvGeometry:
        return _geometry(self.input_shape, self.weight_shape, self.stride, self.padding, self.dilation, self.groups)

    @property
    def plan(self) -> SpectralPlan:
        return _plan(self.geometry, self.dtype, self.backend, self.fft_size)

    def algo_of(self, pass_name: str) -> str:
        """The algorithm that runs ``pass_name``: ``algo``, or the one ``"auto"`` chooses for this pass."""
        if self.algo != "auto":
            return self.algo
        return chosen_algorithm(self.geometry, pass_name, self.dtype, self.backend, self.fft_size)

    def shape(self, role: str) -> tuple[int, ...]:
        g = self.geometry
        return {"input": g.full_input_shape, "weight": g.full_weight_shape, "grad_output": g.full_output_shape}[role]

    def hyper(self) -> tuple:
        """``(stride, padding, dilation, groups)`` as :mod:`fftconv.functional` takes them."""
        return self.stride, self.padding, self.dilation, self.groups

    def spectrum_elements(self, role: str) -> int:
        """Complex elements of the flat storage that holds ``role``'s spectrum (bin padding included)."""
        return spectrum_elements(self.plan, role)


@functools.lru_cache(maxsize=512)
def _geometry(input_shape, weight_shape, stride, padding, dilation, groups) -> ConvGeometry:
    return ConvGeometry.from_shapes(input_shape, weight_shape, stride, padding, dilation, groups)


@functools.lru_cache(maxsize=128)  # a plan is small (shapes only); the backend owns the FFT plans
def _plan(geometry: ConvGeometry, dtype: str, backend: str | None, fft_size: FFTSize) -> SpectralPlan:
    return SpectralPlan.create(geometry, np.dtype(dtype), backend, fft_size)


# ---------------------------------------------------------------------- where this package meets fftconv's core
def spectrum_elements(plan: SpectralPlan, role: str) -> int:
    """Complex elements of one spectrum's storage: its bytes (bin padding included) over the complex item size."""
    complex_item = np.result_type(plan.dtype, np.complex64).itemsize
    return plan.spectrum_bytes()[role] // complex_item


def spectrum_view(plan: SpectralPlan, role: str, storage: np.ndarray) -> np.ndarray:
    """The ``role`` spectrum, as the plan's passes read it, over flat complex ``storage``."""
    return plan.spectrum_from(role, storage)


def chosen_algorithm(geometry: ConvGeometry, pass_name: str, dtype, backend: str | None, fft_size: FFTSize) -> str:
    """The algorithm ``algo="auto"`` runs for one pass (fftconv's chooser, cached per geometry)."""
    return choose(geometry, pass_name, dtype, backend=backend, fft_size=fft_size).algo


# ---------------------------------------------------------------------- the passes
_TRANSFORMS = {"input": "transform_input", "weight": "transform_weight", "grad_output": "transform_grad_output"}
_PLAN_PASSES = {"forward": "forward", "input": "grad_input", "weight": "grad_weight"}


def transform(spec: ConvSpec, role: str, array: np.ndarray, storage: np.ndarray | None = None) -> np.ndarray:
    """The spectrum of ``array`` in ``role``, written into flat ``storage`` if given (kept), else a fresh one."""
    plan = spec.plan
    out = None if storage is None else spectrum_view(plan, role, storage)
    return getattr(plan, _TRANSFORMS[role])(array, out=out)


def spectral_pass(spec: ConvSpec, pass_name: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One pass on operand spectra, in :data:`OPERANDS` order."""
    return getattr(spec.plan, _PLAN_PASSES[pass_name])(left, right)


def spatial_pass(spec: ConvSpec, pass_name: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One pass on arrays with a spatial algorithm (or ``"fft"`` without reuse), through :mod:`fftconv.functional`."""
    options = {"algo": spec.algo_of(pass_name), "backend": spec.backend, "fft_size": spec.fft_size}
    if pass_name == "forward":
        return functional.conv(left, right, None, *spec.hyper(), **options)
    if pass_name == "input":
        return functional.conv_input(spec.shape("input"), right, left, *spec.hyper(), **options)
    return functional.conv_weight(left, spec.shape("weight"), right, *spec.hyper(), **options)


def add_bias(result: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if bias is not None:
        result += bias.reshape(-1, *(1,) * (result.ndim - 2))
    return result


def run_pass(spec: ConvSpec, pass_name: str, left: np.ndarray, right: np.ndarray,
             storages: Sequence[np.ndarray | None] = (None, None)) -> np.ndarray:
    """``pass_name`` on its two operands; with ``"fft"``, the operands' spectra go into ``storages`` where given.

    A storage that is given is kept by the caller for the backward pass (``memory="reuse"``); the others are
    transient.
    """
    if spec.algo_of(pass_name) != "fft":
        return spatial_pass(spec, pass_name, left, right)
    roles = OPERANDS[pass_name]
    spectra = [transform(spec, role, array, storage) for role, array, storage in zip(roles, (left, right), storages)]
    return spectral_pass(spec, pass_name, *spectra)


def run_gradients(spec: ConvSpec, pass_name: str, grad: np.ndarray, operands: Sequence[np.ndarray | None],
                  spectra: Sequence[np.ndarray | None], needs: Sequence[bool]) -> list[np.ndarray | None]:
    """Gradients of ``pass_name``'s result with respect to its operands, where ``needs`` says.

    ``operands`` are the arrays and ``spectra`` the flat spectrum storages the forward kept (either may be ``None``
    where not kept). A gradient pass whose other operand's spectrum was kept reads it with the FFT; otherwise it
    runs its own algorithm, transforming the operand again if that is the FFT (``"recompute"``). The gradient's own
    spectrum is computed once and shared by both gradient passes, as in the paper.
    """
    grad_role = PRODUCES[pass_name]
    grad_spectrum = None
    grads: list[np.ndarray | None] = [None, None]
    for index in (0, 1):
        if not needs[index]:
            continue
        other = 1 - index
        target = gradient_pass(pass_name, index)
        given = {OPERANDS[pass_name][other]: (operands[other], spectra[other]), grad_role: (grad, None)}
        roles = OPERANDS[target]
        if spectra[other] is not None or spec.algo_of(target) == "fft":
            if grad_spectrum is None:
                grad_spectrum = transform(spec, grad_role, grad)
            computed = {grad_role: grad_spectrum}
            for role in roles:
                if role not in computed:
                    array, storage = given[role]
                    computed[role] = (spectrum_view(spec.plan, role, storage) if storage is not None
                                      else transform(spec, role, array))
            grads[index] = spectral_pass(spec, target, *(computed[role] for role in roles))
        else:
            grads[index] = spatial_pass(spec, target, *(given[role][0] for role in roles))
    return grads
