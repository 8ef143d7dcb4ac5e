"""algo="auto", the cost model and explain(): decisions are explainable, cached, and never change results."""

import dataclasses
import itertools
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fftconv
import oracle
from conftest import relative_error
from fftconv import choose, rates
from fftconv.choose import decide, model
from fftconv.choose.model import Estimate
from fftconv.costs import executed_flops
from fftconv.geometry import ConvGeometry


# each test starts from the documented default rates and accuracy bound, with no cached decisions
pytestmark = pytest.mark.usefixtures("default_choose_state")


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
    for pass_name in choose.PASSES:  # the model's own ranking: nothing timed
        assert choose.choose(big, pass_name, measure=False).algo == "fft"
        assert choose.choose(small, pass_name, measure=False).algo == "im2col"


def test_explain_reports_every_candidate_and_the_choice():
    choices = fftconv.explain((4, 8, 16, 16), (8, 8, 5, 5), padding="same")
    assert [c.pass_name for c in choices] == list(choose.PASSES)
    for choice in choices:
        assert set(choice.estimates) == set(choose.CANDIDATES)
        eligible = {algo: seconds for algo, seconds in choice.estimates.items() if algo not in choice.excluded}
        assert choice.algo == min(eligible, key=eligible.get)
        text = str(choice)
        assert text.startswith(f"{choice.pass_name}: {choice.algo}")
        assert all(algo in text for algo in choose.CANDIDATES)


def test_measure_mode_times_candidates_and_caches_the_decision(monkeypatch):
    g = ConvGeometry.from_shapes((16, 64, 16, 16), (64, 64, 5, 5))
    estimates = choose.estimate(g, "forward")
    ranked = sorted(estimates, key=estimates.get)
    rival = ranked[1]  # not the model's pick, but within the 4x that measure mode times
    assert estimates[rival] < 4 * estimates[ranked[0]]
    calls = []

    def fake_timer(g, pass_name, dtype, candidates, backend, fft_size, rounds):
        calls.append(tuple(candidates))
        return {algo: (0.001 if algo == rival else 0.5) for algo in candidates}

    monkeypatch.setattr(decide, "_time_candidates", fake_timer)
    first = choose.choose(g, "forward", measure=True)
    assert first.algo == rival and first.reason == "fastest when timed (measure mode)"  # overrides the model
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


@pytest.mark.parametrize("x_shape, w_shape", [((2, 4, 20, 20), (4, 4, 9, 9)),  # F(1, 9): taps beyond the tiles
                                               ((2, 4, 6, 6), (4, 4, 6, 6)),  # one output: F(1, 6)
                                               ((2, 8, 12, 12), (8, 8, 1, 1))])  # one tap: F(m, 1)
def test_auto_leaves_out_winograd_where_no_tile_saves_a_multiplication(x_shape, w_shape, rng):
    """There Winograd computes im2col's products in another layout: auto does not consider it, says why, and a
    call naming it still runs it, exactly."""
    g = ConvGeometry.from_shapes(x_shape, w_shape)
    assert not model.winograd_saves(g)
    for pass_name in choose.PASSES:
        choice = choose.choose(g, pass_name, measure=False)
        assert "im2col computes the same products" in choice.excluded["winograd"] and choice.algo != "winograd"
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    np.testing.assert_allclose(fftconv.conv2d(x, w, algo="winograd"), oracle.forward(x, w), rtol=0, atol=1e-12)


def test_hybrid_mode_times_only_close_and_cheap_decisions(monkeypatch):
    """The default mode times the candidates within HYBRID_WINDOW of the best estimate on small problems, within
    HYBRID_CLOSE_WINDOW on medium ones, and nothing on large ones."""
    calls = []

    def fake_timer(g, pass_name, dtype, candidates, backend, fft_size, rounds):
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
        ({"fft": 0.2, "im2col": 0.21, "direct": 5.0}, None, "fft"),  # close but expensive to time
        ({"fft": 0.05, "im2col": 0.07, "direct": 5.0}, ("fft", "im2col"), "im2col"),  # medium and very close: timed
        ({"fft": 0.05, "im2col": 0.09, "direct": 5.0}, None, "fft"),  # medium, and the model is sure enough
    ]
    for index, (estimates, timed, expected) in enumerate(cases):
        pass_name = choose.PASSES[index % len(choose.PASSES)]
        choose.clear_decisions()  # the fake estimates are not part of a decision's key
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
            assert (f"FFT {fft_shape}" in row) == (algo == "fft") and "ms" in row and "iB" in row
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


# ---------------------------------------------------------------------- every registered algorithm is a candidate
def test_every_registered_algorithm_is_a_candidate_or_says_why():
    plain = fftconv.explain((4, 8, 24, 24), (8, 8, 3, 3), padding=1)
    for choice in plain:
        assert set(choice.estimates) == set(fftconv.ALGORITHMS) and not choice.excluded
        assert choice.details["winograd"].options["tile"] and choice.details["tiled"].options["tile"]
    strided = fftconv.explain((4, 8, 24, 24), (8, 8, 3, 3), stride=2, padding=1)
    reason = "winograd needs stride 1; stride=(2, 2)"
    for choice in strided:
        assert "winograd" not in choice.estimates and choice.excluded == {"winograd": reason}
    assert f"winograd excluded: {reason}" in str(strided)
    row = next(line for line in str(plain).splitlines() if line.startswith("  winograd "))
    tile = "x".join(map(str, plain[0].details["winograd"].options["tile"]))
    assert f"tile {tile}" in row and "e-0" in row  # the options and the predicted error


def test_the_tiled_search_finds_the_best_tile_of_all():
    """The tiles of :func:`tiled_tiles` hold the optimum over every tile, and the best-first search finds it."""
    from fftconv.choose import model

    rates = choose.MachineRates()
    for shapes, options in ((((2, 3, 9, 10), (4, 3, 2, 4)), dict(padding="same")),
                            (((2, 6, 11, 9), (3, 2, 3, 2)), dict(stride=(2, 1), padding=(2, 0), dilation=(2, 1),
                                                                 groups=3)),
                            (((2, 2, 14), (3, 2, 2)), dict(stride=3))):
        g = ConvGeometry.from_shapes(*shapes, **options)
        every_tile = itertools.product(*(range(1, m + 1) for m in g.output_shape))
        for pass_name in choose.Pass:
            best = min(model.estimate_tiled(g, pass_name, rates, tile, workspace=False).seconds
                       for tile in every_tile) if pass_name is choose.Pass.FORWARD else None
            found = choose.best_estimate("tiled", g, pass_name, rates)
            among = min(model.estimate_tiled(g, pass_name, rates, tile, workspace=False).seconds
                        for tile in model.tiled_tiles(g))
            assert found.seconds == pytest.approx(among, rel=1e-12)
            if best is not None:
                assert among == pytest.approx(best, rel=1e-12)
    # 3x3 kernels on 128x128 maps: the search stops early, the result is the best of all candidates
    big = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    found = choose.best_estimate("tiled", big, "forward", rates)
    among = min(model.estimate_tiled(big, "forward", rates, tile, workspace=False).seconds
                for tile in model.tiled_tiles(big))
    assert found.seconds == pytest.approx(among, rel=1e-12) and all(t < 128 for t in found.options["tile"])


def test_winograds_tile_is_the_cheapest_allowed_one():
    from fftconv.choose import model

    g = ConvGeometry.from_shapes((8, 32, 32, 32), (32, 32, 3, 3), padding=1)
    rates = choose.MachineRates()
    for bound in (None, 1e-5, 2e-6):
        allowed = [model.estimate_winograd(g, "forward", rates, tile) for tile in model.winograd_tiles(g)]
        allowed = [e for e in allowed if bound is None or e.error <= bound]
        found = choose.best_estimate("winograd", g, "forward", rates, max_error=bound)
        assert found.seconds == min(e.seconds for e in allowed) and (bound is None or found.error <= bound)
    assert set(model.winograd_tiles(g)) == set(itertools.product((2, 3, 4, 5, 6), repeat=2))


# ---------------------------------------------------------------------- accuracy
ACCURACY_CASES = [((2, 16, 24, 24), (16, 16, 3, 3), dict(padding=1)),
                  ((4, 64, 16, 16), (64, 64, 3, 3), dict(padding=1)),
                  ((2, 8, 16, 16), (8, 8, 5, 5), {}), ((1, 2, 6, 5, 7), (3, 2, 3, 2, 3), {}),
                  ((16, 8, 64, 64), (8, 8, 3, 3), dict(padding=1))]


@pytest.mark.parametrize("case", ACCURACY_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_predicted_errors_are_upper_estimates_of_the_float32_error(case):
    """Measured against the float64 oracle on the float32-rounded data, every algorithm's error is at most its
    prediction and at least a twentieth of it (the prediction is informative, not a loose bound: the lowest ratio
    measured here is 0.11, the highest 0.84). Winograd at every other allowed tile."""
    from fftconv.choose import model

    x_shape, w_shape, options = case
    g = ConvGeometry.from_shapes(x_shape, w_shape, **options)
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    gy = rng.standard_normal(g.full_output_shape).astype(np.float32)
    exact = {"forward": oracle.forward(x.astype(np.float64), w.astype(np.float64), **options),
             "input": oracle.grad_input(x.shape, w.astype(np.float64), gy.astype(np.float64), **options),
             "weight": oracle.grad_weight(x.astype(np.float64), w.shape, gy.astype(np.float64), **options)}
    rates = choose.MachineRates()
    for pass_name, expected in exact.items():
        predictions = [choose.best_estimate(algo, g, pass_name, rates) for algo in ("fft", "im2col", "direct",
                                                                                     "tiled")]
        predictions += [model.estimate_winograd(g, pass_name, rates, tile) for tile in model.winograd_tiles(g)[::2]]
        for e in predictions:
            entry = fftconv.ALGORITHMS[e.algo]
            result = {"forward": lambda: entry.forward(x, w, None, g, **e.options),
                      "input": lambda: entry.grad_input(gy, w, g, **e.options),
                      "weight": lambda: entry.grad_weight(x, gy, g, **e.options)}[pass_name]()
            error = relative_error(result, expected)
            assert e.error / 20 <= error <= e.error, f"{e.algo} {e.options} {pass_name}: {error:.2e} / {e.error:.2e}"


def test_the_accuracy_bound_leaves_out_what_it_must(monkeypatch):
    g = ConvGeometry.from_shapes((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    loose = choose.choose(g, "forward", measure=False, max_error=None)
    assert not loose.excluded
    tight = choose.choose(g, "forward", measure=False, max_error=1e-7)  # only the float64 loop: eps / 2 = 6e-8
    assert tight.algo == "direct"
    assert set(tight.excluded) == set(fftconv.ALGORITHMS) - {"direct"}
    assert all(re.fullmatch(r"predicted error \S+ exceeds max_error=1e-07", r) for r in tight.excluded.values())
    with pytest.raises(ValueError, match=r"no algorithm's predicted relative error is within max_error=1e-09 .*"
                                         r"direct 6\.0e-08"):
        choose.choose(g, "forward", measure=False, max_error=1e-9)
    assert choose.choose(g, "forward", np.float64, measure=False, max_error=1e-9).excluded == {}
    # the setting: explain and auto read it; the default is the project's float32 target
    assert choose.get_accuracy() == choose.DEFAULT_MAX_ERROR == 1e-5
    previous = choose.set_accuracy(1e-7)
    try:
        assert fftconv.explain((8, 64, 32, 32), (64, 64, 3, 3), padding=1)[0].algo == "direct"
        assert "Accuracy bound: max_error=1e-07" in str(fftconv.explain((1, 1, 8, 8), (1, 1, 3, 3)))
    finally:
        choose.set_accuracy(previous)
    for bad in (0, -1e-5, float("nan"), float("inf"), "1e-5", True):
        with pytest.raises(ValueError, match="max_error must be a positive finite number or None"):
            choose.set_accuracy(bad)
    assert choose.get_accuracy() == previous


# ---------------------------------------------------------------------- memory
def test_auto_picks_what_fits_in_memory(monkeypatch, rng):
    """94 MB: the FFT's spectra (150 MiB) do not fit; auto runs another candidate instead of raising."""
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", "94MB")
    x = rng.standard_normal((8, 256, 16, 16)).astype(np.float32)
    w = rng.standard_normal((256, 256, 5, 5)).astype(np.float32)
    with pytest.raises(MemoryError):
        fftconv.conv2d(x, w, algo="fft")
    report = fftconv.explain(x.shape, w.shape)
    for choice in report:
        assert choice.details[choice.algo].workspace_bytes <= 94e6
        assert re.fullmatch(r"needs 0\.\d\d GiB of memory, 0\.09 GiB available \(the budget "
                            r"FFTCONV_MEMORY_LIMIT='94MB'\)", choice.excluded["fft"])
    assert "Memory: 0.09 GiB available" in str(report)
    y = fftconv.conv2d(x, w, algo="auto")
    exact = fftconv.conv2d(x.astype(np.float64), w.astype(np.float64), algo="im2col")
    assert relative_error(y, exact) <= report[0].details[report[0].algo].error <= choose.get_accuracy()


def test_memory_error_names_every_candidates_need_and_the_limit(monkeypatch, rng):
    monkeypatch.setenv("FFTCONV_MEMORY_LIMIT", "1kB")
    x, w = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((4, 3, 3, 3))
    with pytest.raises(MemoryError) as error:
        fftconv.conv2d(x, w, algo="auto")
    message = str(error.value)
    assert "no candidate fits in the memory available (0.00 GiB, the limit: the budget FFTCONV_MEMORY_LIMIT='1kB')" \
        in message
    assert all(re.search(rf"{algo} \d+\.\d\d GiB", message) for algo in fftconv.ALGORITHMS)


def test_hybrid_mode_times_every_close_candidate_with_its_options(monkeypatch):
    """Winograd and the tiled FFT join the timing when their estimates are close, each with its tile."""
    timed = []

    def fake_timer(g, pass_name, dtype, candidates, backend, fft_size, rounds):
        timed.append(candidates)
        return {algo: (0.001 if algo == "winograd" else 0.002) for algo in candidates}

    monkeypatch.setattr(decide, "_time_candidates", fake_timer)
    monkeypatch.delenv("FFTCONV_AUTO", raising=False)
    fake = {"fft": 1e-3, "im2col": 3e-3, "direct": 9e-3, "winograd": 1.2e-3, "tiled": 1.1e-3}
    monkeypatch.setattr(decide, "estimates", lambda g, pass_name, rates, fft_size=None, dtype=None, bound=None: {
        algo: Estimate(algo, 0.0, seconds, 0.0, 0.0, 1.0, options={"tile": (2, 2)} if algo in ("winograd", "tiled")
                       else {}) for algo, seconds in fake.items()})
    g = ConvGeometry.from_shapes((1, 2, 8, 8), (2, 2, 3, 3))
    choice = choose.choose(g, "forward")
    assert timed == [{"fft": {}, "im2col": {}, "winograd": {"tile": (2, 2)}, "tiled": {"tile": (2, 2)}}]
    assert choice.algo == "winograd" and choice.options == {"tile": (2, 2)}


# ---------------------------------------------------------------------- automatic calibration
@pytest.fixture
def uncalibrated(monkeypatch, tmp_path):
    """A machine with no saved rates, automatic calibration on, and a fake calibration that records its calls."""
    from fftconv.choose import calibration

    monkeypatch.setenv("FFTCONV_CACHE", str(tmp_path))
    monkeypatch.setenv("FFTCONV_CALIBRATE", "1")
    monkeypatch.setattr(calibration, "_attempted", False)
    calls = []

    def fake_calibrate(save=True):
        calls.append(threading.current_thread().name)
        time.sleep(0.05)  # long enough for concurrent first calls to meet at the lock
        measured = dataclasses.replace(choose.MachineRates(), source="calibrated by the test")
        rates.save_rates(measured)
        choose.set_rates(measured)
        return measured

    monkeypatch.setattr(calibration, "calibrate", fake_calibrate)
    choose.set_rates(None)
    assert rates.needs_calibration()
    return calls


def test_auto_calibrates_an_uncalibrated_machine_once_and_says_so(uncalibrated, capsys, rng):
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((2, 2, 3, 3))
    fftconv.conv2d(x, w, algo="winograd")  # a named algorithm does not calibrate
    assert uncalibrated == []
    fftconv.conv2d(x, w, algo="auto")
    fftconv.conv2d(x, w, algo="auto")
    assert len(uncalibrated) == 1
    err = capsys.readouterr().err
    assert "measuring this machine's rates for algo='auto' (once, a few seconds; FFTCONV_CALIBRATE=0" in err
    assert f"rates saved in {rates.calibration_file()}" in err
    assert choose.get_rates().source == "calibrated by the test" and not rates.needs_calibration()
    assert "calibrated by the test" in str(fftconv.explain((1, 2, 8, 8), (2, 2, 3, 3)))


def test_concurrent_first_calls_calibrate_once(uncalibrated, rng):
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((2, 2, 3, 3))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: fftconv.conv2d(x, w, algo="auto"), range(16)))
    assert len(uncalibrated) == 1


def test_automatic_calibration_can_be_turned_off(uncalibrated, monkeypatch, rng):
    from fftconv.choose import calibration

    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((2, 2, 3, 3))
    monkeypatch.setenv("FFTCONV_CALIBRATE", "0")
    fftconv.conv2d(x, w, algo="auto")
    assert uncalibrated == [] and "not calibrated" in str(fftconv.explain((1, 2, 8, 8), (2, 2, 3, 3)))
    monkeypatch.setenv("FFTCONV_CALIBRATE", "yes")
    with pytest.raises(ValueError, match=r"FFTCONV_CALIBRATE must be '1' .* or '0' \(never\), got 'yes'"):
        fftconv.conv2d(x, w, algo="auto")
    monkeypatch.setenv("FFTCONV_CALIBRATE", "1")
    choose.set_rates(choose.MachineRates())  # rates chosen by the caller: nothing to calibrate
    fftconv.conv2d(x, w, algo="auto")
    assert uncalibrated == [] and calibration._attempted


def test_a_failed_calibration_warns_and_keeps_the_defaults(uncalibrated, monkeypatch, rng):
    from fftconv.choose import calibration

    def broken(save=True):
        raise RuntimeError("no timer")

    monkeypatch.setattr(calibration, "calibrate", broken)
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((2, 2, 3, 3))
    with pytest.warns(RuntimeWarning, match=r"calibration failed \(RuntimeError\('no timer'\)\); algo='auto' uses "
                                            "the built-in default rates"):
        fftconv.conv2d(x, w, algo="auto")
    assert not choose.get_rates().calibrated


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_child_forked_while_the_locks_are_held_gets_them_free():
    """The one-time calibration's lock, the rates' lock and the decisions' locks: a parent thread holds each while
    the process forks; the child can take every one (os.register_at_fork gives it fresh ones)."""
    from fftconv.choose import calibration

    locks = lambda: [calibration._once_lock, rates._lock, decide._accuracy_lock, decide._decisions._lock]  # noqa
    held, release = threading.Event(), threading.Event()

    def hold():
        for lock in locks():
            lock.acquire()
        held.set()
        release.wait()
        for lock in locks():
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if every lock can be taken
            os._exit(0 if all(lock.acquire(timeout=5) for lock in locks()) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_step_of_fft_passes_replaces_the_per_pass_picks_only_when_its_shared_transforms_make_it_faster(
        monkeypatch):
    """choose_step against the sums it is defined by, from the per-pass estimates and the reuse saving."""
    monkeypatch.setenv("FFTCONV_AUTO", "model")
    rates = choose.get_rates()
    g = ConvGeometry.from_shapes((4, 16, 64, 64), (16, 16, 7, 7))
    own = {p: choose.choose(g, p) for p in choose.PASSES}
    picked = sum(c.estimates[c.algo] for c in own.values())
    all_fft = sum(c.estimates["fft"] for c in own.values()) - model.fft_reuse_seconds(g, rates)
    assert {c.algo for c in own.values()} != {"fft"} and all_fft < picked  # the case this test needs
    step = choose.choose_step(g)
    assert [c.algo for c in step.values()] == ["fft"] * 3
    assert all(c.reason.startswith("the FFT for the whole step") and c.options == {} for c in step.values())
    assert {p: c.algo for p, c in choose.choose_step(g, reuse=False).items()} == {p: c.algo for p, c in own.items()}
    # without the saving the per-pass picks are cheaper, and stand
    monkeypatch.setattr(decide, "fft_reuse_seconds", lambda *args: 0.0)
    assert {p: c.algo for p, c in choose.choose_step(g).items()} == {p: c.algo for p, c in own.items()}


def test_a_step_keeps_its_per_pass_picks_when_the_fft_is_left_out_of_a_pass(monkeypatch):
    monkeypatch.setenv("FFTCONV_AUTO", "model")
    g = ConvGeometry.from_shapes((4, 16, 64, 64), (16, 16, 7, 7))
    original = decide.choose

    def fft_too_inaccurate(g, pass_name, dtype, **options):
        c = original(g, pass_name, dtype, **options)
        return dataclasses.replace(c, excluded={**c.excluded, "fft": "predicted error too large"})

    monkeypatch.setattr(decide, "choose", fft_too_inaccurate)
    own = {p: fft_too_inaccurate(g, p, np.float32).algo for p in choose.PASSES}
    assert set(own.values()) != {"fft"}  # without the exclusion the step would switch to the FFT (test above)
    assert {p: c.algo for p, c in choose.choose_step(g).items()} == own
