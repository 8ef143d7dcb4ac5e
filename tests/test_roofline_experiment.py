"""The roofline experiment's points, targets, verdicts, row keys and step task, without timing anything.

The end-to-end run on tiny sizes is in test_experiments_tiny.py."""

from __future__ import annotations

import pytest

from experiments import roofline
from experiments.__main__ import build_parser
from experiments.harness import points
from experiments.harness.context import Context, default_options
from experiments.harness.jobs import Job
from experiments.harness.results import ResultsFile


# ------------------------------------------------------------------------------------------------ points
def test_step_sweep_points_are_the_targets_points():
    sweep = roofline.sweep_points(roofline.STEP_SWEEP)
    assert [(p["n"], p["k"]) for p in sweep] == [(n, k) for n in (32, 64) for k in (3, 5, 7, 9, 11, 13)]
    assert all((p["S"], p["f"], p["fp"], p["padding"], p["stride"], p["dtype"]) == (32, 64, 64, 0, 1, "float32")
               for p in sweep)


# ------------------------------------------------------------------------------------------------ targets
def stored_targets() -> dict:
    return roofline.target_settings(roofline.LAYERS, roofline.SWEEP, roofline.STEP_SWEEP)


def test_targets_are_the_speed_targets():
    targets = stored_targets()
    assert targets["targets"] == {roofline._label(layer): 2.0 for layer in roofline.LAYERS}
    assert len(targets["targets"]) == 5 and targets["roofline_target"] == 0.7
    assert targets["step_sweep_targets"] == {"3": 0.8, "5": 1.0, "7": 1.0, "9": 1.0, "11": 1.0, "13": 1.0}
    assert targets["sweep_targets"] == {"5": 1.0, "7": 1.0, "9": 1.0, "11": 1.0, "13": 1.0}


@pytest.mark.parametrize("target", sorted({2.0, 0.7, 0.8, 1.0}))
def test_a_ratio_just_above_a_target_meets_it_and_just_below_misses_it(target):
    assert roofline.target_verdict(target * 1.001, target) == "met"
    assert roofline.target_verdict(target, target) == "met"  # "at least"
    assert roofline.target_verdict(target * 0.999, target) == "missed"
    # Intervals wholly on the ratio's side keep the verdict; one containing the target says it is within noise.
    assert roofline.target_verdict(target * 1.001, target, (target * 1.0005, target * 1.1)) == "met"
    assert roofline.target_verdict(target * 0.999, target, (target * 0.9, target * 0.9995)) == "missed"
    assert roofline.target_verdict(target * 1.001, target, (target * 0.99, target * 1.01)) == "met (within noise)"
    assert roofline.target_verdict(target * 0.999, target, (target * 0.99, target * 1.01)) == \
        "missed (within noise)"
    # The lowest-median ratio above the target while every pooled resample is below it: the runs disagree.
    assert roofline.target_verdict(target * 1.001, target, (target * 0.9, target * 0.99)) == "met (within noise)"


def test_no_ratio_or_no_target_gives_no_verdict():
    assert roofline.target_verdict(None, 2.0) == "-"
    assert roofline.target_verdict(1.5, None) == "-"


def timed_row(point: dict, method: str, pass_: str, round_: int, samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {**point, "method": method, "pass": pass_, "round": round_, "samples_s": samples,
            "median_s": ordered[len(ordered) // 2], "min_s": ordered[0], "max_s": ordered[-1],
            "provenance": {"commit": "c", "dirty": False, "fingerprint": "m", "utc": f"2024-01-0{round_ + 1}"}}


@pytest.mark.parametrize("torch_seconds, expected", [
    (2.5, "met"),                      # 2.5x, every resample far above 2
    (2.0, "met (within noise)"),       # the calls' spread straddles 2
    (1.5, "missed"),                   # 1.5x, every resample far below 2
])
def test_round_samples_give_the_verdict_its_interval(torch_seconds, expected):
    point = points.conv_point(S=2, f=2, fp=2, n=8, k=3)
    rows = []
    for round_ in (0, 1):
        rows.append(timed_row(point, "fft-numpy", "step", round_, [0.98, 1.0, 1.02]))
        rows.append(timed_row(point, "torch", "step", round_, [torch_seconds * s for s in (0.98, 1.0, 1.02)]))
    results = points.ConvResults(rows)
    samples = roofline.RoundSamples(rows, results)
    mine, theirs = samples.medians(point, "fft-numpy", "step"), samples.medians(point, "torch", "step")
    assert mine.min() >= 0.98 and mine.max() <= 1.02
    ratio = results.seconds(point, "torch", "step") / results.seconds(point, "fft-numpy", "step")
    assert ratio == pytest.approx(torch_seconds)
    comparison = roofline.against_target(ratio, theirs / mine, 2.0)
    assert comparison["verdict"] == expected
    low, high = comparison["interval"]
    assert low <= torch_seconds <= high
    assert samples.medians(point, "auto-numpy", "step") is None  # not timed


# ------------------------------------------------------------------------------------------------ row keys
def row_keys(jobs: list[Job]) -> set[tuple]:
    return {tuple(sorted(job.row_key(subkey).items())) for job in jobs for subkey in job.subkeys}


def test_the_step_of_another_algorithm_has_its_own_rows():
    layers = roofline.layer_points(2, ((3, 8, 2, 2),))
    same = roofline.layer_jobs(["fft-numpy", "torch"], "fft-numpy", "fft-numpy", layers, quick=True)
    # algo="fft": one job per method, the passes and the step together, as the rows were always keyed
    assert [(job.method, [s["pass"] for s in job.subkeys]) for job in same] == [
        ("fft-numpy", ["forward", "input", "weight", "step"]), ("torch", ["forward", "input", "weight", "step"])]
    step = roofline.step_method("auto", "numpy")
    other = roofline.layer_jobs(["fft-numpy", step, "torch"], "fft-numpy", step, layers, quick=True)
    assert [(job.method, [s["pass"] for s in job.subkeys]) for job in other] == [
        ("fft-numpy", ["forward", "input", "weight"]), ("auto-numpy", ["step"]),
        ("torch", ["forward", "input", "weight", "step"])]
    # The passes' rows are the same under both algorithms (they feed the model); the steps' are not.
    passes = {key for key in row_keys(same) if ("pass", "step") not in key}
    assert passes <= row_keys(other)
    fft_step = next(key for key in row_keys(same) if ("pass", "step") in key and ("method", "fft-numpy") in key)
    assert fft_step not in row_keys(other)


def test_a_saved_fft_step_does_not_count_for_another_algorithm(tmp_path):
    point = roofline.sweep_points(roofline.STEP_SWEEP)[0]
    results = ResultsFile(tmp_path / "results.jsonl", validate=roofline.validate)
    results.append(timed_row(point, "fft-pyfftw", "step", 0, [1.0]))
    for algo, done in (("fft", True), ("auto", False), ("im2col", False)):
        job = roofline.in_round(points.conv_jobs([roofline.step_method(algo, "pyfftw")], [point], True,
                                                 ("step",)), 0)[0]
        assert results.has(job.row_key(job.subkeys[0])) is done, algo
    later_round = roofline.in_round(points.conv_jobs(["fft-pyfftw"], [point], True, ("step",)), 1)[0]
    assert not results.has(later_round.row_key(later_round.subkeys[0]))


def test_rows_without_an_algorithm_setting_are_fft_steps(tmp_path):
    point = roofline.layer_points(2, ((3, 8, 2, 2),))[0]
    ctx = Context("roofline", quick=True, options=default_options(threads=1, batch=None), output_root=tmp_path,
                  validate=roofline.validate)
    old_settings = {"batch": 2, "layers": [[3, 8, 2, 2]], "rounds": 1}
    for method in ("fft-numpy", "torch"):
        ctx.results.append({**timed_row(point, method, "step", 0, [1.0 if method == "torch" else 0.5]),
                            "settings": old_settings})
    summary = roofline.summarise(ctx)
    assert (summary["algo"], summary["step_method"]) == ("fft", "fft-numpy")
    assert summary["layers"][0]["ratio"]["ratio"] == pytest.approx(2.0)
    ctx.results.append({**timed_row(point, "auto-numpy", "step", 0, [0.25]),
                        "settings": {**old_settings, "algo": "auto", "step_method": "auto-numpy"}})
    ctx._selection = None
    summary = roofline.summarise(ctx)
    assert (summary["algo"], summary["step_method"]) == ("auto", "auto-numpy")
    assert summary["layers"][0]["ratio"]["ratio"] == pytest.approx(4.0)


# ------------------------------------------------------------------------------------------------ the step
class FakeSession:
    torch = None
    backend = "a backend"

    def __init__(self, algo: str):
        self.parsed = {"library": "fftconv", "algo": algo, "backend": None}


def test_the_layer_gets_the_algorithm_as_it_is(monkeypatch):
    import fftconv.nn

    built = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            built.append((args, kwargs))

        def forward(self, x):
            return x

        def backward(self, grad_output):
            return grad_output

    monkeypatch.setattr(fftconv.nn, "Conv2d", Recorder)
    point = points.conv_point(S=1, f=2, fp=3, n=6, k=3)
    step = roofline.step_function(FakeSession("auto"), point)
    step()
    (args, kwargs), = built
    assert args == (2, 3, 3)
    assert kwargs == {"bias": False, "algo": "auto", "backend": "a backend", "memory": "reuse"}


def test_algo_option():
    parser = build_parser(roofline)
    assert parser.parse_args(["roofline"]).algo == "auto"
    assert parser.parse_args(["roofline", "--algo", "im2col"]).algo == "im2col"
    with pytest.raises(SystemExit):
        parser.parse_args(["roofline", "--algo", "fastest"])
