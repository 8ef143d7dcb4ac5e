"""The kernel-size window: time against kernel size k from 3 to n at a fixed input size n = 32.

The FFT method's cost does not depend on k (every map is transformed at the same size), while a direct method's
grows with the work ``(n - k + 1)^2 k^2`` per map pair, which peaks near k = n/2 and falls again as the output shrinks.
So the FFT wins only inside a window of kernel sizes; this experiment measures where, against fftconv's im2col and
against PyTorch, for the forward pass and for a whole training step (all three passes).

Configuration: n = 32, odd k = 3, 5, ..., 31, float32, stride 1, no padding, f = 16 input maps and f' = 32 output
maps (``--maps`` changes them; the maps of the roofline experiment's forward sweep), batch S = 128 (quick mode:
S = 32, the only change). The direct float64 reference is left out by default (it is not
a speed contender); ``--algos`` adds it.
"""

from __future__ import annotations

from .harness import methods, points
from .harness.style import fmt_ms, markdown_table, method_style, save_figure, write_table

NAME = "kernel_window"
DESCRIPTION = "Time vs kernel size k = 3..n at n = 32: where FFT beats im2col and where it beats PyTorch"

INPUT_SIZE = 32
MAPS = (16, 32)
FULL_BATCH = 128
QUICK_BATCH = 32


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None,
                        help=f"batch size (default: {FULL_BATCH} full, {QUICK_BATCH} quick)")
    parser.add_argument("--maps", type=int, nargs=2, metavar=("F", "F_OUT"), default=None,
                        help=f"input and output maps (default: {MAPS[0]} {MAPS[1]})")
    parser.add_argument("--input-size", type=int, default=None, help=f"n (default {INPUT_SIZE})")


def configuration(ctx) -> dict:
    f, fp = getattr(ctx.options, "maps", None) or MAPS
    return {"S": getattr(ctx.options, "batch", None) or (QUICK_BATCH if ctx.quick else FULL_BATCH),
            "f": f, "fp": fp, "n": getattr(ctx.options, "input_size", None) or INPUT_SIZE}


def grid_points(config: dict) -> list[dict]:
    return [points.conv_point(k=k, **config) for k in range(3, config["n"] + 1, 2)]


def validate(row: dict) -> str | None:
    return points.validate(row)


def measure(ctx) -> None:
    config = configuration(ctx)
    ctx.record_settings(config=config)
    labels = methods.select_methods(ctx, default_algos=("fft", "im2col", "torch"))
    points.measure_conv(ctx, labels, grid_points(config), desc="kernel_window")


def ranges(values: list[int], step: int = 2) -> str:
    """``[3, 5, 7, 11]`` -> ``"3..7, 11"``; ``"none"`` if empty.

    Examples
    --------
    >>> ranges([3, 5, 7, 11, 15, 17])
    '3..7, 11, 15..17'
    """
    if not values:
        return "none"
    parts, start, previous = [], values[0], values[0]
    for value in values[1:] + [None]:
        if value is not None and value == previous + step:
            previous = value
            continue
        parts.append(f"{start}..{previous}" if previous != start else f"{start}")
        if value is not None:
            start = previous = value
    return ", ".join(parts)


def windows(results: points.ConvResults, grid: list[dict]) -> list[list[str]]:
    """Rows (FFT method, other method, k where FFT's forward is faster, k where FFT's step is faster)."""
    labels = results.methods()
    rows = []
    for fft in (m for m in labels if methods.parse_method(m)["algo"] == "fft"):
        for other in (m for m in labels if m != fft):
            cells = [fft, other]
            for passes in (("forward",), points.PASSES):
                faster = []
                for point in grid:
                    mine, theirs = results.total(point, fft, passes), results.total(point, other, passes)
                    if mine is not None and theirs is not None and mine < theirs:
                        faster.append(point["k"])
                cells.append(ranges(faster))
            rows.append(cells)
    return rows


def _scaling(ctx, config: dict) -> str:
    batch = f"batch S={config['S']}" + (f" (full mode {FULL_BATCH})" if ctx.quick else "")
    return f"{batch}, n={config['n']}, f={config['f']}, f'={config['fp']}"


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stored, recorded = ctx.saved_settings({"config": configuration(ctx)})
    config = stored["config"]
    grid = grid_points(config)
    results = points.ConvResults(ctx.rows())
    labels = results.methods()
    ffts = [m for m in labels if methods.parse_method(m)["algo"] == "fft"]
    fig, axes = plt.subplots(1, 3, figsize=(13.3, 4.8), layout="constrained")
    panels = (("updateOutput (forward)", ("forward",)), ("training step (all three passes)", points.PASSES))
    for ax, (title, passes) in zip(axes[:2], panels):
        for method in labels:
            data = [(p["k"], results.total(p, method, passes)) for p in grid]
            data = [(k, t * 1e3) for k, t in data if t is not None]
            if data:
                ax.plot(*zip(*data), linewidth=1.5, markersize=4, **method_style(method))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("kernel size k")
        ax.set_ylabel("time (ms, median)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax = axes[2]
    if ffts:
        reference = ffts[0]
        for method in (m for m in labels if m != reference):
            for passes, linestyle, what in ((("forward",), "--", "forward"), (points.PASSES, "-", "step")):
                data = []
                for point in grid:
                    mine, theirs = results.total(point, reference, passes), results.total(point, method, passes)
                    if mine and theirs:
                        data.append((point["k"], theirs / mine))
                if data:
                    style = dict(method_style(method))
                    style["label"] = f"{method}, {what}"
                    ax.plot(*zip(*data), linestyle=linestyle, linewidth=1.5, markersize=4, **style)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"time / {reference}'s time (above 1: FFT faster)", fontsize=10)
        ax.set_xlabel("kernel size k")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), frameon=False)
    fig.suptitle(ctx.describe("Kernel-size window on CPU, float32: fftconv FFT vs im2col and PyTorch, "
                              "time vs k at fixed n", _scaling(ctx, config)), fontsize=11)
    save_figure(fig, ctx.out_dir, "kernel_window")
    plt.close(fig)

    header = ["k", *(f"{m} fwd" for m in labels), *(f"{m} step" for m in labels)]
    rows = [[p["k"], *(fmt_ms(results.seconds(p, m, "forward")) for m in labels),
             *(fmt_ms(results.total(p, m)) for m in labels)] for p in grid]
    text = (f"# Kernel-size window ({ctx.mode} mode)\n\n"
            f"{ctx.describe('Times in ms (median of repeats); step = all three passes.', _scaling(ctx, config))}\n\n"
            + ctx.provenance_note() + "\n"
            + markdown_table(header, rows)
            + "\n## Kernel sizes where the FFT method is faster\n\n"
            + markdown_table(["FFT method", "vs", "forward", "training step"], windows(results, grid)))
    write_table(ctx.out_dir, "kernel_window", text)
