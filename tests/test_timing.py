"""The timing helper of the speed experiments: statistics, worker isolation, resumable sweeps, plotting from results.

No test here asserts a speed: timings are only checked for consistency (min <= median <= max, counts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from experiments import sweeps
from experiments.harness import methods, points, workers
from experiments.harness import timing as timing_helper
from experiments.harness.context import Context, default_options

REPO_ROOT = Path(__file__).resolve().parents[1]


def fake_clock(durations, warmup_durations=()):
    """A clock whose consecutive start/stop readings make calls last ``durations`` seconds (after the warm-up)."""
    readings, now = [], 0.0
    readings.append(now)  # start of warm-up
    now += sum(warmup_durations)
    readings.append(now)  # end of warm-up
    for duration in durations:
        readings += [now, now + duration]
        now += duration
    ticks = iter(readings)
    return lambda: next(ticks)


def make_context(tmp_path, **options) -> Context:
    return Context("sweeps", quick=True, options=default_options(threads=1, batch=None, **options),
                   output_root=tmp_path, validate=sweeps.validate)


# ------------------------------------------------------------------------------------------------ statistics
def test_time_function_reports_median_min_max_of_timed_calls_only():
    durations = [0.375, 0.125, 0.75, 0.25, 0.5]  # binary fractions: the clock arithmetic is exact
    calls = []
    timing = timing_helper.time_function(lambda: calls.append(1), warmup=2, min_repeats=5, max_repeats=5,
                                   budget_seconds=0.0, clock=fake_clock(durations, warmup_durations=[9.0]))
    assert len(calls) == 2 + 5  # warm-up calls run, untimed
    assert (timing.median, timing.min, timing.max) == (0.375, 0.125, 0.75)
    assert timing.samples == tuple(durations)
    assert (timing.repeats, timing.warmup, timing.warmup_seconds) == (5, 2, 9.0)


def test_time_function_stops_at_budget_but_not_before_min_repeats():
    # Each call takes 1 s: a 2.5 s budget needs 3 calls; min_repeats=4 asks for one more.
    timing = timing_helper.time_function(lambda: None, warmup=0, min_repeats=2, max_repeats=10, budget_seconds=2.5,
                                   clock=fake_clock([1.0] * 10))
    assert timing.repeats == 3
    timing = timing_helper.time_function(lambda: None, warmup=0, min_repeats=4, max_repeats=10, budget_seconds=2.5,
                                   clock=fake_clock([1.0] * 10))
    assert timing.repeats == 4
    timing = timing_helper.time_function(lambda: None, warmup=0, min_repeats=1, max_repeats=6, budget_seconds=100.0,
                                   clock=fake_clock([1.0] * 10))
    assert timing.repeats == 6  # the budget is never reached: max_repeats ends it


def test_time_function_even_count_median_and_real_clock():
    timing = timing_helper.Timing.from_samples([4.0, 1.0, 3.0, 2.0])
    assert (timing.median, timing.min, timing.max) == (2.5, 1.0, 4.0)
    real = timing_helper.time_function(lambda: sum(range(1000)), warmup=1, min_repeats=5, max_repeats=5)
    assert real.repeats == 5 and 0 < real.min <= real.median <= real.max


@pytest.mark.parametrize("kwargs, message", [({"min_repeats": 0}, "min_repeats"),
                                             ({"min_repeats": 5, "max_repeats": 3}, "max_repeats"),
                                             ({"warmup": -1}, "warmup")])
def test_time_function_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timing_helper.time_function(lambda: None, **kwargs)


def test_timing_needs_samples():
    with pytest.raises(ValueError, match="at least one"):
        timing_helper.Timing.from_samples([])


def test_direct_is_skipped_by_its_flop_count():
    small = points.conv_point(S=1, f=2, fp=2, n=8, k=3)
    large = points.conv_point(S=128, f=96, fp=256, n=32, k=7)
    assert points.direct_flops(small) == 2 * 1 * 2 * 2 * 6 * 6 * 9
    assert points.direct_flops(points.conv_point(S=1, f=4, fp=2, n=9, k=3, stride=2, groups=2)) == 2 * 2 * 2 * 4 * 4 * 9
    assert points.direct_too_slow(small) is None
    assert "float64 reference" in points.direct_too_slow(large)
    conv_jobs = points.conv_jobs(["im2col", "direct"], [small, large], quick=True)
    assert [job.skip_reason is None for job in conv_jobs] == [True, True, True, False]


def test_point_format_carries_stride_and_rejects_what_cannot_run():
    point = points.conv_point(S=2, f=4, fp=6, n=[9, 7], k=3, stride=2, padding=1, groups=2, dtype="float64")
    assert point == {"S": 2, "f": 4, "fp": 6, "n": [9, 7], "k": 3, "stride": 2, "padding": 1, "dilation": 1,
                     "groups": 2, "dtype": "float64", "seed": 0}
    assert points.shapes(point) == ((2, 4, 9, 7), (6, 2, 3, 3))
    assert points.label(point) == "S=2 4->6 n=9x7 k=3 s=2 p=1 g=2 float64"
    # a row written before the format had stride (and the other optional fields) reads as the defaults
    old = {"S": 2, "f": 4, "fp": 6, "n": 8, "k": 3, "padding": 0, "seed": 0}
    assert points.point_of(old) == points.conv_point(S=2, f=4, fp=6, n=8, k=3)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        points.conv_point(S=1, f=4, fp=6, n=8, k=3, groups=3)
    with pytest.raises(ValueError, match="dtype"):
        points.conv_point(S=1, f=4, fp=6, n=8, k=3, dtype="float16")


def test_the_default_methods_are_the_registry_and_torch():
    import fftconv

    ctx = SimpleNamespace(name="test", options=default_options(backends=["numpy"]))
    labels = methods.select_methods(ctx)
    algos = [methods.parse_method(label)["algo"] for label in labels if label != "torch"]
    assert algos == list(fftconv.ALGORITHMS) and labels[algos.index("fft")] == "fft-numpy"
    assert ("torch" in labels) == methods.torch_available()


def test_a_method_that_cannot_run_a_point_is_skipped_with_its_reason():
    import fftconv

    strided = points.conv_point(S=1, f=2, fp=2, n=9, k=3, stride=2)
    jobs = points.conv_jobs(["im2col", "torch", *(["winograd"] if "winograd" in fftconv.ALGORITHMS else [])],
                            [strided], quick=True)
    reasons = {job.method: job.skip_reason for job in jobs}
    assert reasons["im2col"] is None and reasons["torch"] is None
    if "winograd" in reasons:
        assert reasons["winograd"].startswith("winograd needs stride 1")
    assert points.skip_reason("direct", strided, direct_limit=0.0).startswith("direct (a float64 reference)")


def test_parse_method():
    assert methods.parse_method("fft-numpy") == {"library": "fftconv", "algo": "fft", "backend": "numpy"}
    assert methods.parse_method("im2col") == {"library": "fftconv", "algo": "im2col", "backend": None}
    assert methods.parse_method("torch")["library"] == "torch"


# ------------------------------------------------------------------------------------------------ workers
def test_parent_modules_do_not_import_torch():
    code = ("import sys, experiments.harness.workers, experiments.harness.jobs, experiments.sweeps, "
            "experiments.layers, experiments.network, experiments.kernel_window, experiments.roofline, "
            "experiments.compare; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'numpy' not in sys.modules, 'numpy imported before the threads are pinned'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_worker_round_trip_one_process_per_method(tmp_path):
    ctx = make_context(tmp_path)
    point = points.conv_point(S=2, f=3, fp=4, n=8, k=3)
    labels = ["im2col", "fft-numpy"] + (["torch"] if methods.torch_available() else [])
    points.measure_conv(ctx, labels, [point])
    rows = ctx.results.rows()
    assert sorted((row["method"], row["pass"]) for row in rows) == sorted(
        (method, pass_) for method in labels for pass_ in points.PASSES)
    pids = {row["method"]: row["worker"]["pid"] for row in rows}
    assert len(set(pids.values())) == len(labels) and os.getpid() not in pids.values()
    from experiments.harness import provenance

    here = provenance.stamp()
    for row in rows:
        assert "error" not in row, row
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["repeats"] == len(row["samples_s"]) >= timing_helper.TimingSettings.for_mode(True).min_repeats
        assert row["threads"] == 1 and row["malloc"] == workers.TUNED_MALLOC
        assert row["worker"]["malloc"] == workers.TUNED_MALLOC  # the worker really ran with it
        assert all(pool["num_threads"] == 1 for pool in row["worker"]["thread_pools"])
        assert {key: row[key] for key in points.POINT_FIELDS} == point
        # provenance of the worker that measured: this machine (same fingerprint), this commit, a UTC time
        assert row["provenance"]["fingerprint"] == here["fingerprint"]
        assert row["provenance"]["commit"] == here["commit"] and row["provenance"]["utc"].endswith("+00:00")
        assert row["provenance"]["environment"]["OMP_NUM_THREADS"] == "1"
    fft_rows = [row for row in rows if row["method"] == "fft-numpy"]
    assert all(row["plan_s"] == 0 and row["plan_s_in_timing"] == 0 for row in fft_rows)  # numpy.fft: no plans
    if "torch" in labels:
        torch_row = next(row for row in rows if row["method"] == "torch")
        assert torch_row["worker"]["torch"]["threads"] == 1
    # Nothing left to do: a second call starts no worker and adds no row.
    points.measure_conv(ctx, labels, [point])
    assert len(ctx.results.rows()) == len(rows)


def test_worker_reports_a_failing_point_and_continues(tmp_path):
    ctx = make_context(tmp_path)
    bad = points.conv_point(S=1, f=2, fp=2, n=8, k=3)
    bad["n"] = 2  # the kernel does not fit: fftconv raises ValueError inside the worker
    good = points.conv_point(S=1, f=2, fp=2, n=8, k=3)
    points.measure_conv(ctx, ["im2col"], [bad, good], passes=("forward",))
    rows = {row["n"]: row for row in ctx.results.rows()}
    assert "ValueError" in rows[2]["error"] and "median_s" not in rows[2]
    assert rows[8]["median_s"] > 0


# ------------------------------------------------------------------------------------------------ a sweep
@pytest.fixture
def tiny_sweep(monkeypatch):
    monkeypatch.setattr(sweeps, "PAPER", {"S": 2, "k": 3, "n": 8, "f": 2, "fp": 3})
    monkeypatch.setattr(sweeps, "SWEEPS", {"n": (6, 8), "k": (3, 5), "S": (1, 2)})
    monkeypatch.setattr(sweeps, "QUICK_BATCH", 2)
    monkeypatch.setattr(sweeps, "QUICK_BATCH_SWEEP", (1, 2))


def test_sweep_resumes_after_an_interruption(tmp_path, tiny_sweep):
    ctx = make_context(tmp_path, algos=["im2col"])
    sweeps.measure(ctx)
    path = ctx.results.path
    lines = path.read_text().splitlines()
    points = {tuple(json.loads(line)[f] for f in ("S", "n", "k")) for line in lines}
    assert len(points) == 4 and len(lines) == 4 * 3  # (S, n, k): (2,6,3) (2,8,3) (2,8,5) (1,8,3); 3 passes each
    # Simulate a kill: keep 7 whole rows and half of the 8th.
    kept = lines[:7]
    path.write_text("\n".join(kept) + "\n" + lines[7][: len(lines[7]) // 2])
    resumed = make_context(tmp_path, algos=["im2col"])
    with pytest.warns(UserWarning, match=r"results.jsonl:8: dropped the unterminated last line"):
        sweeps.measure(resumed)
    rows = resumed.results.rows()
    keys = [(row["S"], row["n"], row["k"], row["pass"]) for row in rows]
    assert len(keys) == len(set(keys)) == len(lines)  # every row once, none lost, none twice
    assert [json.dumps(row, sort_keys=True) for row in rows[:7]] == [
        json.dumps(json.loads(line), sort_keys=True) for line in kept]  # the saved rows were not measured again
    assert len({row["worker"]["pid"] for row in rows[7:]}) == 1
    assert rows[7]["worker"]["pid"] != rows[0]["worker"]["pid"]


def test_sweep_plots_from_results_only(tmp_path, tiny_sweep, monkeypatch):
    ctx = make_context(tmp_path)
    fixed, grid = sweeps.settings(ctx)
    for point in sweeps.all_points(fixed, grid):
        for method, scale in (("fft-pyfftw", 1.0), ("im2col", 2.0), ("torch", 0.5)):
            for pass_ in points.PASSES:
                seconds = scale * 1e-3 * point["n"]
                ctx.append({**point, "method": method, "pass": pass_, "median_s": seconds,
                            "min_s": seconds, "max_s": seconds})
    ctx.append({**point, "method": "direct", "pass": "forward", "skipped": "too slow (test)"})

    def no_measuring(*args, **kwargs):
        raise AssertionError("plot must not measure")

    monkeypatch.setattr(workers, "run_worker", no_measuring)
    sweeps.plot(ctx)
    for name in ("fig3_sweeps.png", "fig3_sweeps.svg", "fig3_sweeps.md"):
        assert (ctx.out_dir / name).stat().st_size > 0
    table = (ctx.out_dir / "fig3_sweeps.md").read_text()
    # ms of fft, im2col, direct (not timed), torch; then each one's time over FFT's
    assert "| 8 | updateOutput | 8 | 16 | - | 4 | 2.00x | - | 0.50x |" in table
    assert "too slow (test)" in table


# ------------------------------------------------------------------------------------------------ roofline model
@pytest.mark.parametrize("layer, fft_ms, gemm_ms, total_ms", [
    # computed by hand at 30 GFLOP/s (FFT) and 210 GFLOP/s (complex GEMM), S = 32
    ((11, 32, 3, 96), 5.9, 0.6, 6.5),
    ((7, 32, 96, 256), 61.2, 48.9, 110.1),
    ((5, 16, 256, 384), 40.5, 51.8, 92.3),
    ((5, 16, 384, 384), 58.7, 77.7, 136.4),
    ((3, 16, 384, 384), 58.7, 77.7, 136.4),
])
def test_roofline_model_matches_the_reference_table(layer, fft_ms, gemm_ms, total_ms):
    from experiments import roofline

    k, n, f, fp = layer
    point = points.conv_point(S=32, f=f, fp=fp, n=n, k=k)
    model = roofline.model_seconds(point, 30.0, {p: 210.0 for p in points.PASSES})
    # The reference rounds to 0.1 ms and its total is the sum of the rounded parts.
    assert model["fft"] * 1e3 == pytest.approx(fft_ms, abs=0.06)
    assert model["gemm"] * 1e3 == pytest.approx(gemm_ms, abs=0.06)
    assert model["total"] * 1e3 == pytest.approx(total_ms, abs=0.11)
    assert roofline.model_seconds(point, None, {p: 210.0 for p in points.PASSES}) is None


def test_kernel_window_ranges_and_windows():
    from experiments import kernel_window

    assert kernel_window.ranges([]) == "none"
    assert kernel_window.ranges([9, 11, 13, 21]) == "9..13, 21"
    grid = [points.conv_point(S=1, f=1, fp=1, n=8, k=k) for k in (3, 5, 7)]
    rows = []
    for point, fft_ms, torch_ms in zip(grid, (2.0, 2.0, 2.0), (1.0, 3.0, 1.0)):
        for pass_ in points.PASSES:
            rows.append({**point, "method": "fft-numpy", "pass": pass_, "median_s": fft_ms})
            rows.append({**point, "method": "torch", "pass": pass_, "median_s": torch_ms})
    assert kernel_window.windows(points.ConvResults(rows), grid) == [["fft-numpy", "torch", "5", "5"]]


def test_network_sizes_chain_as_the_paper_lists():
    from experiments import network

    chain = network.shapes(batch=2)
    conv_inputs, size = [], network.INPUT[1]
    for kind, params, shape in chain:
        if kind == "conv":
            conv_inputs.append(size)
        if len(shape) == 4:
            size = shape[2]
    assert conv_inputs == [32, 32, 16, 16, 16]
    assert chain[-1][2] == (2, 1000) and chain[-2][2] == (2, 384 * 8 * 8)


@pytest.mark.parametrize("module_name", ["experiments.harness.timing", "experiments.harness.points",
                                         "experiments.harness.methods", "experiments.harness.provenance",
                                         "experiments.harness.results", "experiments.harness.style",
                                         "experiments.harness.paper", "experiments.kernel_window",
                                         "experiments.defaults", "experiments.accuracy", "experiments.lenet",
                                         "experiments.roofline"])
def test_docstring_examples(module_name):
    import doctest
    import importlib

    failures, attempted = doctest.testmod(importlib.import_module(module_name))
    assert attempted > 0 and failures == 0


def test_conv_results_take_the_lowest_median_of_rounds():
    point = points.conv_point(S=2, f=3, fp=4, n=8, k=3)
    rows = [{**point, "method": "torch", "pass": "forward", "round": 0, "median_s": 2.0},
            {**point, "method": "torch", "pass": "forward", "round": 1, "error": "worker died"},
            {**point, "method": "torch", "pass": "forward", "round": 2, "median_s": 1.5},
            {**point, "method": "torch", "pass": "forward", "round": 3, "median_s": 1.7},
            {**point, "method": "fft-numpy", "pass": "forward", "skipped": "first"},
            {**point, "method": "fft-numpy", "pass": "forward", "skipped": "second"}]
    results = points.ConvResults(rows)
    assert results.seconds(point, "torch", "forward") == 1.5
    assert results.seconds(point, "fft-numpy", "forward") is None
    assert results.row(point, "fft-numpy", "forward")["skipped"] == "second"
