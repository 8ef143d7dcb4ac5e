"""Fig. 3 of Mathieu et al. (2014): time of each pass against input size, kernel size and batch size.

Three rows (input size n, kernel size k, batch size S) by three panels (updateOutput, updateGradInput,
accGradParameters), float32, f = 96 input maps and f' = 256 output maps, stride 1, no padding, with the paper's fixed
values S = 128, k = 7, n = 32 and its sweeps n in {8, 16, 32, 52}, k in {3, 5, ..., 13}, S in {32, 64, 128}.

Methods: every algorithm of fftconv's registry (``fftconv.ALGORITHMS``): the FFT algorithm (one line per
``--backends``), im2col + GEMM, Winograd's ``F(m, r)`` and the tiled FFT (each with the tile the cost model picks,
as the public functions run them), the float64 direct reference (only where one call is expected to take under
0.5 s in quick mode, 5 s in full mode: it is not a speed contender), and PyTorch's CPU convolution
(``F.conv2d``, ``torch.nn.grad.conv2d_input``, ``conv2d_weight``) in place of the paper's GPU baselines
(cuda-convnet, Torch7). An algorithm that cannot run a point, or is skipped there, is listed with its reason under
the tables. Each method runs in its own process (docs/experiments.md). The paper's own Fig. 3
values (GTX Titan; ``experiments/data/mathieu2014.json``) are tabulated beside ours as ratios to its FFT times.

Quick mode shrinks only the batch: S = 4 instead of 128, and the batch row uses S in {1, 2, 4} instead of
{32, 64, 128} (with every registered algorithm timed, a larger batch would not fit ``make figures``' budget).
Everything else keeps the paper's values.
"""

from __future__ import annotations

from .harness import methods, paper, points
from .harness.style import fmt_ms, fmt_ratio, markdown_table, method_style, save_figure, write_table

NAME = "sweeps"
DESCRIPTION = "Fig. 3: time of the three passes vs input size, kernel size and batch size (every algorithm, PyTorch)"

#: The paper's fixed values (Fig. 3): 96 -> 256 maps, batch 128, 7x7 kernels, 32x32 inputs.
PAPER = {"S": 128, "k": 7, "n": 32, "f": 96, "fp": 256}
#: The three rows of Fig. 3: the varied parameter and its values (full mode).
SWEEPS = {"n": (8, 16, 32, 52), "k": (3, 5, 7, 9, 11, 13), "S": (32, 64, 128)}
#: Quick mode: the batch only.
QUICK_BATCH = 4
QUICK_BATCH_SWEEP = (1, 2, 4)
#: Paper's axis names.
AXIS_NAMES = {"n": "inputSize", "k": "kernelSize", "S": "batchSize"}


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None,
                        help=f"fixed batch size of the n and k rows (default: {PAPER['S']} full, {QUICK_BATCH} quick)")


def settings(ctx) -> tuple[dict, dict]:
    """The fixed values and the sweeps of this run (quick mode shrinks the batch only)."""
    fixed = dict(PAPER)
    sweeps = {name: tuple(values) for name, values in SWEEPS.items()}
    if ctx.quick:
        fixed["S"], sweeps["S"] = QUICK_BATCH, QUICK_BATCH_SWEEP
    batch = getattr(ctx.options, "batch", None)
    if batch:
        fixed["S"] = batch
        sweeps["S"] = tuple(sorted({max(1, batch // 4), max(1, batch // 2), batch}))
    return fixed, sweeps


def row_points(fixed: dict, sweeps: dict, parameter: str) -> list[dict]:
    """The conv points of one row of the figure (``parameter`` varies, the rest stay at ``fixed``)."""
    return [points.conv_point(**{**fixed, parameter: value}) for value in sweeps[parameter]]


def all_points(fixed: dict, sweeps: dict) -> list[dict]:
    """Every distinct point of the three rows, cheapest first (so a short run covers most of the figure)."""
    unique = {}
    for parameter in SWEEPS:
        for point in row_points(fixed, sweeps, parameter):
            unique[points.point_key(point)] = point
    return sorted(unique.values(), key=points.direct_flops)


def validate(row: dict) -> str | None:
    return points.validate(row)


def measure(ctx) -> None:
    fixed, sweeps = settings(ctx)
    ctx.record_settings(fixed=fixed, sweeps={name: list(values) for name, values in sweeps.items()})
    points.measure_conv(ctx, methods.select_methods(ctx), all_points(fixed, sweeps), desc="sweeps")


def _scaling(ctx, fixed: dict, sweeps: dict) -> str:
    if ctx.quick:
        batches = ", ".join(str(b) for b in sorted(set(sweeps["S"])))
        return (f"batch shrunk to S={fixed['S']} (paper 128), batch row S in {{{batches}}} "
                f"(paper {{32, 64, 128}}), other values as in the paper")
    return "the paper's sizes"


def saved(ctx) -> tuple[dict, dict, bool]:
    """The fixed values and sweeps the shown rows were measured with (the code's values for older rows)."""
    fixed, sweeps = settings(ctx)
    stored, recorded = ctx.saved_settings({"fixed": fixed, "sweeps": sweeps})
    fixed, sweeps = dict(stored["fixed"]), {name: tuple(values) for name, values in stored["sweeps"].items()}
    batches = sorted({row["S"] for row in ctx.rows() if "S" in row})
    if not recorded and batches:  # older rows: the batches they were measured at are in the rows themselves
        fixed["S"], sweeps["S"] = batches[-1], tuple(batches)
    return fixed, sweeps, recorded


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fixed, sweeps, recorded = saved(ctx)
    results = points.ConvResults(ctx.rows())
    labels = results.methods()
    fig = plt.figure(figsize=(13.3, 12), layout="constrained")
    row_figures = fig.subfigures(3, 1)
    table_lines = []
    axes = []
    for row_index, parameter in enumerate(SWEEPS):
        row = row_points(fixed, sweeps, parameter)
        others = ", ".join(f"{AXIS_NAMES[name]}={fixed[name]}" for name in ("S", "k", "n") if name != parameter)
        row_title = (f"Time (seconds) versus {AXIS_NAMES[parameter]} - {others}, "
                     f"nInputPlanes={fixed['f']}, nOutputPlanes={fixed['fp']}")
        row_axes = row_figures[row_index].subplots(1, 3)
        axes.append(row_axes)
        row_figures[row_index].suptitle(row_title, fontsize=10, weight="bold")
        for column, pass_ in enumerate(points.PASSES):
            ax = row_axes[column]
            medians = []
            for method in labels:
                xs, ys, low, high = [], [], [], []
                for point in row:
                    timed = results.row(point, method, pass_)
                    if timed and "median_s" in timed:
                        xs.append(point[parameter])
                        ys.append(timed["median_s"])
                        low.append(timed["median_s"] - timed["min_s"])
                        high.append(timed["max_s"] - timed["median_s"])
                medians += ys
                if xs:
                    ax.errorbar(xs, ys, yerr=[low, high], capsize=2, linewidth=1.5, markersize=4,
                                **method_style(method))
            ax.set_title(f"{points.PAPER_NAMES[pass_]}", fontsize=10)
            ax.set_xlabel(AXIS_NAMES[parameter])
            ax.set_ylabel("time (s)")
            if medians:  # scale to the medians: one slow outlier repeat must not flatten every line
                ax.set_ylim(0, 1.2 * max(medians))
            ax.grid(alpha=0.3)
        table_lines.append(_row_table(results, labels, row, parameter, row_title))
        table_lines.append(_paper_table(results, labels, row, parameter))
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), frameon=False)
    compares = ("Fig. 3 (Mathieu et al. 2014) on CPU, float32: fftconv FFT vs fftconv's other algorithms and "
                "PyTorch\n"
                "median of repeats, bars min-max (clipped at 1.2x the largest median)")
    fig.suptitle(ctx.describe(compares, _scaling(ctx, fixed, sweeps)), fontsize=11)
    save_figure(fig, ctx.out_dir, "fig3_sweeps")
    plt.close(fig)
    shown = ctx.rows()
    skipped = {f"{points.label(points.point_of(row))}, {row['method']}: {row['skipped']}": None
               for row in shown if "skipped" in row}
    errors = {f"{points.label(points.point_of(row))}, {row['method']}: {row['error']}": None
              for row in shown if "error" in row}
    notes = [f"- not timed: {reason}" for reason in skipped] + [f"- failed: {error}" for error in errors]
    if not recorded:
        notes.append("- the sweep values were not stored with these rows; the batches are read from the rows and "
                     "the other values are the code's current ones")
    caption = ctx.describe("Times in ms (median); ratio = the method's time / FFT's time.",
                           _scaling(ctx, fixed, sweeps))
    header = f"# Fig. 3 sweeps ({ctx.mode} mode)\n\n{caption}\n\n"
    write_table(ctx.out_dir, "fig3_sweeps", header + ctx.provenance_note() + "\n" + "\n".join(table_lines)
                + ("\n" + "\n".join(notes) if notes else ""))


def _row_table(results: points.ConvResults, labels: list[str], row: list[dict], parameter: str,
               title: str) -> str:
    """One markdown table per figure row: times (ms) of each method and pass, and each baseline's time over FFT's."""
    ffts = [m for m in labels if methods.parse_method(m)["algo"] == "fft"]
    reference = ffts[0] if ffts else None
    header = [AXIS_NAMES[parameter], "pass", *labels]
    if reference:
        header += [f"{m} / {reference}" for m in labels if m != reference]
    rows = []
    for point in row:
        for pass_ in points.PASSES:
            cells = [point[parameter], points.PAPER_NAMES[pass_]]
            cells += [fmt_ms(results.seconds(point, m, pass_)) for m in labels]
            if reference:
                base = results.seconds(point, reference, pass_)
                cells += [fmt_ratio(results.seconds(point, m, pass_), base) for m in labels if m != reference]
            rows.append(cells)
    return f"## {title}\n\n" + markdown_table(header, rows)


def _paper_table(results: points.ConvResults, labels: list[str], row: list[dict], parameter: str) -> str:
    """The paper's Fig. 3 values (GTX Titan, batch 128) beside ours, as each peer's time over the FFT's."""
    data = paper.load()["fig3"]["rows"][parameter]
    fft = next((m for m in labels if methods.parse_method(m)["algo"] == "fft"), None)
    ours = [m for m in labels if m != fft and methods.parse_method(m)["algo"] != "direct"]
    body = []
    for index, value in enumerate(data["values"]):
        point = next((p for p in row if p[parameter] == value), None)
        for pass_ in points.PASSES:
            times = data["times"][pass_]
            cells = [value, points.PAPER_NAMES[pass_], fmt_ms(times["fft"][index]),
                     fmt_ratio(times["torch7"][index], times["fft"][index]),
                     fmt_ratio(times["cudaconv"][index], times["fft"][index])]
            for method in ours:
                cells.append(fmt_ratio(results.seconds(point, method, pass_), results.seconds(point, fft, pass_))
                             if point is not None and fft else "-")
            body.append(cells)
    header = [AXIS_NAMES[parameter], "pass", "paper FFT ms", "paper Torch7 / FFT", "paper CudaConv / FFT",
              *(f"ours: {m} / {fft}" for m in ours)]
    return (f"### The paper's values for this row ({paper.load()['source']['hardware']}, batch "
            f"{paper.load()['fig3']['fixed']['S']}; read from its Fig. 3), as ratios beside ours\n\n"
            "Above 1: the FFT method is faster. The hardware differs (GPU there, CPU here) and our batch may be "
            "smaller, so compare ratios, not times; '-' where a value is not in both.\n\n"
            + markdown_table(header, body))
