"""``FFTConv{1,2,3}d`` and ``FFTConvTranspose{1,2,3}d``: drop-in replacements for ``torch.nn``'s convolutions.

Each class subclasses its ``torch.nn`` counterpart and only replaces the convolution call, so constructor, parameters,
initialisation, ``state_dict`` keys, ``padding_mode`` handling and ``repr`` are PyTorch's own; a state dict saved
from either loads into the other. Four keyword-only options choose how fftconv computes: ``algo``, ``backend``,
``fft_size`` and ``memory`` (see :func:`fftconv.torch.conv2d`).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from . import functional
from ._ops import checked_call_options

FFTSize = Union[str, Sequence[int], None]


def checked_options(owner: str, algo: str = "auto", backend: str | None = None, fft_size: FFTSize = None,
                    memory: str = "reuse") -> dict:
    """The four fftconv options, validated (errors name ``owner``); a backend instance becomes its name."""
    backend_name, _, _ = checked_call_options(owner, algo, backend, fft_size, memory)
    return {"algo": algo, "backend": backend_name, "memory": memory,
            "fft_size": tuple(fft_size) if isinstance(fft_size, (list, tuple)) else fft_size}


class _FFTOptions:
    """The options fftconv adds to a ``torch.nn`` convolution: validated once, shown in ``repr`` when not default.

    Subclasses list this class before their ``torch.nn`` base, so ``__init__`` takes the options and passes every
    other argument on.
    """

    ndim: int = 0
    _fft_defaults = {"algo": "auto", "backend": None, "fft_size": None, "memory": "reuse"}

    def __init__(self, *args, algo: str = "auto", backend: str | None = None, fft_size: FFTSize = None,
                 memory: str = "reuse", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_fft_options(algo, backend, fft_size, memory)

    def _set_fft_options(self, algo: str = "auto", backend: str | None = None, fft_size: FFTSize = None,
                         memory: str = "reuse") -> None:
        options = checked_options(type(self).__name__, algo, backend, fft_size, memory)
        self.algo, self.backend, self.fft_size, self.memory = (options[k] for k in ("algo", "backend", "fft_size",
                                                                                    "memory"))

    def _fft_options(self) -> dict:
        return {"algo": self.algo, "backend": self.backend, "fft_size": self.fft_size, "memory": self.memory}

    def extra_repr(self) -> str:
        options = [f"{key}={value!r}" for key, value in self._fft_options().items()
                   if value != self._fft_defaults[key]]
        return ", ".join([super().extra_repr(), *options])


class _FFTConvNd(_FFTOptions):
    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":  # as torch.nn.ConvNd: pad explicitly, then convolve without padding
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return functional.conv(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                               ndim=self.ndim, **self._fft_options())


class _FFTConvTransposeNd(_FFTOptions):
    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              self.ndim, self.dilation)
        return functional.conv_transpose(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                         self.groups, self.dilation, ndim=self.ndim, **self._fft_options())


_DOC = """{n}-d {kind} computed by fftconv: a drop-in replacement for ``torch.nn.{base}``.

Takes every argument of ``torch.nn.{base}`` (positional or keyword, including ``padding_mode``, ``device`` and
``dtype``) and has its parameters, initialisation and ``state_dict`` keys; adds four keyword-only options.

Parameters
----------
*args, **kwargs
    As ``torch.nn.{base}``.
algo : {{"auto", "fft", "im2col", "direct"}}, default "auto"
backend : str, optional
fft_size : {{"fast", "pow2", "minimal"}} or tuple of int, optional
memory : {{"reuse", "recompute"}}, default "reuse"
    See :func:`fftconv.torch.conv2d`.

Examples
--------
>>> import torch
>>> from fftconv.torch import FFT{base}
>>> layer = FFT{base}({arguments}, algo="fft", dtype=torch.float64)
>>> reference = torch.nn.{base}({arguments}, dtype=torch.float64)
>>> reference.load_state_dict(layer.state_dict())
<All keys matched successfully>
>>> x = torch.randn({shape}, dtype=torch.float64)
>>> torch.allclose(layer(x), reference(x))
True
"""


def _documented(cls: type) -> type:
    base = next(klass for klass in cls.__mro__ if klass.__module__.startswith("torch.nn"))
    transposed = issubclass(cls, _FFTConvTransposeNd)
    cls.__doc__ = _DOC.format(
        n=cls.ndim, base=base.__name__, kind="transposed convolution" if transposed else "convolution",
        arguments="4, 6, 3, stride=2, padding=1, output_padding=1" if transposed else "4, 6, 3, padding=1",
        shape=(2, 4, *(8,) * cls.ndim))
    return cls


@_documented
class FFTConv1d(_FFTConvNd, nn.Conv1d):
    ndim = 1


@_documented
class FFTConv2d(_FFTConvNd, nn.Conv2d):
    ndim = 2


@_documented
class FFTConv3d(_FFTConvNd, nn.Conv3d):
    ndim = 3


@_documented
class FFTConvTranspose1d(_FFTConvTransposeNd, nn.ConvTranspose1d):
    ndim = 1


@_documented
class FFTConvTranspose2d(_FFTConvTransposeNd, nn.ConvTranspose2d):
    ndim = 2


@_documented
class FFTConvTranspose3d(_FFTConvTransposeNd, nn.ConvTranspose3d):
    ndim = 3


#: Each ``torch.nn`` convolution class and its fftconv replacement.
REPLACEMENTS: dict[type, type] = {nn.Conv1d: FFTConv1d, nn.Conv2d: FFTConv2d, nn.Conv3d: FFTConv3d,
                                  nn.ConvTranspose1d: FFTConvTranspose1d, nn.ConvTranspose2d: FFTConvTranspose2d,
                                  nn.ConvTranspose3d: FFTConvTranspose3d}
