"""``algo="im2col"``: unfold the input into a matrix and do one GEMM per group, the standard fast direct method.

The unfolded matrix is kept **tap-major**, ``cols (f*k, S*m)`` per group, as Caffe does: row ``(c, t)`` holds what
kernel tap ``t`` of channel ``c`` reads for every output position. The unfold and col2im then copy whole output rows
(runs of ``m`` contiguous values), where the position-major layout ``(S*m, f*k)`` would copy runs of ``k`` values.

Forward: ``Y^T (f', S*m) = W @ cols``; input gradient: ``dcols = W^T @ GY^T`` folded back (col2im); weight gradient:
``GW = GY^T @ cols^T``. Everything runs in the input dtype, as BLAS does. The GEMMs run on fftconv's thread pool
(:func:`fftconv._parallel.parallel_matmul`), not on OpenBLAS's threads, which would spin into the next FFT layer.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._parallel import parallel_matmul
from ._spatial import crop_padding, pad_input, tap_windows
from .geometry import ConvGeometry


def _per_group(array: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``(S, channels, *space)`` -> ``(groups, channels/groups, S, *space)`` (a view)."""
    grouped = array.reshape(g.batch, g.groups, -1, *array.shape[2:])
    return grouped.transpose(1, 2, 0, *range(3, grouped.ndim))


def _columns(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """The tap-major unfolded input, ``(groups, f/groups * prod(k), S * prod(m))``, as one contiguous copy.

    One strided copy of all windows, whose innermost runs are output rows: as fast as filling the matrix tap by tap,
    without a Python loop over taps.
    """
    nd = g.ndim
    padded = _per_group(pad_input(x, g), g)  # (groups, f/g, S, *padded space)
    windows = sliding_window_view(padded, g.dilated_kernel_shape, axis=tuple(range(3, 3 + nd)))
    index = (Ellipsis, *(slice(None, (m - 1) * s + 1, s) for m, s in zip(g.output_shape, g.stride)),
             *(slice(None, None, d) for d in g.dilation))
    windows = windows[index]  # (groups, f/g, S, *m, *k) -> (groups, f/g, *k, S, *m)
    order = (0, 1, *range(3 + nd, 3 + 2 * nd), 2, *range(3, 3 + nd))
    cg = g.in_channels // g.groups
    return np.ascontiguousarray(windows.transpose(order)).reshape(g.groups, cg * math.prod(g.kernel_shape), -1)


def _weight_matrix(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``(groups, f'/groups, f/groups * prod(k))``."""
    return w.reshape(g.groups, g.out_channels // g.groups, -1)


def _grad_matrix(grad_output: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``(S, f', *m)`` -> ``GY^T``, ``(groups, f'/groups, S * prod(m))`` (one copy with runs of ``prod(m)``)."""
    return np.ascontiguousarray(_per_group(grad_output, g)).reshape(g.groups, g.out_channels // g.groups, -1)


def _batch_first(per_group: np.ndarray, g: ConvGeometry, shape: tuple[int, ...]) -> np.ndarray:
    """``(groups, channels/groups, S * prod(space))`` -> contiguous ``shape = (S, channels, *space)``."""
    grouped = per_group.reshape(g.groups, -1, g.batch, *shape[2:])
    return np.ascontiguousarray(grouped.transpose(2, 0, 1, *range(3, grouped.ndim))).reshape(shape)


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, g: ConvGeometry) -> np.ndarray:
    y = _batch_first(parallel_matmul(_weight_matrix(w, g), _columns(x, g)), g, g.full_output_shape)
    if bias is not None:
        y += bias.reshape(-1, *(1,) * g.ndim)
    return y


def grad_input(grad_output: np.ndarray, w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    cg = g.in_channels // g.groups
    dcols = parallel_matmul(_weight_matrix(w, g).swapaxes(1, 2), _grad_matrix(grad_output, g))  # (G, f/G*k, S*m)
    dcols = dcols.reshape(g.groups, cg, *g.kernel_shape, g.batch, *g.output_shape)
    padded = np.zeros(g.full_padded_input_shape, dtype=grad_output.dtype)
    target = _per_group(padded, g)  # a view: (groups, f/g, S, *padded space)
    for taps, window in tap_windows(g):  # col2im: each tap adds its rows back where it read them
        target[window] += dcols[(slice(None), slice(None), *taps)]
    return np.ascontiguousarray(crop_padding(padded, g))


def grad_weight(x: np.ndarray, grad_output: np.ndarray, g: ConvGeometry) -> np.ndarray:
    gw = parallel_matmul(_grad_matrix(grad_output, g), _columns(x, g).swapaxes(1, 2))  # (groups, f'/g, f/g * k)
    return gw.reshape(g.full_weight_shape)
