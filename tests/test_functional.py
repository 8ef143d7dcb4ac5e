"""Every algorithm x every pass x 1/2/3-d against the independent float64 oracle in ``tests/oracle.py``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.signal

import fftconv
import oracle
from conftest import CAPS, DTYPES, PASSES, SAFETY, assert_close, fft_points_bound, reduction_lengths, tolerance
from counting_backend import CountingBackend

ORACLE_PASS = {"forward": oracle.forward, "input": oracle.grad_input, "weight": oracle.grad_weight}


@dataclass(frozen=True)
class Case:
    """One convolution problem: array shapes plus the hyper-parameters passed verbatim to fftconv and the oracle."""

    batch: int
    in_channels: int
    out_channels: int
    input_shape: tuple
    kernel: tuple
    options: dict = field(default_factory=dict)
    bias: bool = False

    @property
    def ndim(self) -> int:
        return len(self.input_shape)

    @property
    def geometry(self) -> fftconv.ConvGeometry:
        groups = self.options.get("groups", 1)
        return fftconv.ConvGeometry.from_shapes((self.batch, self.in_channels, *self.input_shape),
                                                (self.out_channels, self.in_channels // groups, *self.kernel),
                                                **self.options)

    def arrays(self, rng, dtype):
        """Random input, weight, bias and output gradient, drawn in float64 and rounded once to ``dtype``."""
        groups = self.options.get("groups", 1)
        x = rng.standard_normal((self.batch, self.in_channels, *self.input_shape)).astype(dtype)
        w = rng.standard_normal((self.out_channels, self.in_channels // groups, *self.kernel)).astype(dtype)
        b = rng.standard_normal(self.out_channels).astype(dtype) if self.bias else None
        geo = oracle.OracleGeometry.resolve(self.kernel, **self.options)
        y_shape = (self.batch, self.out_channels, *geo.output_shape(self.input_shape, self.kernel))
        gy = rng.standard_normal(y_shape).astype(dtype)
        return x, w, b, gy


def run_pass(pass_name: str, x, w, b, gy, options: dict, **kwargs) -> np.ndarray:
    """One pass through the public generic API (``conv`` / ``conv_input`` / ``conv_weight``)."""
    if pass_name == "forward":
        return fftconv.conv(x, w, b, **options, **kwargs)
    if pass_name == "input":
        return fftconv.conv_input(x.shape, w, gy, **options, **kwargs)
    return fftconv.conv_weight(x, w.shape, gy, **options, **kwargs)


def run_oracle(pass_name: str, x, w, b, gy, options: dict) -> np.ndarray:
    if pass_name == "forward":
        return oracle.forward(x, w, b, **options)
    if pass_name == "input":
        return oracle.grad_input(x.shape, w, gy, **options)
    return oracle.grad_weight(x, w.shape, gy, **options)


def pass_tolerance(case: Case, pass_name: str, dtype, x, w, gy, fft_points=None, algo: str = "fft") -> float:
    """The suite's round-off model; Winograd's transforms add twice their rms growth of the rounding
    (:func:`fftconv.winograd.error_growth`, at the tile the public API runs)."""
    geo = oracle.OracleGeometry.resolve(case.kernel, **case.options)
    total_padding = [b + a for b, a in zip(geo.before, geo.after)]
    points = fft_points or fft_points_bound(x.shape, total_padding)
    reduction = reduction_lengths(x.shape, w.shape, gy.shape, geo.groups)[pass_name]
    if algo != "winograd":
        return tolerance(dtype, points, reduction)
    g = case.geometry
    tile = fftconv.choose.configure("winograd", g, pass_name, dtype)[1]["tile"]
    growth = fftconv.winograd.error_growth(g, pass_name, tile)
    return min(tolerance(dtype, points, reduction) + SAFETY * np.finfo(dtype).eps * 2 * growth, CAPS[np.dtype(dtype)])


def unsupported(algo: str, case: "Case") -> str | None:
    """Why ``algo`` cannot run ``case`` (Winograd: stride or dilation), or None."""
    return fftconv.ALGORITHMS[algo].unsupported_reason(case.geometry)


# Hand-picked geometries: each exercises one feature (or a combination) that has broken FFT convolutions before:
# strides that leave an unread tail, "same" with even kernels (asymmetric padding), dilation, groups, bias,
# anisotropic tuples, a kernel exactly as large as the padded input, and depthwise / pointwise layers.
CASES = {
    "1d-plain": Case(2, 3, 4, (11,), (3,)),
    "1d-stride2-pad1-bias": Case(2, 3, 4, (12,), (3,), dict(stride=2, padding=1), bias=True),
    "1d-stride3-unread-tail": Case(2, 2, 3, (12,), (2,), dict(stride=3)),
    "1d-same-even-dilated": Case(1, 2, 3, (10,), (4,), dict(padding="same", dilation=2)),
    "1d-same-k2": Case(2, 3, 2, (7,), (2,), dict(padding="same"), bias=True),
    "1d-groups3-valid-bias": Case(2, 6, 9, (9,), (3,), dict(padding="valid", groups=3), bias=True),
    "1d-tuple-all": Case(3, 4, 2, (13,), (3,), dict(stride=(2,), padding=(4,), dilation=(3,), groups=2)),
    "1d-kernel-fills-padded": Case(2, 2, 2, (3,), (5,), dict(padding=1)),
    "1d-pointwise-strided": Case(2, 3, 5, (9,), (1,), dict(stride=2)),
    "2d-plain": Case(2, 3, 4, (9, 8), (3, 2)),
    "2d-aniso-stride-pad-bias": Case(2, 3, 4, (9, 10), (3, 3), dict(stride=(2, 1), padding=(1, 2)), bias=True),
    "2d-same-even-dilated-groups": Case(2, 4, 6, (7, 9), (2, 4), dict(padding="same", dilation=(1, 2), groups=2)),
    "2d-stride-dil-groups-bias": Case(2, 6, 3, (11, 8), (3, 2),
                                      dict(stride=(3, 2), padding=(2, 0), dilation=(2, 1), groups=3), bias=True),
    "2d-valid-tail": Case(1, 2, 3, (10, 7), (3, 3), dict(stride=2, padding="valid")),
    "2d-depthwise": Case(2, 3, 3, (6, 7), (3, 3), dict(padding=1, groups=3), bias=True),
    "3d-plain": Case(1, 2, 3, (5, 6, 4), (2, 3, 2)),
    "3d-strided-padded-dilated": Case(2, 2, 3, (6, 5, 7), (2, 2, 3),
                                      dict(stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1)), bias=True),
    "3d-same-groups": Case(1, 4, 2, (4, 5, 4), (2, 3, 2), dict(padding="same", groups=2), bias=True),
    "3d-depthwise-strided": Case(1, 3, 3, (5, 5, 5), (3, 3, 3), dict(stride=2, padding=1, groups=3)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", list(CASES))
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("algo", list(fftconv.ALGORITHMS))
def test_every_algorithm_and_pass_matches_oracle(algo, pass_name, case_id, dtype, rng):
    case = CASES[case_id]
    x, w, b, gy = case.arrays(rng, dtype)
    before = [a.copy() for a in (x, w, gy)]
    reason = unsupported(algo, case)
    if reason is not None:  # asked for explicitly, an algorithm that cannot run the geometry says why
        with pytest.raises(ValueError, match=re.escape(reason)):
            run_pass(pass_name, x, w, b, gy, case.options, algo=algo)
        return
    result = run_pass(pass_name, x, w, b, gy, case.options, algo=algo)
    expected = run_oracle(pass_name, x, w, b, gy, case.options)
    assert result.dtype == np.dtype(dtype), f"output dtype {result.dtype} != input dtype {np.dtype(dtype)}"
    assert_close(result, expected, pass_tolerance(case, pass_name, dtype, x, w, gy, algo=algo),
                 f"{algo} {pass_name} {case_id}")
    for original, array in zip(before, (x, w, gy)):
        np.testing.assert_array_equal(array, original, err_msg="an input array was modified in place")


# Every FFT size policy (including an explicit, larger-than-minimal tuple with odd and even entries) with every
# installed backend, on geometries where the circular size matters: asymmetric padding, stride and dilation.
POLICY_CASES = ("1d-same-even-dilated", "2d-stride-dil-groups-bias", "3d-strided-padded-dilated")


def explicit_fft_size(case: Case) -> tuple[int, ...]:
    x_shape = (case.batch, case.in_channels, *case.input_shape)
    w_shape = (case.out_channels, case.in_channels // case.options.get("groups", 1), *case.kernel)
    minimal = fftconv.ConvGeometry.from_shapes(x_shape, w_shape, **case.options).minimal_fft_shape
    return tuple(m + 1 + i for i, m in enumerate(minimal))  # one above, two above, ...: odd and even sizes


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id", POLICY_CASES)
@pytest.mark.parametrize("policy", ["fast", "pow2", "minimal", "explicit"])
@pytest.mark.parametrize("backend", fftconv.available_backends())
def test_fft_size_policies_and_backends_match_oracle(backend, policy, case_id, dtype, rng):
    case = CASES[case_id]
    fft_size = explicit_fft_size(case) if policy == "explicit" else policy
    x, w, b, gy = case.arrays(rng, dtype)
    for pass_name in PASSES:
        result = run_pass(pass_name, x, w, b, gy, case.options, algo="fft", backend=backend, fft_size=fft_size)
        expected = run_oracle(pass_name, x, w, b, gy, case.options)
        assert result.dtype == np.dtype(dtype)
        points = math.prod(explicit_fft_size(case)) * 2 ** case.ndim  # >= every policy's size here
        assert_close(result, expected, pass_tolerance(case, pass_name, dtype, x, w, gy, points),
                     f"{backend} {policy} {pass_name}")


@pytest.mark.parametrize("algo", list(fftconv.ALGORITHMS))
def test_public_wrappers_match_oracle_for_each_dimension(algo, rng):
    """``conv{1,2,3}d`` / ``*_input`` / ``*_weight`` are the generic functions with the dimension pinned."""
    for case_id in ("1d-stride2-pad1-bias", "2d-aniso-stride-pad-bias", "3d-same-groups"):
        case = CASES[case_id]
        if unsupported(algo, case):
            continue  # the error is tested above
        x, w, b, gy = case.arrays(rng, np.float64)
        n = case.ndim
        forward = getattr(fftconv, f"conv{n}d")(x, w, b, **case.options, algo=algo)
        gx = getattr(fftconv, f"conv{n}d_input")(x.shape, w, gy, **case.options, algo=algo)
        gw = getattr(fftconv, f"conv{n}d_weight")(x, w.shape, gy, **case.options, algo=algo)
        tol = tolerance(np.float64, 2 ** 12, 10 ** 3)
        assert_close(forward, oracle.forward(x, w, b, **case.options), tol, f"conv{n}d")
        assert_close(gx, oracle.grad_input(x.shape, w, gy, **case.options), tol, f"conv{n}d_input")
        assert_close(gw, oracle.grad_weight(x, w.shape, gy, **case.options), tol, f"conv{n}d_weight")


@pytest.mark.parametrize("algo", list(fftconv.ALGORITHMS))
def test_non_contiguous_inputs(algo, rng):
    """Strided views and transposes are read correctly, not reinterpreted as contiguous memory."""
    base = rng.standard_normal((2, 8, 3, 20))
    x = base.transpose(0, 2, 1, 3)[..., ::2]  # (2, 3, 8, 10), neither C- nor F-contiguous
    w = rng.standard_normal((3, 4, 3, 3)).transpose(1, 0, 2, 3)  # (4, 3, 3, 3)
    gy = rng.standard_normal((2, 4, 20, 6)).transpose(0, 1, 3, 2)[:, :, :, ::2]  # (2, 4, 6, 10)
    options = dict(padding=(0, 1), stride=1)
    assert not x.flags.c_contiguous and not w.flags.c_contiguous and not gy.flags.c_contiguous
    tol = tolerance(np.float64, 256, 100)
    assert_close(fftconv.conv2d(x, w, **options, algo=algo), oracle.forward(x, w, **options), tol)
    assert_close(fftconv.conv2d_input(x.shape, w, gy, **options, algo=algo),
                 oracle.grad_input(x.shape, w, gy, **options), tol)
    assert_close(fftconv.conv2d_weight(x, w.shape, gy, **options, algo=algo),
                 oracle.grad_weight(x, w.shape, gy, **options), tol)


def test_fft_algorithm_really_uses_ffts(monkeypatch, rng):
    """No silent fallback: with the spatial algorithms sabotaged, algo='fft' still works and calls the FFT backend."""

    def sabotaged(*args, **kwargs):
        raise AssertionError("algo='fft' fell back to a spatial algorithm")

    for module in (fftconv.direct, fftconv.im2col):
        for name in ("forward", "grad_input", "grad_weight"):
            monkeypatch.setattr(module, name, sabotaged)
    case = CASES["2d-stride-dil-groups-bias"]
    x, w, b, gy = case.arrays(rng, np.float64)
    counter = CountingBackend(fftconv.NumpyBackend())
    for pass_name in PASSES:
        counter.reset()
        result = run_pass(pass_name, x, w, b, gy, case.options, algo="fft", backend=counter)
        assert_close(result, run_oracle(pass_name, x, w, b, gy, case.options), tolerance(np.float64, 1024, 100))
        assert counter.forward_maps > 0 and counter.inverse_maps > 0


# ---------------------------------------------------------------------- the oracle itself
def test_oracle_hand_computed_1d():
    """``y[i] = x[i] - x[i + 2]`` for the kernel (1, 0, -1); also through every algorithm."""
    x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    w = np.array([1.0, 0.0, -1.0]).reshape(1, 1, 3)
    expected = np.array([-2.0, -2.0, -2.0]).reshape(1, 1, 3)
    np.testing.assert_array_equal(oracle.forward(x, w), expected)
    # padding 1, stride 2: positions -1..5 of the zero-padded input, outputs at 0, 2, 4 -> [0-2, 2-4, 4-0]
    np.testing.assert_array_equal(oracle.forward(x, w, padding=1, stride=2), np.array([[[-2.0, -2.0, 4.0]]]))
    for algo in fftconv.ALGORITHMS:
        assert_close(fftconv.conv1d(x, w, algo=algo), expected, tolerance(np.float64, 8, 3), algo)


def test_oracle_matches_scipy_correlate(rng):
    """Cross-check of the oracle's index arithmetic against scipy.signal.correlate (valid mode, multichannel 2-d)."""
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    expected = np.array([[sum(scipy.signal.correlate(x[s, c], w[o, c], mode="valid") for c in range(3))
                          for o in range(4)] for s in range(2)])
    np.testing.assert_allclose(oracle.forward(x, w), expected, rtol=1e-12, atol=1e-12)
    # dilation 2 equals correlating with the kernel spread out by zeros
    spread = np.zeros((4, 3, 5, 3))
    spread[:, :, ::2, ::2] = w
    np.testing.assert_allclose(oracle.forward(x, w, dilation=2), oracle.forward(x, spread), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algo", list(fftconv.ALGORITHMS))
def test_input_read_only_through_padding(algo, rng):
    """Every output reads padding only (n=1, padding 1, stride 3): the forward pass is the bias, the gradients zero.

    Found by hypothesis in test_adjoint.py; kept as an explicit case because derandomized runs may not draw it.
    """
    x, w, b = rng.standard_normal((2, 2, 1)), rng.standard_normal((3, 2, 1)), rng.standard_normal(3)
    options = dict(stride=3, padding=1)
    gy = rng.standard_normal((2, 3, 1))
    if fftconv.ALGORITHMS[algo].unsupported_reason(fftconv.ConvGeometry.from_shapes(x.shape, w.shape, **options)):
        return  # stride 3: Winograd refuses, as tested above
    for pass_name in PASSES:
        result = run_pass(pass_name, x, w, b, gy, options, algo=algo)
        assert_close(result, run_oracle(pass_name, x, w, b, gy, options), tolerance(np.float64, 4, 2), pass_name)


PUBLIC = [f"conv{n}d{suffix}" for n in (1, 2, 3) for suffix in ("", "_input", "_weight")]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_functions_are_written_out_with_their_signatures_and_docs(name):
    """help() and inspect show the real parameters (no generated wrapper, no ndim), typed, with a numpydoc
    docstring whose shared options were filled in, and a runnable example (collected as a doctest)."""
    import inspect

    function = getattr(fftconv, name)
    first = {"": ["input", "weight", "bias"], "_input": ["input_size", "weight", "grad_output"],
             "_weight": ["input", "weight_size", "grad_output"]}[name[6:]]
    parameters = inspect.signature(function).parameters
    assert list(parameters) == [*first, "stride", "padding", "dilation", "groups", "algo", "backend", "fft_size"]
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())
    assert function.__name__ == name and function.__module__ == "fftconv.functional"
    assert not hasattr(function, "__wrapped__") and function.__code__.co_name == name
    doc = inspect.getdoc(function)
    for section in ("Parameters\n----------", "Returns\n-------", "Examples\n--------", "Notes\n-----",
                    "stride : int or tuple of int, default 1", f"fftconv.{name}("):
        assert section in doc, section
    assert "{options}" not in doc
