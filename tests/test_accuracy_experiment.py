"""The accuracy experiment: its float64 oracles agree, its errors are what float32 allows, plots need only results."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import fftconv
from experiments import accuracy
from experiments.__main__ import build_parser
from experiments.harness import points
from experiments.harness.context import Context, run


def test_direct_float64_oracle_agrees_with_torch_float64():
    """The fallback oracle (fftconv direct, float64) against PyTorch float64 on paper-like shapes, all passes."""
    torch = pytest.importorskip("torch")
    for shape_x, shape_w, padding in (((2, 6, 12, 12), (5, 6, 5, 5), 0), ((1, 8, 9, 9), (4, 8, 3, 3), 1)):
        case = accuracy.Case("test", str(shape_x), shape_x[0], shape_x[1], shape_w[0], shape_x[2], shape_w[2],
                             padding=padding)
        _, x, w, gy = accuracy.make_data(case)
        x, w, gy = (a.astype(np.float64) for a in (x, w, gy))
        tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
        for pass_name in points.PASSES:
            ours = accuracy.run_fftconv(pass_name, "direct", None, x, w, gy, padding, "fast")
            theirs = accuracy._torch_passes(torch, pass_name, tx, tw, tgy, padding).numpy()
            # float64 sums of at most 8*9*9 products of numbers in [-1, 1]: round-off far below 1e-12 relative
            assert np.max(np.abs(ours - theirs)) <= 1e-12 * np.max(np.abs(theirs)), pass_name


def tiny_cases(quick, options=None):
    return [accuracy.Case("paper_layers", "(3,8,4,6)", 2, 4, 6, 8, 3),
            accuracy.Case("vgg", "1.2", 1, 4, 4, 6, 3, padding=1, passes=("forward",), extra={"vgg_size": 224}),
            accuracy.Case("kernel_size", "k=5", 2, 4, 4, 9, 5),
            accuracy.Case("input_size", "n=7", 2, 4, 4, 7, 5)]


def run_tiny(tmp_path, monkeypatch, *flags):
    monkeypatch.setattr(accuracy, "cases", tiny_cases)
    options = build_parser(accuracy).parse_args(["accuracy", "--output-root", str(tmp_path), *flags])
    return run(accuracy, options)


def check_rows(rows, expected_oracle):
    assert rows
    for row in rows:
        assert row["oracle"] == expected_oracle and row["dtype"] == "float32"
        if row["algo"] == "direct":
            # direct accumulates in float64 and rounds once: at most half an ulp of the largest output
            assert row["max_abs_error"] <= 2.0 ** -24 * row["ref_max_abs"] * (1 + 1e-9)
        elif row["algo"] == "winograd":
            # F(m, r)'s transforms amplify float32 round-off by their matrices' norms, which grow fast with the
            # transform size m + r - 1 (points up to +-(m + r - 1) / 2): within 1e-5 up to 8 points, 2e-4 at 10
            size = row["options"]["tile"] + row["k"] - 1
            assert 0 < row["max_rel_error"] < (1e-5 if size <= 8 else 2e-4), row
        else:
            # float32 arithmetic over short sums: far inside the project's 1e-5 relative max-norm tolerance
            assert 0 < row["max_rel_error"] < 1e-5, row
        assert row["rel_l2_error"] <= row["max_rel_error"] * np.sqrt(row["batch"] * row["out_channels"] * row["n"] ** 2)


def test_measure_with_torch_oracle_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    ctx = run_tiny(tmp_path, monkeypatch, "--backends", "numpy", "scipy")
    rows = ctx.results.rows()
    check_rows(rows, "torch float64")
    # every registered algorithm (Winograd once per tile) and torch; --backends gives the fft methods
    others = {"winograd": ["winograd[2]", "winograd[4]", "winograd[6]"]}
    every = {label for algo in fftconv.ALGORITHMS if algo != "fft" for label in others.get(algo, [algo])}
    methods = {row["method"] for row in rows if row["study"] == "paper_layers"}
    assert methods == {"fft[numpy]", "fft[scipy]", "torch", *every}
    # the sweeps leave out direct (its error is only the output's rounding, shown in the layer tables)
    assert {row["method"] for row in rows if row["study"] == "kernel_size"} == methods - {"direct"}
    assert len(rows) == (3 + 1) * len(methods) + (3 + 3) * (len(methods) - 1)
    for case, pass_name in {(row["case"], row["pass"]) for row in rows if "winograd[6]" == row["method"]}:
        errors = {row["method"]: row["max_rel_error"] for row in rows
                  if (row["case"], row["pass"]) == (case, pass_name) and row["algo"] == "winograd"}
        assert errors["winograd[2]"] < errors["winograd[6]"], (case, pass_name)  # larger tiles, more round-off
    for name in ("accuracy.md", "accuracy_paper_layers.png", "accuracy_vs_kernel_size.svg",
                 "accuracy_vs_input_size.png"):
        assert (ctx.out_dir / name).exists()
    metadata = json.loads((ctx.out_dir / "metadata.json").read_text())
    (settings,) = metadata["groups"][0]["settings"]  # stored with every row, summarised in the metadata
    if "pyfftw" in settings["fft_backends"]:
        assert "FFTW_ESTIMATE" in settings["fft_backends"]["pyfftw"]  # what measure configured, not the default
    again = run_tiny(tmp_path, monkeypatch, "--backends", "numpy", "scipy")
    assert len(again.results.rows()) == len(rows)  # resumed: nothing measured twice


def test_measure_without_torch_uses_the_direct_oracle(tmp_path, monkeypatch):
    monkeypatch.setattr(accuracy, "torch_installed", lambda: False)
    ctx = run_tiny(tmp_path, monkeypatch, "--algos", "fft", "im2col", "torch", "--backends", "numpy")
    rows = ctx.results.rows()
    check_rows(rows, "fftconv direct float64")
    assert "torch" not in {row["method"] for row in rows}


def fixture_rows():
    """Results as measure() writes them, with made-up errors: plot must work from these alone."""
    rows = []
    for case in tiny_cases(True):
        for pass_name in case.passes:
            for i, method in enumerate(("fft[pyfftw]", "im2col", "direct")):
                error = 1e-7 * (i + 1)
                rows.append({**case.fields, "pass": pass_name, "method": method, "algo": method.split("[")[0],
                             "oracle": "torch float64", "max_abs_error": error * 10, "max_rel_error": error,
                             "rel_l2_error": error / 2, "ref_max_abs": 10.0})
    return rows


def test_plot_reads_only_the_results_file(tmp_path, monkeypatch):
    ctx = Context("accuracy", quick=True, options=argparse.Namespace(algos=None, backends=None, threads=2),
                  output_root=tmp_path, validate=accuracy.validate)
    for row in fixture_rows():
        ctx.append(row)
    ctx.append({**tiny_cases(True)[0].fields, "pass": "forward", "method": "im2col", "algo": "im2col",
                        "oracle": "torch float64", "skipped": "MemoryError: im2col needs 9 GiB"})

    def no_measuring(*args, **kwargs):
        raise AssertionError("plot must not compute convolutions")

    monkeypatch.setattr(accuracy, "run_fftconv", no_measuring)
    monkeypatch.setattr(accuracy, "TorchWorker", no_measuring)
    monkeypatch.setattr(fftconv, "conv2d", no_measuring)
    accuracy.plot(ctx)
    table = (ctx.out_dir / "accuracy.md").read_text()
    assert "| (3,8,4,6) | updateOutput | 1.00e-06 (1.00e-07) | 2.00e-06 (2.00e-07) | 3.00e-06 (3.00e-07) |" in table
    # Lavin & Gray's layout: their value beside ours per column (no torch here: im2col is our float32 direct)
    assert ("| 1.2 | 4->4, 6x6 (VGG: 224) | 4.01e-05 | 2.00e-06 | 1.53e-05 | - | 2.84e-04 | - | 1.00e-06 | "
            "3.00e-06 |") in table
    assert "- paper_layers, im2col ((3,8,4,6); updateOutput): MemoryError: im2col needs 9 GiB" in table
    for stem in ("accuracy_paper_layers", "accuracy_vs_kernel_size", "accuracy_vs_input_size"):
        assert (ctx.out_dir / f"{stem}.png").exists() and (ctx.out_dir / f"{stem}.svg").exists()
