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
def test_quick_grid_holds_the_winners_blocks_and_every_other_cell_once_within_the_budget():
    grid = auto_grid.quick_grid()
    assert 50 <= len(grid) <= 70  # make figures' budget: about as many as the three-algorithm grid had
    keys = [auto_grid.point_key(p) for p in grid]
    assert len(set(keys)) == len(keys)
    assert grid == auto_grid.quick_grid()  # deterministic: resuming needs the same points
    assert all(1 <= p["k"] <= p["n"] and p["kind"] == "conv" for p in grid)
    winners = auto_grid.WINNERS[True]
    block = auto_grid.map_points(winners) + auto_grid.channel_points(winners)
    assert all(p in grid for p in block)
    assert {(p["n"], p["k"]) for p in auto_grid.map_points(winners)} == {
        (n, k) for n in winners["map"]["n"] for k in auto_grid.KERNEL_SIZES if k <= n}
    assert len({(p["S"], p["f"], p["fp"], p["stride"]) for p in auto_grid.map_points(winners)}) == 1
    assert {p["f"] for p in auto_grid.channel_points(winners)} == set(winners["channels"]["channels"])
    # every (n, k, stride) cell once, except where even the cheapest (channels, batch) is over the cap
    cells = {(p["n"], p["k"], p["stride"]) for p in grid}
    for n in auto_grid.INPUT_SIZES:
        for k in auto_grid.kernel_sizes(n, auto_grid.QUICK_CELL_KERNELS):
            for stride in auto_grid.STRIDES:
                cheapest = min(auto_grid.estimated_cost(auto_grid.grid_point(b, f, fp, n, k, stride))
                               for f, fp in auto_grid.CHANNELS for b in auto_grid.BATCHES)
                assert ((n, k, stride) in cells) == (cheapest <= auto_grid.QUICK_CAP_SECONDS), (n, k, stride)
    assert {p["n"] for p in grid} == set(auto_grid.INPUT_SIZES) and {p["stride"] for p in grid} == {1, 2}
    assert set(range(1, 14, 2)) <= {p["k"] for p in grid}
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


def plotted_without_measuring(tmp_path, monkeypatch, rows) -> Context:
    """The context after ``auto_grid.plot`` drew ``rows``, with every way of measuring replaced by a failure."""
    def no_measuring(*args, **kwargs):
        raise AssertionError("plot must not measure")

    monkeypatch.setattr(workers, "run_worker", no_measuring)
    monkeypatch.setattr(jobs, "measure_jobs", no_measuring)
    ctx = Context("auto_grid", quick=True, options=default_options(threads=2, plot_only=True, limit=None),
                  output_root=tmp_path, validate=auto_grid.validate)
    for row in rows:
        ctx.append(row)
    auto_grid.plot(ctx)
    return ctx


def test_plot_writes_figure_and_table_from_results_without_measuring(tmp_path, monkeypatch):
    ctx = plotted_without_measuring(tmp_path, monkeypatch, fixture_rows())
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


# ------------------------------------------------------------------------------------------------ winners
TINY_WINNERS = {"map": {"S": 1, "channels": 2, "n": [6, 8], "k": [1, 3]},
                "channels": {"S": 1, "n": 8, "k": [3], "channels": [2, 4]}}


def winners_rows() -> list[dict]:
    """im2col wins at k=1; fft at (n=8, k=3) except its weight gradient; Winograd at (n=6, k=3), where fft's weight
    gradient is missing (no step for it there)."""
    ms = {(6, 1): {"fft": 3, "im2col": 1, "winograd": 2}, (8, 1): {"fft": 3, "im2col": 1, "winograd": 2},
          (6, 3): {"fft": 2, "im2col": 3, "winograd": 1}, (8, 3): {"fft": 1, "im2col": 2, "winograd": 3}}
    rows = []
    for (n, k), times in ms.items():
        point = auto_grid.grid_point(1, 2, 2, n, k, 1)
        for algo, value in times.items():
            method = "fft-pyfftw" if algo == "fft" else algo
            for pass_ in points.PASSES:
                if (n, k, algo, pass_) == (6, 3, "fft", "weight"):
                    rows.append({**point, "method": method, "pass": pass_, "error": "MemoryError"})
                    continue
                scale = 10 if (n, k, algo, pass_) == (8, 3, "fft", "weight") else 1
                rows.append(timed(method, point, pass_, value * scale, settings={"winners": TINY_WINNERS}))
    return rows


def test_winners_per_pass_and_for_the_step_with_the_runner_up_margin():
    cells = auto_grid.winner_cells(winners_rows(), auto_grid.map_points(TINY_WINNERS))
    by_kn = {(c.point["k"], c.point["n"]): c for c in cells}
    assert by_kn[(1, 6)].winner("step") == ("im2col", pytest.approx(2.0))
    assert by_kn[(3, 6)].winner("forward") == ("winograd", pytest.approx(2.0))
    assert "fft" not in by_kn[(3, 6)].seconds["step"]  # a pass missing: no step for it
    assert by_kn[(3, 6)].winner("step") == ("winograd", pytest.approx(3.0))  # im2col 9 ms over winograd 3 ms
    assert by_kn[(3, 8)].winner("forward") == ("fft", pytest.approx(2.0))
    assert by_kn[(3, 8)].winner("weight") == ("im2col", pytest.approx(1.5))  # fft's 10 ms, Winograd 3 ms
    assert by_kn[(3, 8)].winner("step") == ("im2col", pytest.approx(1.5))  # fft 12 ms, im2col 6, Winograd 9


def test_plot_draws_the_winners_from_results_without_measuring(tmp_path, monkeypatch):
    ctx = plotted_without_measuring(tmp_path, monkeypatch, winners_rows())
    assert (ctx.out_dir / "auto_grid_winners.png").stat().st_size > 0
    text = (ctx.out_dir / "auto_grid.md").read_text()
    assert "| n \\ k | 1 | 3 |" in text
    assert "| 6 | im2col (2.00x) | winograd (3.00x) |" in text
