"""ConvGeometry's derived shapes, the minimal circular FFT size and the FFT size policies."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fftconv
import oracle
from conftest import PASSES, relative_error
from fftconv import ConvGeometry, ConvParams, SpectralPlan, fft_shape_for, next_fast_size, next_power_of_two


def torch_formula(n, k, s, p_total, d) -> int:
    """PyTorch's documented output size: floor((n + 2p - d(k-1) - 1) / s) + 1, with 2p the total padding."""
    return math.floor((n + p_total - d * (k - 1) - 1) / s) + 1


def draw_geometry(rng, ndim):
    kernel = tuple(int(k) for k in rng.integers(1, 6, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 4, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 5, ndim))
    padding = tuple(int(p) for p in rng.integers(0, 4, ndim))
    shape = tuple(max(1, d * (k - 1) + 1 - 2 * p) + int(rng.integers(0, 12))
                  for k, d, p in zip(kernel, dilation, padding))
    return shape, kernel, dict(stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_output_shape_follows_pytorch_formula(ndim, rng):
    for _ in range(50):
        shape, kernel, options = draw_geometry(rng, ndim)
        g = ConvGeometry.from_shapes((2, 3, *shape), (4, 3, *kernel), **options)
        expected = tuple(torch_formula(n, k, s, 2 * p, d) for n, k, s, p, d in zip(
            shape, kernel, options["stride"], options["padding"], options["dilation"]))
        assert g.output_shape == expected, options
        assert g.full_output_shape == (2, 4, *expected)
        assert g.full_input_shape == (2, 3, *shape) and g.full_weight_shape == (4, 3, *kernel)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # torch's own performance note
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_output_shape_matches_torch(ndim, rng):
    torch = pytest.importorskip("torch")
    conv = getattr(torch.nn.functional, f"conv{ndim}d")
    for _ in range(20):
        shape, kernel, options = draw_geometry(rng, ndim)
        if rng.random() < 0.3:
            options.update(padding="same", stride=1)
        g = ConvGeometry.from_shapes((1, 2, *shape), (2, 1, *kernel), groups=2, **options)
        y = conv(torch.zeros((1, 2, *shape), dtype=torch.float64), torch.zeros((2, 1, *kernel), dtype=torch.float64),
                 groups=2, **options)
        assert g.full_output_shape == tuple(y.shape), options


@pytest.mark.parametrize("kernel,dilation,before,after", [
    (3, 1, 1, 1), (4, 1, 1, 2), (2, 1, 0, 1), (4, 2, 3, 3), (2, 3, 1, 2), (1, 5, 0, 0)])
def test_same_padding_puts_the_extra_zero_after(kernel, dilation, before, after):
    """PyTorch splits the total d*(k-1) with the smaller half in front; hand-computed splits."""
    g = ConvGeometry.from_shapes((1, 1, 11), (1, 1, kernel), padding="same", dilation=dilation)
    assert (g.padding_before, g.padding_after) == ((before,), (after,))
    assert g.output_shape == (11,)


def test_valid_padding_and_derived_extents():
    g = ConvGeometry.from_shapes((1, 1, 12, 9), (1, 1, 2, 3), padding="valid", stride=(3, 1), dilation=(1, 2))
    assert (g.padding_before, g.padding_after) == ((0, 0), (0, 0))
    assert g.dilated_kernel_shape == (2, 5)
    assert g.output_shape == (4, 5)  # (12-2)//3+1, 9-5+1
    # rows read: outputs 0..3 at stride 3 start at 0, 3, 6, 9 and read two rows each -> rows 0..10; row 11 unread
    assert g.receptive_extent == (11, 9) and g.used_input_shape == (11, 9)


def test_repr_shows_only_what_differs_from_the_defaults():
    plain = repr(ConvGeometry.from_shapes((2, 3, 8), (4, 3, 3)))
    assert plain == "ConvGeometry(input=(2, 3, 8), weight=(4, 3, 3), output=(2, 4, 6))"
    rich = repr(ConvGeometry.from_shapes((2, 4, 8), (4, 2, 3), stride=2, padding=1, dilation=2, groups=2))
    assert all(part in rich for part in ("stride=(2,)", "dilation=(2,)", "padding=(1,)/(1,)", "groups=2"))


# ---------------------------------------------------------------------- the minimal circular size
# Hand-derived minima (1-d, one sample, one channel). The circular correlation reads x at (i*s + t*d - b) mod N;
# every read that is meant to land in the padding must land on a zero, and every real sample must be read unaliased.
MINIMAL_CASES = [
    # valid correlation: reads of outputs 0..m-1 stay inside 0..n-1, so N = n suffices
    (dict(n=10, k=3), 10),
    # padding 1 each side: zeros needed after the data for both the trailing pad and the wrapped leading pad,
    # and one zero slot serves both: N = n + max(before, after) = 11
    (dict(n=10, k=3, padding=1), 11),
    # 'same' with an even kernel: before 1, after 2 -> N = n + 2 = 10
    (dict(n=8, k=4, padding="same"), 10),
    # stride 3 leaves the last sample unread (outputs read 0..10 of 0..11): it need not be transformed, N = 11
    (dict(n=12, k=2, stride=3), 11),
    # dilation 3: the dilated kernel spans 7 samples, valid reads cover 0..8, N = n = 9
    (dict(n=9, k=3, dilation=3), 9),
    # stride 2, padding 2: the 6 outputs read padded 0..12, i.e. two zeros, all 10 samples and one of the two
    # trailing zeros: N = 10 + max(2, 1) = 12
    (dict(n=10, k=3, stride=2, padding=2), 12),
    # stride 3, padding 1: the 4 outputs read padded 0..11, i.e. one zero and samples 0..10; sample 11 and the
    # trailing zero are never read, so they need not be transformed: N = 11 + 1 = 12
    (dict(n=12, k=3, stride=3, padding=1), 12),
]

# Where padding reaches further than any kernel tap needs, some outputs (or kernel taps) read padding only and
# contribute nothing; the exact minimum is then max(n_used + b, L - b), smaller than the dilated kernel or the
# upsampled gradient, whose wrapped entries the implementation sums (aliasing).
NOT_TIGHT_CASES = [
    # 9 outputs of a 1-tap kernel; outputs 0, 1, 7, 8 read padding only: 5 + 2 = 7 is exact (formula: 9)
    (dict(n=5, k=1, padding=2), 7),
    # a 9-tap kernel over 4 samples padded by 4: N = 4 + 4 = 8 is exact (formula: 9, the kernel length)
    (dict(n=4, k=9, padding=4), 8),
]


def geometry_1d(n, k, **options) -> ConvGeometry:
    return ConvGeometry.from_shapes((1, 1, n), (1, 1, k), **options)


@pytest.mark.parametrize("spec,expected", MINIMAL_CASES)
def test_minimal_fft_shape_hand_computed(spec, expected):
    g = geometry_1d(**spec)
    assert g.minimal_fft_shape == (expected,)
    assert fft_shape_for(g, "minimal") == (expected,)
    assert fft_shape_for(g, (expected,)) == (expected,)
    with pytest.raises(ValueError, match=rf"fft_size=\({expected - 1},\) is too small .* at least \({expected},\)"):
        fft_shape_for(g, (expected - 1,))


@pytest.mark.parametrize("spec,expected", NOT_TIGHT_CASES)
def test_minimal_fft_shape_when_padding_exceeds_the_kernel_reach(spec, expected, rng):
    g = geometry_1d(**spec)
    x, w = rng.standard_normal((1, 1, spec["n"])), rng.standard_normal((1, 1, spec["k"]))
    gy = rng.standard_normal(g.full_output_shape)
    options = {"padding": spec["padding"]}
    assert worst_error_at(g, (expected,), x, w, gy, options) < 1e-12  # exact at the smaller size
    assert g.minimal_fft_shape == (expected,)


def run_three_passes(plan: SpectralPlan, x, w, gy) -> dict:
    return {
        "forward": plan.forward(plan.transform_input(x), plan.transform_weight(w)),
        "input": plan.grad_input(plan.transform_grad_output(gy), plan.transform_weight(w)),
        "weight": plan.grad_weight(plan.transform_input(x), plan.transform_grad_output(gy)),
    }


def worst_error_at(geometry: ConvGeometry, fft_shape, x, w, gy, options) -> float:
    """Largest relative error over the three passes with a plan forced to ``fft_shape`` (bypassing the check)."""
    plan = SpectralPlan(geometry, np.dtype(np.float64), tuple(fft_shape), fftconv.get_backend("numpy"))
    try:
        results = run_three_passes(plan, x, w, gy)
    except (ValueError, IndexError):  # an undersized buffer the implementation cannot even index
        return math.inf
    expected = {"forward": oracle.forward(x, w, **options), "input": oracle.grad_input(x.shape, w, gy, **options),
                "weight": oracle.grad_weight(x, w.shape, gy, **options)}
    return max(relative_error(results[name], expected[name]) for name in PASSES)


MINIMALITY_GEOMETRIES = [
    ((2, 2, 10), (3, 2, 3), dict(padding=1)),
    ((2, 2, 8), (3, 2, 4), dict(padding="same")),
    ((1, 2, 12), (2, 2, 2), dict(stride=3)),
    ((1, 1, 9, 7), (2, 1, 3, 2), dict(dilation=(3, 1), padding=(0, 1))),
    ((2, 2, 7, 8), (2, 2, 2, 3), dict(stride=(2, 3), padding=(1, 0))),
    ((1, 1, 10), (1, 1, 3), dict(stride=2, padding=2)),
    ((1, 2, 5, 4, 6), (2, 2, 2, 3, 2), dict(padding=(1, 0, 1), stride=(1, 2, 1))),
]


@pytest.mark.parametrize("x_shape,w_shape,options", MINIMALITY_GEOMETRIES)
def test_minimal_fft_shape_is_exact_and_one_less_is_not(x_shape, w_shape, options, rng):
    """At the minimal size all three passes are exact; one less in any dimension breaks at least one of them."""
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    g = ConvGeometry.from_shapes(x_shape, w_shape, **options)
    gy = rng.standard_normal(g.full_output_shape)
    minimal = g.minimal_fft_shape
    assert worst_error_at(g, minimal, x, w, gy, options) < 1e-12
    for axis in range(g.ndim):
        smaller = tuple(n - (i == axis) for i, n in enumerate(minimal))
        assert worst_error_at(g, smaller, x, w, gy, options) > 1e-6, f"{smaller} is still exact: {minimal} not minimal"


# ---------------------------------------------------------------------- size policies
def is_7_smooth(n: int) -> bool:
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


@pytest.mark.parametrize("n,expected", [(1, 1), (2, 2), (7, 7), (11, 12), (13, 14), (17, 18), (23, 24), (29, 30),
                                        (31, 32), (97, 98), (121, 125), (211, 216), (1000, 1000), (1001, 1008)])
def test_next_fast_size_hand_computed(n, expected):
    assert next_fast_size(n) == expected


def test_next_fast_size_is_the_smallest_7_smooth_at_or_above():
    for n in range(1, 600):
        size = next_fast_size(n)
        assert size >= n and is_7_smooth(size)
        assert not any(is_7_smooth(m) for m in range(n, size)), n


@pytest.mark.parametrize("n,expected", [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (33, 64), (64, 64), (65, 128)])
def test_next_power_of_two_hand_computed(n, expected):
    assert next_power_of_two(n) == expected


def test_fft_shape_for_each_policy():
    # minimal (11, 10): rows need n + max(b, a) = 9 + 2; columns are a valid correlation over 10 samples
    g = ConvGeometry.from_shapes((1, 1, 9, 10), (1, 1, 5, 3), padding=(2, 0))
    assert g.minimal_fft_shape == (11, 10)
    assert fft_shape_for(g, "minimal") == (11, 10)
    assert fft_shape_for(g, "fast") == (12, 10)
    assert fft_shape_for(g, None) == fft_shape_for(g, "fast")  # the documented default
    assert fft_shape_for(g, "pow2") == (16, 16)
    assert fft_shape_for(g, (13, 17)) == (13, 17)  # explicit sizes above the minimum are kept as given
    assert fft_shape_for(g, [11, 10]) == (11, 10)
    assert set(fftconv.FFT_SIZE_POLICIES) == {"fast", "pow2", "minimal"}


def test_plans_use_the_policy_sizes():
    g = ConvGeometry.from_shapes((1, 1, 9, 10), (1, 1, 5, 3), padding=(2, 0))
    for policy, expected in (("minimal", (11, 10)), ("fast", (12, 10)), ("pow2", (16, 16)), ((13, 17), (13, 17))):
        assert SpectralPlan.create(g, np.float32, backend="numpy", fft_size=policy).fft_shape == expected


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_minimal_fft_shape_is_sufficient_for_random_geometries(ndim, rng):
    """Property over seeded draws (stride, padding, dilation): all three passes are exact at the minimal size."""
    for _ in range(8 if ndim < 3 else 4):
        shape, kernel, options = draw_geometry(rng, ndim)
        shape = tuple(min(n, 9) for n in shape) if ndim == 3 else shape
        try:
            g = ConvGeometry.from_shapes((2, 2, *shape), (3, 2, *kernel), **options)
        except ValueError:  # the capped 3-d shape no longer fits the kernel
            continue
        if 0 in g.used_input_shape:  # every output reads padding only: a known spectral.py failure, see
            continue                 # test_functional.py::test_input_read_only_through_padding
        x, w = rng.standard_normal(g.full_input_shape), rng.standard_normal(g.full_weight_shape)
        gy = rng.standard_normal(g.full_output_shape)
        assert worst_error_at(g, g.minimal_fft_shape, x, w, gy, options) < 1e-12, g


# ---------------------------------------------------------------------- ConvParams
def test_conv_params_normalise_each_hyper_parameter_once():
    p = ConvParams.create(3, stride=2, padding=(1, 0, 2), dilation=(1, 2, 1), groups=4)
    assert (p.ndim, p.stride, p.padding, p.dilation, p.groups) == (3, (2, 2, 2), (1, 0, 2), (1, 2, 1), 4)
    assert ConvParams.create(2, padding="valid").padding_for((3, 5)) == ((0, 0), (0, 0))
    assert ConvParams.create(1, padding=np.int64(2), stride=np.int32(3)).stride == (3,)
    same = ConvParams.create(2, padding="same", dilation=2)
    assert same.padding == "same" and same.padding_for((3, 4)) == ((2, 3), (2, 3))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(stride=(1, 2, 3)), ValueError, "stride must be an int or a tuple of 2 ints for a 2-d convolution"),
    (dict(stride=1.5), TypeError, "stride must be an int or a tuple of 2 ints, got 1.5"),
    (dict(dilation=0), ValueError, r"dilation must be positive in every dimension, got \(0, 0\)"),
    (dict(padding=-1), ValueError, r"padding must be non-negative, got \(-1, -1\)"),
    (dict(padding="full"), ValueError, "padding must be an int, a tuple of ints, 'valid' or 'same', got 'full'"),
    (dict(padding="same", stride=2), ValueError, "padding='same' requires stride 1"),
    (dict(groups=0), ValueError, "groups must be a positive int, got 0"),
    (dict(groups=2.0), ValueError, "groups must be a positive int, got 2.0"),
])
def test_conv_params_reject_bad_values_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        ConvParams.create(2, **kwargs)


def test_geometry_from_params_equals_from_shapes(rng):
    for ndim in (1, 2, 3):
        for _ in range(20):
            shape, kernel, options = draw_geometry(rng, ndim)
            params = ConvParams.create(ndim, groups=1, **options)
            assert (ConvGeometry.from_params(params, (2, 3, *shape), (4, 3, *kernel))
                    == ConvGeometry.from_shapes((2, 3, *shape), (4, 3, *kernel), **options))
    with pytest.raises(ValueError, match=r"weight has 3 spatial dimensions but the convolution has 2"):
        ConvGeometry.from_params(ConvParams.create(2), (1, 1, 8, 8, 8), (1, 1, 3, 3, 3))


def test_padded_input_shape_is_the_input_plus_both_paddings():
    g = ConvGeometry.from_shapes((2, 3, 10, 7), (4, 3, 4, 3), padding="same")
    assert (g.padding_before, g.padding_after) == ((1, 1), (2, 1))
    assert g.padded_input_shape == (13, 9) and g.full_padded_input_shape == (2, 3, 13, 9)
