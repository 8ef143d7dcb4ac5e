"""experiments/transform_rates: every variant it times computes the transform it claims to (against numpy.fft), the
ratios and verdicts come from the samples of the same rounds, and a run resumes and tabulates from its results.

No test here asserts a speed: the samples below are made up or only checked for consistency.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import fftconv
from conftest import assert_close, tolerance
from experiments import transform_rates
from experiments._harness import Context

CASE = {"n": 8, "S": 2, "f": 3, "k": 3, "maps": 6}


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


def test_ratios_and_verdicts_pair_the_rounds(tmp_path):
    """Ratios divide the samples of the same round; the verdict compares the median ratio with the target."""
    point = {"clock": "cpu", "threads": 2, "method": "fft-pyfftw", "n": 16, "maps": 8, "S": 2, "f": 4}

    def row(variant, samples):
        return {**point, "variant": variant, "samples_s": samples, "median_s": float(np.median(samples)),
                "min_s": min(samples), "max_s": max(samples), "flops": 1e9,
                "gflops": 1 / float(np.median(samples)), "gflops_best": 1 / min(samples), "repeats": len(samples)}

    rows = [row("forward map-major", [1.0, 2.0, 1.0]), row("forward frequency-major", [2.0, 2.0, 1.0]),
            row("forward frequency-major, strided writes", [1.0, 4.0, 1.0]),
            row("inverse map-major", [1.0, 1.0, 1.0]), row("inverse frequency-major + crop", [1.3, 1.25, 1.4]),
            {**point, "variant": "forward channels-last", "error": "MemoryError"}]
    entries = {e["variant"]: e for e in transform_rates.summary_rows(rows)}
    assert set(entries) == {r["variant"] for r in rows if "samples_s" in r}
    current = entries["forward frequency-major"]["to_map_major"]
    assert (current["median"], current["min"], current["max"]) == (1.0, 0.5, 1.0)
    candidate = entries["forward frequency-major, strided writes"]
    assert candidate["to_map_major"]["median"] == 1.0 and candidate["to_current"]["min"] == 0.5
    assert candidate["to_current"]["median"] == 1.0 and candidate["to_current"]["max"] == 2.0
    assert entries["forward map-major"]["to_map_major"]["median"] is None
    assert entries["inverse frequency-major + crop"]["to_map_major"]["median"] == pytest.approx(1 / 1.3)
    ctx = Context("transform_rates", quick=True, options=argparse.Namespace(threads=2), output_root=tmp_path)
    text = transform_rates.table(ctx, transform_rates.summary_rows(rows))
    lines = {line.split(" | ")[4]: line for line in text.splitlines() if line.startswith("| cpu")}
    assert "| 100% [50%-100%] | met |" in lines["forward frequency-major"]
    assert "| 77% [71%-80%] | missed |" in lines["inverse frequency-major + crop"]
    assert lines["forward frequency-major, strided writes"].endswith("| 100% [50%-200%] |")


def test_a_run_measures_every_variant_once_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(transform_rates.POINTS, True, [(8, 2, 3)])
    monkeypatch.setitem(transform_rates.KERNELS, 8, 3)
    options = argparse.Namespace(algos=None, backends=["numpy"], threads=1, force=False, plot_only=False,
                                 rounds=3, clock="cpu", full=False, output_root=tmp_path)
    ctx = Context("transform_rates", quick=True, options=options, output_root=tmp_path)
    ctx.write_metadata()
    transform_rates.measure(ctx)
    rows = ctx.results.rows()
    assert sorted(row["variant"] for row in rows) == sorted(transform_rates.variants_for("numpy"))
    for row in rows:
        assert "error" not in row, row
        assert row["repeats"] == 3 == len(row["samples_s"]) and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert (row["clock"], row["threads"], row["maps"]) == ("cpu", 1, 6)
        assert row["libraries"]["numpy"] == np.__version__
    assert ctx.metadata["libraries"]["numpy"] == np.__version__
    transform_rates.measure(ctx)  # nothing left to measure: no new rows
    assert len(ctx.results.rows()) == len(rows)
    transform_rates.plot(ctx)
    assert "forward frequency-major" in (ctx.out_dir / "transform_rates.md").read_text()


def test_too_few_rounds_are_refused(tmp_path):
    options = argparse.Namespace(algos=None, backends=["numpy"], threads=1, force=False, plot_only=False,
                                 rounds=2, clock="wall", full=False, output_root=tmp_path)
    ctx = Context("transform_rates", quick=True, options=options, output_root=tmp_path)
    with pytest.raises(ValueError, match="--rounds must be at least 3 for a median with a spread, got 2"):
        transform_rates.measure(ctx)
