"""``algo="im2col"``: unfold the input into a matrix and do one GEMM per group, the standard fast direct method.

Forward: ``Y (S*m, f') = cols (S*m, f*k) @ W^T``; input gradient: ``dcols = GY @ W`` folded back (col2im);
weight gradient: ``GW = GY^T @ cols``. Everything runs in the input dtype, as BLAS does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._spatial import crop_padding, pad_input, tap_windows
from .geometry import ConvGeometry


def _columns(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """The unfolded input, ``(groups, S * prod(m), f/groups * prod(k))``, as one contiguous copy."""
    nd = g.ndim
    windows = sliding_window_view(pad_input(x, g), g.dilated_kernel_shape, axis=tuple(range(2, 2 + nd)))
    # (S, f, *m_full, *kd) -> keep every stride-th window and every dilation-th tap
    index = (slice(None), slice(None), *(slice(None, (m - 1) * s + 1, s) for m, s in zip(g.output_shape, g.stride)),
             *(slice(None, None, d) for d in g.dilation))
    windows = windows[index]
    grouped = windows.reshape(g.batch, g.groups, g.in_channels // g.groups, *windows.shape[2:])
    # -> (groups, S, *m, f/g, *k)
    order = (1, 0, *range(3, 3 + nd), 2, *range(3 + nd, 3 + 2 * nd))
    return grouped.transpose(order).reshape(g.groups, g.batch * math.prod(g.output_shape), -1)


def _weight_matrix(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``(groups, f'/groups, f/groups * prod(k))``."""
    return w.reshape(g.groups, g.out_channels // g.groups, -1)


def _grad_matrix(grad_output: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``(S, f', *m)`` -> ``(groups, S * prod(m), f'/groups)``."""
    nd = g.ndim
    grouped = grad_output.reshape(g.batch, g.groups, -1, *g.output_shape)
    return grouped.transpose(1, 0, *range(3, 3 + nd), 2).reshape(g.groups, -1, grouped.shape[2])


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry) -> np.ndarray:
    nd = g.ndim
    y = np.matmul(_columns(x, g), _weight_matrix(w, g).swapaxes(1, 2))  # (groups, S*m, f'/g)
    y = y.reshape(g.groups, g.batch, *g.output_shape, -1)
    y = np.ascontiguousarray(y.transpose(1, 0, nd + 2, *range(2, 2 + nd)).reshape(g.full_output_shape))
    if bias is not None:
        y += bias.reshape(-1, *(1,) * nd)
    return y


def grad_input(grad_output: np.ndarray, w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    nd = g.ndim
    dcols = np.matmul(_grad_matrix(grad_output, g), _weight_matrix(w, g))  # (groups, S*m, f/g * k)
    dcols = dcols.reshape(g.groups, g.batch, *g.output_shape, g.in_channels // g.groups, *g.kernel_shape)
    # -> (S, groups, f/g, *m, *k): the layout of the padded input plus one axis per tap
    dcols = dcols.transpose(1, 0, nd + 2, *range(2, 2 + nd), *range(nd + 3, 2 * nd + 3))
    padded = np.zeros((g.batch, g.groups, g.in_channels // g.groups,
                       *(n + b + a for n, b, a in zip(g.input_shape, g.padding_before, g.padding_after))),
                      dtype=grad_output.dtype)
    for taps, window in tap_windows(g):  # col2im: each tap adds its column block back where it was read
        padded[window] += dcols[(Ellipsis, *taps)]
    return np.ascontiguousarray(crop_padding(padded.reshape(g.batch, g.in_channels, *padded.shape[3:]), g))


def grad_weight(x: np.ndarray, grad_output: np.ndarray, g: ConvGeometry) -> np.ndarray:
    gw = np.matmul(_grad_matrix(grad_output, g).swapaxes(1, 2), _columns(x, g))  # (groups, f'/g, f/g * k)
    return gw.reshape(g.full_weight_shape)
