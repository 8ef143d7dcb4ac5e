"""Transforms of small-support maps (kernels, weight gradients) as dense DFT matrix products.

A ``k x k`` kernel zero-padded to ``N x N`` has only ``k`` non-zero rows and columns, and the weight gradient needs
only ``k x k`` of the ``N x N`` outputs of its inverse transform. Applying the DFT one axis at a time as a matrix
``(bins x k)`` costs about ``k * N/2 * (k + N)`` complex multiply-adds per map (:func:`fftconv.costs.kernel_dft_flops`),
more or fewer flops than an FFT (:func:`fftconv.costs.real_fft_flops`), but runs at GEMM speed, several times the
batched FFT rate: for ``k`` up to about half of ``N`` it is the faster way.
:func:`fftconv.costs.kernels_by_matrix` decides from the machine's rates.

Each map is at an arbitrary set of positions ``pos[t]`` of the cyclic buffer (time reversal, dilation and the
padding shift are all just positions), so one pair of functions serves the kernel transform and the weight-gradient
inverse.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from ._parallel import parallel_matmul
from .sizes import half_spectrum_shape


@lru_cache(maxsize=256)
def _forward_matrix(positions: tuple[int, ...], size: int, bins: int, dtype: str) -> np.ndarray:
    """``A[xi, t] = exp(-2 pi i xi pos[t] / N)`` for ``xi < bins``."""
    xi = np.arange(bins)[:, None]
    return np.exp(-2j * np.pi * xi * np.asarray(positions)[None, :] / size).astype(dtype)


@lru_cache(maxsize=256)
def _inverse_matrix(positions: tuple[int, ...], size: int, bins: int, halved: bool, dtype: str) -> np.ndarray:
    """``B[t, xi] = c[xi] exp(2 pi i xi pos[t] / N) / N``; on the halved axis ``c`` counts each bin's mirror."""
    xi = np.arange(bins)[None, :]
    matrix = np.exp(2j * np.pi * xi * np.asarray(positions)[:, None] / size) / size
    if halved:
        weights = np.full(bins, 2.0)
        weights[0] = 1.0
        if size % 2 == 0:
            weights[-1] = 1.0  # the Nyquist bin has no mirror
        matrix = matrix * weights[None, :]
    return matrix.astype(dtype)


def forward(maps: np.ndarray, positions: Sequence[Sequence[int]], fft_shape: Sequence[int],
            out: np.ndarray) -> np.ndarray:
    """Half-spectrum of real maps ``(*k, B)`` placed at ``positions`` in an ``fft_shape`` buffer, into ``out``.

    ``out`` has shape ``(*bins, B)`` (contiguous); the result equals
    ``rfftn(buffer, axes=spatial)`` where ``buffer[pos_0[t_0], pos_1[t_1], ...] = maps[t]``.
    """
    bins, nd = half_spectrum_shape(fft_shape), len(fft_shape)
    array = maps.astype(out.dtype)
    for axis in reversed(range(nd)):  # the halved last axis first: it shrinks N to N/2+1 soonest
        matrix = _forward_matrix(tuple(positions[axis]), fft_shape[axis], bins[axis], out.dtype.str)
        lead = math.prod(array.shape[:axis])
        target = out.reshape(1, bins[0], -1) if axis == 0 else None
        result = parallel_matmul(matrix, array.reshape(lead, array.shape[axis], -1), out=target)
        array = result.reshape(*array.shape[:axis], bins[axis], *array.shape[axis + 1:])
    return out


def inverse(spectrum: np.ndarray, positions: Sequence[Sequence[int]], fft_shape: Sequence[int],
            real_dtype) -> np.ndarray:
    """Inverse real transform of ``(*bins, B)`` spectra read only at ``positions``: ``(*k, B)`` real maps.

    Equals ``irfftn(spectrum, fft_shape, axes=spatial)[pos_0, pos_1, ...]`` (outer indexing) for spectra of real
    maps, without computing the other ``N - k`` outputs.
    """
    bins, nd = half_spectrum_shape(fft_shape), len(fft_shape)
    array = spectrum
    for axis in range(nd):
        matrix = _inverse_matrix(tuple(positions[axis]), fft_shape[axis], bins[axis], axis == nd - 1,
                                 spectrum.dtype.str)
        lead = math.prod(array.shape[:axis])
        result = parallel_matmul(matrix, array.reshape(lead, bins[axis], -1))
        array = result.reshape(*array.shape[:axis], len(positions[axis]), *array.shape[axis + 1:])
    return np.ascontiguousarray(array.real, dtype=real_dtype)
