"""The experiments harness: resumable results, atomic writes, the results/plot split, provenance, metadata, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from experiments import EXPERIMENTS
from experiments.__main__ import build_parser, forwarded_flags
from experiments.harness import provenance, results, style, workers
from experiments.harness.context import Context, run
from experiments.harness.results import ResultsFile, ResultsWarning

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
    module.validate = lambda row: results.missing_fields(row, "n", "value")

    def measure(ctx):
        measured = 0
        for key in ctx.progress(ctx.pending({"n": n} for n in points), desc="toy"):
            if fail_after is not None and measured == fail_after:
                raise Interrupted
            if calls is not None:
                calls.append(key["n"])
            ctx.append({**key, "value": key["n"] ** 2})
            measured += 1

    def plot(ctx):
        rows = sorted(ctx.rows(), key=lambda row: row["n"])
        style.write_table(ctx.out_dir, "table", ctx.provenance_note() + "\n" + style.markdown_table(
            ["n", "value"], [[row["n"], row["value"]] for row in rows]))

    module.measure, module.plot = measure, plot
    return module


def table_rows(tmp_path) -> list[str]:
    return [line for line in (tmp_path / "toy" / "table.md").read_text().splitlines() if line.startswith("| ")][1:]


# ------------------------------------------------------------------------------------------------ ResultsFile
def test_results_file_appends_and_finds_rows(tmp_path):
    store = ResultsFile(tmp_path / "r.jsonl")
    store.append({"n": 8, "shape": (2, 3), "pass": "forward", "seconds": 0.5})
    assert store.has({"n": 8, "shape": [2, 3]})
    assert store.has({"shape": (2, 3)})  # tuples compare as the lists JSON stores
    assert not store.has({"n": 8, "pass": "input"})
    assert not store.has({"missing_field": 1})
    assert len(store.rows()) == 1
    reread = ResultsFile(tmp_path / "r.jsonl")
    assert reread.rows() == [{"n": 8, "shape": [2, 3], "pass": "forward", "seconds": 0.5}]


def test_rows_with_the_old_pass_names_are_read_with_fftconvs(tmp_path):
    from fftconv.passes import PASSES

    from experiments.harness import points

    assert points.PASSES is PASSES  # one vocabulary: the experiments use fftconv's
    old = [{"S": 2, "f": 3, "fp": 4, "n": 8, "k": 3, "method": "im2col", "pass": name, "median_s": 1.0, "min_s": 1.0,
            "max_s": 1.0} for name in ("forward", "grad_input", "grad_weight")]
    old.append({"n": 8, "fftconv_fast_grad_input_total": 5, "fftconv_fast_grad_weight_total": 6,
                "settings": {"paper_skips": {"(3,8,3,4)": ["grad_input"]}}})
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in old))
    rows = ResultsFile(path).rows()
    assert [row.get("pass") for row in rows] == ["forward", "input", "weight", None]
    assert rows[3] == {"n": 8, "fftconv_fast_input_total": 5, "fftconv_fast_weight_total": 6,
                       "settings": {"paper_skips": {"(3,8,3,4)": ["input"]}}}
    table = points.ConvResults(rows[:3])
    assert [table.seconds(rows[0], "im2col", p) for p in PASSES] == [1.0, 1.0, 1.0]


def test_results_file_ignores_and_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultsFile(path)
    store.append({"n": 1})
    store.append({"n": 2})
    # Simulate a kill in the middle of writing row 3: the file ends with half a line.
    with open(path, "a") as handle:
        handle.write('{"n": 3, "val')
    resumed = ResultsFile(path)
    with pytest.warns(ResultsWarning, match=r"r.jsonl:3: dropped the unterminated last line"):
        assert [row["n"] for row in resumed.rows()] == [1, 2]
    assert not resumed.has({"n": 3})
    resumed.append({"n": 3})
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_torn_tail_cut_inside_a_utf8_character_is_dropped_not_raised(tmp_path):
    """The old reader decoded the whole file at once: a tail cut inside 'µ' (or the garbage a crash can leave) raised
    UnicodeDecodeError on every rerun, so the sweep could never resume."""
    path = tmp_path / "r.jsonl"
    store = ResultsFile(path)
    store.append({"n": 1, "unit": "µs"})
    whole = json.dumps({"n": 2, "unit": "µs"}, ensure_ascii=False).encode()  # UTF-8, as another writer may leave
    cut = whole[:whole.index("µ".encode()) + 1]  # the first byte of a two-byte character
    with open(path, "ab") as handle:
        handle.write(cut)
    resumed = ResultsFile(path)
    with pytest.warns(ResultsWarning, match="r.jsonl:2: dropped the unterminated last line"):
        assert resumed.rows() == [{"n": 1, "unit": "µs"}]
    resumed.append({"n": 2, "unit": "µs"})
    assert [json.loads(line)["n"] for line in path.read_text(encoding="utf-8").splitlines()] == [1, 2]


def test_invalid_utf8_inside_the_file_skips_that_line_with_its_number(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": "\xff\xfe"}\n{"n": 3}\n')
    with pytest.warns(ResultsWarning, match=r"r.jsonl:2: skipped a line that is not a JSON row \(UnicodeDecodeError"):
        assert [row["n"] for row in ResultsFile(path).rows()] == [1, 3]


def test_results_file_rejects_values_json_cannot_hold(tmp_path):
    store = ResultsFile(tmp_path / "r.jsonl")
    with pytest.raises(TypeError, match="JSON"):
        store.append({"n": object()})
    with pytest.raises(TypeError, match="dict"):
        store.append([1, 2])
    assert not (tmp_path / "r.jsonl").exists() or store.rows() == []


def test_results_file_converts_numpy_scalars(tmp_path):
    np = pytest.importorskip("numpy")
    store = ResultsFile(tmp_path / "r.jsonl")
    store.append({"n": np.int64(4), "error": np.float32(0.25), "shape": np.array([1, 2])})
    assert store.rows() == [{"n": 4, "error": 0.25, "shape": [1, 2]}]
    assert store.has({"n": 4})


# ------------------------------------------------------------------------------------------------ atomic writes
def test_write_atomic_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "table.md"
    results.write_atomic(target, "old\n")
    results.write_atomic(target, b"new contents\n")
    assert target.read_bytes() == b"new contents\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.md"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    results.write_atomic(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        results.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]  # the temporary was removed


def test_save_figure_writes_png_and_svg(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    paths = style.save_figure(fig, tmp_path, "line")
    assert [p.name for p in paths] == ["line.png", "line.svg"]
    assert (tmp_path / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "line.svg").read_text()
    first = {p.name: p.read_bytes() for p in paths}
    style.save_figure(fig, tmp_path, "line")
    assert {p.name: p.read_bytes() for p in paths} == first  # a redraw of the same figure is byte-identical
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ run / resume
def test_interrupted_sweep_resumes_without_duplicates_or_losses(tmp_path):
    points = list(range(10))
    opts = options(output_root=str(tmp_path))
    with pytest.raises(Interrupted):
        run(toy_experiment(points, fail_after=4), opts)
    ctx = Context("toy", quick=True, options=opts, output_root=tmp_path)
    assert [row["n"] for row in ctx.results.rows()] == [0, 1, 2, 3]
    calls: list[int] = []
    run(toy_experiment(points, calls=calls), opts)
    assert calls == [4, 5, 6, 7, 8, 9]  # only the missing points were measured
    rows = ResultsFile(tmp_path / "toy" / "results.jsonl").rows()
    assert sorted(row["n"] for row in rows) == points
    assert (tmp_path / "toy" / "table.md").exists()


def test_resume_after_a_kill_mid_write(tmp_path):
    opts = options(output_root=str(tmp_path))
    run(toy_experiment([0, 1, 2]), opts)
    path = tmp_path / "toy" / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 5])  # the last row is torn, as if killed during its write
    calls: list[int] = []
    with pytest.warns(ResultsWarning, match="unterminated"):
        run(toy_experiment([0, 1, 2], calls=calls), opts)
    assert calls == [2]
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_force_measures_everything_again(tmp_path):
    run(toy_experiment([0, 1]), options(output_root=str(tmp_path)))
    calls: list[int] = []
    run(toy_experiment([0, 1], calls=calls), options(output_root=str(tmp_path), force=True))
    assert calls == [0, 1]
    assert len(ResultsFile(tmp_path / "toy" / "results.jsonl").rows()) == 2


def test_plot_only_reads_a_fixture_and_never_measures(tmp_path):
    out = tmp_path / "toy"
    out.mkdir()
    (out / "results.jsonl").write_text('{"n": 3, "value": 9}\n{"n": 1, "value": 1}\n')
    module = toy_experiment([1, 2, 3])

    def measure(ctx):
        raise AssertionError("plot-only must not measure")

    module.measure = measure
    run(module, options(output_root=str(tmp_path), plot_only=True))
    assert table_rows(tmp_path) == ["| 1 | 1 |", "| 3 | 9 |"]
    assert f"Rows from {provenance.NOT_RECORDED}" in (out / "table.md").read_text()  # old rows, labelled
    assert not (out / "metadata.json").exists()  # nothing was measured, so no new metadata


def test_plot_only_without_results_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="without --plot-only"):
        run(toy_experiment([1]), options(output_root=str(tmp_path), plot_only=True))


def test_full_mode_writes_to_its_own_folder(tmp_path):
    ctx = Context("toy", quick=False, options=options(), output_root=tmp_path)
    assert ctx.out_dir == tmp_path / "toy" / "full" and ctx.out_dir.is_dir()


def test_a_row_missing_fields_is_skipped_with_its_line_and_measured_again(tmp_path):
    """The old plot step raised KeyError on such a row on every rerun, and resuming never replaced it."""
    out = tmp_path / "toy"
    out.mkdir()
    (out / "results.jsonl").write_text('{"n": 0, "value": 0}\n{"n": 1}\n')
    with pytest.warns(ResultsWarning, match=r"results.jsonl:2: skipped a row the plots cannot use \(missing fields: "
                                            r"value\)"):
        run(toy_experiment([0, 1]), options(output_root=str(tmp_path), plot_only=True))
    assert table_rows(tmp_path) == ["| 0 | 0 |"]
    calls: list[int] = []
    with pytest.warns(ResultsWarning):
        run(toy_experiment([0, 1], calls=calls), options(output_root=str(tmp_path), mix=True))
    assert calls == [1] and table_rows(tmp_path) == ["| 0 | 0 |", "| 1 | 1 |"]


def test_a_real_experiment_plots_around_an_incomplete_row(tmp_path):
    from experiments import memory

    ctx = Context("memory", quick=True, options=options(), output_root=tmp_path, validate=memory.validate)
    memory.measure(ctx)
    path = ctx.results.path
    lines = path.read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["formula_bytes"]
    path.write_text("\n".join([lines[0], json.dumps(broken), *lines[2:]]) + "\n")
    with pytest.warns(ResultsWarning, match=r"results.jsonl:2: .*missing fields: formula_bytes"):
        run(memory, options(output_root=str(tmp_path), plot_only=True))
    assert (ctx.out_dir / "memory_table.md").exists()


TOY_SCRIPT = '''
import sys, time, types
sys.path.insert(0, {repo!r})
from experiments.harness.context import run, default_options

module = types.ModuleType("toy")
module.NAME, module.DESCRIPTION = "toy", "concurrency"

def measure(ctx):
    for key in ctx.pending({{"n": n}} for n in range(6)):
        time.sleep(0.15)
        ctx.append({{**key, "value": key["n"], "writer": sys.argv[1]}})

module.measure, module.plot = measure, lambda ctx: None
run(module, default_options(full=False, output_root={root!r}))
'''


def test_two_concurrent_runs_into_one_folder_do_not_duplicate_rows(tmp_path):
    """Without the lock both runs measured every point (12 rows for 6 points); with it the second waits, re-reads and
    measures nothing."""
    script = tmp_path / "toy_run.py"
    script.write_text(TOY_SCRIPT.format(repo=str(REPO_ROOT), root=str(tmp_path / "out")))
    processes = [subprocess.Popen([sys.executable, str(script), name], stderr=subprocess.PIPE, text=True)
                 for name in ("first", "second")]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert all(process.returncode == 0 for process in processes), errors
    rows = ResultsFile(tmp_path / "out" / "toy" / "results.jsonl").rows()
    assert sorted(row["n"] for row in rows) == list(range(6))
    assert len({row["writer"] for row in rows}) == 1  # one run measured everything, the other nothing
    assert any("waiting for another run" in text for text in errors)


# ------------------------------------------------------------------------------------------------ provenance
def test_every_row_records_commit_machine_fingerprint_and_utc_time(tmp_path):
    run(toy_experiment([0, 1]), options(output_root=str(tmp_path), threads=2))
    rows = ResultsFile(tmp_path / "toy" / "results.jsonl").rows()
    numpy = pytest.importorskip("numpy")
    for row in rows:
        record = row["provenance"]
        assert record["commit"] is None or len(record["commit"]) == 40
        assert record["dirty"] in (True, False, None) and record["utc"].endswith("+00:00")
        machine = record["machine"]
        assert machine["cpu"] and machine["cores"] >= 1 and "cpu_family" in machine
        assert machine["packages"]["numpy"] == numpy.__version__ and set(machine["packages"]) == {
            "numpy", "scipy", "pyfftw", "torch"}
        assert all({"library", "kernel", "version"} <= set(blas) for blas in machine["blas"])
        assert "host" not in json.dumps(machine).lower()
        assert record["fingerprint"] == provenance.fingerprint(machine)
        assert record["threads"] == 2


def rows_of_commit(commit: str, utc: str, ns) -> list[dict]:
    machine = {"cpu": "Test CPU", "cpu_family": "1", "cores": 2, "blas": [], "packages": {}}
    return [{"n": n, "value": n * n, "provenance": {"commit": commit, "dirty": False, "utc": utc,
                                                    "fingerprint": provenance.fingerprint(machine),
                                                    "machine": machine}} for n in ns]


def test_figures_show_the_newest_commit_unless_mixed_and_say_which(tmp_path):
    out = tmp_path / "toy"
    out.mkdir()
    rows = rows_of_commit("a" * 40, "2026-01-01T00:00:00+00:00", [0, 1]) + \
        rows_of_commit("b" * 40, "2026-02-01T00:00:00+00:00", [1, 2])
    (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    run(toy_experiment([0, 1, 2]), options(output_root=str(tmp_path), plot_only=True))
    text = (out / "table.md").read_text()
    assert table_rows(tmp_path) == ["| 1 | 1 |", "| 2 | 4 |"]
    assert "commit bbbbbbbbbb" in text and "Test CPU" in text and "2 row(s) of 1 other commit" in text
    run(toy_experiment([0, 1, 2]), options(output_root=str(tmp_path), plot_only=True, mix=True))
    assert len(table_rows(tmp_path)) == 4 and "mixed on request (--mix)" in (out / "table.md").read_text()


def test_a_rerun_remeasures_rows_of_other_commits_and_reports_what_it_kept(tmp_path, capsys):
    out = tmp_path / "toy"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows_of_commit(
        "c" * 40, "2026-01-01T00:00:00+00:00", [0, 1])))
    calls: list[int] = []
    run(toy_experiment([0, 1, 2], calls=calls), options(output_root=str(tmp_path)))
    assert calls == [0, 1, 2]  # another commit's rows do not count as measured
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("toy: 3 rows measured, 0 rows kept, 2 rows of other commits left unused (--mix")
    assert "files written in" in summary and "metadata.json" in summary and summary.endswith(" s")
    run(toy_experiment([0, 1, 2], calls=calls), options(output_root=str(tmp_path)))
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("toy: 0 rows measured, 3 rows kept")
    calls.clear()
    run(toy_experiment([0, 1, 2], calls=calls), options(output_root=str(tmp_path), mix=True))
    assert calls == []


def test_metadata_is_derived_from_the_rows(tmp_path):
    opts = options(output_root=str(tmp_path), threads=2)
    run(toy_experiment([0, 1]), opts)
    metadata = json.loads((tmp_path / "toy" / "metadata.json").read_text())
    rows = ResultsFile(tmp_path / "toy" / "results.jsonl").rows()
    assert metadata["experiment"] == "toy" and metadata["mode"] == "quick" and metadata["rows"] == 2
    (group,) = metadata["groups"]
    assert group["rows"] == 2 and group["threads"] == [2]
    assert group["commit"] == rows[0]["provenance"]["commit"]
    assert group["machine"] == rows[0]["provenance"]["machine"]
    assert group["first_utc"] <= group["last_utc"]
    # A rerun that measures nothing describes the same rows: nothing in the metadata changes but what the rows say.
    run(toy_experiment([0, 1]), opts)
    assert json.loads((tmp_path / "toy" / "metadata.json").read_text()) == metadata


def test_older_metadata_is_kept_for_rows_without_provenance(tmp_path):
    out = tmp_path / "toy"
    out.mkdir()
    (out / "results.jsonl").write_text('{"n": 0, "value": 0}\n')
    (out / "metadata.json").write_text(json.dumps({"cpu": {"model": "Old CPU"}, "git": {"commit": "d" * 40}}))
    run(toy_experiment([0, 1]), options(output_root=str(tmp_path)))
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["metadata_of_rows_without_provenance"]["cpu"]["model"] == "Old CPU"
    assert [g["provenance_recorded"] for g in metadata["groups"]] == [False, True]


def test_selected_names_the_option_when_nothing_applies():
    ctx = Context.__new__(Context)
    ctx.name, ctx.options = "toy", options(algos=["winograd"])
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
        assert callable(module.measure) and callable(module.plot) and callable(module.validate)


def test_all_forwards_the_common_options():
    opts = build_parser().parse_args(["all", "--full", "--threads", "1", "--algos", "fft", "im2col", "--force",
                                      "--mix", "--dask", "tcp://127.0.0.1:8786"])
    assert forwarded_flags(opts) == ["--full", "--threads", "1", "--force", "--algos", "fft", "im2col", "--mix",
                                     "--dask", "tcp://127.0.0.1:8786"]


def test_cli_pins_threads_before_numpy_and_records_them(tmp_path):
    """Run a real (instant) experiment through the CLI in a fresh process."""
    env = {key: value for key, value in os.environ.items() if key not in workers.THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-m", "experiments", "opcounts", "--quick", "--threads", "1",
                           "--output-root", str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "opcounts: 4 rows measured, 0 rows kept" in done.stderr
    rows = ResultsFile(tmp_path / "opcounts" / "results.jsonl").rows()
    for row in rows:
        assert row["provenance"]["threads"] == 1
        for variable in workers.THREAD_VARIABLES:
            assert row["provenance"]["environment"][variable] == "1"


@pytest.mark.parametrize("argv, expected", [
    (["opcounts", "--help"], "--fft-constant"),
    (["lenet", "-h"], "--train-threads"),
    (["--help"], "'list', 'all', 'compare'"),
    (["compare", "--help"], "--weight"),
])
def test_help_lists_the_experiments_own_options(argv, expected):
    done = subprocess.run([sys.executable, "-m", "experiments", *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout and "--threads" in done.stdout


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


def test_git_state_ignores_the_outputs_but_not_the_code(tmp_path):
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
    assert provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "paper_figures" / "table.md").write_text("new\n")
    assert provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("a = 2\n")
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_stage_profile_accounts_for_the_step_and_restores_the_functions():
    import fftconv
    from experiments import stage_profile
    from experiments.harness.fftconv_api import step_stages

    before = [getattr(owner, name) for owner, name, _ in step_stages()]
    step, stages = stage_profile.profile_step(3, 8, 2, 3, batch=2, repeats=2, warmup=1)
    assert {"per-bin GEMMs", "forward FFTs", "inverse FFTs and crops", "kernel DFTs (forward)"} <= set(stages)
    assert 0 < sum(stages.values()) <= step * 1.01
    assert [getattr(owner, name) for owner, name, _ in step_stages()] == before
    assert not {name for _, name, _ in step_stages()} & set(vars(fftconv.get_backend()))
