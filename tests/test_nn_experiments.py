"""The two experiments built on fftconv.nn, run small into a temporary folder: param_counts and lenet."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from experiments import lenet, param_counts
from experiments.harness.context import Context


def context(tmp_path, name, **options):
    namespace = argparse.Namespace(algos=None, backends=None, threads=None, force=False, plot_only=False, **options)
    return Context(name, quick=True, options=namespace, output_root=tmp_path)


def test_param_counts_reproduce_the_example(tmp_path):
    ctx = context(tmp_path, "param_counts")
    param_counts.measure(ctx)
    param_counts.measure(ctx)  # resumable: a second run adds nothing
    rows = {row["layer"]: row for row in ctx.results.rows()}
    assert len(rows) == len(ctx.results.rows()) == len(param_counts.LAYERS)
    assert rows["fully connected"]["weights"] == 1_600_000_000
    assert rows["locally connected, 10x10 filters"]["weights"] == 4_000_000
    assert rows["locally connected, 10x10 filters"]["hidden_units"] == 40_000
    assert rows["convolution, 100 filters of 10x10"]["weights"] == 10_000
    param_counts.plot(ctx)
    assert {"param_counts.md", "param_counts.png", "param_counts.svg"} <= {p.name for p in ctx.out_dir.iterdir()}


def test_lenet_fft_and_im2col_train_identically_in_float64(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("threadpoolctl")
    ctx = context(tmp_path, "lenet", epochs=1, dtypes=["float64"], batch_size=64)
    lenet.measure(ctx)
    epochs = [row for row in ctx.results.rows() if row["kind"] == "epoch"]
    assert len(epochs) == 1 and ctx.results.has({"kind": "run", "dtype": "float64"})
    fft, gemm = (np.array(epochs[0]["losses"][label]) for label in ("fft", "im2col"))
    assert len(fft) == 23  # ceil(1437 / 64) steps
    np.testing.assert_allclose(fft, gemm, rtol=1e-12)
    assert epochs[0]["parameter_difference"]["fft"] < 1e-12
    assert fft[-1] < fft[0]  # it learns
    lenet.plot(ctx)
    assert {"lenet.md", "lenet_loss_curves.png", "lenet_loss_curves.svg"} <= {p.name for p in ctx.out_dir.iterdir()}


def test_lenet_data_split_is_fixed():
    pytest.importorskip("sklearn")
    x_train, y_train, x_test, y_test = lenet.load_digits_32()
    assert x_train.shape == (1437, 1, 32, 32) and x_test.shape == (360, 1, 32, 32)
    again = lenet.load_digits_32()
    np.testing.assert_array_equal(x_train, again[0])
    np.testing.assert_array_equal(y_test, again[3])
    assert abs(x_train.mean()) < 1e-12 and abs(x_train.std() - 1) < 1e-12
