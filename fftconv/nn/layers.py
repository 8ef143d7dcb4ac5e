"""The other building blocks of a classic conv net: fully connected, locally connected, ReLU, Flatten, and the container.

All follow :class:`~fftconv.nn.Module`: ``forward`` saves what ``backward`` needs, ``backward`` returns the input
gradient and adds the parameter gradients.

Between ``forward`` and ``backward`` the layers keep their own copy of what they read from the input (so changing the
input array in place does not change the gradients), but :class:`Linear` and the locally connected layers read their
*current* weight in ``backward``: a copy would double their parameter memory, the largest of a network. Update their
parameters after ``backward``, as an optimiser step does. (Convolution weights are small; the convolution layers copy
them, see :mod:`fftconv.nn.conv`.)
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._spatial import crop_padding, pad_input, tap_windows
from ..geometry import ConvGeometry, IntOrTuple, Padding, _expand
from .module import Module, Parameter, check_input, fan_in_uniform, positive_int, resolve_dtype, resolve_rng
from .workspace import Workspace


class Linear(Module):
    """Fully connected layer: ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : float32 or float64, default float32
    rng : int or numpy.random.Generator, optional
        Seed or generator for ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` weights and biases.

    Attributes
    ----------
    weight, grad_weight : ndarray, shape (out_features, in_features)
    bias, grad_bias : ndarray, shape (out_features,), or None

    Notes
    -----
    ``backward`` reads the current ``weight`` (for the input gradient) and a copy of the input taken by ``forward``
    (for the weight gradient): change the weight in place only after ``backward``.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Linear
    >>> layer = Linear(4, 3, dtype=np.float64, rng=0)
    >>> x = np.ones((2, 4))
    >>> y = layer.forward(x)
    >>> gx = layer.backward(np.ones_like(y))
    >>> bool(np.allclose(layer.grad_weight, 2 * np.ones((3, 4)))), bool(np.allclose(layer.grad_bias, 2))
    (True, True)
    >>> Linear.parameter_count(40_000, 40_000)  # a 200x200 image to 40K hidden units, with biases
    1600040000
    """

    _parameter_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype: Any = np.float32,
                 rng: int | np.random.Generator | None = None):
        shapes = self.parameter_shapes(in_features, out_features, bias)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = resolve_dtype(dtype)
        self.grad_weight = np.zeros(shapes["weight"], dtype=self.dtype)
        self.grad_bias = np.zeros(shapes["bias"], dtype=self.dtype) if bias else None
        self.reset_parameters(rng)

    @classmethod
    def parameter_shapes(cls, in_features: int, out_features: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (positive_int(out_features, "out_features"), positive_int(in_features, "in_features"))}
        if bias:
            shapes["bias"] = (shapes["weight"][0],)
        return shapes

    def reset_parameters(self, rng: int | np.random.Generator | None = None) -> None:
        """Draw weight, then bias, from ``U(-1/sqrt(in_features), 1/sqrt(in_features))``, in place (optimisers
        built on :meth:`parameters` keep updating the same arrays)."""
        generator = resolve_rng(rng)
        self._initialise("weight", fan_in_uniform(generator, self.grad_weight.shape, self.in_features, self.dtype))
        self._initialise("bias", fan_in_uniform(generator, self.grad_bias.shape, self.in_features, self.dtype)
                         if self.grad_bias is not None else None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(x, self.dtype, 2, self)
        self._check_parameters()
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: input has {x.shape[1]} features (shape {x.shape}), expected "
                             f"{self.in_features}; put a Flatten() before Linear for image inputs")
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        if self.training:
            self._save(input=np.array(x))  # a plain in-memory copy, whatever x is (a view, a memmap)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        check_input(grad_output, self.dtype, 2, self, "grad_output")
        self._check_parameters()
        with self._consuming_saved() as saved:
            x = saved["input"]
            if grad_output.shape != (x.shape[0], self.out_features):
                raise ValueError(f"{self!r}: grad_output has shape {grad_output.shape}, expected "
                                 f"{(x.shape[0], self.out_features)}")
            grad_input = grad_output @ self.weight
            self.grad_weight += grad_output.T @ x
            if self.grad_bias is not None:
                self.grad_bias += grad_output.sum(axis=0)
        return grad_input

    def extra_repr(self) -> str:
        parts = [f"{self.in_features}", f"{self.out_features}"]
        if self.bias is None:
            parts.append("bias=False")
        if self.dtype != np.float32:
            parts.append(f"dtype={self.dtype}")
        return ", ".join(parts)


class _LocallyConnectedNd(Module):
    """Locally connected layer: a convolution whose kernels are *not* shared across output positions.

    Every output position ``p`` has its own filter bank ``weight[p]`` of shape ``(out_channels, in_channels,
    *kernel_size)`` and its own bias ``bias[:, p]``. For example, for a registered 200x200 image, 40K
    hidden units with 10x10 filters need 4M weights, against 10K for a convolution with 100 filters.

    Computed as one small matrix product per output position over the unfolded input (no FFT: nothing is shared).

    Parameters
    ----------
    in_channels, out_channels : int
    input_size : int or tuple of int
        Spatial input size; fixed, because the number of filters depends on it.
    kernel_size, stride : int or tuple of int
    padding : int, tuple of int, "valid" or "same"
        Zero padding, as for convolutions (``"same"`` needs stride 1).
    bias : bool, default True
    dtype, rng
        As for :class:`Linear`; ``fan_in = in_channels * prod(kernel_size)``.

    Attributes
    ----------
    weight, grad_weight : ndarray, shape (*output_size, out_channels, in_channels, *kernel_size)
    bias, grad_bias : ndarray, shape (out_channels, *output_size), or None

    Notes
    -----
    ``backward`` reads the current ``weight`` (for the input gradient) and the unfolded copy of the input taken by
    ``forward`` (for the weight gradient): change the weight in place only after ``backward``.
    """

    ndim: int = 0
    _parameter_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, input_size: IntOrTuple, kernel_size: IntOrTuple,
                 stride: IntOrTuple = 1, padding: Padding = 0, bias: bool = True, *, dtype: Any = np.float32,
                 rng: int | np.random.Generator | None = None):
        shapes = self.parameter_shapes(in_channels, out_channels, input_size, kernel_size, stride, padding, bias)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.input_size = _expand(input_size, self.ndim, "input_size")
        self.kernel_size = _expand(kernel_size, self.ndim, "kernel_size")
        self.stride, self.padding = _expand(stride, self.ndim, "stride"), padding
        self.output_size = shapes["weight"][:self.ndim]
        self.dtype = resolve_dtype(dtype)
        self.grad_weight = np.zeros(shapes["weight"], dtype=self.dtype)
        self.grad_bias = np.zeros(shapes["bias"], dtype=self.dtype) if bias else None
        self.reset_parameters(rng)

    @classmethod
    def _geometry(cls, batch: int, in_channels: int, out_channels: int, input_size: IntOrTuple,
                  kernel_size: IntOrTuple, stride: IntOrTuple, padding: Padding) -> ConvGeometry:
        """The equivalent convolution's geometry: ConvGeometry validates sizes, stride and padding."""
        input_size = _expand(input_size, cls.ndim, "input_size")
        kernel = _expand(kernel_size, cls.ndim, "kernel_size")
        in_channels, out_channels = positive_int(in_channels, "in_channels"), positive_int(out_channels, "out_channels")
        return ConvGeometry.from_shapes((batch, in_channels, *input_size), (out_channels, in_channels, *kernel),
                                        stride, padding)

    @classmethod
    def parameter_shapes(cls, in_channels: int, out_channels: int, input_size: IntOrTuple, kernel_size: IntOrTuple,
                         stride: IntOrTuple = 1, padding: Padding = 0,
                         bias: bool = True) -> dict[str, tuple[int, ...]]:
        g = cls._geometry(1, in_channels, out_channels, input_size, kernel_size, stride, padding)
        shapes = {"weight": (*g.output_shape, g.out_channels, g.in_channels, *g.kernel_shape)}
        if bias:
            shapes["bias"] = (g.out_channels, *g.output_shape)
        return shapes

    def reset_parameters(self, rng: int | np.random.Generator | None = None) -> None:
        """Draw weight, then bias, from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in = f * prod(k)``, in place."""
        generator = resolve_rng(rng)
        fan_in = self.in_channels * math.prod(self.kernel_size)
        self._initialise("weight", fan_in_uniform(generator, self.grad_weight.shape, fan_in, self.dtype))
        self._initialise("bias", fan_in_uniform(generator, self.grad_bias.shape, fan_in, self.dtype)
                         if self.grad_bias is not None else None)

    # ------------------------------------------------------------------ unfold / fold
    def _columns(self, x: np.ndarray, g: ConvGeometry) -> np.ndarray:
        """``(positions, S, f * prod(k))``: the input patch each output position reads, one matrix per position."""
        nd = g.ndim
        windows = sliding_window_view(pad_input(x, g), g.kernel_shape, axis=tuple(range(2, 2 + nd)))
        windows = windows[(slice(None), slice(None), *(slice(None, (m - 1) * s + 1, s)
                                                       for m, s in zip(g.output_shape, g.stride)))]
        order = (*range(2, 2 + nd), 0, 1, *range(2 + nd, 2 + 2 * nd))  # -> (*m, S, f, *k)
        columns = windows.transpose(order).reshape(math.prod(g.output_shape), g.batch,
                                                   g.in_channels * math.prod(g.kernel_shape))  # -1 fails at S = 0
        # reshape copies the overlapping windows; a 1-tap kernel may give a view of x, which backward must not see
        return columns.copy() if np.may_share_memory(columns, x) else columns

    def _fold(self, grad_columns: np.ndarray, g: ConvGeometry) -> np.ndarray:
        """Adjoint of :meth:`_columns` (col2im): add each patch gradient back where it was read."""
        nd = g.ndim
        patches = grad_columns.reshape(*g.output_shape, g.batch, g.in_channels, *g.kernel_shape)
        patches = patches.transpose(nd, nd + 1, *range(nd), *range(nd + 2, 2 * nd + 2))  # (S, f, *m, *k)
        padded = np.zeros((g.batch, g.in_channels, *(n + b + a for n, b, a in zip(
            g.input_shape, g.padding_before, g.padding_after))), dtype=grad_columns.dtype)
        for taps, window in tap_windows(g):
            padded[window] += patches[(Ellipsis, *taps)]
        return np.ascontiguousarray(crop_padding(padded, g))

    def _filter_matrices(self) -> np.ndarray:
        """``(positions, f', f * prod(k))``."""
        return self.weight.reshape(math.prod(self.output_size), self.out_channels, -1)

    # ------------------------------------------------------------------ the passes
    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(x, self.dtype, self.ndim + 2, self)
        self._check_parameters()
        if x.shape[1:] != (self.in_channels, *self.input_size):
            raise ValueError(f"{self!r}: input has shape {x.shape}, expected (batch, {self.in_channels}, "
                             f"{', '.join(map(str, self.input_size))}); a locally connected layer is built for one "
                             "input size")
        g = self._geometry(x.shape[0], self.in_channels, self.out_channels, self.input_size, self.kernel_size,
                           self.stride, self.padding)
        columns = self._columns(x, g)
        y = np.matmul(columns, self._filter_matrices().swapaxes(1, 2))  # (positions, S, f')
        y = np.ascontiguousarray(y.transpose(1, 2, 0)).reshape(g.full_output_shape)
        if self.bias is not None:
            y += self.bias
        self._save(geometry=g, columns=columns)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        check_input(grad_output, self.dtype, self.ndim + 2, self, "grad_output")
        self._check_parameters()
        with self._consuming_saved() as saved:
            g: ConvGeometry = saved["geometry"]
            g.check_grad_output(grad_output.shape)
            per_position = grad_output.reshape(g.batch, g.out_channels, math.prod(g.output_shape)).transpose(
                2, 0, 1)  # (positions, S, f')
            grad_input = self._fold(np.matmul(per_position, self._filter_matrices()), g)
            self.grad_weight += np.matmul(per_position.swapaxes(1, 2), saved["columns"]).reshape(self.weight.shape)
            if self.grad_bias is not None:
                self.grad_bias += grad_output.sum(axis=0)
        return grad_input

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}", f"{self.out_channels}", f"input_size={self.input_size}",
                 f"kernel_size={self.kernel_size}"]
        if self.stride != (1,) * self.ndim:
            parts.append(f"stride={self.stride}")
        if self.padding not in (0, "valid") and self.padding != (0,) * self.ndim:
            parts.append(f"padding={self.padding!r}")
        if self.bias is None:
            parts.append("bias=False")
        if self.dtype != np.float32:
            parts.append(f"dtype={self.dtype}")
        return ", ".join(parts)


class LocallyConnected2d(_LocallyConnectedNd):
    """2-d locally connected layer (unshared weights); see :class:`_LocallyConnectedNd`.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import LocallyConnected2d
    >>> layer = LocallyConnected2d(3, 4, input_size=(8, 8), kernel_size=3, dtype=np.float64, rng=0)
    >>> layer.weight.shape, layer.bias.shape
    ((6, 6, 4, 3, 3, 3), (4, 6, 6))
    >>> layer.forward(np.ones((2, 3, 8, 8))).shape
    (2, 4, 6, 6)
    >>> LocallyConnected2d.parameter_count(1, 1, (200, 200), 10, padding="same", bias=False)  # 4M weights
    4000000
    """

    ndim = 2


class ReLU(Module):
    """``max(x, 0)``; the gradient passes where ``x > 0`` (zero at ``x == 0``, as in PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import ReLU
    >>> relu = ReLU()
    >>> relu.forward(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    >>> relu.backward(np.array([5.0, 5.0, 5.0]))
    array([0., 0., 5.])
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"ReLU: input must be a numpy.ndarray, got {type(x).__name__}")
        positive = x > 0
        self._save(positive=positive)
        return np.maximum(x, 0, dtype=x.dtype)  # NaN propagates, as in torch.relu

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        with self._consuming_saved() as saved:
            positive = saved["positive"]
            if getattr(grad_output, "shape", None) != positive.shape:
                raise ValueError(f"ReLU: grad_output has shape {getattr(grad_output, 'shape', None)}, the input had "
                                 f"{positive.shape}")
            return grad_output * positive


class Flatten(Module):
    """``(batch, *dims) -> (batch, prod(dims))``, between the convolutional and fully connected parts.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Flatten
    >>> flatten = Flatten()
    >>> flatten.forward(np.zeros((2, 16, 5, 5))).shape
    (2, 400)
    >>> flatten.backward(np.zeros((2, 400))).shape
    (2, 16, 5, 5)
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            raise TypeError(f"Flatten: input must be a numpy.ndarray with a batch axis, got {x!r:.60}")
        self._save(shape=x.shape)
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # -1 cannot be resolved for a batch of 0

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        with self._consuming_saved() as saved:
            shape = saved["shape"]
            flat = (shape[0], math.prod(shape[1:]))
            if getattr(grad_output, "shape", None) != flat:
                raise ValueError(f"Flatten: grad_output has shape {getattr(grad_output, 'shape', None)}, expected "
                                 f"{flat} to restore {shape}")
            return grad_output.reshape(shape)


class Sequential(Module):
    """Layers applied in order; ``backward`` runs them in reverse, backpropagation.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
    >>> net = Sequential(Conv2d(1, 4, 3, dtype=np.float64, rng=0), ReLU(), MaxPool2d(2), Flatten(),
    ...                  Linear(4 * 3 * 3, 10, dtype=np.float64, rng=1))
    >>> logits = net.forward(np.zeros((5, 1, 8, 8)))
    >>> logits.shape
    (5, 10)
    >>> net.backward(np.ones_like(logits)).shape
    (5, 1, 8, 8)
    >>> len(net.parameters())  # (weight, grad) and (bias, grad) of the conv and the linear layer
    4
    """

    def __init__(self, *layers: Module):
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {index} must be a fftconv.nn.Module, got {type(layer).__name__}")
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output

    def parameters(self) -> list[Parameter]:
        return [pair for layer in self.layers for pair in layer.parameters()]

    def train(self, mode: bool = True) -> "Sequential":
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def workspaces(self) -> list[Workspace]:
        unique: dict[int, Workspace] = {}
        for layer in self.layers:
            for workspace in layer.workspaces():
                unique[id(workspace)] = workspace
        return list(unique.values())

    def held_arrays(self) -> Iterator[np.ndarray]:
        """Every layer's arrays plus the shared workspaces, each counted once by :attr:`nbytes`."""
        for layer in self.layers:
            yield from layer.held_arrays()
        for workspace in self.workspaces():
            yield from workspace.held_arrays()

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
