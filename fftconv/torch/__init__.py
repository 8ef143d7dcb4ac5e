"""fftconv for PyTorch: convolutions computed by fftconv inside autograd, ``torch.compile`` and ``torch.export``.

- Functions with PyTorch's signatures: :func:`conv1d`, :func:`conv2d`, :func:`conv3d`, :func:`conv_transpose1d`,
  :func:`conv_transpose2d`, :func:`conv_transpose3d`, plus keyword-only ``algo``, ``backend``, ``fft_size`` and
  ``memory``.
- Drop-in modules :class:`FFTConv1d` ... :class:`FFTConvTranspose3d`, subclasses of ``torch.nn``'s.
- :func:`convert` swaps a model's convolutions and reports what it did.

The passes run as the custom operators ``torch.ops.fftconv.conv_pass`` and ``conv_pass_backward`` on CPU float32 and
float64 tensors, shared with numpy without copies. See ``docs/torch.md``.

torch is optional for fftconv: ``import fftconv`` never imports it, and this module says how to install it.
"""

try:
    import torch as _torch
except ImportError as error:  # pragma: no cover - exercised in a process without torch
    raise ImportError('fftconv.torch needs PyTorch 2.4 or later: pip install "fftconv[torch]" (or install torch '
                      "from pytorch.org; a CPU build is enough)") from error

if tuple(int(part) for part in _torch.__version__.split("+")[0].split(".")[:2]) < (2, 4):  # pragma: no cover
    raise ImportError(f"fftconv.torch needs PyTorch 2.4 or later (torch.library.custom_op), found "
                      f"{_torch.__version__}: pip install \"fftconv[torch]\"")

from . import _ops  # noqa: E402  (registers the operators)
from .convert import ConversionEntry, ConversionReport, convert  # noqa: E402
from .functional import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d,  # noqa: E402
                         conv_transpose3d)
from .modules import (FFTConv1d, FFTConv2d, FFTConv3d, FFTConvTranspose1d, FFTConvTranspose2d,  # noqa: E402
                      FFTConvTranspose3d)

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "FFTConv1d", "FFTConv2d", "FFTConv3d", "FFTConvTranspose1d", "FFTConvTranspose2d", "FFTConvTranspose3d",
    "convert", "ConversionReport", "ConversionEntry",
]
