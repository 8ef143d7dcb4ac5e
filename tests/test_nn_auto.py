"""fftconv.nn convolution layers with ``algo="auto"``: each pass runs what the chooser picked, FFT passes share spectra,
NaN and inf land where PyTorch puts them, and training matches im2col.

Oracles: the float64 loops of tests/oracle.py, PyTorch, and layers with a named algorithm. Which algorithm ran each
pass is recorded by wrapping the registry's entries and the spectral plan's passes, so that no test can pass through
another path than the one it claims; transform counts come from ``CountingBackend``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import oracle
from conftest import assert_close, tolerance
from counting_backend import CountingBackend
from fftconv import NumpyBackend, SpectralPlan, algorithms
from fftconv.choose import decide
from fftconv.nn import SGD, Conv1d, Conv2d, Conv3d, CrossEntropyLoss, Flatten, Linear, ReLU, Sequential, Workspace
from fftconv.nn.workspace import default_workspace

CONV = {1: Conv1d, 2: Conv2d, 3: Conv3d}
PASSES = ("forward", "input", "weight")
HYPER = ("stride", "padding", "dilation", "groups")


@pytest.fixture
def model_mode(monkeypatch, default_choose_state):
    """The chooser decides from the cost model at the documented default rates: nothing is timed, so its picks are
    the same on every machine and every run."""
    monkeypatch.setenv("FFTCONV_AUTO", "model")


def force_picks(monkeypatch, picks):
    """Make the chooser pick ``picks[pass]`` (or ``picks(geometry)[pass]``) with the options the cost model gives
    that algorithm on the geometry (a Winograd tile): a real :class:`~fftconv.choose.Choice`, other winner.

    Returns the list of ``(geometry, pass)`` the chooser was asked about.
    """
    choose, asked = decide.choose, []

    def forced(g, pass_name, dtype, **options):
        asked.append((g, str(pass_name)))
        choice = choose(g, pass_name, dtype, **options)
        algo = (picks(g) if callable(picks) else picks)[str(pass_name)]
        return dataclasses.replace(choice, algo=algo, options=dict(choice.details[algo].options))

    def forced_step(g, dtype, **options):  # the forced picks as they are: no switch to a step of FFT passes
        options.pop("reuse", None)
        return {p: forced(g, p, dtype, **options) for p in PASSES}

    monkeypatch.setattr(decide, "choose", forced)
    monkeypatch.setattr(decide, "choose_step", forced_step)
    return asked


@pytest.fixture
def ran(monkeypatch):
    """Record each pass computed, in order: ``(algorithm, pass, options)`` for a registry entry, ``("plan", pass,
    {})`` for a pass on a layer's spectral plan."""
    log = []

    def recorded(name, pass_name, method):
        def wrapper(*args, **kwargs):
            log.append((name, pass_name, kwargs))
            return method(*args, **kwargs)
        return wrapper

    for name, entry in algorithms.ALGORITHMS.items():
        for pass_name, method in (("forward", "forward"), ("input", "grad_input"), ("weight", "grad_weight")):
            monkeypatch.setattr(entry, method, recorded(name, pass_name, getattr(entry, method)))
    for pass_name, method in (("forward", "forward"), ("input", "grad_input"), ("weight", "grad_weight")):
        original = getattr(SpectralPlan, method)
        monkeypatch.setattr(SpectralPlan, method,
                            lambda self, *args, _o=original, _p=pass_name, **kw: recorded("plan", _p, _o)(
                                self, *args, **kw))
    return log


def computed_with(log, picks, choices=None):
    """What ``log`` must hold for a step whose passes were given ``picks``: FFT passes on the plan, others through
    their registry entry with the chosen options (``choices``: pass -> Choice)."""
    expected = []
    for pass_name in PASSES:
        if picks[pass_name] == "fft":
            expected.append(("plan", pass_name, {}))
        else:
            options = dict(choices[pass_name].options) if choices else {}
            expected.append((picks[pass_name], pass_name, options))
    return sorted(log, key=lambda item: PASSES.index(item[1])) == expected


def oracle_step(layer, x, grad_output):
    """The float64 oracle's forward, input gradient, weight gradient and bias gradient for ``layer`` at ``x``."""
    hyper = {name: getattr(layer, name) for name in HYPER}
    x64, w64, gy64 = (np.asarray(a, np.float64) for a in (x, layer.weight, grad_output))
    bias = None if layer.bias is None else np.asarray(layer.bias, np.float64)
    return (oracle.forward(x64, w64, bias, **hyper), oracle.grad_input(x.shape, w64, gy64, **hyper),
            oracle.grad_weight(x64, w64.shape, gy64, **hyper), gy64.sum(axis=(0, *range(2, gy64.ndim))))


def check_step(layer, x, rng, what):
    """One forward and backward of ``layer`` against the oracle; returns the four results."""
    y = layer.forward(x)
    grad_output = rng.standard_normal(y.shape).astype(layer.dtype)
    grad_input = layer.backward(grad_output)
    expected = oracle_step(layer, x, grad_output)
    # the project's float32 cap (the accuracy bound auto picks under: each pick's predicted error is within it, and
    # the prediction is an upper estimate) and the round-off model's float64 bound
    tol = tolerance(layer.dtype, 1 << 20, 1 << 20)
    for name, got, want in zip(("forward", "input gradient", "weight gradient", "bias gradient"),
                               (y, grad_input, layer.grad_weight, layer.grad_bias), expected):
        if got is None:  # no bias
            continue
        assert_close(got, want, tol, f"{what}: {name}")


# ---------------------------------------------------------------------- the chooser's own picks
# (input shape, layer arguments): at the default rates these give the chooser's picks of each kind (fft, im2col,
# winograd, and mixtures of them); the tests take the picks from the chooser, whatever they are.
NATURAL = [
    ((2, 4, 12), dict(in_channels=4, out_channels=4, kernel_size=3, padding=1)),
    ((2, 8, 20, 20), dict(in_channels=8, out_channels=8, kernel_size=13)),
    ((2, 16, 16, 16), dict(in_channels=16, out_channels=16, kernel_size=9)),
    ((2, 16, 8, 8), dict(in_channels=16, out_channels=16, kernel_size=1, bias=False)),
    ((1, 2, 8, 8, 8), dict(in_channels=2, out_channels=3, kernel_size=3, padding=1)),
    ((2, 4, 12, 12, 12), dict(in_channels=4, out_channels=4, kernel_size=7)),
]
NATURAL_IDS = [f"{len(shape) - 2}d-{i}" for i, (shape, _) in enumerate(NATURAL)]


@pytest.mark.parametrize("memory", ["reuse", "recompute"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, arguments", NATURAL, ids=NATURAL_IDS)
def test_each_pass_runs_the_choosers_pick_and_matches_the_oracle(shape, arguments, dtype, memory, model_mode, ran,
                                                                 rng):
    layer = CONV[len(shape) - 2](**arguments, algo="auto", memory=memory, dtype=dtype, rng=0)
    g = layer._shape_state(shape).geometry
    choices = decide.choose_step(g, dtype, reuse=memory == "reuse")
    picks = {p: choice.algo for p, choice in choices.items()}
    assert layer.algorithms(shape) == picks
    ran.clear()
    check_step(layer, rng.standard_normal(shape).astype(dtype), rng, f"auto picking {picks}")
    assert computed_with(ran, picks, choices), ran


def test_the_natural_cases_cover_fft_im2col_winograd_and_mixtures(model_mode):
    """The cases above exercise what they claim at the default rates (if the cost model changes so much that they
    no longer do, the forced tests below still do)."""
    seen = set()
    for shape, arguments in NATURAL:
        for dtype in (np.float64, np.float32):
            for memory in ("reuse", "recompute"):
                layer = CONV[len(shape) - 2](**arguments, algo="auto", memory=memory, dtype=dtype)
                seen.add(tuple(layer.algorithms(shape).values()))
    algos = {algo for picks in seen for algo in picks}
    assert {"fft", "im2col", "winograd"} <= algos
    assert any("fft" in picks and set(picks) != {"fft"} for picks in seen)  # mixed steps


def test_a_reuse_layer_runs_the_whole_step_with_the_fft_when_sharing_its_transforms_wins(model_mode, ran, rng):
    """At the default rates the tiled FFT's estimate beats the FFT's on every pass of this geometry, but not once
    the step's shared transforms are counted: under "reuse" every pass runs on the plan, under "recompute" (which
    shares nothing between forward and backward) the per-pass picks stand."""
    shape, arguments = (4, 16, 64, 64), dict(in_channels=16, out_channels=16, kernel_size=7, bias=False)
    per_pass = {}
    for memory in ("reuse", "recompute"):
        layer = CONV[2](**arguments, algo="auto", memory=memory, dtype=np.float32, rng=0)
        per_pass[memory] = layer.algorithms(shape)
    geometry = layer._shape_state(shape).geometry
    own = {p: decide.choose(geometry, p, np.float32).algo for p in PASSES}
    assert set(own.values()) != {"fft"}, own  # the case needs a per-pass pick other than the FFT
    assert per_pass["recompute"] == own
    assert set(per_pass["reuse"].values()) == {"fft"}
    layer = CONV[2](**arguments, algo="auto", memory="reuse", dtype=np.float32, rng=0)
    ran.clear()
    check_step(layer, rng.standard_normal(shape).astype(np.float32), rng, "the step of FFT passes")
    assert all(item[0] == "plan" for item in ran), ran


# ---------------------------------------------------------------------- forced picks: every kind of mixture
# (input shape, layer arguments) with stride 1 (so Winograd can run) and hyper-parameters away from their defaults.
FORCED_CASES = [
    ((2, 4, 11), dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, groups=2)),
    ((2, 3, 9, 8), dict(in_channels=3, out_channels=4, kernel_size=(3, 2), padding="same")),
    ((1, 2, 6, 5, 6), dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, bias=False)),
]
FORCED_IDS = ["1d", "2d", "3d"]
MIXTURES = [
    dict(forward="fft", input="fft", weight="fft"),
    dict(forward="fft", input="im2col", weight="winograd"),
    dict(forward="fft", input="winograd", weight="fft"),
    dict(forward="fft", input="fft", weight="im2col"),
    dict(forward="im2col", input="fft", weight="fft"),
    dict(forward="winograd", input="fft", weight="im2col"),
    dict(forward="winograd", input="im2col", weight="fft"),
    dict(forward="im2col", input="winograd", weight="im2col"),
]
MIXTURE_IDS = ["-".join(picks.values()) for picks in MIXTURES]


@pytest.mark.parametrize("memory", ["reuse", "recompute"])
@pytest.mark.parametrize("picks", MIXTURES, ids=MIXTURE_IDS)
@pytest.mark.parametrize("shape, arguments", FORCED_CASES, ids=FORCED_IDS)
def test_mixed_picks_run_as_chosen_and_match_the_oracle(shape, arguments, picks, memory, model_mode, monkeypatch,
                                                        ran, rng):
    force_picks(monkeypatch, picks)
    workspace = Workspace() if memory == "recompute" else None
    layer = CONV[len(shape) - 2](**arguments, algo="auto", memory=memory, workspace=workspace, dtype=np.float64,
                                 rng=0)
    g = layer._shape_state(shape).geometry
    choices = {p: decide.choose(g, p, np.float64) for p in PASSES}  # the forced choices, with their tiles
    assert layer.algorithms(shape) == picks
    ran.clear()
    check_step(layer, rng.standard_normal(shape), rng, f"{picks}, {memory}")
    assert computed_with(ran, picks, choices), ran
    if "winograd" in picks.values():
        assert any(item[0] == "winograd" and "tile" in item[2] for item in ran)


@pytest.mark.parametrize("picks", MIXTURES, ids=MIXTURE_IDS)
def test_reuse_keeps_the_spectra_its_fft_gradient_passes_read_and_copies_of_the_operands(picks, model_mode,
                                                                                         monkeypatch, rng):
    force_picks(monkeypatch, picks)
    layer = Conv2d(3, 4, 3, padding=1, algo="auto", dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 3, 8, 8))
    parameters = layer.nbytes
    layer.forward(x)
    saved = layer._saved
    spectra = saved["state"].plan.spectrum_bytes() if "fft" in picks.values() else {}
    kept = {"input_spectrum": picks["forward"] == picks["weight"] == "fft",
            "weight_spectrum": picks["forward"] == picks["input"] == "fft"}
    for name, expected in kept.items():
        assert (name in saved) == expected, name
    np.testing.assert_array_equal(saved["input"], x)
    assert saved["input"] is not x and np.shares_memory(saved["weight"], layer.weight) is False
    extra = sum(spectra[name.split("_")[0]] for name, kept_it in kept.items() if kept_it)
    assert layer.nbytes == parameters + x.nbytes + layer.weight.nbytes + extra
    layer.backward(np.zeros((2, 4, 8, 8)))
    assert layer.nbytes == parameters


def test_recompute_keeps_copies_only_and_uses_the_shared_workspace(model_mode, monkeypatch, rng):
    force_picks(monkeypatch, dict(forward="fft", input="im2col", weight="fft"))
    layer = Conv2d(3, 4, 3, padding=1, algo="auto", memory="recompute", dtype=np.float64, rng=0)
    assert layer.workspace is default_workspace() and layer.workspaces() == [default_workspace()]
    x = rng.standard_normal((2, 3, 8, 8))
    parameters = layer.nbytes
    layer.forward(x)
    assert sorted(layer._saved) == ["input", "state", "weight"]
    assert layer.nbytes == parameters + x.nbytes + layer.weight.nbytes
    assert Conv2d(3, 4, 3, algo="im2col", memory="recompute").workspace is None


def test_all_fft_auto_is_the_fft_layer_bit_for_bit_and_transforms_each_map_once(model_mode, monkeypatch, rng):
    force_picks(monkeypatch, dict(forward="fft", input="fft", weight="fft"))
    batch, f, f_out = 3, 4, 6
    counter = CountingBackend(NumpyBackend())
    auto = Conv2d(f, f_out, 3, stride=2, padding=1, groups=2, algo="auto", backend=counter, dtype=np.float64, rng=0)
    fft = Conv2d(f, f_out, 3, stride=2, padding=1, groups=2, algo="fft", backend="numpy", dtype=np.float64, rng=0)
    x = rng.standard_normal((batch, f, 9, 9))
    y = auto.forward(x)
    assert counter.forward_maps == batch * f + f_out * f // 2
    np.testing.assert_array_equal(y, fft.forward(x))
    grad_output = rng.standard_normal(y.shape)
    counter.reset()
    np.testing.assert_array_equal(auto.backward(grad_output), fft.backward(grad_output))
    assert counter.forward_maps == batch * f_out  # the output gradient once; x and w spectra from forward
    np.testing.assert_array_equal(auto.grad_weight, fft.grad_weight)


@pytest.mark.parametrize("picks, backward_maps", [
    (dict(forward="im2col", input="fft", weight="fft"), "x, w and gy"),
    (dict(forward="fft", input="fft", weight="im2col"), "gy"),
    (dict(forward="fft", input="im2col", weight="fft"), "gy"),
    (dict(forward="im2col", input="im2col", weight="fft"), "x and gy"),
], ids=["spatial-forward", "fft-input-only", "fft-weight-only", "fft-weight-after-spatial-forward"])
def test_fft_gradient_passes_share_the_output_gradient_spectrum_and_reuse_kept_spectra(picks, backward_maps,
                                                                                       model_mode, monkeypatch, rng):
    force_picks(monkeypatch, picks)
    batch, f, f_out = 2, 3, 4
    counter = CountingBackend(NumpyBackend())
    layer = Conv2d(f, f_out, 3, padding=1, algo="auto", backend=counter, dtype=np.float64, rng=0)
    y = layer.forward(rng.standard_normal((batch, f, 7, 7)))
    counter.reset()
    layer.backward(rng.standard_normal(y.shape))
    maps = {"x": batch * f, "w": f_out * f, "gy": batch * f_out}
    assert counter.forward_maps == sum(maps[name] for name in backward_maps.replace(",", "").split(" ")
                                       if name in maps)


# ---------------------------------------------------------------------- NaN and inf
def torch_step(layer, x, grad_output):
    """PyTorch's forward and gradients for ``layer`` at ``x``, in float64."""
    torch = pytest.importorskip("torch")
    x_torch = torch.tensor(x, requires_grad=True)
    weight = torch.tensor(layer.weight, requires_grad=True)
    bias = torch.tensor(layer.bias) if layer.bias is not None else None
    convolution = getattr(torch.nn.functional, f"conv{x.ndim - 2}d")
    y = convolution(x_torch, weight, bias, **{name: getattr(layer, name) for name in HYPER})
    y.backward(torch.tensor(grad_output))
    return y.detach().numpy(), x_torch.grad.numpy(), weight.grad.numpy()


def assert_same_nonfinite_placement(got, expected, what):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{what}: NaN placement")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected), err_msg=f"{what}: inf placement")
    finite = np.isfinite(expected)
    assert_close(got[finite], expected[finite], 1e-10, f"{what}: finite values")


NONFINITE_PICKS = [dict(forward="fft", input="fft", weight="fft"), dict(forward="winograd", input="winograd",
                                                                        weight="winograd"),
                   dict(forward="fft", input="im2col", weight="fft"), dict(forward="im2col", input="fft",
                                                                           weight="winograd")]


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # im2col meeting NaN or inf
@pytest.mark.parametrize("where", ["input", "grad_output"])
@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("memory", ["reuse", "recompute"])
@pytest.mark.parametrize("picks", NONFINITE_PICKS, ids=["-".join(p.values()) for p in NONFINITE_PICKS])
def test_nonfinite_values_land_where_pytorch_puts_them(picks, memory, value, where, model_mode, monkeypatch, rng):
    """A NaN or inf in the input or the output gradient: every pass whose pick would spread it computes with im2col,
    so each result has NaN and inf exactly where PyTorch has them, and equals it elsewhere. Never an error."""
    force_picks(monkeypatch, picks)
    layer = Conv2d(3, 4, 3, padding=1, algo="auto", memory=memory, workspace=Workspace() if memory == "recompute"
                   else None, dtype=np.float64, rng=0)
    x, grad_output = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((2, 4, 9, 9))
    (x if where == "input" else grad_output)[1, 2, 4, 5] = value
    y = layer.forward(x)
    grad_input = layer.backward(grad_output)
    expected = torch_step(layer, x, grad_output)
    for name, got, want in zip(("forward", "input gradient", "weight gradient"), (y, grad_input, layer.grad_weight),
                               expected):
        assert_same_nonfinite_placement(got, want, f"{picks}, {name}")
    nonfinite = [~np.isfinite(want).all() for want in expected]
    assert any(nonfinite) and not all(np.isnan(want).all() for want in expected)
    # after the fallback the layer runs its picks again on finite data
    clean = rng.standard_normal(x.shape)
    layer.zero_grad()
    check_step(layer, clean, rng, "clean step after a non-finite one")


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
def test_nan_falls_back_to_im2col_only_in_the_passes_that_meet_it(model_mode, monkeypatch, ran, rng):
    force_picks(monkeypatch, dict(forward="fft", input="fft", weight="fft"))
    layer = Conv1d(2, 3, 3, algo="auto", dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 2, 10))
    grad_output = rng.standard_normal((2, 3, 8))
    grad_output[0, 1, 3] = np.nan  # the input and weight are finite: only the gradient passes meet it
    layer.forward(x)
    layer.backward(grad_output)
    assert [item[:2] for item in ran] == [("plan", "forward"), ("im2col", "input"), ("im2col", "weight")]


def test_the_explicit_fft_layer_still_refuses_nan(rng):
    layer = Conv2d(3, 4, 3, dtype=np.float64, rng=0)
    x = rng.standard_normal((1, 3, 6, 6))
    x[0, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"input holds 1 non-finite value"):
        layer.forward(x)


# ---------------------------------------------------------------------- decisions: cached per shape, bounded
def test_choices_are_made_once_per_input_shape_and_kept_with_its_plan(model_mode, monkeypatch, rng):
    asked = force_picks(monkeypatch, dict(forward="fft", input="im2col", weight="fft"))
    layer = Conv2d(2, 3, 3, algo="auto", dtype=np.float64, rng=0)
    for batch in (2, 2, 3, 2):
        y = layer.forward(rng.standard_normal((batch, 2, 7, 7)))
        layer.backward(np.ones_like(y))
    assert sorted(p for _, p in asked) == sorted(PASSES * 2)  # two shapes, three passes each
    assert {g.batch for g, _ in asked} == {2, 3}
    layer.plan_cache_size = 1
    assert list(layer._plans.keys()) == [(2, 2, 7, 7)]
    force_picks(monkeypatch, dict(forward="im2col", input="im2col", weight="im2col"))
    assert layer.algorithms((2, 2, 7, 7))["forward"] == "fft"  # kept
    layer.clear_plan_cache()
    assert layer.algorithms((2, 2, 7, 7)) == dict.fromkeys(PASSES, "im2col")  # decided again


def test_algorithms_reports_the_named_algorithm_and_validates_the_shape():
    layer = Conv3d(1, 2, 3, algo="im2col")
    assert layer.algorithms([1, 1, 4, 4, 4]) == dict.fromkeys(PASSES, "im2col")
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints"):
        layer.algorithms((1, 1, 4.5, 4, 4))
    with pytest.raises(ValueError, match="kernel of size"):
        layer.algorithms((1, 1, 2, 4, 4))


def test_repr_and_validation_name_auto():
    assert repr(Conv2d(3, 8, 5, algo="auto", memory="recompute")) == (
        "Conv2d(3, 8, kernel_size=(5, 5), algo='auto', memory='recompute')")
    with pytest.raises(ValueError, match=r"algo='Auto' is unknown; valid: \[.*'fft'.*'auto'\]"):
        Conv2d(3, 8, 5, algo="Auto")
    with pytest.raises(ValueError, match=r"algo=None is unknown"):
        Conv2d(3, 8, 5, algo=None)


def test_a_batch_of_zero_samples_trains_as_in_pytorch(model_mode, rng):
    layer = Conv2d(3, 4, 3, stride=2, padding=1, algo="auto", dtype=np.float64, rng=0)
    layer.grad_weight[...] = 1.0
    y = layer.forward(np.zeros((0, 3, 9, 9)))
    assert y.shape == (0, 4, 5, 5)
    assert layer.backward(np.zeros(y.shape)).shape == (0, 3, 9, 9)
    np.testing.assert_array_equal(layer.grad_weight, 1.0)
    assert layer.algorithms((0, 3, 9, 9)) == dict.fromkeys(PASSES, "auto")


def test_evaluation_mode_keeps_nothing(model_mode, monkeypatch, rng):
    force_picks(monkeypatch, dict(forward="fft", input="im2col", weight="fft"))
    layer = Conv2d(2, 3, 3, algo="auto", dtype=np.float64, rng=0).eval()
    parameters = layer.nbytes
    layer.forward(rng.standard_normal((2, 2, 6, 6)))
    assert layer.nbytes == parameters and layer._saved is None


def test_backward_uses_the_operands_of_forward_after_an_in_place_step(model_mode, monkeypatch, rng):
    """A weight-gradient pass off the plan reads forward's copy of the input, an input-gradient pass on it the
    weight spectrum forward kept: changing both arrays in place in between changes nothing."""
    force_picks(monkeypatch, dict(forward="fft", input="fft", weight="im2col"))
    layer = Conv2d(2, 3, 3, algo="auto", dtype=np.float64, rng=0)
    twin = Conv2d(2, 3, 3, algo="direct", dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 2, 7, 7))
    layer.forward(x)
    twin.forward(x)
    x[...] = 0
    layer.weight[...] = 0
    grad_output = rng.standard_normal((2, 3, 5, 5))
    assert_close(layer.backward(grad_output), twin.backward(grad_output), 1e-12, "input gradient")
    assert_close(layer.grad_weight, twin.grad_weight, 1e-12, "weight gradient")


# ---------------------------------------------------------------------- training
def test_auto_trains_like_im2col_in_float32(model_mode, monkeypatch, rng):
    """Five SGD steps (momentum, weight decay) of a small net whose two convolutions mix algorithms across passes.

    Every pass of either net is within float32's 1e-5 relative (the project's cap; auto's picks are predicted
    within it, the accuracy bound), so the gradients of a step differ by at most about 1e-5 relative. The parameters move by lr = 0.05
    times those gradients (plus momentum), a change smaller than the parameters themselves over five steps, so they
    differ by less than 1e-5 relative; a wrong pass (an error of order 1 in a gradient) fails that by orders of
    magnitude. The losses, computed from the same outputs, agree to the same 1e-5.
    """
    picks = {5: dict(forward="fft", input="winograd", weight="fft"),
             3: dict(forward="winograd", input="fft", weight="im2col")}
    force_picks(monkeypatch, lambda g: picks[g.kernel_shape[0]])
    x = rng.standard_normal((6, 1, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 4, size=6)

    def train(algo):
        net = Sequential(Conv2d(1, 3, 5, padding=2, algo=algo, rng=1), ReLU(),
                         Conv2d(3, 4, 3, padding=1, algo=algo, memory="recompute", rng=2), ReLU(),
                         Flatten(), Linear(4 * 12 * 12, 4, rng=3))
        loss, optimizer = CrossEntropyLoss(), SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        losses = []
        for _ in range(5):
            optimizer.zero_grad()
            losses.append(loss.forward(net.forward(x), labels))
            net.backward(loss.backward())
            optimizer.step()
        return net, losses, [p.copy() for p, _ in net.parameters()]

    auto_net, auto_losses, auto_parameters = train("auto")
    assert [layer.algorithms(shape) for layer, shape in ((auto_net.layers[0], x.shape), (auto_net.layers[2], (6, 3, 12, 12)))] == [
        picks[5], picks[3]]
    _, im2col_losses, im2col_parameters = train("im2col")
    assert auto_losses[-1] < auto_losses[0]
    np.testing.assert_allclose(auto_losses, im2col_losses, rtol=1e-5)
    for auto_parameter, im2col_parameter in zip(auto_parameters, im2col_parameters):
        assert auto_parameter.dtype == np.float32
        assert_close(auto_parameter, im2col_parameter, 1e-5, "parameter after 5 steps")
