"""What fftconv.torch accepts, and how tensors cross to numpy and back without copies.

CPU tensors of dtype float32 or float64 are shared with numpy: ``tensor.numpy()`` views the tensor's memory with its
strides (contiguous or not, nothing is copied) and ``torch.from_numpy`` wraps fftconv's results. Anything else is
refused with an error that names what is supported: converting silently would hide a device transfer or a change
of precision.
"""

from __future__ import annotations

import numpy as np
import torch

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def check_tensor(tensor, name: str, function: str, like: torch.Tensor | None = None) -> None:
    """Raise unless ``tensor`` is a dense CPU float32/float64 tensor (of ``like``'s dtype, when given)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{function}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":  # torch.compile and torch.export trace with fake tensors that report "cpu"
        raise ValueError(f"{function}: {name} is on device '{tensor.device}', but fftconv.torch computes on the CPU "
                         f"only (numpy, scipy, pyFFTW); move it with .cpu(), or use torch.nn.functional on "
                         f"'{tensor.device.type}'")
    if tensor.layout != torch.strided:
        raise ValueError(f"{function}: {name} has layout {tensor.layout}; only dense (torch.strided) tensors are "
                         "supported, convert with .to_dense()")
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{function}: {name} has dtype {tensor.dtype}; fftconv.torch supports torch.float32 and "
                        f"torch.float64. Convert explicitly, e.g. {name}.float() (a module: module.float())")
    if like is not None and tensor.dtype != like.dtype:
        raise TypeError(f"{function}: {name} has dtype {tensor.dtype} but input has dtype {like.dtype}; mixed "
                        "precision is not supported, cast both to the same float dtype")


def to_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    """A numpy view of a CPU tensor's memory, with its strides (no copy)."""
    return None if tensor is None else tensor.detach().numpy()


def from_numpy(array: np.ndarray, *inputs: torch.Tensor | None) -> torch.Tensor:
    """Wrap fftconv's result as a tensor (no copy), copying only if it could share memory with an input.

    Operators must return new memory; fftconv's passes always allocate their results, so the copy is a guard.
    """
    if any(t is not None and t.numel() and np.may_share_memory(array, t.detach().numpy()) for t in inputs):
        array = array.copy()
    return torch.from_numpy(array)
