"""Bad input gets a clear error naming the argument and the values, never a wrong answer.

Each case is run with every algorithm: validation happens before dispatch, so no algorithm may skip it.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

import fftconv

X = np.zeros((2, 3, 8, 8))
W = np.zeros((4, 3, 3, 3))
GY = np.zeros((2, 4, 6, 6))  # the output shape of conv2d(X, W)


def literal(text: str) -> str:
    """A ``match=`` pattern for text that contains regex metacharacters such as ``(``."""
    return re.escape(text)


# (id, call, exception, pattern): the pattern names the argument and echoes the offending values.
CASES = [
    # channels and groups
    ("channel-mismatch", lambda **k: fftconv.conv2d(X, np.zeros((4, 2, 3, 3)), **k), ValueError,
     literal("weight.shape[1]=2 times groups=1 must equal the 3 channels of input") + ".*"
     + literal("expected weight.shape[1] == 3")),
    ("groups-not-dividing-in", lambda **k: fftconv.conv2d(X, W, groups=2, **k), ValueError,
     literal("groups=2 must divide both in_channels=3")),
    ("groups-not-dividing-out", lambda **k: fftconv.conv2d(np.zeros((2, 4, 8, 8)), np.zeros((3, 2, 3, 3)),
                                                           groups=2, **k), ValueError,
     literal("groups=2 must divide both in_channels=4 (input.shape[1]) and out_channels=3")),
    ("groups-zero", lambda **k: fftconv.conv2d(X, W, groups=0, **k), ValueError,
     "groups must be a positive int, got 0"),
    ("groups-bool", lambda **k: fftconv.conv2d(X, W, groups=True, **k), ValueError,
     "groups must be a positive int, got True"),
    # kernel larger than the padded input, also through dilation, also in a gradient pass
    ("kernel-too-large", lambda **k: fftconv.conv2d(X, np.zeros((4, 3, 9, 3)), **k), ValueError,
     literal("kernel of size (9, 3) (dilated to (9, 3)) is larger than the padded input of spatial size (8, 8)")),
    ("kernel-too-large-dilated", lambda **k: fftconv.conv2d(X, W, dilation=5, padding=1, **k), ValueError,
     literal("kernel of size (3, 3) (dilated to (11, 11)) is larger than the padded input of spatial size (10, 10)")),
    ("kernel-too-large-weight-grad", lambda **k: fftconv.conv2d_weight(X, (4, 3, 9, 9), GY, **k), ValueError,
     literal("kernel of size (9, 9)") + ".*" + literal("padded input of spatial size (8, 8)")),
    # stride and dilation
    ("stride-zero", lambda **k: fftconv.conv2d(X, W, stride=0, **k), ValueError,
     literal("stride must be positive in every dimension, got (0, 0)")),
    ("stride-negative", lambda **k: fftconv.conv1d(X[:, :, 0], W[:, :, 0], stride=-2, **k), ValueError,
     literal("stride must be positive in every dimension, got (-2,)")),
    ("dilation-zero", lambda **k: fftconv.conv2d(X, W, dilation=(1, 0), **k), ValueError,
     literal("dilation must be positive in every dimension, got (1, 0)")),
    ("stride-wrong-length", lambda **k: fftconv.conv2d(X, W, stride=(1, 2, 3), **k), ValueError,
     literal("stride must be an int or a tuple of 2 ints for a 2-d convolution, got (1, 2, 3)")),
    ("stride-float", lambda **k: fftconv.conv2d(X, W, stride=1.5, **k), TypeError,
     "stride must be an int or a tuple of 2 ints, got 1.5"),
    ("dilation-wrong-length", lambda **k: fftconv.conv3d(X[..., None], W[..., None], dilation=(1, 2), **k),
     ValueError, literal("dilation must be an int or a tuple of 3 ints for a 3-d convolution, got (1, 2)")),
    # padding
    ("same-with-stride", lambda **k: fftconv.conv2d(X, W, padding="same", stride=2, **k), ValueError,
     literal("padding='same' requires stride 1 (as in PyTorch), got stride=(2, 2)")),
    ("padding-unknown-string", lambda **k: fftconv.conv2d(X, W, padding="full", **k), ValueError,
     "padding must be an int, a tuple of ints, 'valid' or 'same', got 'full'"),
    ("padding-negative", lambda **k: fftconv.conv2d(X, W, padding=(1, -1), **k), ValueError,
     literal("padding must be non-negative, got (1, -1)")),
    ("padding-wrong-length", lambda **k: fftconv.conv2d(X, W, padding=(1,), **k), ValueError,
     literal("padding must be an int or a tuple of 2 ints for a 2-d convolution, got (1,)")),
    # number of dimensions
    ("conv2d-given-3d-input", lambda **k: fftconv.conv2d(X[0], W, **k), ValueError,
     literal("input must have 4 dimensions (batch, channels, 2 spatial) for a 2-d convolution, got shape (3, 8, 8)")),
    ("conv2d-given-3d-weight", lambda **k: fftconv.conv2d(X, W[0], **k), ValueError,
     literal("weight must have 4 dimensions (out_channels, in_channels // groups, 2 spatial) for a 2-d "
             "convolution, got shape (3, 3, 3)")),
    ("conv1d-given-2d-problem", lambda **k: fftconv.conv1d(X, W, **k), ValueError,
     literal("input must have 3 dimensions") + ".*" + literal("got shape (2, 3, 8, 8)")),
    ("conv3d-input-grad-given-2d-weight", lambda **k: fftconv.conv3d_input((2, 3, 8, 8, 8), W, GY, **k), ValueError,
     literal("weight must have 5 dimensions")),
    ("generic-ndim-mismatch", lambda **k: fftconv.conv(X[0], W, **k), ValueError,
     literal("input must have 4 dimensions (batch, channels, 2 spatial) to match weight of shape (4, 3, 3, 3), "
             "got shape (3, 8, 8); add a batch axis")),
    ("weight-without-spatial-axes", lambda **k: fftconv.conv(X[:, :, 0, 0], W[:, :, 0, 0], **k), ValueError,
     literal("weight must have shape (out_channels, in_channels/groups, *kernel) with at least one spatial "
             "dimension, got shape (4, 3)")),
    ("empty-batch", lambda **k: fftconv.conv2d(X[:0], W, **k), ValueError,
     literal("empty arrays are not supported: input shape (0, 3, 8, 8)")),
    # gradient passes: sizes inconsistent with grad_output
    ("input-size-spatial-mismatch", lambda **k: fftconv.conv2d_input((2, 3, 9, 8), W, GY, **k), ValueError,
     literal("grad_output has shape (2, 4, 6, 6), but the convolution of an input of shape (2, 3, 9, 8)") + ".*"
     + literal("produces (2, 4, 7, 6); check input_size / weight_size")),
    ("input-size-batch-mismatch", lambda **k: fftconv.conv2d_input((5, 3, 8, 8), W, GY, **k), ValueError,
     literal("grad_output has shape (2, 4, 6, 6)") + ".*" + literal("produces (5, 4, 6, 6)")),
    ("input-size-channel-mismatch", lambda **k: fftconv.conv2d_input((2, 5, 8, 8), W, GY, **k), ValueError,
     literal("weight.shape[1]=3 times groups=1 must equal the 5 channels of input_size")),
    ("input-size-wrong-length", lambda **k: fftconv.conv2d_input((2, 3, 8), W, GY, **k), ValueError,
     literal("input_size must have 4 entries (batch, channels, spatial...), got (2, 3, 8)")),
    ("input-size-not-ints", lambda **k: fftconv.conv2d_input((2, 3, 8, 8.5), W, GY, **k), TypeError,
     literal("input_size must be a sequence of 4 ints, got (2, 3, 8, 8.5)")),
    ("input-size-scalar", lambda **k: fftconv.conv2d_input(8, W, GY, **k), TypeError,
     "input_size must be a sequence of 4 ints, got 8"),
    ("weight-size-kernel-mismatch", lambda **k: fftconv.conv2d_weight(X, (4, 3, 2, 3), GY, **k), ValueError,
     literal("grad_output has shape (2, 4, 6, 6), but the convolution of an input of shape (2, 3, 8, 8) with a "
             "weight of shape (4, 3, 2, 3)") + ".*" + literal("produces (2, 4, 7, 6)")),
    ("weight-size-out-channel-mismatch", lambda **k: fftconv.conv2d_weight(X, (5, 3, 3, 3), GY, **k), ValueError,
     literal("grad_output has shape (2, 4, 6, 6)") + ".*" + literal("produces (2, 5, 6, 6)")),
    ("weight-size-wrong-length", lambda **k: fftconv.conv2d_weight(X, (4, 3, 3), GY, **k), ValueError,
     literal("weight_size must have 4 entries (batch, channels, spatial...), got (4, 3, 3)")),
    ("grad-output-missing-batch", lambda **k: fftconv.conv2d_input(X.shape, W, GY[0], **k), ValueError,
     literal("grad_output has shape (4, 6, 6)") + ".*" + literal("produces (2, 4, 6, 6)")),
    ("grad-output-wrong-stride", lambda **k: fftconv.conv2d_weight(X, W.shape, GY, stride=2, **k), ValueError,
     literal("grad_output has shape (2, 4, 6, 6)") + ".*" + literal("stride (2, 2)") + ".*"
     + literal("produces (2, 4, 3, 3)")),
    # bias
    ("bias-wrong-length", lambda **k: fftconv.conv2d(X, W, np.zeros(3), **k), ValueError,
     literal("bias must have shape (out_channels,) = (4,), got (3,)")),
    ("bias-2d", lambda **k: fftconv.conv2d(X, W, np.zeros((4, 1)), **k), ValueError,
     literal("bias must have shape (out_channels,) = (4,), got (4, 1)")),
    # dtypes and array types
    ("mixed-dtypes", lambda **k: fftconv.conv2d(X, W.astype(np.float32), **k), TypeError,
     "weight has dtype float32 but input has dtype float64; mixed precision is not supported"),
    ("mixed-dtypes-bias", lambda **k: fftconv.conv2d(X, W, np.zeros(4, np.float32), **k), TypeError,
     "bias has dtype float32 but input has dtype float64"),
    ("mixed-dtypes-grad-output", lambda **k: fftconv.conv2d_input(X.shape, W, GY.astype(np.float32), **k), TypeError,
     "grad_output has dtype float32 but weight has dtype float64"),
    ("mixed-dtypes-weight-grad", lambda **k: fftconv.conv2d_weight(X.astype(np.float32), W.shape, GY, **k), TypeError,
     "grad_output has dtype float64 but input has dtype float32"),
    ("integer-input", lambda **k: fftconv.conv2d(X.astype(np.int64), W, **k), TypeError,
     literal("input has dtype int64; fftconv supports float32 and float64. Convert explicitly, e.g. "
             "input.astype(np.float32)")),
    ("integer-weight", lambda **k: fftconv.conv2d(X, W.astype(np.int32), **k), TypeError,
     "weight has dtype int32; fftconv supports float32 and float64"),
    ("complex-input", lambda **k: fftconv.conv2d(X.astype(np.complex128), W, **k), TypeError,
     "input has dtype complex128; fftconv supports float32 and float64"),
    ("complex-grad-output", lambda **k: fftconv.conv2d_input(X.shape, W, GY.astype(np.complex64), **k), TypeError,
     "grad_output has dtype complex64; fftconv supports float32 and float64"),
    ("float16-input", lambda **k: fftconv.conv2d(X.astype(np.float16), W.astype(np.float16), **k), TypeError,
     "input has dtype float16; fftconv supports float32 and float64"),
    ("bool-input", lambda **k: fftconv.conv2d(X.astype(bool), W, **k), TypeError,
     "input has dtype bool; fftconv supports float32 and float64"),
    ("list-input", lambda **k: fftconv.conv2d(X.tolist(), W, **k), TypeError,
     "input must be a numpy.ndarray, got list; wrap it with np.asarray"),
    ("scalar-weight", lambda **k: fftconv.conv2d(X, 1.0, **k), TypeError,
     "weight must be a numpy.ndarray, got float"),
    ("list-bias", lambda **k: fftconv.conv2d(X, W, [0.0] * 4, **k), TypeError,
     "bias must be a numpy.ndarray, got list"),
    ("list-grad-output", lambda **k: fftconv.conv2d_weight(X, W.shape, GY.tolist(), **k), TypeError,
     "grad_output must be a numpy.ndarray, got list"),
    # options: unknown FFT backend and size policy are errors even for the spatial algorithms that ignore them
    ("unknown-backend", lambda **k: fftconv.conv2d(X, W, backend="fftw", **k), ValueError,
     literal("backend 'fftw' is unknown; valid names: ['numpy', 'pyfftw', 'scipy']")),
    ("backend-wrong-type", lambda **k: fftconv.conv2d_input(X.shape, W, GY, backend=3, **k), TypeError,
     "backend must be a name .*an FFTBackend instance or None, got 3"),
    ("unknown-fft-size", lambda **k: fftconv.conv2d_weight(X, W.shape, GY, fft_size="big", **k), ValueError,
     literal("fft_size must be one of ('fast', 'pow2', 'minimal') or a tuple of ints, got 'big'")),
    ("fft-size-too-small", lambda **k: fftconv.conv2d(X, W, fft_size=(8, 7), **k), ValueError,
     literal("fft_size=(8, 7) is too small for this convolution; every dimension must be at least (8, 8)")),
    ("fft-size-too-small-padded", lambda **k: fftconv.conv2d_input(X.shape, W, np.zeros((2, 4, 8, 8)), padding=1,
                                                                   fft_size=(9, 8), **k), ValueError,
     literal("fft_size=(9, 8) is too small") + ".*" + literal("at least (9, 9)")),
]


# For algo="tiled", fft_size sizes the tiles' transforms, not the whole problem's: these sizes are valid there
# (the tiles fit them), and tests/test_tiled.py checks its own size errors.
WHOLE_PROBLEM_FFT_SIZE = {"fft-size-too-small", "fft-size-too-small-padded"}


@pytest.mark.parametrize("algo", list(fftconv.ALGORITHMS))
@pytest.mark.parametrize("case_id,call,error,pattern", CASES, ids=[case[0] for case in CASES])
def test_bad_input_raises_naming_argument_and_values(case_id, call, error, pattern, algo):
    if algo == "tiled" and case_id in WHOLE_PROBLEM_FFT_SIZE:
        return
    with pytest.raises(error, match=pattern):
        call(algo=algo)


def test_unknown_algorithm_lists_the_valid_ones():
    for call in (lambda: fftconv.conv2d(X, W, algo="fftt"), lambda: fftconv.conv2d_input(X.shape, W, GY, algo="FFT"),
                 lambda: fftconv.conv2d_weight(X, W.shape, GY, algo=None)):
        with pytest.raises(ValueError, match=r"algo=.* is unknown; valid: \['auto', 'direct', 'fft', 'im2col', "
                                             r"'tiled', 'winograd'\]"):
            call()


def test_fft_size_with_wrong_number_of_dimensions():
    with pytest.raises(ValueError, match=literal("fft_size=(16,)")):
        fftconv.conv2d(X, W, fft_size=(16,))


# ---------------------------------------------------------------------- memory: estimate before allocating
PASS_CALLS = {
    "forward": lambda x, w, gy, algo: fftconv.conv2d(x, w, algo=algo),
    "input": lambda x, w, gy, algo: fftconv.conv2d_input(x.shape, w, gy, algo=algo),
    "weight": lambda x, w, gy, algo: fftconv.conv2d_weight(x, w.shape, gy, algo=algo),
}
MEMORY_CHECKED = [pytest.param("fft", name, id=f"fft-{name}") for name in PASS_CALLS] + [
    pytest.param("im2col", "forward", id="im2col-forward"),
    pytest.param("im2col", "input", id="im2col-input"),
    pytest.param("im2col", "weight", id="im2col-weight"),
]
BUDGET_MESSAGE = r"needs about \d+\.\d\d GiB of buffers but only \d+\.\d\d GiB is available; use "


@pytest.mark.parametrize("algo,pass_name", MEMORY_CHECKED)
def test_memory_limit_from_environment(monkeypatch, algo, pass_name):
    """FFTCONV_MEMORY_LIMIT (bytes) caps the budget: a small problem over a 1 kB budget is refused."""
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", "1000")
    with pytest.raises(MemoryError, match=BUDGET_MESSAGE):
        PASS_CALLS[pass_name](X, W, GY, algo)
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", str(2 ** 30))  # the same problem fits in 1 GiB
    assert PASS_CALLS[pass_name](X, W, GY, algo).dtype == np.float64


@pytest.mark.parametrize("algo,pass_name", MEMORY_CHECKED)
def test_huge_problem_fails_fast_without_allocating(monkeypatch, algo, pass_name):
    """A 256 GiB float32 input (a broadcast view of one zero: no memory behind it) is refused before allocating.

    tracemalloc sees numpy's allocations (failed ones included), so a small peak proves the estimate came first;
    numpy's own "Unable to allocate" MemoryError would not match the message either.
    """
    monkeypatch.delenv("FFTCONV_MEMORY_LIMIT", raising=False)  # the real available memory
    zero = np.zeros((), np.float32)
    x = np.broadcast_to(zero, (64, 64, 4096, 4096))
    w = np.zeros((64, 64, 3, 3), np.float32)
    gy = np.broadcast_to(zero, (64, 64, 4094, 4094))
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=BUDGET_MESSAGE):
            PASS_CALLS[pass_name](x, w, gy, algo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2 ** 20, f"{peak / 2**20:.0f} MiB were allocated before the MemoryError"


def test_memory_error_names_the_problem_and_the_fix(monkeypatch):
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", "1000")
    with pytest.raises(MemoryError, match=literal("input=(2, 3, 8, 8), weight=(4, 3, 3, 3)") + ".*algo='im2col'"):
        fftconv.conv2d(X, W, algo="fft")
    with pytest.raises(MemoryError, match=literal("algo='im2col' for ConvGeometry(input=(2, 3, 8, 8)") + ".*algo='fft'"):
        fftconv.conv2d(X, W, algo="im2col")
