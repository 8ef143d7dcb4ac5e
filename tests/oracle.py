"""An independent float64 oracle for the three convolutions of a training step, written from the definition.

Nothing here imports fftconv: padding, output sizes and the three passes are re-derived from PyTorch's documented
semantics so that a shared mistake in the package cannot hide behind a shared helper. Every output position and every
kernel tap is visited by an explicit Python loop; only the small channel contraction at one (position, tap) pair is
a matrix product. It is slow on purpose and only meant for the small shapes the tests use.

The one relation everything follows from (cross-correlation, channels-first, zero padding)::

    y[s, o, i] = bias[o] + sum_{c in group(o)} sum_t xpad[s, c, i * stride + t * dilation] * w[o, c - c0(o), t]

where ``xpad`` is the input with ``before`` zeros in front and ``after`` zeros behind each spatial axis. The input
gradient scatters ``grad_output[s, o, i] * w[o, c, t]`` back to that padded position, and the weight gradient sums
``grad_output[s, o, i] * xpad[s, c, position]`` over the batch and every output position.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


def _as_tuple(value, ndim: int) -> tuple[int, ...]:
    return (int(value),) * ndim if np.isscalar(value) else tuple(int(v) for v in value)


@dataclass(frozen=True)
class OracleGeometry:
    """Resolved hyper-parameters of one convolution, re-derived independently of fftconv.geometry."""

    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    groups: int

    @classmethod
    def resolve(cls, kernel: tuple[int, ...], stride=1, padding=0, dilation=1, groups: int = 1) -> "OracleGeometry":
        ndim = len(kernel)
        stride, dilation = _as_tuple(stride, ndim), _as_tuple(dilation, ndim)
        if padding == "valid":
            before = after = (0,) * ndim
        elif padding == "same":
            # PyTorch: the total padding d*(k-1) is split with the smaller half in front.
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            before = tuple(t // 2 for t in total)
            after = tuple(t - t // 2 for t in total)
        else:
            before = after = _as_tuple(padding, ndim)
        return cls(stride, dilation, before, after, int(groups))

    def output_shape(self, input_shape, kernel) -> tuple[int, ...]:
        """Number of positions ``i`` whose last tap ``i*s + (k-1)*d`` still lies inside the padded input."""
        sizes = []
        for n, k, s, d, b, a in zip(input_shape, kernel, self.stride, self.dilation, self.before, self.after):
            last_start = n + b + a - (k - 1) * d - 1  # largest valid i*s
            sizes.append(last_start // s + 1)
        return tuple(sizes)


def _padded(x: np.ndarray, geo: OracleGeometry) -> np.ndarray:
    spatial = x.shape[2:]
    shape = (*x.shape[:2], *(n + b + a for n, b, a in zip(spatial, geo.before, geo.after)))
    out = np.zeros(shape)
    out[(slice(None), slice(None), *(slice(b, b + n) for b, n in zip(geo.before, spatial)))] = x
    return out


def _loops(output_shape, kernel, geo: OracleGeometry, channels_per_group: int, outputs_per_group: int):
    """Yield ``(group channel slice, group output slice, output index i, tap t, padded position)``."""
    for group in range(geo.groups):
        c = slice(group * channels_per_group, (group + 1) * channels_per_group)
        o = slice(group * outputs_per_group, (group + 1) * outputs_per_group)
        for i in itertools.product(*(range(m) for m in output_shape)):
            for t in itertools.product(*(range(k) for k in kernel)):
                position = tuple(ii * s + tt * d for ii, tt, s, d in zip(i, t, geo.stride, geo.dilation))
                yield c, o, i, t, position


def forward(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``torch.nn.functional.conv{n}d`` in float64 by explicit loops."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    kernel = w.shape[2:]
    geo = OracleGeometry.resolve(kernel, stride, padding, dilation, groups)
    xpad = _padded(x, geo)
    out_shape = geo.output_shape(x.shape[2:], kernel)
    y = np.zeros((x.shape[0], w.shape[0], *out_shape))
    for c, o, i, t, pos in _loops(out_shape, kernel, geo, w.shape[1], w.shape[0] // groups):
        # (S, c) @ (c, o): the sum over this group's input channels at one tap
        y[(slice(None), o, *i)] += xpad[(slice(None), c, *pos)] @ w[(o, slice(None), *t)].T
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(-1, *(1,) * len(kernel))
    return y


def grad_input(input_size, w, grad_output, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """d(sum(y * grad_output))/dx: scatter every output gradient back through every tap."""
    w, gy = np.asarray(w, dtype=np.float64), np.asarray(grad_output, dtype=np.float64)
    kernel = w.shape[2:]
    geo = OracleGeometry.resolve(kernel, stride, padding, dilation, groups)
    spatial = tuple(input_size[2:])
    gxpad = np.zeros((*input_size[:2], *(n + b + a for n, b, a in zip(spatial, geo.before, geo.after))))
    for c, o, i, t, pos in _loops(gy.shape[2:], kernel, geo, w.shape[1], w.shape[0] // groups):
        gxpad[(slice(None), c, *pos)] += gy[(slice(None), o, *i)] @ w[(o, slice(None), *t)]
    # gradients that land on padding are dropped: padding is not an input
    return gxpad[(slice(None), slice(None), *(slice(b, b + n) for b, n in zip(geo.before, spatial)))]


def grad_weight(x, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """d(sum(y * grad_output))/dw: correlate the output gradient with the input over batch and positions."""
    x, gy = np.asarray(x, dtype=np.float64), np.asarray(grad_output, dtype=np.float64)
    kernel = tuple(weight_size[2:])
    geo = OracleGeometry.resolve(kernel, stride, padding, dilation, groups)
    xpad = _padded(x, geo)
    gw = np.zeros(tuple(weight_size))
    for c, o, i, t, pos in _loops(gy.shape[2:], kernel, geo, weight_size[1], weight_size[0] // groups):
        gw[(o, slice(None), *t)] += gy[(slice(None), o, *i)].T @ xpad[(slice(None), c, *pos)]
    return gw
