"""experiments/torch_step.py on a tiny configuration: every method in its worker, resumable, plotted."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("torch")
pytest.importorskip("threadpoolctl")

from experiments import torch_step  # noqa: E402
from experiments.harness.context import Context  # noqa: E402
from experiments.harness.timing import TimingSettings  # noqa: E402

# fftconv.torch's variants (auto, spinning) differ only in options: the workers of these five cover every code path.
METHODS = ["fftconv.torch", "fftconv.nn", "torch", "fft_conv_pytorch", "torch_fftconv"]


def test_tiny_run_times_the_methods_and_protocols(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_step, "timing_settings",
                        lambda quick: TimingSettings(warmup=1, min_repeats=1, max_repeats=1, budget_seconds=0))
    monkeypatch.setattr(torch_step, "NETWORK", (("conv", 3, 4, 3, 1), ("relu",), ("pool", 2), ("flatten",),
                                                ("fc", 4 * 16 * 16, 10)))
    options = argparse.Namespace(algos=None, backends=None, threads=1, force=False, plot_only=False, batch=2,
                                 methods=METHODS, layers=["3,8,2,4"], no_network=False, max_step_seconds=None)
    ctx = Context("torch_step", quick=True, options=options, output_root=tmp_path)
    torch_step.measure(ctx)
    rows = ctx.results.rows()
    layer_rows = [r for r in rows if r["part"] == "layer"]
    network_rows = [r for r in rows if r["part"] == "network"]
    assert len(layer_rows) == 2 * len(METHODS) and len(network_rows) == len(METHODS)
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    timed = {(r["method"], r["part"], r["protocol"]) for r in rows if "median_s" in r}
    skipped = {(r["method"], r["part"], r["protocol"]): r["skipped"] for r in rows if "skipped" in r}
    assert skipped.get(("fftconv.nn", "layer", "no_input_grad")) == "fftconv.nn layers always compute the input " \
                                                                     "gradient"
    for method in ("fftconv.torch", "torch", "fft_conv_pytorch", "torch_fftconv"):
        assert {(method, "layer", "all_grads"), (method, "layer", "no_input_grad"),
                (method, "network", "no_input_grad")} <= timed
    for row in rows:
        if "max_rel_error" in row and row["method"].startswith(("fftconv", "torch")):
            assert row["max_rel_error"] < 1e-5, row  # float32, the project's bound
    losses = {row["first_loss"] for row in network_rows if "first_loss" in row}
    assert max(losses) - min(losses) < 1e-4  # every method trains the same network
    for row in rows:  # the harness's conventions: provenance and the run's settings in every row, all usable
        assert {"commit", "fingerprint", "utc"} <= set(row["provenance"]) and row["settings"]["batch"] == 2
        assert torch_step.validate(row) is None, row
    torch_step.measure(ctx)  # resumable: nothing left to measure
    assert len(ctx.results.rows()) == len(rows)
    torch_step.plot(ctx)
    written = {p.name for p in ctx.out_dir.iterdir()}
    assert {"torch_step.md", "torch_step.png", "torch_step.svg"} <= written
    table = (ctx.out_dir / "torch_step.md").read_text()
    assert "protocol `all_grads`" in table and "(3,8,2,4)" in table and "network, S=2" in table


def test_missing_peers_are_skipped_with_a_note(monkeypatch):
    real = torch_step.importlib.util.find_spec
    monkeypatch.setattr(torch_step.importlib.util, "find_spec",
                        lambda name: None if name == "torch_fftconv" else real(name))
    assert torch_step.skip_reason("torch_fftconv", "layer", "all_grads") == (
        "torch-fftconv is not installed (pip install --no-deps torch-fftconv==1.0.0)")
    assert torch_step.skip_reason("torch", "layer", "all_grads") is None


def test_layers_option_is_checked():
    ctx = argparse.Namespace(options=argparse.Namespace(layers=["3,8,2"]))
    with pytest.raises(ValueError, match="--layers takes k,n,f,fp"):
        torch_step.layers(ctx)


def test_methods_too_slow_for_the_cap_stop_after_their_first_step(tmp_path):
    options = argparse.Namespace(algos=None, backends=None, threads=1, force=False, plot_only=False, batch=1,
                                 methods=["torch"], layers=["3,8,2,4", "3,9,2,4"], no_network=True,
                                 max_step_seconds=1e-9)
    ctx = Context("torch_step", quick=True, options=options, output_root=tmp_path)
    torch_step.measure(ctx)
    rows = ctx.results.rows()
    assert len(rows) == 4 and not any("median_s" in row for row in rows)
    first, *later = rows
    assert first["skipped"].startswith("not timed: the first step took") and first["first_step_s"] > 0
    assert all(row["skipped"].startswith("not timed: a step took") and "(3,8,2,4)" in row["skipped"]
               for row in later)


def test_validate_names_what_a_row_lacks():
    timed = {"median_s": 1.0, "min_s": 1.0, "max_s": 1.0}
    network = {"part": "network", "S": 2, "method": "torch", "protocol": "no_input_grad", **timed}
    layer = {"part": "layer", "S": 2, "f": 2, "fp": 4, "n": 8, "k": 3, "method": "torch", "protocol": "all_grads"}
    assert torch_step.validate(network) is None and torch_step.validate({**layer, **timed}) is None
    assert torch_step.validate({k: v for k, v in network.items() if k != "protocol"}) == "missing fields: protocol"
    assert torch_step.validate({k: v for k, v in {**layer, **timed}.items() if k != "k"}) == "missing fields: k"
    assert "neither a timing" in torch_step.validate(layer)


def test_quick_mode_leaves_out_the_diagnostic_and_times_the_peers_on_the_first_layer_and_the_network(monkeypatch):
    monkeypatch.setattr(torch_step.importlib.util, "find_spec", lambda name: object())  # every peer "installed"
    quick_late = torch_step.skip_reason("torch_fftconv", "layer", "all_grads", layer_index=1, quick=True)
    assert quick_late.startswith("quick mode times torch_fftconv on the network and the first layer only")
    assert torch_step.skip_reason("torch_fftconv", "layer", "all_grads", layer_index=0, quick=True) is None
    assert torch_step.skip_reason("torch_fftconv", "network", "no_input_grad", quick=True) is None
    assert torch_step.skip_reason("torch_fftconv", "layer", "all_grads", layer_index=4, quick=False) is None
    assert torch_step.skip_reason("fftconv.torch", "layer", "all_grads", layer_index=4, quick=True) is None
    for quick in (True, False):
        ctx = argparse.Namespace(quick=quick, options=argparse.Namespace(methods=None))
        assert ("fftconv.torch.spinning" in torch_step.selected_methods(ctx)) is not quick
    ctx = argparse.Namespace(quick=True, options=argparse.Namespace(methods=["fftconv.torch.spinning"]))
    assert torch_step.selected_methods(ctx) == ["fftconv.torch.spinning"]  # asked for: timed in quick mode too
