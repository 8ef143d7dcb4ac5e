"""Adjoint identities over random geometries (hypothesis): the three passes are one bilinear form read three ways.

For ``y = conv(x, w)`` and any ``g`` of y's shape, ``<y, g> = <x, conv_input(g, w)> = <w, conv_weight(x, g)>``. This
needs no oracle at all, so it checks each algorithm's gradients against its own forward pass, and across
algorithms, on geometries nobody picked by hand.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fftconv
from conftest import assert_close, tolerance

# Few examples per algorithm keep the suite fast; derandomize makes every run draw the same examples, so a failure
# in CI reproduces locally (hypothesis still prints the falsifying example).
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def problems(draw):
    """A valid convolution: shapes, hyper-parameters and a seed for the array values."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    in_channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    dims = st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim).map(tuple)
    kernel, dilation = draw(dims), draw(dims.map(lambda t: tuple(min(d, 2) for d in t)))
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.integers(0, 2),
                             st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim).map(tuple)))
    stride = (1,) * ndim if padding == "same" else draw(dims)
    pads = (0,) * ndim if isinstance(padding, str) else np.broadcast_to(padding, ndim)
    extra = st.integers(0, 5 if ndim < 3 else 2)
    input_shape = tuple(max(1, d * (k - 1) + 1 - 2 * int(p)) + draw(extra) for k, d, p in zip(kernel, dilation, pads))
    batch = draw(st.integers(1, 3))
    return dict(x_shape=(batch, in_channels, *input_shape), w_shape=(out_channels, in_channels // groups, *kernel),
                options=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


def unsupported(algo: str, problem) -> str | None:
    """Why ``algo`` cannot run the problem (Winograd: stride or dilation), or None."""
    g = fftconv.ConvGeometry.from_shapes(problem["x_shape"], problem["w_shape"], **problem["options"])
    return fftconv.ALGORITHMS[algo].unsupported_reason(g)


def check_adjoint(problem, algo: str, dtype) -> None:
    rng = np.random.default_rng(problem["seed"])
    x = rng.standard_normal(problem["x_shape"]).astype(dtype)
    w = rng.standard_normal(problem["w_shape"]).astype(dtype)
    options = problem["options"]
    reason = unsupported(algo, problem)
    if reason is not None:  # the algorithm says why instead
        with pytest.raises(ValueError, match=re.escape(reason)):
            fftconv.conv(x, w, **options, algo=algo)
        return
    y = fftconv.conv(x, w, **options, algo=algo)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = fftconv.conv_input(x.shape, w, g, **options, algo=algo)
    gw = fftconv.conv_weight(x, w.shape, g, **options, algo=algo)
    assert gx.shape == x.shape and gw.shape == w.shape and gx.dtype == gw.dtype == np.dtype(dtype)
    as64 = [a.astype(np.float64).ravel() for a in (y, g, x, gx, w, gw)]
    forms = [float(np.dot(a, b)) for a, b in zip(as64[::2], as64[1::2])]
    # Round-off is relative to a bound on the forms, not to their value (which can cancel to zero, or be exactly
    # zero when every output reads padding): |<y, g>| <= |y| |g| <= sqrt(taps) |x| |w| |g|, since each entry of y
    # is <w, one window of x> and each input entry lies in at most prod(kernel) windows.
    taps = math.prod(problem["w_shape"][2:])
    scale = math.sqrt(taps) * float(np.linalg.norm(as64[2]) * np.linalg.norm(as64[4]) * np.linalg.norm(as64[1]))
    reduction = max(math.prod(problem["w_shape"][1:]), y.size)
    tol = tolerance(dtype, 2 ** (4 * len(problem["w_shape"][2:])), reduction)
    assert abs(forms[0] - forms[1]) <= tol * scale, f"<conv(x,w),g>={forms[0]} != <x,conv_input(g,w)>={forms[1]}"
    assert abs(forms[0] - forms[2]) <= tol * scale, f"<conv(x,w),g>={forms[0]} != <w,conv_weight(x,g)>={forms[2]}"


@pytest.mark.parametrize("algo", list(fftconv.ALGORITHMS))
@SETTINGS
@given(problem=problems())
def test_adjoint_identities_float64(algo, problem):
    check_adjoint(problem, algo, np.float64)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(problem=problems())
def test_adjoint_identities_float32_fft(problem):
    check_adjoint(problem, "fft", np.float32)


@SETTINGS
@given(problem=problems())
def test_algorithms_agree_with_each_other(problem):
    """On the same random geometry all algorithms give the same three results (float64, round-off level)."""
    rng = np.random.default_rng(problem["seed"])
    x, w = rng.standard_normal(problem["x_shape"]), rng.standard_normal(problem["w_shape"])
    options = problem["options"]
    results = {}
    for algo in fftconv.ALGORITHMS:
        if unsupported(algo, problem):
            continue
        y = fftconv.conv(x, w, **options, algo=algo)
        g = np.random.default_rng(problem["seed"] + 1).standard_normal(y.shape)
        results[algo] = (y, fftconv.conv_input(x.shape, w, g, **options, algo=algo),
                         fftconv.conv_weight(x, w.shape, g, **options, algo=algo))
    reference = results.pop("direct")
    for algo, outputs in results.items():
        for result, expected, name in zip(outputs, reference, ("forward", "input", "weight")):
            assert_close(result, expected, tolerance(np.float64, 2 ** 12, 10 ** 3), f"{algo} {name} vs direct")
