"""Max pooling over N spatial dimensions with any kernel and stride; the gradient goes to the max only."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..geometry import IntOrTuple, _expand, _require_positive
from .module import Module


class _MaxPoolNd(Module):
    """Max pooling (no padding, floor output size ``(n - k) // s + 1``), as ``torch.nn.MaxPoolNd``.

    Parameters
    ----------
    kernel_size : int or tuple of int
    stride : int or tuple of int, optional
        Defaults to ``kernel_size`` (non-overlapping windows).

    Notes
    -----
    Ties: the gradient of a window goes to its **first** maximum in row-major order of the window (the element with
    the smallest flat offset inside the window), which is what PyTorch's CPU kernel does. A NaN counts as the
    maximum, so it propagates. With overlapping windows (``stride < kernel_size``) an input that is the maximum of
    several windows receives the sum of their gradients.
    """

    ndim: int = 0

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None):
        self.kernel_size = _expand(kernel_size, self.ndim, "kernel_size")
        self.stride = self.kernel_size if stride is None else _expand(stride, self.ndim, "stride")
        _require_positive(self.kernel_size, "kernel_size")
        _require_positive(self.stride, "stride")

    def _output_size(self, x: np.ndarray) -> tuple[int, ...]:
        if not isinstance(x, np.ndarray) or x.ndim != self.ndim + 2:
            raise ValueError(f"{self!r}: input must be an ndarray of shape (batch, channels, {self.ndim} spatial), "
                             f"got {getattr(x, 'shape', type(x).__name__)}")
        spatial = x.shape[2:]
        if any(k > n for k, n in zip(self.kernel_size, spatial)):
            raise ValueError(f"{self!r}: kernel_size {self.kernel_size} is larger than the input's spatial size "
                             f"{spatial}")
        return tuple((n - k) // s + 1 for n, k, s in zip(spatial, self.kernel_size, self.stride))

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self._output_size(x)
        nd = self.ndim
        windows = sliding_window_view(x, self.kernel_size, axis=tuple(range(2, 2 + nd)))
        windows = windows[(slice(None), slice(None), *(slice(None, (m - 1) * s + 1, s)
                                                       for m, s in zip(out, self.stride)))]
        flat = windows.reshape(*windows.shape[:2 + nd], math.prod(self.kernel_size))  # (S, C, *out, K)
        first_max = flat.argmax(axis=-1)  # argmax returns the first maximum, and a NaN as soon as it meets one
        self._save(input_shape=x.shape, argmax=first_max)
        return np.take_along_axis(flat, first_max[..., None], axis=-1)[..., 0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        with self._consuming_saved() as saved:
            first_max: np.ndarray = saved["argmax"]
            input_shape: tuple[int, ...] = saved["input_shape"]
            if getattr(grad_output, "shape", None) != first_max.shape:
                raise ValueError(f"{self!r}: grad_output has shape {getattr(grad_output, 'shape', None)}, expected "
                                 f"{first_max.shape}")
            # Input coordinate of each window's maximum: window origin (output index * stride) plus the tap offset.
            taps = np.unravel_index(first_max, self.kernel_size)
            grids = np.ogrid[tuple(slice(0, n) for n in first_max.shape)]
            coordinates = (grids[0], grids[1], *(grids[2 + i] * self.stride[i] + taps[i] for i in range(self.ndim)))
            target = np.ravel_multi_index(coordinates, input_shape)
            # bincount sums the gradients of overlapping windows that share a maximum (in float64, then cast back).
            summed = np.bincount(target.ravel(), weights=grad_output.ravel(), minlength=math.prod(input_shape))
            return summed.astype(grad_output.dtype).reshape(input_shape)

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}"
        return text if self.stride == self.kernel_size else f"{text}, stride={self.stride}"


class MaxPool1d(_MaxPoolNd):
    """1-d max pooling; see :class:`_MaxPoolNd`.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import MaxPool1d
    >>> pool = MaxPool1d(2)
    >>> pool.forward(np.array([[[1.0, 3.0, 3.0, 2.0]]]))
    array([[[3., 3.]]])
    >>> pool.backward(np.array([[[10.0, 20.0]]]))
    array([[[ 0., 10., 20.,  0.]]])
    """

    ndim = 1


class MaxPool2d(_MaxPoolNd):
    """2-d max pooling; see :class:`_MaxPoolNd`. A common choice: 2x2 filters and stride 2.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import MaxPool2d
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)[None, None]
    >>> pool = MaxPool2d(2, stride=2)
    >>> pool.forward(x)[0, 0]
    array([[6., 8.],
           [3., 4.]])
    >>> pool.backward(np.ones((1, 1, 2, 2)))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [1., 0., 0., 0.],
           [0., 0., 0., 1.]])
    """

    ndim = 2


class MaxPool3d(_MaxPoolNd):
    """3-d max pooling; see :class:`_MaxPoolNd`.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import MaxPool3d
    >>> MaxPool3d(2).forward(np.arange(64.0).reshape(1, 1, 4, 4, 4)).shape
    (1, 1, 2, 2, 2)
    """

    ndim = 3
