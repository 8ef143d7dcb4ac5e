"""The paper's layer table: time of each pass for the five (k, n, f, f') configurations, per method, plus speedups.

Configurations (k, n, f, f') = (11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384),
(3, 16, 384, 384), float32, stride 1, no padding, batch S = 128 as in the paper (quick mode: S = 16, the only change).

Like the paper, the "Total" row leaves out updateGradInput of the first layer (a network never needs the gradient
of its input image); it is still measured and shown, and the "Full step" row adds all three passes, which is what
issue 5's targets count. Methods and methodology: see ``experiments/_timing.py`` (one process per method, median
of repeats after a warm-up, threads pinned, tuned malloc, FFT plan time excluded and reported apart).
"""

from __future__ import annotations

from . import _timing
from ._harness import markdown_table, save_figure, write_table

NAME = "layers"
DESCRIPTION = "Layer table: the five (k, n, f, f') configurations, time per pass and total, speedups of FFT"

#: (k, n, f, f') of the paper's table.
LAYERS = ((11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384))
PAPER_BATCH = 128
QUICK_BATCH = 16
#: Passes the paper reports per layer: no updateGradInput for the first layer.
PAPER_SKIPS = {(11, 32, 3, 96): ("grad_input",)}


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None,
                        help=f"batch size (default: {PAPER_BATCH} full, {QUICK_BATCH} quick)")


def batch_size(ctx) -> int:
    return getattr(ctx.options, "batch", None) or (QUICK_BATCH if ctx.quick else PAPER_BATCH)


def layer_points(batch: int, layers=LAYERS) -> list[dict]:
    return [_timing.conv_point(S=batch, f=f, fp=fp, n=n, k=k) for k, n, f, fp in layers]


def layer_label(point: dict) -> str:
    return f"({point['k']},{point['n']},{point['f']},{point['fp']})"


def paper_passes(point: dict) -> tuple[str, ...]:
    skipped = PAPER_SKIPS.get((point["k"], point["n"], point["f"], point["fp"]), ())
    return tuple(p for p in _timing.PASSES if p not in skipped)


def measure(ctx) -> None:
    methods = _timing.select_methods(ctx)
    _timing.measure_conv(ctx, methods, layer_points(batch_size(ctx)), desc="layers")


def _scaling(ctx, batch: int) -> str:
    return f"batch S={batch}" + (" (paper 128)" if batch != PAPER_BATCH else " as in the paper")


def tables(ctx, results: _timing.ConvResults, points: list[dict]) -> str:
    """The paper-style table (ms) and the speedup table of each FFT method over each other method."""
    methods = results.methods()
    header = ["op / method", *(layer_label(p) for p in points)]
    rows = []
    for pass_ in _timing.PASSES:
        for method in methods:
            cells = []
            for point in points:
                text = _timing.fmt_ms(results.seconds(point, method, pass_))
                if pass_ not in paper_passes(point) and text != "-":
                    text = f"({text})"  # measured, but not part of the paper's total
                cells.append(text)
            rows.append([f"{_timing.PAPER_NAMES[pass_]} {method}", *cells])
    for method in methods:
        rows.append([f"Total {method}", *(_timing.fmt_ms(results.total(p, method, paper_passes(p))) for p in points)])
    for method in methods:
        rows.append([f"Full step {method}", *(_timing.fmt_ms(results.total(p, method)) for p in points)])
    text = ("Times in ms (median of repeats). Total = the paper's sum (without updateGradInput of the first "
            "layer, shown in brackets); Full step = all three passes.\n\n" + markdown_table(header, rows))
    ffts = [m for m in methods if _timing.parse_method(m)["algo"] == "fft"]
    for fft in ffts:
        speed_rows = []
        for other in (m for m in methods if m != fft):
            for point in points:
                cells = [layer_label(point), other]
                cells += [_timing.fmt_ratio(results.seconds(point, other, p), results.seconds(point, fft, p))
                          for p in _timing.PASSES]
                cells.append(_timing.fmt_ratio(results.total(point, other, paper_passes(point)),
                                               results.total(point, fft, paper_passes(point))))
                cells.append(_timing.fmt_ratio(results.total(point, other), results.total(point, fft)))
                speed_rows.append(cells)
        text += (f"\n### Speedup of {fft}: the other method's time / {fft}'s time (> 1: FFT faster)\n\n"
                 + markdown_table(["config", "vs", "fprop", "bprop", "accGrad", "total", "full step"], speed_rows))
        plans = [row["plan_s"] for row in results.rows if row.get("method") == fft and row.get("plan_s")]
        if plans:
            text += (f"\n{fft}: FFT planning in the warm-up calls (excluded from the times above) took "
                     f"{sum(plans):.1f} s in all, at most {max(plans):.1f} s for one pass.\n")
    notes = sorted({f"{row['method']}: {row['skipped']}" for row in results.rows if "skipped" in row})
    notes += sorted({f"{row['method']}: failed: {row['error']}" for row in results.rows if "error" in row})
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = batch_size(ctx)
    points = layer_points(batch)
    results = _timing.ConvResults(ctx.results.rows())
    methods = results.methods()
    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 4.8), layout="constrained")
    hatches = {"forward": "", "grad_input": "//", "grad_weight": ".."}
    for ax, point in zip(axes, points):
        for position, method in enumerate(methods):
            bottom = 0.0
            style = _timing.method_style(method)
            for pass_ in _timing.PASSES:
                seconds = results.seconds(point, method, pass_)
                if seconds is None:
                    continue
                ax.bar(position, seconds * 1e3, bottom=bottom, color=style["color"], hatch=hatches[pass_],
                       edgecolor="black", linewidth=0.5)
                bottom += seconds * 1e3
        ax.set_xticks(range(len(methods)), [m.replace("-", "\n") for m in methods], fontsize=8)
        ax.set_title(f"(k,n,f,f') = {layer_label(point)}", fontsize=10)
        ax.set_ylabel("ms per training step (3 passes)")
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    legend = [Patch(facecolor="white", edgecolor="black", hatch=hatches[p], label=_timing.PAPER_NAMES[p])
              for p in _timing.PASSES]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(ctx.describe("Layer table (Mathieu et al. 2014) on CPU, float32: time per pass, stacked, per "
                              "method (median of repeats)", _scaling(ctx, batch)), fontsize=11)
    save_figure(fig, ctx.out_dir, "layers")
    plt.close(fig)
    caption = ctx.describe("fftconv FFT vs im2col/direct and PyTorch, float32", _scaling(ctx, batch))
    header = f"# Layer table ({ctx.mode} mode)\n\n{caption}\n\n"
    write_table(ctx.out_dir, "layers", header + _timing.provenance(results.rows) + "\n" + tables(ctx, results, points))
