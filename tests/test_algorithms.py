"""The registry of algorithms: every entry through the public API and the layers, with the options the cost model
gives it; geometries an entry cannot run are refused with its reason. (Every entry against the oracle in every
pass and 1-3 dimensions: tests/test_functional.py, which parametrises over the registry.)"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import fftconv
import oracle
from conftest import assert_close, tolerance
from fftconv import choose, tiled, winograd
from fftconv.algorithms import ALGORITHMS
from fftconv.geometry import ConvGeometry
from fftconv.nn import Conv1d, Conv2d

PUBLIC = {1: (fftconv.conv1d, fftconv.conv1d_input, fftconv.conv1d_weight),
          2: (fftconv.conv2d, fftconv.conv2d_input, fftconv.conv2d_weight),
          3: (fftconv.conv3d, fftconv.conv3d_input, fftconv.conv3d_weight)}


# each test starts from the documented default rates and accuracy bound, with no cached decisions
pytestmark = pytest.mark.usefixtures("default_choose_state")


def test_registry_entries_declare_name_options_and_support():
    assert list(ALGORITHMS) == ["fft", "im2col", "direct", "winograd", "tiled"]
    assert choose.CANDIDATES == tuple(ALGORITHMS)
    plain = ConvGeometry.from_shapes((1, 2, 8, 8), (3, 2, 3, 3))
    for name, entry in ALGORITHMS.items():
        assert entry.name == name and entry.unsupported_reason(plain) is None
        for method in ("forward", "grad_input", "grad_weight"):
            parameters = inspect.signature(getattr(entry, method)).parameters
            positional = [p for p, v in parameters.items() if v.kind is not inspect.Parameter.KEYWORD_ONLY]
            keywords = [p for p, v in parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
            assert positional[-3:] == ["g", "backend", "fft_size"] and tuple(keywords) == entry.options, name
    assert {name for name, entry in ALGORITHMS.items() if entry.options} == {"winograd", "tiled"}


@pytest.mark.parametrize("options, reason", [
    (dict(stride=2), "winograd needs stride 1; stride=(2, 2)"),
    (dict(dilation=(1, 2)), "winograd needs dilation 1; dilation=(1, 2)"),
])
def test_winograd_refuses_strides_and_dilations_in_every_public_function(options, reason, rng):
    x, w = rng.standard_normal((2, 3, 11, 11)), rng.standard_normal((4, 3, 3, 3))
    g = ConvGeometry.from_shapes(x.shape, w.shape, **options)
    gy = rng.standard_normal(g.full_output_shape)
    assert ALGORITHMS["winograd"].unsupported_reason(g) == reason
    forward, grad_input, grad_weight = PUBLIC[2]
    for call in (lambda: forward(x, w, **options, algo="winograd"),
                 lambda: grad_input(x.shape, w, gy, **options, algo="winograd"),
                 lambda: grad_weight(x, w.shape, gy, **options, algo="winograd")):
        with pytest.raises(ValueError, match=re.escape(reason)):
            call()
    # auto leaves it out and says why
    report = fftconv.explain(x.shape, w.shape, **options, dtype=np.float64)
    assert all(c.excluded["winograd"] == reason and "winograd" not in c.estimates for c in report)
    assert f"winograd excluded: {reason}" in str(report)


@pytest.mark.parametrize("algo", ["winograd", "tiled"])
def test_the_public_functions_run_the_tile_the_model_picks(algo, monkeypatch, rng):
    """No fixed default: the tile that reaches the module is the cost model's cheapest, per pass."""
    x, w = rng.standard_normal((2, 4, 40, 40)), rng.standard_normal((5, 4, 3, 3))
    g = ConvGeometry.from_shapes(x.shape, w.shape, padding=1)
    gy = rng.standard_normal(g.full_output_shape)
    module = {"winograd": winograd, "tiled": tiled}[algo]
    seen = {}
    for method in ("forward", "grad_input", "grad_weight"):
        original = getattr(module, method)

        def spy(*args, _original=original, _method=method, **kwargs):
            seen[_method] = kwargs["tile"]
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, method, spy)
    y = fftconv.conv2d(x, w, padding=1, algo=algo)
    gx = fftconv.conv2d_input(x.shape, w, gy, padding=1, algo=algo)
    gw = fftconv.conv2d_weight(x, w.shape, gy, padding=1, algo=algo)
    for method, pass_name in (("forward", "forward"), ("grad_input", "input"), ("grad_weight", "weight")):
        best = choose.best_estimate(algo, g, pass_name, choose.get_rates(), dtype=np.float64,
                                    max_error=choose.get_accuracy())
        assert seen[method] == best.options["tile"]
    tol = tolerance(np.float64, 2 ** 12, 10 ** 3)
    assert_close(y, oracle.forward(x, w, padding=1), tol)
    assert_close(gx, oracle.grad_input(x.shape, w, gy, padding=1), tol)
    assert_close(gw, oracle.grad_weight(x, w.shape, gy, padding=1), tol)


def test_winograds_tile_respects_the_accuracy_bound():
    """A tighter bound moves Winograd to a smaller, more accurate tile; an impossible one to the most accurate."""
    g = ConvGeometry.from_shapes((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    rates = choose.MachineRates()
    loose = choose.best_estimate("winograd", g, "forward", rates, max_error=None)
    tight = choose.best_estimate("winograd", g, "forward", rates, max_error=2e-6)
    impossible = choose.best_estimate("winograd", g, "forward", rates, max_error=1e-9)
    assert tight.error <= 2e-6 < loose.error and loose.seconds < tight.seconds
    assert impossible.options["tile"] == (2, 2) and impossible.error > 1e-9
    previous = choose.set_accuracy(2e-6)
    try:
        assert choose.configure("winograd", g, "forward", np.float32)[1] == tight.options
    finally:
        choose.set_accuracy(previous)


@pytest.mark.parametrize("algo", ["winograd", "tiled"])
def test_layers_train_with_the_new_algorithms_like_im2col(algo, rng):
    """``fftconv.nn`` layers run every registered algorithm through the functional API."""
    x = rng.standard_normal((2, 3, 13, 12))
    layers = {name: Conv2d(3, 4, 3, padding="same", algo=name, dtype=np.float64, rng=0) for name in (algo, "im2col")}
    results = {}
    for name, layer in layers.items():
        y = layer.forward(x)
        gx = layer.backward(np.cos(y))
        results[name] = (y, gx, layer.grad_weight.copy(), layer.grad_bias.copy())
    for result, expected in zip(results[algo], results["im2col"]):
        assert_close(result, expected, tolerance(np.float64, 2 ** 10, 10 ** 3))
    assert f"algo='{algo}'" in repr(layers[algo])


def test_a_winograd_layer_with_a_stride_says_why_at_its_first_forward(rng):
    layer = Conv1d(2, 3, 3, stride=2, algo="winograd", dtype=np.float64)
    with pytest.raises(ValueError, match=re.escape("winograd needs stride 1; stride=(2,)")):
        layer.forward(rng.standard_normal((1, 2, 9)))


def test_tiled_takes_the_fft_options_for_its_tiles(rng):
    """``backend`` and ``fft_size`` reach the tiles' transforms: a fixed tile FFT size bounds the tile the model
    picks, and a typo fails."""
    x, w = rng.standard_normal((1, 2, 60)), rng.standard_normal((3, 2, 5))
    g = ConvGeometry.from_shapes(x.shape, w.shape)
    tile = choose.configure("tiled", g, "forward", np.float64, fft_size=(16,))[1]["tile"]
    assert (tile[0] - 1) + 5 <= 16  # a tile reads t + k - 1 inputs
    y = fftconv.conv1d(x, w, algo="tiled", backend="numpy", fft_size=(16,))
    assert_close(y, oracle.forward(x, w), tolerance(np.float64, 64, 10))
    with pytest.raises(ValueError, match="fft_size must be one of"):
        fftconv.conv1d(x, w, algo="tiled", fft_size="fastest")
    with pytest.raises(ValueError, match="backend 'fftw' is unknown"):
        fftconv.conv1d(x, w, algo="tiled", backend="fftw")


def test_a_named_algorithm_refuses_a_pass_it_cannot_compute_within_the_accuracy_bound(rng):
    """Under a bound of 1e-7, below what any tiled float32 transform keeps (F(2, 3)'s predicted error is 3.9e-7 here),
    Winograd has no tile left: the named call raises, naming the predicted error, instead of returning a larger error
    than asked for."""
    x = rng.uniform(-1, 1, (2, 8, 32, 32)).astype(np.float32)
    w = rng.uniform(-1, 1, (8, 8, 3, 3)).astype(np.float32)
    fftconv.choose.set_accuracy(1e-7)
    try:
        with pytest.raises(ValueError, match=r"algo='winograd' cannot compute this forward pass .* within "
                                             r"max_error=1e-07.* predicted relative error of"):
            fftconv.conv2d(x, w, algo="winograd")
        fftconv.choose.set_accuracy(None)  # with the bound lifted, the caller accepts the error knowingly
        assert fftconv.conv2d(x, w, algo="winograd").shape == (2, 8, 30, 30)
    finally:
        fftconv.choose.set_accuracy(fftconv.choose.DEFAULT_MAX_ERROR)
