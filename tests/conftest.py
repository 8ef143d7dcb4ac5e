"""Shared fixtures and the one tolerance rule of the test suite."""

from __future__ import annotations

import math

import numpy as np
import pytest


DTYPES = (np.float32, np.float64)
PASSES = ("forward", "input", "weight")

# Constant in front of the round-off model below. The worst error seen over three seeds of every case in
# test_functional.py was 0.35x the bare model (fft, float32 and float64 alike), so 4 leaves about 10x headroom
# against flaky draws, while a real bug (an error of order 1) still fails by many orders of magnitude.
SAFETY = 4.0
# Upper bounds set by the project: about 1e-10 relative in float64, at most 1e-5 relative (max norm) in float32.
CAPS = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def tolerance(dtype, fft_points: int = 1, reduction_length: int = 1) -> float:
    """Relative max-norm tolerance, ``max|actual - expected| / max|expected|``, for one result.

    Round-off model: a radix-2/mixed-radix FFT of ``N`` points loses about ``eps * log2(N)`` relative accuracy
    (each point passes through ``log2(N)`` butterfly stages; forward and inverse transform together double it), and
    a sum of ``K`` products with random signs drifts by about ``eps * sqrt(K)`` (a random walk of rounding errors).
    The error of a convolution is bounded by their sum whatever the algorithm: the FFT path pays the first, GEMM /
    direct sums pay the second. ``SAFETY`` covers the constants and the max-over-entries vs rms gap.

    With ``eps32 = 1.2e-7`` a 16x16 FFT (log2 = 8) and a 27-term reduction give ``4 * 1.2e-7 * (8 + 5.2) = 6.3e-6``;
    large reductions reach the project's cap of 1e-5. In float64 the model gives about 1e-14, far below the 1e-10
    cap, so float64 checks are as tight as round-off allows.
    """
    dtype = np.dtype(dtype)
    eps = float(np.finfo(dtype).eps)
    model = SAFETY * eps * (math.log2(max(fft_points, 2)) + math.sqrt(max(reduction_length, 1)))
    return min(model, CAPS[dtype])


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|actual - expected| / max|expected|`` in double precision (the max norm the tolerances are stated in);
    complex arrays (spectra) compare by complex modulus."""
    wide = np.result_type(actual, expected, np.float64)
    expected = np.asarray(expected, dtype=wide)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    error = float(np.max(np.abs(np.asarray(actual, dtype=wide) - expected))) if expected.size else 0.0
    return error / scale if scale > 0 else error


def assert_close(actual: np.ndarray, expected: np.ndarray, tol: float, what: str = "") -> None:
    """Shape equality and a relative max-norm error within ``tol``."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    error = relative_error(actual, expected)
    assert error <= tol, f"{what}: relative max-norm error {error:.3e} > tolerance {tol:.3e}"


def reduction_lengths(input_shape, weight_shape, output_shape, groups: int) -> dict[str, int]:
    """Number of terms summed into one entry of each pass's result (the ``K`` of :func:`tolerance`)."""
    kernel_taps = math.prod(weight_shape[2:])
    return {
        "forward": (input_shape[1] // groups) * kernel_taps,
        "input": (output_shape[1] // groups) * kernel_taps,
        "weight": output_shape[0] * math.prod(output_shape[2:]),
    }


def fft_points_bound(input_shape, padding_total) -> int:
    """Points of the largest FFT any size policy can pick: the next power of two of the padded input, per axis."""
    return math.prod(1 << (n + p - 1).bit_length() for n, p in zip(input_shape[2:], padding_total))


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test: failures reproduce exactly."""
    return np.random.default_rng(20140102)




@pytest.fixture(autouse=True)
def chunk_even_tiny_arrays(monkeypatch):
    """Let every array be cut into tasks for fftconv's thread pool, however small.

    In real use work below ~2^15 elements is not split (a hand-off costs more than it saves); the tests' arrays are
    tiny, so without this they would never run the chunked paths of the backends, GEMMs and crops.
    """
    from fftconv import _parallel

    monkeypatch.setitem(_parallel.MIN_WORK_PER_TASK, "elements", 1)
    monkeypatch.setitem(_parallel.MIN_WORK_PER_TASK, "multiply_adds", 1)


@pytest.fixture
def default_choose_state():
    """The documented default rates and accuracy bound, with no cached decisions; restored afterwards."""
    from fftconv import choose

    choose.set_rates(choose.MachineRates())
    previous = choose.set_accuracy(choose.DEFAULT_MAX_ERROR)
    choose.clear_decisions()
    yield
    choose.set_rates(None)
    choose.set_accuracy(previous)
    choose.clear_decisions()
