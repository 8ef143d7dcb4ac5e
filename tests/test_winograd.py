"""Winograd's minimal filtering: exact transforms, the three passes against the float64 oracle, adjoints, PyTorch.

Tolerances. Winograd's transforms amplify round-off by :func:`fftconv.winograd.error_growth` (a statistical model
computed exactly from the matrices; about 1.7, 10 and 46 for 2-d F(2,3), F(4,3), F(6,3)), on top of the
``sqrt(K)`` of the channel (or batch) reduction that every method pays. So one result is allowed
``SAFETY * eps * (sqrt(K) + growth)`` relative max-norm error, the project's round-off model with the growth added.
float64 is also held to the project's 1e-10 cap; float32 is not capped: large tiles are less accurate by design,
and the tolerance grows with the tile exactly as the measured error does (docs/winograd.md).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from conftest import DTYPES, SAFETY, assert_close, relative_error, reduction_lengths
from fftconv import _cook_toom, winograd
from fftconv._cook_toom import cook_toom, correlate_exact, float_transforms, interpolation_points
from fftconv.geometry import ConvGeometry

ORACLE_PASS = {"forward": oracle.forward, "input": oracle.grad_input, "weight": oracle.grad_weight}
FLOAT64_CAP = 1e-10


# ------------------------------------------------------------------------------------------- exact transforms
EXACT_SIZES = [(2, 3), (4, 3), (6, 3), (3, 3), (1, 2), (3, 2), (2, 5), (4, 5), (2, 7), (6, 7), (1, 1), (5, 1),
               (1, 4), (8, 9)]


def direct_correlation(d, g):
    return [sum(d[i + k] * g[k] for k in range(len(g))) for i in range(len(d) - len(g) + 1)]


@pytest.mark.parametrize("m, r", EXACT_SIZES)
def test_exact_rational_algorithm_equals_direct_correlation(m, r):
    rng = random.Random(m * 100 + r)
    for _ in range(5):
        d = [Fraction(rng.randint(-50, 50), rng.randint(1, 9)) for _ in range(m + r - 1)]
        g = [Fraction(rng.randint(-50, 50), rng.randint(1, 9)) for _ in range(r)]
        assert correlate_exact(d, g, m) == direct_correlation(d, g)
    integers = [rng.randint(-10 ** 6, 10 ** 6) for _ in range(m + r - 1)]
    taps = [rng.randint(-10 ** 6, 10 ** 6) for _ in range(r)]
    assert correlate_exact(integers, taps, m) == direct_correlation(integers, taps)


@pytest.mark.parametrize("m, r", EXACT_SIZES)
def test_transform_shapes_and_a_basis_reproduce_every_tap(m, r):
    """Each unit filter must shift the data: a second exact check that catches any transposed matrix."""
    a_t, g_m, b_t = cook_toom(m, r)
    alpha = m + r - 1
    assert (len(a_t), len(a_t[0]), len(g_m), len(g_m[0]), len(b_t), len(b_t[0])) == (m, alpha, alpha, r, alpha, alpha)
    d = [Fraction(3 ** i, 2 ** i) for i in range(alpha)]
    for k in range(r):
        assert correlate_exact(d, [int(k == j) for j in range(r)], m) == d[k:k + m]


def test_data_transform_depends_only_on_the_transform_size():
    """F(m, r) and F(r, m) share B^T: the weight gradient's F(r, m) reuses the forward pass's data tiles."""
    for m, r in [(4, 3), (2, 5), (6, 3)]:
        assert cook_toom(m, r)[2] == cook_toom(r, m)[2]


@pytest.mark.parametrize("m, r", [(1, 9), (1, 3), (6, 1), (9, 1)])
def test_one_output_or_one_tap_needs_no_interpolation(m, r):
    """F(1, r) is a dot product and F(m, 1) a scaling: identity transforms, so in floating point the result is the
    plain sum, and the error growth is that of no tiling at all (interpolating through nine points grew it 120x)."""
    a_t, g_m, b_t = (np.array(matrix, dtype=float) for matrix in cook_toom(m, r))
    alpha = m + r - 1
    np.testing.assert_array_equal(b_t, np.eye(alpha))
    np.testing.assert_array_equal(g_m, np.eye(alpha) if m == 1 else np.ones((alpha, 1)))
    np.testing.assert_array_equal(a_t, np.ones((1, alpha)) if m == 1 else np.eye(alpha))
    spatial = (m + r - 1 + 2 * m,) * 2
    g = ConvGeometry.from_shapes((1, 1, *spatial), (1, 1, r, r))
    for pass_name in ("forward", "weight"):
        assert winograd.error_growth(g, pass_name, m) == pytest.approx(1.0)


def test_interpolation_points_are_distinct_small_dyadic_rationals():
    points = interpolation_points(15)
    assert len(set(points)) == 15 and points[:5] == (0, 1, -1, Fraction(1, 2), -2)
    assert all(abs(p) <= 8 and (p == 0 or math.log2(abs(p)).is_integer()) for p in points)


def test_float_transforms_are_rounded_exact_values_cached_read_only():
    exact = cook_toom(6, 3)
    for dtype in DTYPES:
        arrays = float_transforms(6, 3, dtype)
        assert float_transforms(6, 3, dtype) is arrays  # cached
        for array, rows in zip(arrays, exact):
            assert array.dtype == dtype and not array.flags.writeable
            np.testing.assert_array_equal(array, np.array([[float(v) for v in row] for row in rows]).astype(dtype))
        with pytest.raises(ValueError, match="read-only"):
            arrays[0][0, 0] = 2.0
    assert float_transforms.cache_info().maxsize is not None and cook_toom.cache_info().maxsize is not None


def test_transform_size_limit_and_bad_sizes():
    with pytest.raises(ValueError, match="m \\+ r - 1 = 17"):
        cook_toom(10, 8)
    with pytest.raises(ValueError, match="m must be a positive int"):
        cook_toom(0, 3)
    with pytest.raises(ValueError, match="d must have"):
        correlate_exact([1, 2, 3], [1, 2, 3], 2)


# --------------------------------------------------------------------------------------- passes vs the oracle
# (x shape, w shape, padding, groups, bias, tile): 1-d, 2-d, 3-d; symmetric, asymmetric ('same' with even k) and
# large (> r - 1: the input gradient crops its data) padding; groups incl. depthwise; r in 1, 2, 3, 4, 5, 7; tiles
# with partial edge tiles and the default (None).
CASES = [
    ((2, 3, 11), (4, 3, 3), 1, 1, True, 4),
    ((1, 2, 9), (2, 2, 5), 0, 1, False, 2),
    ((2, 4, 13), (6, 2, 7), 3, 2, True, 2),
    ((2, 2, 8), (3, 2, 2), "same", 1, False, 3),
    ((1, 1, 6), (1, 1, 1), 0, 1, True, None),
    ((2, 3, 10), (2, 3, 3), 4, 1, False, 6),
    ((2, 3, 9, 10), (4, 3, 3, 3), 1, 1, True, 4),
    ((1, 4, 8, 7), (4, 2, 4, 2), "same", 2, False, (2, 3)),
    ((2, 2, 7, 9), (3, 2, 5, 3), (2, 0), 1, True, (2, 6)),
    ((1, 2, 6, 6), (2, 2, 3, 3), 0, 1, False, None),
    ((2, 3, 12, 12), (2, 3, 3, 3), 1, 1, False, 6),
    ((1, 3, 5, 5), (3, 1, 3, 3), 2, 3, True, 2),
    ((1, 2, 6, 5, 7), (3, 2, 3, 2, 3), 1, 1, True, 2),
    ((2, 2, 5, 6, 4), (2, 1, 3, 3, 3), "same", 2, False, (3, 4, 2)),
]


def case_id(case) -> str:
    x_shape, w_shape, padding, groups, bias, tile = case
    return f"{len(x_shape) - 2}d-k{w_shape[2:]}-p{padding}-g{groups}-t{tile}".replace(" ", "")


def tolerance(dtype, growth: float, reduction: int) -> float:
    dtype = np.dtype(dtype)
    model = SAFETY * float(np.finfo(dtype).eps) * (math.sqrt(reduction) + growth)
    return min(model, FLOAT64_CAP) if dtype == np.float64 else model


def run_winograd(pass_name, g, x, w, b, gy, tile):
    if pass_name == "forward":
        return winograd.forward(x, w, b, g, tile=tile)
    if pass_name == "input":
        return winograd.grad_input(gy, w, g, tile=tile)
    return winograd.grad_weight(x, gy, g, tile=tile)


def run_oracle(pass_name, x, w, b, gy, options):
    if pass_name == "forward":
        return oracle.forward(x, w, b, **options)
    if pass_name == "input":
        return oracle.grad_input(x.shape, w, gy, **options)
    return oracle.grad_weight(x, w.shape, gy, **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_pass_against_the_oracle(case, dtype, rng):
    x_shape, w_shape, padding, groups, bias, tile = case
    options = dict(padding=padding, groups=groups)
    g = ConvGeometry.from_shapes(x_shape, w_shape, **options)
    x64, w64 = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b64, gy64 = rng.standard_normal(w_shape[0]) if bias else None, rng.standard_normal(g.full_output_shape)
    x, w, gy = (a.astype(dtype) for a in (x64, w64, gy64))
    b = None if b64 is None else b64.astype(dtype)
    reductions = reduction_lengths(x_shape, w_shape, g.full_output_shape, groups)
    for pass_name in ("forward", "input", "weight"):
        result = run_winograd(pass_name, g, x, w, b, gy, tile)
        assert result.dtype == dtype and result.flags.c_contiguous
        # the oracle sees the rounded inputs: only the algorithm's own round-off is measured
        expected = run_oracle(pass_name, x.astype(np.float64), w.astype(np.float64),
                              None if b is None else b.astype(np.float64), gy.astype(np.float64), options)
        tol = tolerance(dtype, winograd.error_growth(g, pass_name, tile), reductions[pass_name])
        assert_close(result, expected, tol, f"{pass_name} {case_id(case)} {np.dtype(dtype).name}")


def test_float32_error_grows_with_the_tile_as_the_model_says(rng):
    """A VGG-like 3x3 layer: the measured float32 error rises with the tile, and stays within the model."""
    g = ConvGeometry.from_shapes((2, 16, 24, 24), (16, 16, 3, 3), padding=1)
    x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
    expected = oracle.forward(x.astype(np.float32), w.astype(np.float32), padding=1)
    errors = {}
    for tile in (2, 4, 6):
        y = winograd.forward(x.astype(np.float32), w.astype(np.float32), None, g, tile=tile)
        errors[tile] = relative_error(y, expected)
        assert errors[tile] <= tolerance(np.float32, winograd.error_growth(g, "forward", tile), 16 * 9)
    assert errors[2] < errors[4] < errors[6]


@pytest.mark.parametrize("shape, rows", [((3, 20, 32, 32), slice(0, 32)), ((2, 9, 16, 16, 16), slice(2, 11)),
                                         ((3, 5, 34, 34), slice(1, 30)), ((1, 16, 64, 64), slice(None))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_copy_matches_the_transpose(shape, rows, dtype, rng):
    """Blocked where channels lie a multiple of 4 KiB apart (32 x 32 float32 and up), plain elsewhere: the same
    values either way, from views of rows as the chunks take them."""
    array = rng.standard_normal(shape).astype(dtype)
    block = array[:, :, rows]
    nd = block.ndim - 2
    got = winograd._channels_last(block)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, block.transpose(*range(2, 2 + nd), 0, 1))


@pytest.mark.parametrize("batch", [1, 3])
def test_chunks_of_tile_rows_and_of_images_give_the_same_result(batch, rng, monkeypatch):
    """Tiny chunks force the split into single tile rows (batch 1: one image per chunk) and into image ranges."""
    g = ConvGeometry.from_shapes((batch, 3, 13, 11), (5, 3, 3, 3), padding=1)
    x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
    gy = rng.standard_normal(g.full_output_shape)

    def passes():
        return [winograd.forward(x, w, None, g), winograd.grad_input(gy, w, g), winograd.grad_weight(x, gy, g)]

    whole = passes()
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    assert len(winograd._chunks(batch, 4, 100, 1)) == batch * 4
    for a, b in zip(whole, passes()):
        assert_close(a, b, 1e-13)


def test_non_contiguous_inputs(rng):
    g = ConvGeometry.from_shapes((2, 3, 8, 9), (4, 3, 3, 3), padding=1)
    x = rng.standard_normal((2, 3, 9, 18))[:, :, :8, ::-2]
    w = np.asfortranarray(rng.standard_normal(g.full_weight_shape))
    gy = rng.standard_normal((4, 2, 8, 9)).transpose(1, 0, 2, 3)
    assert_close(winograd.forward(x, w, None, g), oracle.forward(x, w, padding=1), 1e-12)
    assert_close(winograd.grad_input(gy, w, g), oracle.grad_input(x.shape, w, gy, padding=1), 1e-12)
    assert_close(winograd.grad_weight(x, gy, g), oracle.grad_weight(x, w.shape, gy, padding=1), 1e-12)


# ------------------------------------------------------------------------------------------ adjoint identities
@st.composite
def problems(draw):
    """A stride-1, dilation-1 convolution, a tile per axis, and a seed for the values."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    dims = st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim).map(tuple)
    kernel, tile = draw(dims), draw(dims)
    padding = draw(st.one_of(st.just("same"), st.integers(0, 3),
                             st.lists(st.integers(0, 3), min_size=ndim, max_size=ndim).map(tuple)))
    pads = (0,) * ndim if isinstance(padding, str) else np.broadcast_to(padding, ndim)
    extra = st.integers(0, 5 if ndim < 3 else 2)
    input_shape = tuple(max(1, k - 2 * int(p)) + draw(extra) for k, p in zip(kernel, pads))
    in_channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    g = ConvGeometry.from_shapes((draw(st.integers(1, 3)), in_channels, *input_shape),
                                 (out_channels, in_channels // groups, *kernel), padding=padding, groups=groups)
    return dict(g=g, tile=tile, seed=draw(st.integers(0, 2 ** 32 - 1)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(problem=problems())
def test_adjoint_identities(problem):
    """``<conv(x, w), gy> = <x, conv_input(gy, w)> = <w, conv_weight(x, gy)>`` in float64."""
    g, tile = problem["g"], problem["tile"]
    rng = np.random.default_rng(problem["seed"])
    x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
    gy = rng.standard_normal(g.full_output_shape)
    forms = [np.vdot(winograd.forward(x, w, None, g, tile=tile), gy),
             np.vdot(x, winograd.grad_input(gy, w, g, tile=tile)),
             np.vdot(w, winograd.grad_weight(x, gy, g, tile=tile))]
    # bound on the forms: |<y, gy>| <= sqrt(taps) |x| |w| |gy| (see test_adjoint.py), times the transform growth
    scale = math.sqrt(math.prod(g.kernel_shape)) * np.linalg.norm(x) * np.linalg.norm(w) * np.linalg.norm(gy)
    growth = max(winograd.error_growth(g, name, tile) for name in ("forward", "input", "weight"))
    tol = tolerance(np.float64, growth, max(x.size, w.size, gy.size)) * scale
    assert abs(forms[0] - forms[1]) <= tol and abs(forms[0] - forms[2]) <= tol, forms


# ------------------------------------------------------------------------------------------------- PyTorch
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # torch's note that it copies the input
@pytest.mark.parametrize("x_shape, w_shape, padding, groups, tile", [
    ((2, 4, 10), (6, 2, 3), 1, 2, 4),
    ((2, 3, 11, 9), (4, 3, 3, 3), "same", 1, None),
    ((1, 2, 9, 8), (3, 2, 4, 2), "same", 1, (6, 3)),
    ((1, 2, 5, 6, 7), (2, 2, 3, 3, 3), 1, 1, 2),
])
def test_against_pytorch(x_shape, w_shape, padding, groups, tile, rng):
    torch = pytest.importorskip("torch")
    g = ConvGeometry.from_shapes(x_shape, w_shape, padding=padding, groups=groups)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    gy = rng.standard_normal(g.full_output_shape)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    conv = getattr(torch.nn.functional, f"conv{len(x_shape) - 2}d")
    yt = conv(xt, wt, torch.tensor(b), padding=padding, groups=groups)
    yt.backward(torch.tensor(gy))
    assert_close(winograd.forward(x, w, b, g, tile=tile), yt.detach().numpy(), FLOAT64_CAP, "forward")
    assert_close(winograd.grad_input(gy, w, g, tile=tile), xt.grad.numpy(), FLOAT64_CAP, "input")
    assert_close(winograd.grad_weight(x, gy, g, tile=tile), wt.grad.numpy(), FLOAT64_CAP, "weight")


# ------------------------------------------------------------------------------------- errors and reasons
@pytest.mark.parametrize("options, message", [
    (dict(stride=2), "winograd needs stride 1; stride=\\(2, 2\\)"),
    (dict(stride=(1, 3)), "winograd needs stride 1; stride=\\(1, 3\\)"),
    (dict(dilation=2), "winograd needs dilation 1; dilation=\\(2, 2\\)"),
])
def test_stride_and_dilation_are_refused_with_the_reason(options, message, rng):
    g = ConvGeometry.from_shapes((1, 2, 11, 11), (2, 2, 3, 3), **options)
    unsupported = winograd.unsupported_reason(g)
    x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
    gy = rng.standard_normal(g.full_output_shape)
    for call in (lambda: winograd.forward(x, w, None, g), lambda: winograd.grad_input(gy, w, g),
                 lambda: winograd.grad_weight(x, gy, g), lambda: winograd.work(g, "forward")):
        with pytest.raises(ValueError, match=message):
            call()
    assert unsupported.startswith("winograd needs")


def test_bad_tiles():
    g = ConvGeometry.from_shapes((1, 1, 30, 30), (1, 1, 3, 3))
    assert winograd.unsupported_reason(g, 4) is None
    assert "at most 16 points" in winograd.unsupported_reason(g, 15)
    with pytest.raises(ValueError, match="tile must be positive"):
        winograd.unsupported_reason(g, 0)
    with pytest.raises(ValueError, match="tuple of 2 ints"):
        winograd.forward(np.zeros((1, 1, 30, 30)), np.zeros((1, 1, 3, 3)), None, g, tile=(2, 2, 2))
    with pytest.raises(TypeError, match="tile must be an int"):
        winograd.work(g, "forward", tile=2.5)
    with pytest.raises(ValueError, match="pass_name must be one of"):
        winograd.work(g, "backward")


# -------------------------------------------------------------------------------------- tiles and cost model
def test_default_tile_and_choices():
    g = ConvGeometry.from_shapes((1, 1, 32, 32, 2), (1, 1, 3, 5, 1))
    assert winograd.default_tile(g) == (4, 2, 1)
    small = ConvGeometry.from_shapes((1, 1, 4, 9), (1, 1, 3, 7))
    assert winograd.default_tile(small) == (2, 2)  # clipped to the output (2, 3); r = 7 gets 2
    assert winograd.default_tile(ConvGeometry.from_shapes((1, 1, 5), (1, 1, 3))) == (3,)
    assert winograd.tile_choices(3) == (2, 3, 4, 5, 6) and winograd.tile_choices(7) == (2,)
    assert all(m + r - 1 <= 8 for r in range(2, 8) for m in winograd.tile_choices(r))


def test_work_counts_by_hand():
    """1-d, S=2, f=3 -> f'=4, k=3, n=10, no padding: output 8, tile 4 -> 2 tiles of alpha = 6 per image."""
    g = ConvGeometry.from_shapes((2, 3, 10), (4, 3, 3))
    fwd = winograd.work(g, "forward", 4, np.float64)
    assert (fwd.positions, fwd.tiles, fwd.transform_size) == (6, 2, (6,))
    assert fwd.gemm_flops == 2 * 6 * 4 * 3 * (2 * 2) and fwd.gemm_shape == (4, 4, 3) and fwd.gemm_count == 6
    assert fwd.data_transform_flops == 2 * 6 * 6 * (2 * 2 * 3)  # a 6x6 matrix on each of S*T*f tiles
    assert fwd.filter_transform_flops == 2 * 6 * 3 * (4 * 3)
    assert fwd.output_transform_flops == 2 * 4 * 6 * (2 * 2 * 4)
    assert (fwd.data_bytes, fwd.filter_bytes, fwd.product_bytes) == (6 * 12 * 8, 6 * 12 * 8, 6 * 16 * 8)
    assert fwd.direct_flops == 2 * 2 * 4 * 3 * 8 * 3
    # 2 tiles of 4 read 2 * 4 + 2 = 10 inputs: no padding; the 2*3*10 inputs transposed channels-last (runs of 3
    # channels), the 2*2*4 outputs scattered from tiles of 4
    assert fwd.padded_elements == 0 and fwd.copies == ((2 * 3 * 10, 3), (2 * 2 * 4 * 4, 4))
    grad_in = winograd.work(g, "input", 4, np.float64)  # tiles over the input: 10 -> 3 tiles
    assert grad_in.tiles == 3 and grad_in.gemm_shape == (3, 6, 4)
    # dy (8 long) shifted by r - 1 = 2 and zero-extended to 3 * 4 + 2 = 14; the last tile's 2 extra inputs cropped
    assert grad_in.padded_elements == 2 * 4 * 14 and grad_in.copies[-1] == (2 * 3 * 10, 10)
    weight = winograd.work(g, "weight", 4, np.float32)
    assert weight.gemm_shape == (4, 4, 3) and weight.output_transform_flops == 2 * 3 * 6 * 12
    assert weight.filter_transform_flops == 2 * 6 * 4 * (2 * 2 * 4) and weight.product_bytes == 6 * 12 * 4
    assert weight.flops == weight.transform_flops + weight.gemm_flops


def test_work_in_2d_factors_per_axis():
    """Dense per-axis transforms: the first axis maps alpha -> alpha on alpha-long rows, and so on."""
    g = ConvGeometry.from_shapes((4, 8, 16, 16), (8, 8, 3, 3), padding=1)
    counts = winograd.work(g, "forward", (4, 2))
    alpha, tiles = (6, 4), 4 * 8
    assert counts.data_transform_flops == 2 * (6 * 6 * 4 + 4 * 4 * 6) * 4 * tiles * 8
    assert counts.output_transform_flops == 2 * (4 * 6 * 4 + 2 * 4 * 4) * 4 * tiles * 8
    assert counts.gemm_flops / counts.direct_flops == math.prod(alpha) / (4 * 2 * 9)


def test_error_growth_is_one_without_tiling_and_rises_with_the_tile():
    g = ConvGeometry.from_shapes((1, 1, 20, 20), (1, 1, 3, 3))
    growth = [winograd.error_growth(g, "forward", m) for m in (2, 4, 6)]
    assert growth == sorted(growth) and growth[0] < 2 < 40 < growth[2] < 50
    point = ConvGeometry.from_shapes((1, 1, 20), (1, 1, 1))
    assert winograd.error_growth(point, "forward", 1) == 1.0
    assert _cook_toom.MAX_TRANSFORM_SIZE == 16
