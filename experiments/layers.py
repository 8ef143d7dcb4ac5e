"""The paper's layer table: time of each pass for the five (k, n, f, f') configurations, per method, plus speedups.

Configurations (k, n, f, f') = (11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384),
(3, 16, 384, 384), float32, stride 1, no padding, batch S = 128 as in the paper (quick mode: S = 16, the only change).

Protocol (as the paper's table): each pass is one call of the functional API (``fftconv.conv2d``,
``conv2d_input``, ``conv2d_weight``; PyTorch's ``F.conv2d`` and ``torch.nn.grad``), which transforms what it needs,
and the "Total" row leaves out updateGradInput of the first layer (a network never needs the gradient of its input
image); that pass is still measured and shown in brackets, and the "Full step" row adds all three passes. The
roofline experiment measures a different protocol (a layer's forward + backward with transform reuse, batch 32);
docs/experiments.md ("Two protocols") explains why the two disagree on some layers. The paper's own table
(GTX Titan, cuda-convnet, Torch7; ``experiments/data/mathieu2014.json``) is shown beside ours as speedups.

Methods: every algorithm of fftconv's registry (``fftconv.ALGORITHMS``: FFT, im2col, Winograd and tiled FFT with
the cost model's tile, and the float64 direct reference where it is cheap) and PyTorch; an algorithm that cannot run
a layer, or is skipped there, is listed with its reason under the table.
"""

from __future__ import annotations

from .harness import methods, paper, points
from .harness.style import fmt_ms, fmt_ratio, markdown_table, method_style, save_figure, write_table

NAME = "layers"
DESCRIPTION = "Layer table: the five (k, n, f, f') configurations, time per pass and total for every algorithm"

#: (k, n, f, f') of the paper's table.
LAYERS = ((11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384))
PAPER_BATCH = 128
QUICK_BATCH = 16
#: Passes the paper leaves out of its total per layer: no updateGradInput for the first layer.
PAPER_SKIPS = {(11, 32, 3, 96): ("input",)}
PROTOCOL = ("each pass one functional call that transforms what it needs; Total = the paper's sum, without "
            "updateGradInput of the first layer")


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None,
                        help=f"batch size (default: {PAPER_BATCH} full, {QUICK_BATCH} quick)")


def batch_size(ctx) -> int:
    return getattr(ctx.options, "batch", None) or (QUICK_BATCH if ctx.quick else PAPER_BATCH)


def layer_points(batch: int, layers=LAYERS) -> list[dict]:
    return [points.conv_point(S=batch, f=f, fp=fp, n=n, k=k) for k, n, f, fp in layers]


def config(point: dict) -> tuple[int, int, int, int]:
    return (point["k"], point["n"], point["f"], point["fp"])


def layer_label(point: dict) -> str:
    return config_label(config(point))


def config_label(layer) -> str:
    return "(" + ",".join(str(v) for v in layer) + ")"


#: The paper's skipped passes as stored with the rows: ``{"(11,32,3,96)": ["input"]}``.
SKIPS_BY_LABEL = {config_label(layer): list(passes) for layer, passes in PAPER_SKIPS.items()}


def paper_passes(point: dict, skips: dict) -> tuple[str, ...]:
    """The passes the paper's total counts at this layer."""
    skipped = skips.get(layer_label(point), ())
    return tuple(p for p in points.PASSES if p not in skipped)


def validate(row: dict) -> str | None:
    return points.validate(row)


def measure(ctx) -> None:
    batch = batch_size(ctx)
    ctx.record_settings(batch=batch, layers=[list(layer) for layer in LAYERS], protocol=PROTOCOL,
                        paper_skips=SKIPS_BY_LABEL)
    points.measure_conv(ctx, methods.select_methods(ctx), layer_points(batch, LAYERS), desc="layers")


def saved(ctx) -> tuple[int, list[dict], dict, bool]:
    """Batch, points and the paper's skipped passes, as stored with the shown rows (else the code's values)."""
    defaults = {"batch": batch_size(ctx), "layers": [list(layer) for layer in LAYERS], "paper_skips": SKIPS_BY_LABEL}
    stored, recorded = ctx.saved_settings(defaults)
    if not recorded:  # older rows: the batch they were measured at is in the rows themselves
        batches = sorted({row["S"] for row in ctx.rows() if "S" in row})
        if len(batches) == 1:
            stored["batch"] = batches[0]
    return stored["batch"], layer_points(stored["batch"], [tuple(c) for c in stored["layers"]]), \
        stored["paper_skips"], recorded


def _scaling(batch: int) -> str:
    return f"batch S={batch}" + (" (paper 128)" if batch != PAPER_BATCH else " as in the paper")


def tables(ctx, results: points.ConvResults, layers: list[dict], skips: dict, batch: int) -> str:
    """The paper-style table (ms), the speedups of each FFT method, and the paper's own table as speedups."""
    labels = results.methods()
    header = ["op / method", *(layer_label(p) for p in layers)]
    rows = []
    for pass_ in points.PASSES:
        for method in labels:
            cells = []
            for point in layers:
                text = fmt_ms(results.seconds(point, method, pass_))
                if pass_ not in paper_passes(point, skips) and text != "-":
                    text = f"({text})"  # measured, but not part of the paper's total
                cells.append(text)
            rows.append([f"{points.PAPER_NAMES[pass_]} {method}", *cells])
    for method in labels:
        rows.append([f"Total {method}", *(fmt_ms(results.total(p, method, paper_passes(p, skips))) for p in layers)])
    for method in labels:
        rows.append([f"Full step {method}", *(fmt_ms(results.total(p, method)) for p in layers)])
    text = (f"**Batch {batch}; protocol: {PROTOCOL}.** Times in ms (median of repeats). Total = the paper's sum "
            "(without updateGradInput of the first layer, shown in brackets); Full step = all three passes. "
            "docs/experiments.md (\"Two protocols\") explains why the roofline table, at batch 32 and with a "
            "layer's forward + backward reusing transforms, ranks fftconv and PyTorch differently on some layers.\n\n"
            + markdown_table(header, rows))
    ffts = [m for m in labels if methods.parse_method(m)["algo"] == "fft"]
    for fft in ffts:
        speed_rows = []
        for other in (m for m in labels if m != fft):
            for point in layers:
                cells = [layer_label(point), other]
                cells += [fmt_ratio(results.seconds(point, other, p), results.seconds(point, fft, p))
                          for p in points.PASSES]
                cells.append(fmt_ratio(results.total(point, other, paper_passes(point, skips)),
                                       results.total(point, fft, paper_passes(point, skips))))
                cells.append(fmt_ratio(results.total(point, other), results.total(point, fft)))
                speed_rows.append(cells)
        text += (f"\n### Speedup of {fft}: the other method's time / {fft}'s time (> 1: FFT faster; batch {batch})\n\n"
                 + markdown_table(["config", "vs", "fprop", "bprop", "accGrad", "total (paper's sum)", "full step"],
                                  speed_rows))
        plans = [row["plan_s"] for row in results.rows if row.get("method") == fft and row.get("plan_s")]
        if plans:
            text += (f"\n{fft}: FFT planning in the warm-up calls (excluded from the times above) took "
                     f"{sum(plans):.1f} s in all, at most {max(plans):.1f} s for one pass.\n")
    text += tiles_note(results, layers)
    text += "\n" + paper_table(results, layers, skips, ffts[0] if ffts else None)
    notes = sorted({f"{row['method']}: {row['skipped']}" for row in results.rows if "skipped" in row})
    notes += sorted({f"{row['method']}: failed: {row['error']}" for row in results.rows if "error" in row})
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


def tiles_note(results: points.ConvResults, layers: list[dict]) -> str:
    """The tiles the cost model gave the algorithms that take one (Winograd, tiled FFT), per layer and pass."""
    lines = []
    for method in results.methods():
        per_layer = []
        for point in layers:
            tiles = [(results.row(point, method, p) or {}).get("options", {}).get("tile") for p in points.PASSES]
            if any(tiles):
                per_layer.append(f"{layer_label(point)} " + "/".join("x".join(map(str, t)) if t else "-"
                                                                      for t in tiles))
        if per_layer:
            lines.append(f"- {method}: {'; '.join(per_layer)}")
    if not lines:
        return ""
    return ("\nTiles the cost model picked (forward/input gradient/weight gradient), as the public functions run "
            "them:\n\n" + "\n".join(lines) + "\n")


def paper_table(results: points.ConvResults, layers: list[dict], skips: dict, fft: str | None) -> str:
    """The paper's times (GTX Titan, batch 128) and its FFT speedups beside ours (ratios: the hardware differs)."""
    data = paper.load()["layers"]
    body = []
    for point in layers:
        times = paper.layer_times(config(point))
        if times is None:
            continue
        for pass_ in (*points.PASSES, "total"):
            ours = []
            for other in ("torch", "im2col"):
                if pass_ == "total":
                    ours.append(fmt_ratio(results.total(point, other, paper_passes(point, skips)),
                                          results.total(point, fft, paper_passes(point, skips))) if fft else "-")
                else:
                    ours.append(fmt_ratio(results.seconds(point, other, pass_), results.seconds(point, fft, pass_))
                                if fft else "-")
            row = times[pass_]
            body.append([layer_label(point), points.PAPER_NAMES.get(pass_, "Total"),
                         *(row[peer] if row[peer] is not None else "-" for peer in paper.PEERS),
                         fmt_ratio(row["torch7"], row["fft"]), fmt_ratio(row["cudaconv"], row["fft"]), *ours])
    return (f"### The paper's table beside ours\n\nThe paper: {paper.citation()}; batch {data['batch']}, ms; its "
            "Total leaves out the first layer's updateGradInput, as ours does. Hardware, batch and peers differ, so "
            f"compare the speedups (peer's time / FFT's time; > 1: FFT faster), not the times. Ours: {fft or '-'} "
            "against PyTorch CPU and fftconv im2col.\n\n"
            + markdown_table(["config", "pass", "paper FFT ms", "Torch7 ms", "CudaConv ms", "paper: Torch7 / FFT",
                              "paper: CudaConv / FFT", "ours: torch / FFT", "ours: im2col / FFT"], body))


#: A bar taller than this many times the tallest other bar of its panel is cut there and labelled with its value.
CLIP_FACTOR = 2.0
_HATCHES = {"forward": "", "input": "//", "weight": ".."}


def _panel(ax, results: points.ConvResults, point: dict, labels: list[str]) -> list[str]:
    """Stacked bars of the methods timed at ``point``; returns the methods not timed there."""
    shown = [m for m in labels if results.total(point, m) is not None]
    totals = {m: results.total(point, m) * 1e3 for m in shown}
    others = [t for m, t in totals.items() if methods.parse_method(m)["algo"] != "direct"]
    ceiling = CLIP_FACTOR * max(others) if others else None
    if ceiling is not None and max(totals.values()) <= ceiling:
        ceiling = None  # nothing to cut
    for position, method in enumerate(shown):
        bottom = 0.0
        style = method_style(method)
        for pass_ in points.PASSES:
            height = results.seconds(point, method, pass_) * 1e3
            if ceiling is not None:
                height = max(0.0, min(bottom + height, ceiling) - bottom)
            ax.bar(position, height, bottom=bottom, color=style["color"], hatch=_HATCHES[pass_], edgecolor="black",
                   linewidth=0.5)
            bottom += height
        if ceiling is not None and totals[method] > ceiling:  # cut: say so, with the true value
            ax.plot([position - 0.45, position + 0.45], [ceiling * 0.97, ceiling * 1.0], color="white", linewidth=3)
            ax.annotate(f"{totals[method]:.0f} ms\n(cut)", (position, ceiling), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    if ceiling is not None:
        ax.set_ylim(0, ceiling * 1.18)
    ax.set_xticks(range(len(shown)), [m.replace("-", "\n") for m in shown], fontsize=7)
    return [m for m in labels if m not in shown]


def _speedup_panel(ax, results: points.ConvResults, layers: list[dict], skips: dict, fft: str | None) -> None:
    """The paper's FFT speedups (peer / FFT, Total) beside ours, per layer, log scale."""
    import numpy as np

    series = []
    for peer, colour in (("torch7", "#b2182b"), ("cudaconv", "#2166ac")):
        values = []
        for point in layers:
            times = paper.layer_times(config(point))
            values.append(paper.ratio(times["total"][peer], times["total"]["fft"]) if times else None)
        series.append((f"paper: {paper.PEER_LABELS[peer]} / FFT (GPU, batch 128)", values, colour, "//"))
    for other in ("torch", "im2col"):
        values = [paper.ratio(results.total(p, other, paper_passes(p, skips)),
                              results.total(p, fft, paper_passes(p, skips))) if fft else None for p in layers]
        series.append((f"ours: {method_style(other)['label']} / {fft}", values, method_style(other)["color"], ""))
    width = 0.8 / len(series)
    positions = np.arange(len(layers))
    for index, (name, values, colour, hatch) in enumerate(series):
        heights = [v if v else float("nan") for v in values]
        ax.bar(positions + (index - (len(series) - 1) / 2) * width, heights, width, color=colour, hatch=hatch,
               edgecolor="black", linewidth=0.4, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(positions, [layer_label(p) for p in layers], fontsize=7, rotation=20)
    ax.set_ylabel("peer's time / FFT's time\n(above 1: FFT faster), log", fontsize=8)
    ax.set_title("Speedup of FFT, the paper's Total\n(no updateGradInput for the first layer)", fontsize=9)
    ax.legend(fontsize=6, loc="upper right")
    ax.grid(axis="y", alpha=0.3, which="both")


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    batch, layers, skips, recorded = saved(ctx)
    results = points.ConvResults(ctx.rows())
    labels = results.methods()
    fft = next((m for m in labels if methods.parse_method(m)["algo"] == "fft"), None)
    fig, grid = plt.subplots(2, 3, figsize=(13.3, 8.6), layout="constrained")
    axes = list(grid.flat)
    not_run: dict[str, list[str]] = {}
    for ax, point in zip(axes, layers):
        for method in _panel(ax, results, point, labels):
            not_run.setdefault(method, []).append(layer_label(point))
        ax.set_title(f"(k,n,f,f') = {layer_label(point)}", fontsize=10)
        ax.set_ylabel("ms per training step (3 passes)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    _speedup_panel(axes[len(layers)] if len(layers) < len(axes) else axes[-1], results, layers, skips, fft)
    legend = [Patch(facecolor="white", edgecolor="black", hatch=_HATCHES[p], label=points.PAPER_NAMES[p])
              for p in points.PASSES]
    legend += [Patch(facecolor=method_style(m)["color"], edgecolor="black", label=method_style(m)["label"])
               for m in labels]
    fig.legend(handles=legend, loc="outside lower center", ncol=4, frameon=False, fontsize=8)
    note = "; ".join(f"{m} not run at {', '.join(where)}" for m, where in not_run.items())
    reasons = sorted({row["skipped"].split(";")[0] for row in results.rows if "skipped" in row})
    fig.suptitle(ctx.describe("Layer table (Mathieu et al. 2014) on CPU, float32: time per pass, stacked, per "
                              "method (median of repeats); protocol: one functional call per pass",
                              _scaling(batch)) + (f"\n{note}" + (f" ({reasons[0]} ...)" if reasons else "")
                                                  if note else ""), fontsize=9)
    save_figure(fig, ctx.out_dir, "layers")
    plt.close(fig)
    caption = ctx.describe("fftconv FFT vs fftconv's other algorithms and PyTorch, float32", _scaling(batch))
    header = f"# Layer table ({ctx.mode} mode, batch {batch})\n\n{caption}\n\n"
    if not recorded:
        header += ("The settings were not stored with these rows; the batch is read from the rows and the layers "
                   "are the code's current list.\n\n")
    write_table(ctx.out_dir, "layers", header + ctx.provenance_note() + "\n" + tables(ctx, results, layers, skips,
                                                                                       batch))
