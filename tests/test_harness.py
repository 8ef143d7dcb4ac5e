"""The experiments harness: resumable results, atomic writes, the results/plot split, metadata, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from experiments import EXPERIMENTS, _harness
from experiments.__main__ import build_parser, forwarded_flags

REPO_ROOT = Path(__file__).resolve().parents[1]


def options(**overrides) -> argparse.Namespace:
    namespace = build_parser().parse_args(["toy"])
    for key, value in overrides.items():
        setattr(namespace, key, value)
    return namespace


class Interrupted(Exception):
    """Stands in for a kill in the middle of a sweep."""


def toy_experiment(points, fail_after=None, calls=None):
    """A sweep over ``points``: each measured point appends one row; optionally dies after ``fail_after`` rows."""
    module = types.ModuleType("toy")
    module.NAME, module.DESCRIPTION = "toy", "toy sweep for the harness tests"

    def measure(ctx):
        measured = 0
        for key in ctx.progress(ctx.pending({"n": n} for n in points), desc="toy"):
            if fail_after is not None and measured == fail_after:
                raise Interrupted
            if calls is not None:
                calls.append(key["n"])
            ctx.results.append({**key, "value": key["n"] ** 2})
            measured += 1

    def plot(ctx):
        rows = sorted(ctx.results.rows(), key=lambda row: row["n"])
        _harness.write_table(ctx.out_dir, "table", _harness.markdown_table(
            ["n", "value"], [[row["n"], row["value"]] for row in rows]))

    module.measure, module.plot = measure, plot
    return module


# ------------------------------------------------------------------------------------------------ ResultsFile
def test_results_file_appends_and_finds_rows(tmp_path):
    results = _harness.ResultsFile(tmp_path / "r.jsonl")
    results.append({"n": 8, "shape": (2, 3), "pass": "forward", "seconds": 0.5})
    assert results.has({"n": 8, "shape": [2, 3]})
    assert results.has({"shape": (2, 3)})  # tuples compare as the lists JSON stores
    assert not results.has({"n": 8, "pass": "grad_input"})
    assert not results.has({"missing_field": 1})
    assert len(results.rows()) == 1
    reread = _harness.ResultsFile(tmp_path / "r.jsonl")
    assert reread.rows() == [{"n": 8, "shape": [2, 3], "pass": "forward", "seconds": 0.5}]


def test_results_file_ignores_and_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    results = _harness.ResultsFile(path)
    results.append({"n": 1})
    results.append({"n": 2})
    # Simulate a kill in the middle of writing row 3: the file ends with half a line.
    with open(path, "a") as handle:
        handle.write('{"n": 3, "val')
    resumed = _harness.ResultsFile(path)
    assert [row["n"] for row in resumed.rows()] == [1, 2]
    assert not resumed.has({"n": 3})
    resumed.append({"n": 3})
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_results_file_rejects_values_json_cannot_hold(tmp_path):
    results = _harness.ResultsFile(tmp_path / "r.jsonl")
    with pytest.raises(TypeError, match="JSON"):
        results.append({"n": object()})
    with pytest.raises(TypeError, match="dict"):
        results.append([1, 2])
    assert not (tmp_path / "r.jsonl").exists() or results.rows() == []


def test_results_file_converts_numpy_scalars(tmp_path):
    np = pytest.importorskip("numpy")
    results = _harness.ResultsFile(tmp_path / "r.jsonl")
    results.append({"n": np.int64(4), "error": np.float32(0.25), "shape": np.array([1, 2])})
    assert results.rows() == [{"n": 4, "error": 0.25, "shape": [1, 2]}]
    assert results.has({"n": 4})


# ------------------------------------------------------------------------------------------------ atomic writes
def test_write_atomic_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "table.md"
    _harness.write_atomic(target, "old\n")
    _harness.write_atomic(target, b"new contents\n")
    assert target.read_bytes() == b"new contents\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.md"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    _harness.write_atomic(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_harness.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _harness.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]  # the temporary was removed


def test_save_figure_writes_png_and_svg(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    paths = _harness.save_figure(fig, tmp_path, "line")
    assert [p.name for p in paths] == ["line.png", "line.svg"]
    assert (tmp_path / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "line.svg").read_text()
    first = {p.name: p.read_bytes() for p in paths}
    _harness.save_figure(fig, tmp_path, "line")
    assert {p.name: p.read_bytes() for p in paths} == first  # a redraw of the same figure is byte-identical
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ run / resume
def test_interrupted_sweep_resumes_without_duplicates_or_losses(tmp_path):
    points = list(range(10))
    opts = options(output_root=str(tmp_path))
    with pytest.raises(Interrupted):
        _harness.run(toy_experiment(points, fail_after=4), opts)
    ctx = _harness.Context("toy", quick=True, options=opts, output_root=tmp_path)
    assert [row["n"] for row in ctx.results.rows()] == [0, 1, 2, 3]
    calls: list[int] = []
    _harness.run(toy_experiment(points, calls=calls), opts)
    assert calls == [4, 5, 6, 7, 8, 9]  # only the missing points were measured
    rows = _harness.ResultsFile(tmp_path / "toy" / "results.jsonl").rows()
    assert sorted(row["n"] for row in rows) == points
    assert (tmp_path / "toy" / "table.md").exists()


def test_resume_after_a_kill_mid_write(tmp_path):
    opts = options(output_root=str(tmp_path))
    _harness.run(toy_experiment([0, 1, 2]), opts)
    path = tmp_path / "toy" / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 5])  # the last row is torn, as if killed during its write
    calls: list[int] = []
    _harness.run(toy_experiment([0, 1, 2], calls=calls), opts)
    assert calls == [2]
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_force_measures_everything_again(tmp_path):
    _harness.run(toy_experiment([0, 1]), options(output_root=str(tmp_path)))
    calls: list[int] = []
    _harness.run(toy_experiment([0, 1], calls=calls), options(output_root=str(tmp_path), force=True))
    assert calls == [0, 1]
    assert len(_harness.ResultsFile(tmp_path / "toy" / "results.jsonl").rows()) == 2


def test_plot_only_reads_a_fixture_and_never_measures(tmp_path):
    out = tmp_path / "toy"
    out.mkdir()
    (out / "results.jsonl").write_text('{"n": 3, "value": 9}\n{"n": 1, "value": 1}\n')
    module = toy_experiment([1, 2, 3])

    def measure(ctx):
        raise AssertionError("plot-only must not measure")

    module.measure = measure
    _harness.run(module, options(output_root=str(tmp_path), plot_only=True))
    table = (out / "table.md").read_text()
    assert table.splitlines()[2:] == ["| 1 | 1 |", "| 3 | 9 |"]
    assert not (out / "metadata.json").exists()  # nothing was measured, so no new run metadata


def test_plot_only_without_results_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="without --plot-only"):
        _harness.run(toy_experiment([1]), options(output_root=str(tmp_path), plot_only=True))


def test_full_mode_writes_to_its_own_folder(tmp_path):
    ctx = _harness.Context("toy", quick=False, options=options(), output_root=tmp_path)
    assert ctx.out_dir == tmp_path / "toy" / "full" and ctx.out_dir.is_dir()


# ------------------------------------------------------------------------------------------------ metadata
def test_metadata_records_versions_machine_threads_and_commit(tmp_path):
    opts = options(output_root=str(tmp_path), threads=2)
    _harness.run(toy_experiment([0]), opts)
    metadata = json.loads((tmp_path / "toy" / "metadata.json").read_text())
    assert metadata["mode"] == "quick" and metadata["threads"] == 2 and metadata["experiment"] == "toy"
    assert {"numpy", "scipy", "pyfftw", "matplotlib", "torch"} <= set(metadata["packages"])
    assert metadata["packages"]["numpy"] == __import__("numpy").__version__
    assert metadata["cpu"]["model"] and metadata["cpu"]["usable_cpus"] >= 1
    assert metadata["fft_backends"]["default"] in metadata["fft_backends"]
    assert metadata["git"]["commit"] is None or len(metadata["git"]["commit"]) == 40
    assert metadata["date"].startswith("20")
    ctx = _harness.Context("toy", quick=True, options=opts, output_root=tmp_path)
    assert ctx.machine.startswith(metadata["cpu"]["model"])
    assert "quick mode (batch 2)" in ctx.describe("fft vs im2col", "batch 2")
    ctx.record_settings(fft_backends={"pyfftw": "changed by measure"})
    reread = json.loads((tmp_path / "toy" / "metadata.json").read_text())
    assert reread["fft_backends"] == {"pyfftw": "changed by measure"} and reread["date"] == metadata["date"]


def test_selected_names_the_option_when_nothing_applies():
    ctx_options = options(algos=["winograd"])
    ctx = _harness.Context.__new__(_harness.Context)
    ctx.name, ctx.options = "toy", ctx_options
    with pytest.raises(ValueError, match="--algos winograd"):
        ctx.selected("algos", ["fft", "im2col"])
    ctx.options = options(algos=["im2col", "torch"])
    assert ctx.selected("algos", ["fft", "im2col"]) == ["im2col"]
    ctx.options = options()
    assert ctx.selected("algos", ["fft", "im2col"], default=["fft"]) == ["fft"]


# ------------------------------------------------------------------------------------------------ CLI
def test_every_registered_experiment_follows_the_interface():
    import importlib

    assert len(EXPERIMENTS) == len(set(EXPERIMENTS))
    for name in EXPERIMENTS:
        module = importlib.import_module(f"experiments.{name}")
        assert module.NAME == name and module.DESCRIPTION
        assert callable(module.measure) and callable(module.plot)


def test_all_forwards_the_common_options():
    opts = build_parser().parse_args(["all", "--full", "--threads", "1", "--algos", "fft", "im2col", "--force"])
    assert forwarded_flags(opts) == ["--full", "--threads", "1", "--force", "--algos", "fft", "im2col"]


def test_cli_pins_threads_before_numpy_and_records_them(tmp_path):
    """Run a real (instant) experiment through the CLI in a fresh process."""
    env = {key: value for key, value in os.environ.items() if key not in _harness.THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-m", "experiments", "opcounts", "--quick", "--threads", "1",
                           "--output-root", str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    metadata = json.loads((tmp_path / "opcounts" / "metadata.json").read_text())
    assert metadata["threads"] == 1
    for variable in _harness.THREAD_VARIABLES:
        assert metadata["environment"][variable] == "1"
    blas_threads = [pool["num_threads"] for pool in metadata["thread_pools"] if pool.get("user_api") == "blas"]
    assert blas_threads and set(blas_threads) == {1}  # OpenBLAS saw the variable: it was set before numpy loaded


def test_cli_rejects_unknown_experiments_and_bad_threads():
    for argv, message in ((["nonsense"], "unknown experiment"), (["list", "--threads", "0"], "--threads")):
        done = subprocess.run([sys.executable, "-m", "experiments", *argv], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode != 0 and message in done.stderr


def test_all_skips_missing_modules_runs_each_in_its_own_process_and_reports_failures(monkeypatch, capsys):
    from experiments import __main__ as cli

    launched = []

    def fake_run(command, cwd):
        launched.append(command)
        return subprocess.CompletedProcess(command, 1 if command[3] == "memory" else 0)

    monkeypatch.setattr(cli, "EXPERIMENTS", ["opcounts", "not_written_yet", "memory"])
    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    status = cli.run_all(build_parser().parse_args(["all", "--quick", "--threads", "1"]), [])
    assert [command[1:4] for command in launched] == [["-m", "experiments", "opcounts"],
                                                       ["-m", "experiments", "memory"]]
    assert launched[0][4:] == ["--quick", "--threads", "1"]
    err = capsys.readouterr().err
    assert "not_written_yet: skipped" in err and "memory: FAILED" in err
    assert status == 1
    with pytest.raises(SystemExit, match="only the common options"):
        cli.run_all(build_parser().parse_args(["all"]), ["--sizes", "8"])


def test_git_state_ignores_the_outputs_but_not_the_code(tmp_path, monkeypatch):
    """make figures rewrites paper_figures/ as it goes; only changes elsewhere make the recorded tree dirty."""
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "paper_figures").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "paper_figures" / "table.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    monkeypatch.setattr(_harness, "REPO_ROOT", tmp_path)
    assert _harness.git_state()["dirty"] is False
    (tmp_path / "paper_figures" / "table.md").write_text("new\n")
    assert _harness.git_state()["dirty"] is False
    (tmp_path / "code.py").write_text("a = 2\n")
    assert _harness.git_state()["dirty"] is True


def test_stage_profile_accounts_for_the_step_and_restores_the_functions():
    from experiments import stage_profile
    from fftconv import _kernel_dft, backends
    from fftconv.spectral import hermitian

    before = (hermitian.batched_matmul, _kernel_dft.forward, _kernel_dft.inverse)
    step, stages = stage_profile.profile_step(3, 8, 2, 3, batch=2, repeats=2, warmup=1)
    assert {"per-bin GEMMs", "forward FFTs", "inverse FFTs and crops"} <= set(stages)
    assert 0 < sum(stages.values()) <= step * 1.01
    assert (hermitian.batched_matmul, _kernel_dft.forward, _kernel_dft.inverse) == before
    assert not {"rfftn", "irfftn_blocks"} & set(vars(backends.get_backend()))
