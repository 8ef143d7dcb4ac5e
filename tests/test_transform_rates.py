"""experiments/transform_rates: every variant it times computes the transform it claims to (against numpy.fft), the
rounds interleave, the ratios and verdicts come from the samples of the same rounds, and a run through the command
line measures in worker processes, records provenance and settings, resumes, and tabulates from its saved rows.

No test here asserts a speed: the samples below are made up or only checked for consistency.
"""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

import fftconv
from conftest import assert_close, tolerance
from experiments import transform_rates
from experiments.__main__ import build_parser
from experiments.harness.context import REPO_ROOT, Context, default_options, run
from experiments.harness.results import ResultsFile

CASE = {"n": 8, "S": 2, "f": 3, "k": 3, "maps": 6}


def run_experiment(tmp_path, *flags):
    options = build_parser(transform_rates).parse_args(
        [transform_rates.NAME, "--output-root", str(tmp_path), "--threads", "1", *flags])
    return run(transform_rates, options)


def test_docstring_examples():
    failures, attempted = doctest.testmod(transform_rates)
    assert attempted > 0 and failures == 0


@pytest.mark.parametrize("name", fftconv.available_backends())
def test_every_variant_computes_the_transform_it_times(name, monkeypatch):
    """Forward variants write the input's spectrum where they claim; inverse variants crop the maps the spectrum came
    from (unnormalised inverse times the crop's 1/N), however often they are run, since each gets its spectrum
    restored first."""
    from fftconv.backends import blocks

    monkeypatch.setattr(blocks, "STAGE_BYTES", 2 * 8 * 5 * 8)  # two maps per block: several blocks per call
    backend = fftconv.get_backend(name)
    work = transform_rates.variant_calls(backend, CASE, transform_rates.variants_for(name))
    assert list(work.calls) == transform_rates.variants_for(name)
    x = work.x.astype(np.float64)
    expected = np.fft.rfftn(x, axes=(2, 3))
    tol = tolerance(np.float32, 64)
    m = CASE["n"] - CASE["k"] + 1
    cropped = work.maps[..., CASE["k"] - 1:CASE["k"] - 1 + m, CASE["k"] - 1:CASE["k"] - 1 + m]
    for variant, (call, restore) in work.calls.items():
        for _ in range(2):
            work.input_view[...] = np.nan
            work.crop[...] = np.nan
            if restore is not None:
                restore()
            result = call()
        if variant == "forward map-major":
            assert_close(work.spectrum_mm, expected.reshape(6, 8, 5), tol, variant)
        elif variant == "forward channels-last":
            assert_close(work.spectrum_cl, expected.reshape(6, 8, 5).transpose(1, 2, 0), tol, variant)
        elif variant.startswith("forward"):
            assert_close(work.input_view, expected.reshape(2, 1, 3, 8, 5), tol, variant)
        elif variant == "inverse map-major":
            assert_close(result / 64, work.maps.reshape(6, 8, 8), tol, variant)
        elif variant == "inverse frequency-major, no crop":
            assert np.isnan(work.crop).all()  # it transforms and hands over, nothing more
        else:
            assert_close(work.crop, cropped, tol, variant)


def test_a_variant_the_backend_lacks_is_refused():
    with pytest.raises(ValueError, match="'forward frequency-major, compact stage'.*not measured with backend "
                                         "'numpy'"):
        transform_rates.variant_calls(fftconv.get_backend("numpy"), CASE, ["forward frequency-major, compact stage"])


def test_rounds_rotate_and_restores_are_not_timed():
    """Each round starts one variant later; a restore runs right before its call and outside the timed region."""
    now = [0.0]
    events = []

    def call(name, seconds):
        def run():
            events.append(name)
            now[0] += seconds
        return run

    def restore():
        events.append("restore")
        now[0] += 100.0

    calls = {"a": (call("a", 1.0), None), "b": (call("b", 2.0), restore)}
    samples = transform_rates.interleaved_rounds(calls, 3, clock=lambda: now[0])
    assert events == ["a", "restore", "b", "restore", "b", "a", "a", "restore", "b"]
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def timed_row(variant, samples, **point):
    point = {"clock": "cpu", "threads": 2, "method": "fft-pyfftw", "n": 16, "S": 2, "f": 4, "k": 5, "maps": 8,
             **point}
    return {**point, "variant": variant, "samples_s": samples, "median_s": float(np.median(samples)),
            "min_s": min(samples), "max_s": max(samples), "flops": 1e9, "gflops": 1 / float(np.median(samples)),
            "gflops_best": 1 / min(samples), "repeats": len(samples)}


def test_ratios_and_verdicts_pair_the_rounds(tmp_path):
    """Ratios divide the samples of the same round; the verdict compares the median ratio with the target; the
    table is drawn from the saved rows and lists what failed."""
    rows = [timed_row("forward map-major", [1.0, 2.0, 1.0]), timed_row("forward frequency-major", [2.0, 2.0, 1.0]),
            timed_row("forward frequency-major, strided writes", [1.0, 4.0, 1.0]),
            timed_row("inverse map-major", [1.0, 1.0, 1.0]),
            timed_row("inverse frequency-major + crop", [1.3, 1.25, 1.4])]
    failed = {**{k: v for k, v in rows[0].items() if k not in ("samples_s", "median_s", "min_s", "max_s")},
              "variant": "forward channels-last", "error": "MemoryError: no room"}
    entries = {e["variant"]: e for e in transform_rates.summary_rows(rows + [failed])}
    assert set(entries) == {r["variant"] for r in rows}
    current = entries["forward frequency-major"]["to_map_major"]
    assert (current["median"], current["min"], current["max"]) == (1.0, 0.5, 1.0)
    candidate = entries["forward frequency-major, strided writes"]
    assert candidate["to_map_major"]["median"] == 1.0 and candidate["to_current"]["min"] == 0.5
    assert candidate["to_current"]["median"] == 1.0 and candidate["to_current"]["max"] == 2.0
    assert entries["forward map-major"]["to_map_major"]["median"] is None
    assert entries["inverse frequency-major + crop"]["to_map_major"]["median"] == pytest.approx(1 / 1.3)

    ctx = Context("transform_rates", quick=True, options=default_options(threads=2), output_root=tmp_path,
                  validate=transform_rates.validate)
    ctx.record_settings(target=0.8, candidates=dict(transform_rates.CANDIDATES))
    for row in rows + [failed]:
        ctx.append(row)
    transform_rates.plot(ctx)
    text = (ctx.out_dir / "transform_rates.md").read_text()
    lines = {line.split(" | ")[4]: line for line in text.splitlines() if line.startswith("| cpu")}
    assert "| 100% [50%-100%] | met |" in lines["forward frequency-major"]
    assert "| 77% [71%-80%] | missed |" in lines["inverse frequency-major + crop"]
    assert lines["forward frequency-major, strided writes"].endswith("| 100% [50%-200%] |")
    assert "- fft-pyfftw, n = 16, forward channels-last: MemoryError: no room" in text
    assert "settings were not stored" not in text


def test_the_sizes_sort_as_numbers():
    rows = [timed_row("forward map-major", [1.0, 1.0, 1.0], f=f, maps=2 * f) for f in (384, 96, 256)]
    assert [e["f"] for e in transform_rates.summary_rows(rows)] == [96, 256, 384]


def test_validate_names_what_a_row_lacks():
    row = timed_row("forward map-major", [1.0, 1.0, 1.0])
    assert transform_rates.validate(row) is None
    assert transform_rates.validate({k: v for k, v in row.items() if k != "samples_s"}) == "missing fields: samples_s"
    untimed = {k: v for k, v in row.items() if k not in ("median_s",)}
    assert transform_rates.validate(untimed) == "neither a timing (median_s) nor a reason (error, skipped)"
    assert transform_rates.validate({**untimed, "error": "worker died"}) is None


def test_a_run_measures_every_variant_once_in_workers_and_resumes(tmp_path, monkeypatch):
    """Through the command line's options: one worker process for the backend, rows with provenance, settings and
    the timing they ran with; a rerun measures nothing; a redraw takes the target from the saved rows."""
    monkeypatch.setitem(transform_rates.POINTS, True, [(8, 2, 3)])
    monkeypatch.setitem(transform_rates.KERNELS, 8, 3)
    monkeypatch.setenv("FFTCONV_BENCH_WISDOM", "off")
    ctx = run_experiment(tmp_path, "--backends", "numpy", "--rounds", "3", "--clock", "cpu")
    rows = ResultsFile(ctx.results.path).rows()
    assert sorted(row["variant"] for row in rows) == sorted(transform_rates.variants_for("numpy"))
    for row in rows:
        assert "error" not in row, row
        assert row["repeats"] == 3 == len(row["samples_s"]) and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert (row["clock"], row["threads"], row["maps"], row["method"]) == ("cpu", 1, 6, "fft-numpy")
        assert row["libraries"]["numpy"] == np.__version__
        assert row["provenance"]["threads"] == 1 and row["provenance"]["machine"]
        assert row["settings"]["target"] == transform_rates.TARGET
        assert (row["timing"]["warmup"], row["timing"]["max_repeats"]) == (transform_rates.WARMUP, 3)
    assert len({row["worker"]["pid"] for row in rows}) == 1
    assert (ctx.out_dir / "metadata.json").exists()
    text = (ctx.out_dir / "transform_rates.md").read_text()
    assert "| forward frequency-major |" in text and "target >= 80%" in text

    again = run_experiment(tmp_path, "--backends", "numpy", "--rounds", "3", "--clock", "cpu")
    assert len(again.results.rows()) == len(rows)

    monkeypatch.setattr(transform_rates, "TARGET", 0.5)
    run_experiment(tmp_path, "--plot-only")
    assert "target >= 80%" in (ctx.out_dir / "transform_rates.md").read_text()


def test_too_few_rounds_are_refused(tmp_path):
    options = default_options(backends=["numpy"], threads=1, rounds=2, clock="wall")
    ctx = Context("transform_rates", quick=True, options=options, output_root=tmp_path)
    with pytest.raises(ValueError, match="--rounds must be at least 3 for a median with a spread, got 2"):
        transform_rates.measure(ctx)


def test_help_lists_the_experiments_own_options():
    done = subprocess.run([sys.executable, "-m", "experiments", "transform_rates", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--clock {cpu,wall}" in done.stdout and "--rounds" in done.stdout and "--threads" in done.stdout
