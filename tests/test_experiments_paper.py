"""The paper's published values (experiments/data/mathieu2014.json) and the tables that show them beside ours."""

from __future__ import annotations

import json

from experiments import layers, network, sweeps
from experiments.harness import paper, points
from experiments.harness.context import Context, default_options


def test_the_data_file_loads_and_names_its_source():
    data = paper.load()
    source = data["source"]
    assert "Fast Training of Convolutional Networks through FFTs" in source["title"]
    assert "GTX Titan" in source["hardware"] and set(source["peers"]) == set(paper.PEERS)
    for section in ("layers", "network", "memory", "fig2", "fig3"):
        assert data[section]["source"], section
    table = data["layers"]
    assert table["batch"] == 128 and len(table["configs"]) == 5
    for pass_, peers in table["times"].items():
        assert set(peers) == set(paper.PEERS) and all(len(values) == 5 for values in peers.values()), pass_
    # The paper's totals are the sums of its passes (without updateGradInput of the first layer).
    for peer in paper.PEERS:
        for index in range(5):
            parts = [table["times"][p][peer][index] for p in points.PASSES]
            assert abs(sum(v for v in parts if v is not None) - table["times"]["total"][peer][index]) <= 1
    network_times = data["network"]["times"]
    assert all(abs(t["forward"] + t["input"] + t["weight"] - t["total"]) <= 1 for t in network_times.values())
    assert len(data["memory"]["rows"]) == 8 and paper.memory_mb()[(128, 32, 384, 384)] == 830
    for row in data["fig3"]["rows"].values():
        for peers in row["times"].values():
            assert all(len(values) == len(row["values"]) for values in peers.values())


def test_memory_rows_match_the_paper_formula_where_the_paper_does():
    from fftconv.costs import paper_memory_bytes

    for (S, n, f, fp), mb in list(paper.memory_mb().items())[:4]:
        assert round(paper_memory_bytes(S, f, fp, n) / 1e6) == mb


def fake_rows(configs, batch):
    rows = []
    for k, n, f, fp in configs:
        point = points.conv_point(S=batch, f=f, fp=fp, n=n, k=k)
        for method, scale in (("fft-numpy", 1.0), ("im2col", 2.0), ("torch", 1.5)):
            for pass_ in points.PASSES:
                rows.append({**point, "method": method, "pass": pass_, "median_s": scale * 1e-3,
                             "min_s": scale * 1e-3, "max_s": scale * 1e-3})
    return rows


def test_the_layer_table_shows_the_papers_columns(tmp_path):
    ctx = Context("layers", quick=True, options=default_options(batch=None), output_root=tmp_path,
                  validate=layers.validate)
    ctx.record_settings(batch=4, layers=[list(c) for c in layers.LAYERS], paper_skips=layers.SKIPS_BY_LABEL)
    for row in fake_rows(layers.LAYERS, 4):
        ctx.append(row)
    layers.plot(ctx)
    text = (ctx.out_dir / "layers.md").read_text()
    assert "### The paper's table beside ours" in text
    assert ("| config | pass | paper FFT ms | Torch7 ms | CudaConv ms | paper: Torch7 / FFT | paper: CudaConv / FFT "
            "| ours: torch / FFT | ours: im2col / FFT |") in text
    assert "| (7,32,96,256) | Total | 159 | 660 | 885 | 4.15x | 5.57x | 1.50x | 2.00x |" in text
    assert "| (11,32,3,96) | updateGradInput | - | - | - | - | - |" in text


def test_the_network_table_shows_the_papers_columns(tmp_path):
    ctx = Context("network", quick=True, options=default_options(batch=None), output_root=tmp_path,
                  validate=network.validate)
    for method, total in (("fft-numpy", 1.0), ("torch", 1.5)):
        for phase, share in (("forward", 0.4), ("backward", 0.6), ("iteration", 1.0)):
            ctx.append({"S": 4, "seed": 0, "net": "paper-5conv-fc1000", "method": method, "phase": phase,
                        "median_s": total * share, "min_s": total * share, "max_s": total * share})
    network.plot(ctx)
    text = (ctx.out_dir / "network.md").read_text()
    assert "| paper: Torch7 (custom) | 489 | 1267 | 1756 | 2.03x |" in text
    assert "| paper: CudaConv | 717 | 1778 | 2495 | 2.88x |" in text
    assert "| ours: torch | 600 | 900 | 1500 | 1.50x |" in text
    assert (ctx.out_dir / "network.png").exists()


def test_the_sweep_tables_show_the_papers_ratios(tmp_path):
    ctx = Context("sweeps", quick=True, options=default_options(batch=None), output_root=tmp_path,
                  validate=sweeps.validate)
    fixed, grid = sweeps.settings(ctx)
    for point in sweeps.all_points(fixed, grid):
        for method in ("fft-numpy", "torch"):
            for pass_ in points.PASSES:
                ctx.append({**point, "method": method, "pass": pass_, "median_s": 1e-3, "min_s": 1e-3,
                            "max_s": 1e-3})
    sweeps.plot(ctx)
    text = (ctx.out_dir / "fig3_sweeps.md").read_text()
    assert "| inputSize | pass | paper FFT ms | paper Torch7 / FFT | paper CudaConv / FFT | ours: torch / fft-numpy |" \
        in text
    assert "| 32 | updateOutput | 31 | 5.68x | 6.74x | 1.00x |" in text
    json.dumps(paper.load())  # the file stays plain JSON
