"""``convert(model)``: run a model's ``torch.nn`` convolutions with fftconv, and say what was replaced and why not.

A layer is replaced by changing its class to the fftconv subclass of its own class (``Conv2d`` to
:class:`~fftconv.torch.FFTConv2d`, ...), which adds only four options and replaces only the convolution call. So the
layer keeps its parameter objects (an optimiser built before still updates them), buffers, hooks, device, dtype and
training mode. With ``inplace=False`` (the default) the model is deep-copied first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import nn

from ._tensors import SUPPORTED_DTYPES
from .modules import REPLACEMENTS, _FFTOptions, checked_options


@dataclass(frozen=True)
class ConversionEntry:
    """One convolution layer of a converted model: its qualified name, a description, and what happened to it."""

    name: str
    layer: str
    replaced: bool
    reason: str = ""


@dataclass
class ConversionReport:
    """What :func:`convert` replaced and what it left alone, with the reason; ``print`` it for a table."""

    entries: list[ConversionEntry] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def replaced(self) -> list[str]:
        return [e.name for e in self.entries if e.replaced]

    @property
    def left_alone(self) -> dict[str, str]:
        return {e.name: e.reason for e in self.entries if not e.replaced}

    def __str__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        lines = [f"fftconv.torch.convert ({options}): {len(self.replaced)} of {len(self.entries)} convolution "
                 "layers replaced"]
        width = max((len(e.name) for e in self.entries), default=0)
        for e in self.entries:
            status = "replaced" if e.replaced else f"left alone: {e.reason}"
            lines.append(f"  {e.name:<{width}}  {e.layer}  {status}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ConversionReport(replaced={len(self.replaced)}, left_alone={len(self.left_alone)})"


def _describe(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})"


def _why_not(name: str, module: nn.Module, min_kernel_size: int,
             where: Callable[[str, nn.Module], bool] | None) -> str | None:
    """The reason to leave a convolution alone, or ``None`` to replace it."""
    if isinstance(module, _FFTOptions):
        return "already an fftconv.torch layer"
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters(recurse=False)):
        return "lazy module not initialised yet (run one forward first)"
    if type(module) not in REPLACEMENTS:
        base = next((k for k in type(module).__mro__ if k in REPLACEMENTS), nn.modules.conv._ConvNd)
        return f"{type(module).__name__} is a subclass of torch.nn.{base.__name__} whose own code would be bypassed"
    if module.weight.dtype not in SUPPORTED_DTYPES:
        return f"unsupported dtype {module.weight.dtype} (fftconv computes in float32 and float64)"
    if module.weight.device.type != "cpu":
        return f"unsupported device {module.weight.device} (fftconv runs on the CPU)"
    if max(module.kernel_size) < min_kernel_size:
        return f"kernel too small ({'x'.join(map(str, module.kernel_size))} < min_kernel_size={min_kernel_size})"
    if where is not None and not where(name, module):
        return "excluded by where"
    return None


def convert(model: nn.Module, *, algo: str = "auto", min_kernel_size: int = 1,
            where: Callable[[str, nn.Module], bool] | None = None, memory: str = "reuse",
            inplace: bool = False, backend: str | None = None,
            fft_size: str | Sequence[int] | None = None) -> tuple[nn.Module, ConversionReport]:
    """Replace a model's ``Conv{1,2,3}d`` and ``ConvTranspose{1,2,3}d`` layers by their fftconv versions.

    Parameters
    ----------
    model : torch.nn.Module
    algo, memory, backend, fft_size
        The options of the new layers (see :func:`fftconv.torch.conv2d`).
    min_kernel_size : int, default 1
        Leave layers alone whose largest kernel dimension is smaller (1x1 convolutions are GEMMs already).
    where : callable, optional
        ``where(qualified_name, module) -> bool``; layers for which it returns False are left alone.
    inplace : bool, default False
        Convert ``model`` itself instead of a deep copy.

    Returns
    -------
    (torch.nn.Module, ConversionReport)
        The converted model and a printable report of every convolution layer, replaced or left alone and why
        (kernel too small, unsupported dtype or device, excluded, a subclass with its own code, lazy, already
        converted).

    Examples
    --------
    >>> import torch
    >>> from fftconv.torch import convert
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 5, padding=2))
    >>> converted, report = convert(model, min_kernel_size=3)
    >>> print(report)
    fftconv.torch.convert (algo='auto', memory='reuse', min_kernel_size=3): 1 of 2 convolution layers replaced
      0  Conv2d(3, 8, kernel_size=(1, 1), stride=(1, 1))  left alone: kernel too small (1x1 < min_kernel_size=3)
      2  Conv2d(8, 8, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))  replaced
    >>> type(converted[2]).__name__, type(model[2]).__name__
    ('FFTConv2d', 'Conv2d')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(min_kernel_size, bool) or not isinstance(min_kernel_size, int) or min_kernel_size < 1:
        raise ValueError(f"min_kernel_size must be a positive int, got {min_kernel_size!r}")
    if where is not None and not callable(where):
        raise TypeError(f"where must be a callable (qualified_name, module) -> bool, got {type(where).__name__}")
    options = checked_options("fftconv.torch.convert", algo, backend, fft_size, memory)  # before any change
    if not inplace:
        model = copy.deepcopy(model)
    shown = {"algo": algo, "memory": memory, "min_kernel_size": min_kernel_size}
    shown.update({k: v for k, v in (("backend", backend), ("fft_size", fft_size)) if v is not None})
    report = ConversionReport(options=shown)
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.conv._ConvNd):
            continue
        described = _describe(module)
        reason = _why_not(name, module, min_kernel_size, where)
        if reason is None:
            module.__class__ = REPLACEMENTS[type(module)]
            module._set_fft_options(**options)
        report.entries.append(ConversionEntry(name, described, reason is None, reason or ""))
    return model, report
