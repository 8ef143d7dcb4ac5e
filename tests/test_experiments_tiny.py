"""Every experiment measured end to end on a tiny configuration into a temporary folder, then redrawn from its rows.

The sizes are shrunk by monkeypatching the experiments' constants in this process (the points travel to the worker
processes inside each job). No time is checked: only that rows, figures and tables come out, resume, and say where
their rows come from.
"""

from __future__ import annotations

import json

import pytest

import fftconv

from experiments import (auto_grid, defaults, kernel_window, layers, memory, network, opcounts, param_counts,
                         roofline, sweeps)
from experiments.__main__ import build_parser
from experiments.harness import points
from experiments.harness.context import run
from experiments.harness.results import ResultsFile
from experiments.harness.timing import TimingSettings


def run_experiment(module, tmp_path, *flags):
    options = build_parser(module).parse_args([module.NAME, "--output-root", str(tmp_path), "--threads", "1",
                                               *flags])
    return run(module, options)


def check_outputs(ctx, *names):
    for name in names:
        path = ctx.out_dir / name
        assert path.stat().st_size > 0, name
    rows = ResultsFile(ctx.results.path).rows()
    assert rows and all("provenance" in row for row in rows)
    metadata = json.loads(ctx.metadata_path.read_text())
    assert metadata["rows"] == len(rows) and metadata["groups"][0]["provenance_recorded"]
    return rows


def test_analytic_experiments(tmp_path):
    for module, files in ((opcounts, ("fig2_opcounts.png", "opcounts.md")),
                          (memory, ("memory_table.png", "memory_table.md")),
                          (param_counts, ("param_counts.png", "param_counts.md"))):
        ctx = run_experiment(module, tmp_path)
        check_outputs(ctx, *files)
    table = (tmp_path / "memory" / "memory_table.md").read_text()
    assert "| 128 | 32 | 384 | 384 | 830 |" in table  # the paper's printed MB, from the data file


def test_layers_and_its_redraw(tmp_path, monkeypatch):
    monkeypatch.setattr(layers, "LAYERS", ((3, 8, 2, 4), (5, 8, 4, 4)))
    monkeypatch.setattr(layers, "PAPER_SKIPS", {(3, 8, 2, 4): ("input",)})
    monkeypatch.setattr(layers, "SKIPS_BY_LABEL", {"(3,8,2,4)": ["input"]})
    ctx = run_experiment(layers, tmp_path, "--batch", "2", "--algos", "fft", "im2col", "direct")
    rows = check_outputs(ctx, "layers.png", "layers.svg", "layers.md")
    assert {row["settings"]["batch"] for row in rows} == {2}
    text = (ctx.out_dir / "layers.md").read_text()
    assert "Batch 2; protocol: each pass one functional call" in text
    assert "| (3,8,2,4) | im2col |" in text
    # A redraw with other options still uses what the rows say (batch 2, the tiny layers).
    monkeypatch.setattr(layers, "LAYERS", ((7, 32, 96, 256),))
    run_experiment(layers, tmp_path, "--plot-only", "--batch", "64")
    assert "(3,8,2,4)" in (ctx.out_dir / "layers.md").read_text()


def test_sweeps_kernel_window_and_network(tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "PAPER", {"S": 2, "k": 3, "n": 8, "f": 2, "fp": 3})
    monkeypatch.setattr(sweeps, "SWEEPS", {"n": (6, 8), "k": (3, 5), "S": (1, 2)})
    monkeypatch.setattr(sweeps, "QUICK_BATCH", 2)
    monkeypatch.setattr(sweeps, "QUICK_BATCH_SWEEP", (1, 2))
    check_outputs(run_experiment(sweeps, tmp_path, "--algos", "im2col", "fft"), "fig3_sweeps.png", "fig3_sweeps.md")
    assert "paper Torch7 / FFT" in (tmp_path / "sweeps" / "fig3_sweeps.md").read_text()
    check_outputs(run_experiment(kernel_window, tmp_path, "--batch", "1", "--maps", "2", "3", "--input-size", "7",
                                 "--algos", "fft", "im2col"), "kernel_window.png", "kernel_window.md")
    ctx = run_experiment(network, tmp_path, "--batch", "1", "--algos", "fft")
    rows = check_outputs(ctx, "network.png", "network.md")
    assert {row["phase"] for row in rows} == set(network.PHASES)
    assert "FFT size" in (ctx.out_dir / "network.md").read_text()


def test_roofline(tmp_path, monkeypatch):
    monkeypatch.setattr(roofline, "LAYERS", ((11, 16, 3, 4), (3, 8, 4, 4)))
    monkeypatch.setattr(roofline, "PAPER_SKIPS", {(11, 16, 3, 4): ("input",)})
    monkeypatch.setattr(roofline, "SWEEP", {"S": 2, "f": 2, "fp": 3, "n": (8,), "k": (3, 5)})
    monkeypatch.setattr(roofline, "STEP_SWEEP", {"S": 2, "f": 2, "fp": 2, "n": (8, 9), "k": (3, 5)})
    monkeypatch.setattr(roofline, "TARGETS", {(3, 8, 4, 4): 2.0})
    monkeypatch.setattr(roofline, "ROUNDS", 2)
    monkeypatch.setattr(roofline, "FFT_RATE_BYTES", 2**14)
    monkeypatch.setattr(roofline, "SQUARE_GEMM", 32)
    monkeypatch.setattr(roofline, "RATE_SIZES", (8,))
    monkeypatch.setattr(roofline, "timing_settings", lambda quick: TimingSettings(1, 1, 2, 0.0))
    monkeypatch.setattr(roofline, "step_sweep_timing", lambda quick: TimingSettings(1, 2, 2, 0.0))
    ctx = run_experiment(roofline, tmp_path, "--batch", "2", "--algo", "auto")
    rows = check_outputs(ctx, "roofline.png", "roofline.md")
    text = (ctx.out_dir / "roofline.md").read_text()
    assert "B: sum, paper's protocol" in text and "| (11,16,3,4) |" in text and "without updateGradInput" in text
    steps = [row for row in rows if row.get("pass") == "step" and row["f"] == 2 and row["fp"] == 2]
    fftconv_steps = [row for row in steps if row["method"] != "torch"]
    assert {(row["n"], row["k"], row["round"]) for row in fftconv_steps} == {
        (n, k, r) for n in (8, 9) for k in (3, 5) for r in (0, 1)}
    assert all(row["algo"] == "auto" and row["method"].startswith("auto-") and "median_s" in row
               for row in fftconv_steps)
    assert all(set(row["pass_algorithms"]) == {"forward", "input", "weight"}
               and set(row["pass_algorithms"].values()) <= set(fftconv.ALGORITHMS) for row in fftconv_steps)
    assert {row["settings"]["algo"] for row in rows if "settings" in row} == {"auto"}
    assert "fftconv passes (fwd/input/weight)" in text
    assert "## Training-step sweep, S=2, f=2, f'=2, no padding" in text
    assert "algo='auto'" in text and "| 9 | 5 |" in text
    if any(row["method"] == "torch" for row in steps):
        assert ">= 0.8x: " in text and ">= 1x: " in text and ">= 2x: " in text and ">= 70%: " in text
    # A second run measures nothing: every row's key, the algorithm's included, is found.
    again = run_experiment(roofline, tmp_path, "--batch", "2", "--algo", "auto")
    assert len(ResultsFile(again.results.path).rows()) == len(rows)


def test_defaults_has_rounds_and_intervals(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "grid", lambda quick: [points.conv_point(2, 2, 3, 9, 3)])
    monkeypatch.setattr(defaults, "ROUNDS", 2)
    ctx = run_experiment(defaults, tmp_path, "--backends", "numpy", "scipy")
    rows = check_outputs(ctx, "defaults.md")
    assert sorted({row["round"] for row in rows}) == [0, 1] and len(rows) == 2 * 2 * 3
    text = (ctx.out_dir / "defaults.md").read_text()
    assert "**Rule.**" in text and "**best**" in text and "## What the runs support" in text


def test_auto_grid(tmp_path, monkeypatch):
    import fftconv

    tiny = {"map": {"S": 1, "channels": 2, "n": (6, 8), "k": (1, 3)},
            "channels": {"S": 1, "n": 8, "k": (3,), "channels": (2, 4)}}
    monkeypatch.setitem(auto_grid.WINNERS, True, tiny)
    strided = auto_grid.grid_point(2, 3, 4, 9, 5, 2)
    grid = [*auto_grid.map_points(tiny), auto_grid.channel_points(tiny)[1], strided]  # [0] is also in the map
    monkeypatch.setattr(auto_grid, "build_grid", lambda quick: grid)
    monkeypatch.setattr(auto_grid, "ROUNDS", 1)
    ctx = run_experiment(auto_grid, tmp_path, "--backends", "numpy")
    rows = check_outputs(ctx, "auto_grid.png", "auto_grid.md", "auto_grid_winners.png", "auto_grid_winners.svg")
    auto_rows = [row for row in rows if row.get("method") == "auto-numpy" and "median_s" in row]
    assert len(auto_rows) == 3 * 6 and all(row["choice"] in fftconv.ALGORITHMS for row in auto_rows)
    assert {row["stride"] for row in auto_rows} == {1, 2}
    timed = {row["method"] for row in rows if "median_s" in row and row.get("kind") == "conv"}
    assert {"fft-numpy", *(a for a in fftconv.ALGORITHMS if a != "fft"), "auto-numpy"} == timed
    if "winograd" in fftconv.ALGORITHMS:  # the strided point: Winograd cannot run it, and the row says so
        (row,) = [r for r in rows if r.get("method") == "winograd" and r.get("stride") == 2 and r["pass"] == "forward"]
        assert row["skipped"].startswith("winograd needs stride 1")
    for algo in ("winograd", "tiled"):  # the tile the public function ran with is recorded
        assert all(len(r["options"]["tile"]) == 2 for r in rows if r.get("method") == algo and "median_s" in r)
    text = (ctx.out_dir / "auto_grid.md").read_text()
    assert "## Summary" in text and "## Which algorithm wins where" in text
    assert "| n \\ k | 1 | 3 |" in text and "| 3 | 4 |" in text  # the map (rows n, columns k) and the sweep


@pytest.fixture(autouse=True)
def cheap_fftw_planning(monkeypatch):
    """Workers plan pyFFTW transforms with FFTW_ESTIMATE and leave the user's wisdom cache alone."""
    monkeypatch.setenv("FFTCONV_BENCH_PLANNER", "FFTW_ESTIMATE")
    monkeypatch.setenv("FFTCONV_BENCH_WISDOM", "off")
