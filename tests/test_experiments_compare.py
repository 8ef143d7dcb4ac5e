"""``python -m experiments compare``: every algorithm of fftconv's registry (and PyTorch) on one shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments import compare

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_compare(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", "compare", *argv, "--threads", "1"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "FFTCONV_BENCH_WISDOM": "off"})


def test_compare_times_every_algorithm_and_every_pass():
    done = run_compare("--input", "2,4,9,7", "--weight", "6,2,3,3", "--groups", "2", "--stride", "2",
                       "--padding", "1", "--algos", "fft", "im2col", "direct", "--backends", "numpy")
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| pass | method | median ms | min ms | max ms | median / best |"
    body = table[1:]  # the separator line does not start with "| "
    assert len(body) == 4 * 3  # three passes and the step, three methods each
    for pass_ in ("forward (updateOutput)", "input (updateGradInput)", "weight (accGradParameters)"):
        rows = [line for line in body if line.startswith(f"| {pass_} |")]
        assert len(rows) == 3 and sum(" best |" in line for line in rows) >= 1
    assert "S=2 4->6 n=9x7 k=3x3 s=2 p=1 g=2" in done.stdout


def test_compare_skips_a_slow_direct_and_says_why():
    done = run_compare("--input", "1,2,8,8", "--weight", "2,2,3,3", "--algos", "im2col", "direct",
                       "--max-direct-seconds", "0")
    assert done.returncode == 0, done.stderr
    assert "skipped: direct (a float64 reference) would take" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["--input", "2,4,9,9", "--weight", "6,3,3,3"], "--weight's second entry (3) times --groups (1)"),
    (["--input", "2,4,9", "--weight", "6,4,3,3"], "--weight must have as many entries as --input"),
    (["--input", "2,4,9,9", "--weight", "6,4,3,3", "--stride", "1,2,3"], "--stride needs one value or 2"),
    (["--input", "2,4,9,9", "--weight", "6,4,3,3", "--algos", "winnograd"], "--algos winnograd: unknown"),
])
def test_compare_names_the_bad_option(argv, message, capsys):
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare.main(argv)


def test_compare_skips_an_algorithm_that_cannot_run_the_shape_and_says_why():
    import fftconv

    if "winograd" not in fftconv.ALGORITHMS:
        pytest.skip("no algorithm with geometry limits is registered")
    done = run_compare("--input", "1,2,9,9", "--weight", "2,2,3,3", "--stride", "2", "--algos", "winograd", "im2col")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| forward (updateOutput) | winograd |")]
    assert rows == ["| forward (updateOutput) | winograd | - | - | - | skipped: winograd needs stride 1 |"]


def test_compare_lists_the_registry_by_default():
    import fftconv

    options = compare.build_parser().parse_args(["--input", "1,1,4,4", "--weight", "1,1,3,3", "--backends", "numpy"])
    labels = compare.method_labels(options)
    assert [label.split("-")[0] for label in labels if label != "torch"] == list(fftconv.ALGORITHMS)
