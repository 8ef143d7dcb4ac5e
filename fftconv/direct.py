"""``algo="direct"``: a plain, readable reference for all three passes, accumulated in float64.

One loop over kernel taps; each tap contributes a channel contraction (``einsum``) of a strided window of the padded
input. It is slow and exists to be obviously right; results are cast back to the input dtype.
"""

from __future__ import annotations

import numpy as np

from ._spatial import crop_padding, pad_input, tap_windows
from .geometry import ConvGeometry


def _grouped(array: np.ndarray, groups: int) -> np.ndarray:
    """``(rows, groups * c, *space)`` -> ``(rows, groups, c, *space)``."""
    return array.reshape(array.shape[0], groups, -1, *array.shape[2:])


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry) -> np.ndarray:
    """``y[s, f'] = sum_{f, t} x_pad[s, f, i*stride + t*dilation] * w[f', f, t] (+ bias)``."""
    xp = _grouped(pad_input(x, g, np.float64), g.groups)
    wg = w.astype(np.float64).reshape(g.groups, -1, *w.shape[1:])
    y = np.zeros((g.batch, g.groups, g.out_channels // g.groups, *g.output_shape))
    for taps, window in tap_windows(g):
        y += np.einsum("sgc...,gfc->sgf...", xp[window], wg[(Ellipsis, *taps)])
    y = y.reshape(g.full_output_shape)
    if bias is not None:
        y += bias.astype(np.float64).reshape(-1, *(1,) * g.ndim)
    return y.astype(x.dtype)


def grad_input(grad_output: np.ndarray, w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Scatter each output gradient back through every tap: ``gx_pad[i*s + t*d] += gy[i] * w[t]``."""
    gy = _grouped(grad_output.astype(np.float64), g.groups)
    wg = w.astype(np.float64).reshape(g.groups, -1, *w.shape[1:])
    gxp = np.zeros(g.full_padded_input_shape)
    grouped = _grouped(gxp, g.groups)  # a view
    for taps, window in tap_windows(g):
        grouped[window] += np.einsum("sgf...,gfc->sgc...", gy, wg[(Ellipsis, *taps)])
    return crop_padding(gxp, g).astype(grad_output.dtype)


def grad_weight(x: np.ndarray, grad_output: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``gw[f', f, t] = sum_{s, i} gy[s, f', i] * x_pad[s, f, i*stride + t*dilation]``."""
    xp = _grouped(pad_input(x, g, np.float64), g.groups)
    gy = _grouped(grad_output.astype(np.float64), g.groups)
    gw = np.zeros((g.groups, g.out_channels // g.groups, g.in_channels // g.groups, *g.kernel_shape))
    for taps, window in tap_windows(g):
        space = "xyzuvw"[:g.ndim]  # einsum cannot sum over '...', so name the spatial axes
        gw[(Ellipsis, *taps)] = np.einsum(f"sgc{space},sgf{space}->gfc", xp[window], gy)
    return gw.reshape(g.full_weight_shape).astype(x.dtype)
