"""The auto_grid experiment: its grid, the ratio and worst-case arithmetic, the measure-mode emulation, the worker
task's wiring, and the plot step from a fixture results file (which must never measure)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import auto_grid
from experiments.harness import jobs, points, workers
from experiments.harness.context import Context, default_options
from fftconv import choose


# ------------------------------------------------------------------------------------------------ the grid
def test_quick_grid_covers_every_cell_and_factor_once_each_within_the_budget():
    grid = auto_grid.quick_grid()
    assert 40 <= len(grid) <= 60
    keys = [auto_grid.point_key(p) for p in grid]
    assert len(set(keys)) == len(keys)
    assert grid == auto_grid.quick_grid()  # deterministic: resuming needs the same points
    assert all(1 <= p["k"] <= p["n"] and p["kind"] == "conv" for p in grid)
    cells = {(p["n"], p["k"], p["stride"]) for p in grid}
    expected = {(n, k, s) for n in auto_grid.INPUT_SIZES for k in auto_grid.kernel_sizes(n) for s in auto_grid.STRIDES}
    assert expected <= cells
    for values, field in ((auto_grid.INPUT_SIZES, "n"), (auto_grid.BATCHES, "S"), (auto_grid.STRIDES, "stride")):
        assert {p[field] for p in grid} == set(values)
    assert {(p["f"], p["fp"]) for p in grid} == set(auto_grid.CHANNELS)
    assert {1, 3, 5, 7, 11} <= {p["k"] for p in grid} and {p["n"] for p in grid if p["k"] == p["n"]} == {8, 16, 32, 64}
    # one point per cell under the cap, then the many-map block (which is allowed to cost more)
    block = [p for p in grid if (p["f"], p["fp"]) in auto_grid.FFT_REGIME["channels"]
             and p["n"] in auto_grid.FFT_REGIME["n"] and p["k"] in auto_grid.FFT_REGIME["k"]
             and p["S"] == auto_grid.FFT_REGIME["S"] and p["stride"] == 1]
    assert len(block) == 12
    assert all(auto_grid.estimated_cost(p) <= auto_grid.QUICK_CAP_SECONDS for p in grid if p not in block)


def test_full_grid_contains_the_quick_grid_and_every_cheap_combination():
    quick, full = auto_grid.quick_grid(), auto_grid.full_grid()
    assert all(p in full for p in quick) and len(full) > 5 * len(quick)
    assert auto_grid.build_grid(True) == quick and auto_grid.build_grid(False) == full
    cheap = auto_grid.grid_point(32, 64, 64, 16, 3, 2)
    assert auto_grid.estimated_cost(cheap) <= auto_grid.FULL_CAP_SECONDS and cheap in full


def test_grid_point_rejects_kernels_larger_than_the_input_and_direct_is_skipped_only_where_slow():
    with pytest.raises(ValueError, match="kernel size k=11 must be between 1 and the input size n=8"):
        auto_grid.grid_point(1, 3, 16, 8, 11, 1)
    assert auto_grid.output_size(auto_grid.grid_point(1, 3, 16, 8, 3, 2)) == 3  # (8 - 3) // 2 + 1
    assert auto_grid.direct_skip_reason(auto_grid.grid_point(1, 3, 16, 8, 3, 1), quick=True) is None
    reason = auto_grid.direct_skip_reason(auto_grid.grid_point(32, 128, 128, 32, 7, 1), quick=False)
    assert reason.startswith("direct (a float64 reference) is estimated at")


# ------------------------------------------------------------------------------------------------ fixture results
A = auto_grid.grid_point(8, 16, 32, 16, 5, 1)
B = auto_grid.grid_point(1, 3, 16, 8, 3, 2)


def timed(method: str, point: dict, pass_: str, ms: float, **extra) -> dict:
    return {**point, "method": method, "pass": pass_, "median_s": ms * 1e-3, "min_s": ms * 1e-3,
            "max_s": ms * 1e-3, **extra}


def auto_row(point: dict, pass_: str, ms: float, choice: str, estimates_ms: dict) -> dict:
    return timed("auto-pyfftw", point, pass_, ms, choice=choice,
                 estimates={a: e * 1e-3 for a, e in estimates_ms.items()})


def fixture_rows() -> list[dict]:
    rates = {"fft_flops": 2.5e10, "complex_gemm_flops": 6e10, "real_gemm_flops": 1.5e11, "copy_bytes": 3e9,
             "direct_flops": 2e9, "source": "fixture"}
    skipped = "direct (a float64 reference) is estimated at ~9 ms per call here (limit 10 ms); not timed"
    return [
        {"kind": "calibration", "method": "auto-pyfftw", "rates": rates},
        # A forward: auto picks the winner (its own worker ran 10 % slower: noise)
        timed("fft-pyfftw", A, "forward", 2.0), timed("im2col", A, "forward", 1.0),
        {**A, "method": "direct", "pass": "forward", "skipped": skipped},
        auto_row(A, "forward", 1.1, "im2col", {"fft": 1.0, "im2col": 0.5, "direct": 100.0}),
        # A, input gradient: the model is 5x wrong about fft (estimate 5 vs 1 for im2col), outside measure's 4x window
        timed("fft-pyfftw", A, "input", 1.0), timed("im2col", A, "input", 3.0),
        auto_row(A, "input", 3.3, "im2col", {"fft": 5.0, "im2col": 1.0, "direct": 10.0}),
        # A, weight gradient: auto missing -> incomplete
        timed("fft-pyfftw", A, "weight", 1.0),
        # B forward: all three in the window; direct is fastest; auto chose fft (2x the best)
        timed("fft-pyfftw", B, "forward", 1.0), timed("im2col", B, "forward", 2.0),
        timed("direct", B, "forward", 0.5),
        auto_row(B, "forward", 1.0, "fft", {"fft": 1.0, "im2col": 2.0, "direct": 3.5}),
        # B, input gradient: direct in the window but not timed here
        timed("fft-pyfftw", B, "input", 1.0), timed("im2col", B, "input", 1.5),
        {**B, "method": "direct", "pass": "input", "skipped": skipped},
        auto_row(B, "input", 1.2, "fft", {"fft": 1.0, "im2col": 1.2, "direct": 2.0}),
    ]


def test_ratios_worst_cases_and_the_measure_mode_emulation():
    comparisons, incomplete = auto_grid.compare(fixture_rows())
    # sorted by n (B has n=8, A n=16), then pass, whatever the order of the rows
    assert [(c.point["k"], c.pass_name) for c in comparisons] == [(3, "forward"), (3, "input"),
                                                                  (5, "forward"), (5, "input")]
    assert incomplete == [{"point": points.point_of(A), "pass": "weight", "why": "auto not timed"}]
    b_fwd, b_in, a_fwd, a_in = comparisons
    assert a_fwd.best_algo == "im2col" and a_fwd.auto_ratio == pytest.approx(1.1) and a_fwd.chosen_ratio == 1.0
    assert a_fwd.skipped == {"direct": fixture_rows()[3]["skipped"]} and a_fwd.measure_pick == "im2col"
    assert a_in.best_algo == "fft" and a_in.auto_ratio == pytest.approx(3.3) and a_in.chosen_ratio == 3.0
    assert a_in.measure_candidates == ["im2col"] and a_in.measure_ratio == 3.0  # fft is 5x the lowest estimate
    assert b_fwd.best_algo == "direct" and b_fwd.auto_ratio == 2.0 and b_fwd.chosen_ratio == 2.0
    assert b_fwd.measure_candidates == ["fft", "im2col", "direct"] and b_fwd.measure_pick == "direct"
    assert b_fwd.measure_ratio == 1.0
    assert b_in.measure_untimed == ["direct"] and b_in.measure_pick == "fft" and b_in.measure_ratio == 1.0
    # model mode: the lowest estimate, judged by the medians (a_in: im2col, 3x the best)
    assert [(c.model_pick, c.model_ratio) for c in comparisons] == [("fft", 2.0), ("fft", 1.0), ("im2col", 1.0),
                                                                    ("im2col", 3.0)]
    assert auto_grid.worst(comparisons, "auto_ratio") is a_in
    assert auto_grid.worst(comparisons, "measure_ratio") is a_in
    assert auto_grid.over_target(comparisons, "chosen_ratio") == [b_fwd, a_in]
    assert auto_grid.over_target(comparisons, "auto_ratio", target=1.15) == [b_fwd, b_in, a_in]
    assert auto_grid.worst([], "auto_ratio") is None


def test_measure_window_boundary_is_inclusive_like_choose():
    candidates, untimed, pick = auto_grid.measure_mode({"fft": 1.0, "im2col": 4.0, "direct": 4.01},
                                                       {"fft": 2.0, "im2col": 1.0, "direct": 0.1})
    assert candidates == ["fft", "im2col"] and untimed == [] and pick == "im2col"


def test_plot_writes_figure_and_table_from_results_without_measuring(tmp_path, monkeypatch):
    def no_measuring(*args, **kwargs):
        raise AssertionError("plot must not measure")

    monkeypatch.setattr(workers, "run_worker", no_measuring)
    monkeypatch.setattr(jobs, "measure_jobs", no_measuring)
    ctx = Context("auto_grid", quick=True, options=default_options(threads=2, plot_only=True, limit=None),
                  output_root=tmp_path, validate=auto_grid.validate)
    for row in fixture_rows():
        ctx.append(row)
    auto_grid.plot(ctx)
    for suffix in ("png", "svg", "md"):
        assert (ctx.out_dir / f"auto_grid.{suffix}").stat().st_size > 0
    text = (ctx.out_dir / "auto_grid.md").read_text()
    assert "worst **3.30x** at S=8 16->32 n=16 k=5, input gradient: picked im2col, best fft" in text
    assert "worst **3.00x** at S=8 16->32 n=16 k=5, input gradient" in text  # chosen/best and measure/best
    assert "2 of 4 above 1.25x (1 of the 3 whose best time is at least 1 ms)" in text
    assert "1 (geometry, pass) incomplete" in text
    assert "measure mode would also time direct at 1 (geometry, pass)" in text
    assert ("| 1 | 3 -> 16 | 8 | 3 | 2 | forward | 1 | 2 | 0.5 | 1 | fft | - | direct | 2.00 | 2.00 | fft | 2.00 "
            "| direct | 1.00 |") in text
    assert "| 25.0 | 60.0 | 150.0 | 3.00 | 2.00 | fixture |" in text


# ------------------------------------------------------------------------------------------------ worker wiring
class FakeSession:
    """Calls each pass once instead of timing it: checks the task's wiring, not speed."""

    def __init__(self, algo: str):
        self.parsed, self.backend, self.torch, self.results = {"algo": algo, "backend": None}, None, None, []

    def measure(self, fn):
        self.results.append(fn())
        return {"median_s": 1.0}


def test_grid_passes_runs_each_pass_with_the_stride_and_records_auto_decisions(monkeypatch):
    monkeypatch.setenv("FFTCONV_AUTO", "measure")  # the task must set the default mode (restored after the test)
    rates = dict(vars(choose.MachineRates()), fft_flops=1e3)  # an absurdly slow FFT: the model must avoid it
    point = auto_grid.grid_point(2, 3, 4, 9, 3, 2)
    session = FakeSession("auto")
    try:
        rows = list(auto_grid.grid_passes({**point, "rates": rates, "todo": [{"pass": p} for p in points.PASSES]},
                                          session))
    finally:
        choose.set_rates(None)
    assert os.environ["FFTCONV_AUTO"] == "hybrid"
    assert [row["pass"] for row in rows] == list(points.PASSES)
    runnable = set(choose.CANDIDATES) - {"winograd"}  # the point has stride 2, which Winograd cannot run
    assert all(row["choice"] != "fft" and set(row["estimates"]) == runnable for row in rows)
    assert all(isinstance(row["timed_by_auto"], list) for row in rows)
    assert [r.shape for r in session.results] == [(2, 4, 4, 4), (2, 3, 9, 9), (4, 3, 3, 3)]
    json.dumps(rows)  # rows must be JSON
    reference = FakeSession("im2col")
    list(auto_grid.grid_passes({**point, "todo": [{"pass": "forward"}]}, reference))
    np.testing.assert_allclose(session.results[0], reference.results[0], rtol=1e-5, atol=1e-5)


def test_a_method_timed_in_several_rounds_counts_with_its_lowest_median():
    rows = fixture_rows()
    rows += [{**row, "round": 1, "median_s": row["median_s"] * factor}
             for row, factor in ((rows[1], 0.25), (rows[2], 3.0), (rows[4], 0.5)) if "median_s" in row]
    rows.append({**rows[3], "round": 1})  # direct skipped again
    comparisons, _ = auto_grid.compare(rows)
    a_fwd = next(c for c in comparisons if c.point["k"] == 5 and c.pass_name == "forward")
    assert a_fwd.times == {"fft": 0.5e-3, "im2col": 1e-3}  # fft's second round was 4x faster; im2col's slower
    assert a_fwd.best_algo == "fft" and a_fwd.auto == pytest.approx(0.55e-3) and a_fwd.auto_ratio == pytest.approx(1.1)
    assert a_fwd.chosen_ratio == 2.0 and list(a_fwd.skipped) == ["direct"]
