"""algo="auto", the cost model and explain(): decisions are explainable, cached, and never change results."""

import dataclasses
import json

import numpy as np
import pytest

import fftconv
from fftconv import choose, rates
from fftconv.choose import decide
from fftconv.choose.model import Estimate
from fftconv.costs import executed_flops
from fftconv.geometry import ConvGeometry

import oracle


@pytest.fixture(autouse=True)
def default_rates():
    """Each test starts from the documented default rates, with no cached decisions."""
    choose.set_rates(choose.MachineRates())
    choose.clear_decisions()
    yield
    choose.set_rates(None)
    choose.clear_decisions()


def test_auto_matches_the_oracle_in_every_pass(rng):
    x, w = rng.standard_normal((2, 4, 11, 9)), rng.standard_normal((6, 2, 3, 4))
    gy = rng.standard_normal((2, 6, 6, 4))
    options = dict(stride=(2, 2), padding=1, groups=2)
    np.testing.assert_allclose(fftconv.conv2d(x, w, algo="auto", **options), oracle.forward(x, w, **options),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fftconv.conv2d_input(x.shape, w, gy, algo="auto", **options),
                               oracle.grad_input(x.shape, w, gy, **options), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fftconv.conv2d_weight(x, w.shape, gy, algo="auto", **options),
                               oracle.grad_weight(x, w.shape, gy, **options), rtol=1e-10, atol=1e-12)


def test_model_prefers_fft_for_large_kernels_on_many_maps_and_im2col_for_small_strided_ones():
    # The paper's second layer: FFT's reuse pays off (Mathieu et al., Table 1) ...
    big = ConvGeometry.from_shapes((32, 96, 32, 32), (256, 96, 7, 7))
    # ... while a 3x3 stride-2 first layer with 3 input maps has nothing to reuse.
    small = ConvGeometry.from_shapes((8, 3, 64, 64), (16, 3, 3, 3), stride=2)
    for pass_name in choose.PASSES:
        assert choose.choose(big, pass_name).algo == "fft"
        assert choose.choose(small, pass_name).algo == "im2col"


def test_explain_reports_every_candidate_and_the_choice():
    choices = fftconv.explain((4, 8, 16, 16), (8, 8, 5, 5), padding="same")
    assert [c.pass_name for c in choices] == list(choose.PASSES)
    for choice in choices:
        assert set(choice.estimates) == set(choose.CANDIDATES)
        assert choice.algo == min(choice.estimates, key=choice.estimates.get)
        text = str(choice)
        assert text.startswith(f"{choice.pass_name}: {choice.algo}")
        assert all(algo in text for algo in choose.CANDIDATES)


def test_measure_mode_times_candidates_and_caches_the_decision(monkeypatch):
    calls = []

    def fake_timer(g, pass_name, dtype, candidates, backend, fft_size):
        calls.append(tuple(candidates))
        return {algo: (0.001 if algo == "im2col" else 0.5) for algo in candidates}

    monkeypatch.setattr(decide, "_time_candidates", fake_timer)
    g = ConvGeometry.from_shapes((16, 64, 16, 16), (64, 64, 5, 5))
    estimates = choose.estimate(g, "forward")
    assert min(estimates, key=estimates.get) == "fft" and estimates["im2col"] < 4 * estimates["fft"]
    first = choose.choose(g, "forward", measure=True)
    assert first.algo == "im2col" and first.reason == "fastest when timed (measure mode)"  # overrides the model
    assert "direct" not in first.measured  # about 80x slower by the model: never timed
    assert choose.choose(g, "forward", measure=True) is first and len(calls) == 1


def test_measure_mode_from_the_environment(monkeypatch):
    monkeypatch.setenv("FFTCONV_AUTO", "measure")
    g = ConvGeometry.from_shapes((1, 2, 8, 8), (2, 2, 3, 3))
    choice = choose.choose(g, "weight", np.float64)
    assert choice.measured and choice.algo == min(choice.measured, key=choice.measured.get)
    monkeypatch.setenv("FFTCONV_AUTO", "sometimes")
    with pytest.raises(ValueError, match=r"FFTCONV_AUTO must be one of \('hybrid', 'model', 'measure'\), got "
                                         r"'sometimes'"):
        choose.choose(g, "input")


def test_hybrid_mode_times_only_close_and_cheap_decisions(monkeypatch):
    """The default mode times the candidates within HYBRID_WINDOW of the best estimate, and only small problems."""
    calls = []

    def fake_timer(g, pass_name, dtype, candidates, backend, fft_size):
        calls.append(tuple(sorted(candidates)))
        return {algo: (0.001 if algo == "im2col" else 0.5) for algo in candidates}

    monkeypatch.setattr(decide, "_time_candidates", fake_timer)
    monkeypatch.delenv("FFTCONV_AUTO", raising=False)
    fake = {}
    monkeypatch.setattr(decide, "estimates", lambda g, pass_name, rates, fft_size=None, dtype=None, bound=None: {
        algo: Estimate(algo, 0.0, seconds, 0.0, 0.0, 1.0) for algo, seconds in fake.items()})
    g = ConvGeometry.from_shapes((1, 2, 8, 8), (2, 2, 3, 3))
    cases = [  # (estimates, timed candidates, choice)
        ({"fft": 1e-3, "im2col": 1.5e-3, "direct": 5e-3}, ("fft", "im2col"), "im2col"),  # close and cheap: timed
        ({"fft": 1e-3, "im2col": 5e-3, "direct": 6e-3}, None, "fft"),  # model is decisive
        ({"fft": 0.1, "im2col": 0.15, "direct": 5.0}, None, "fft"),  # close but expensive to time
    ]
    for pass_name, (estimates, timed, expected) in zip(choose.PASSES, cases):
        fake.clear()
        fake.update(estimates)
        calls.clear()
        choice = choose.choose(g, pass_name)
        assert choice.algo == expected and calls == ([timed] if timed else [])
        assert bool(choice.measured) == bool(timed)
        assert choose.choose(g, pass_name, measure=False).algo == "fft"  # model mode never times
    assert len(calls) == 0


def test_unknown_pass_and_algo_are_rejected():
    g = ConvGeometry.from_shapes((1, 1, 8), (1, 1, 3))
    with pytest.raises(ValueError, match="pass_name must be one of .*got 'backward'"):
        choose.estimate(g, "backward")
    with pytest.raises(ValueError, match=r"algo='fast' is unknown; valid: \['auto', 'direct', 'fft', 'im2col', "
                                         r"'tiled', 'winograd'\]"):
        fftconv.conv1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), algo="fast")


def test_calibrate_measures_positive_rates_and_saves_them_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("FFTCONV_CACHE", str(tmp_path))
    choose.set_rates(None)
    assert not choose.get_rates().calibrated and "run fftconv.calibrate()" in choose.rates_status()
    calibrated = fftconv.calibrate()
    target = rates.calibration_file()
    assert target.parent == tmp_path and list(tmp_path.iterdir()) == [target]  # no temporary file left
    saved = json.loads(target.read_text())
    assert saved["rates"] == dataclasses.asdict(calibrated)
    assert saved["machine"] == json.loads(json.dumps(rates.machine_key()))
    for name in ("fft_flops", "complex_gemm_flops", "real_gemm_flops", "copy_bytes", "direct_flops",
                 "dft_matrix_flops"):
        assert getattr(calibrated, name) > 1e6
    for name in ("fft_call_seconds", "im2col_call_seconds", "direct_call_seconds", "tap_seconds"):
        assert 0 <= getattr(calibrated, name) < 0.1
    choose.set_rates(None)  # reload: comes back from the file
    assert choose.get_rates() == calibrated and calibrated.calibrated
    assert choose.rates_status().startswith("calibrated ") and str(target) in choose.rates_status()


def test_a_calibration_of_another_machine_or_library_version_is_not_used(tmp_path, monkeypatch):
    """The saved file carries the machine key; rates saved under a different CPU, BLAS or numpy are ignored."""
    monkeypatch.setenv("FFTCONV_CACHE", str(tmp_path))
    measured = dataclasses.replace(choose.MachineRates(), fft_flops=1.0, source="calibrated elsewhere")
    rates.save_rates(measured)
    choose.set_rates(None)
    assert choose.get_rates() == measured
    for field, value in (("cpu", "another CPU"), ("numpy", "0.1"), ("blas", ["another BLAS"])):
        saved = json.loads(rates.calibration_file().read_text())
        saved["machine"] = {**saved["machine"], field: value}
        rates.calibration_file().write_text(json.dumps(saved))
        choose.set_rates(None)
        assert choose.get_rates() == choose.MachineRates(), field
        assert "not calibrated" in choose.rates_status()


def test_candidates_are_timed_in_interleaved_rounds():
    """Each candidate runs once to warm up, then once per round in turn; each keeps its best time."""
    from fftconv.choose.decide import _best_interleaved

    calls = []
    best = _best_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b"] * 4
    assert set(best) == {"a", "b"} and all(0 <= seconds < 1 for seconds in best.values())


def test_explain_validates_like_the_convolutions():
    with pytest.raises(TypeError, match=r"input_shape must be a sequence of ints, got \(4, 8, 16\.0, 16\)"):
        fftconv.explain((4, 8, 16.0, 16), (8, 8, 5, 5))
    with pytest.raises(TypeError, match="weight_shape must be a sequence of ints"):
        fftconv.explain((4, 8, 16, 16), (8, 8, 5, 2.5))
    for dtype in (np.int32, np.float16, np.complex64, None):
        with pytest.raises(TypeError, match="dtype=.* fftconv supports float32 and float64"):
            fftconv.explain((4, 8, 16, 16), (8, 8, 5, 5), dtype=dtype)
    with pytest.raises(ValueError, match=r"weight_shape.shape\[1\]=3 times groups=1 must equal the 8 channels"):
        fftconv.explain((4, 8, 16, 16), (8, 3, 5, 5))
    with pytest.raises(ValueError, match="backend 'fftw' is unknown"):
        fftconv.explain((4, 8, 16, 16), (8, 8, 5, 5), backend="fftw")
    assert fftconv.explain((4, 8, 16, 16), (8, 8, 5, 5), dtype="float64").dtype == np.float64


def test_explain_report_names_the_problem_the_rates_and_each_candidates_costs():
    report = fftconv.explain((4, 8, 20, 20), (6, 4, 5, 5), stride=2, padding=1, groups=2, dtype=np.float64)
    assert [str(c.pass_name) for c in report] == ["forward", "input", "weight"]
    assert report["weight"] is report[2] and report[choose.Pass.INPUT] is report[1]
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "Convolution: input (4, 8, 20, 20), weight (6, 4, 5, 5) -> output (4, 6, 9, 9)"
    assert "stride (2, 2), padding (1, 1)/(1, 1)" in lines[1] and "groups 2" in lines[1] and "float64" in lines[1]
    assert "built-in defaults" in text and "run fftconv.calibrate()" in text  # the fixture's default rates
    fft_shape = "x".join(map(str, report[0].fft_shape))
    for choice in report:
        assert f"{choice.pass_name}: {choice.algo}" in text
        for algo, e in choice.details.items():
            assert e.seconds == pytest.approx(choice.estimates[algo])
            assert e.seconds == pytest.approx(e.transforms + e.products + e.copies + e.fixed)
            row = next(line for line in lines[lines.index(f"{choice.pass_name}: {choice.algo}  ({choice.reason})"):]
                       if line.startswith(f"  {algo} "))
            assert (fft_shape in row) == (algo == "fft") and "ms" in row and "iB" in row
    assert report.workspace_bytes["im2col"] > report.workspace_bytes["direct"] / 2 > 0
    assert repr(report).startswith("Explanation(ConvGeometry(")


def test_the_models_fft_flops_are_the_executed_flops():
    """One count: the estimate's flops are costs.executed_flops of the plan's kernel transform choice."""
    g = ConvGeometry.from_shapes((8, 16, 24, 24), (32, 16, 5, 5), padding=2)
    for pass_name in choose.Pass:
        e = choose.estimates(g, pass_name, choose.MachineRates())["fft"]
        assert e.flops == executed_flops(g, e.fft_shape, pass_name).total


def test_decisions_are_cached_per_rates_and_bounded(monkeypatch):
    g = ConvGeometry.from_shapes((1, 2, 8, 8), (2, 2, 3, 3))
    first = choose.choose(g, "forward", measure=False)
    assert choose.choose(g, "forward", measure=False) is first
    choose.set_rates(choose.MachineRates(fft_flops=1.0))  # an absurdly slow FFT: decided anew, not from the cache
    assert choose.choose(g, "forward", measure=False).algo != "fft"
    monkeypatch.setattr(decide._decisions, "limit", 2)
    for n in (9, 10, 11):
        choose.choose(ConvGeometry.from_shapes((1, 2, n, n), (2, 2, 3, 3)), "forward", measure=False)
    assert len(decide._decisions._entries) == 2
