"""Parameter counts of fully connected, locally connected and convolutional layers on one example.

The example, a common motivation for convolutions: a 200x200 grey image feeding 40,000 hidden units (one 200x200
map) needs 40K x 40K = 1.6 billion weights fully connected, 40K x 10x10 = 4 million locally connected with 10x10
filters, and 100 x 10x10 = 10,000 for a convolution with 100 filters of 10x10. Here every count comes from the
shapes ``fftconv.nn`` layers allocate (``parameter_shapes``), not from constants; nothing of the 1.6B-weight layer is
allocated. Analytic: no timing.
"""

from __future__ import annotations

from .harness.results import missing_fields

NAME = "param_counts"
DESCRIPTION = "Parameters of fully/locally connected and conv layers for a 200x200 image, from layer shapes"

IMAGE = 200
HIDDEN = 40_000
FILTER = 10
FILTERS = 100

# (row name, layer class name, constructor arguments, the example's count, what that count is)
LAYERS = [
    ("fully connected", "Linear", dict(in_features=IMAGE * IMAGE, out_features=HIDDEN), 1_600_000_000,
     "40K x 40K weights"),
    ("locally connected, 10x10 filters", "LocallyConnected2d",
     dict(in_channels=1, out_channels=1, input_size=(IMAGE, IMAGE), kernel_size=FILTER, padding="same"),
     4_000_000, "40K units x 10x10 weights"),
    ("locally connected, 10x10, no padding", "LocallyConnected2d",
     dict(in_channels=1, out_channels=1, input_size=(IMAGE, IMAGE), kernel_size=FILTER), None,
     "(not in the example: 191x191 units)"),
    ("convolution, 100 filters of 10x10", "Conv2d",
     dict(in_channels=1, out_channels=FILTERS, kernel_size=FILTER, padding="same"), 10_000, "100 x 10x10 weights"),
]


def _hidden_units(layer_class, arguments: dict) -> int:
    """Output units of the layer for one 200x200 single-channel image, from the same geometry the layer uses."""
    import math

    from fftconv import ConvGeometry

    name = layer_class.__name__
    if name == "Linear":
        return arguments["out_features"]
    shapes = layer_class.parameter_shapes(**arguments)
    if name == "LocallyConnected2d":
        return math.prod(shapes["weight"][:2]) * arguments["out_channels"]
    geometry = ConvGeometry.from_shapes((1, 1, IMAGE, IMAGE), shapes["weight"], padding=arguments["padding"])
    return math.prod(geometry.full_output_shape)


def validate(row: dict) -> str | None:
    return missing_fields(row, "layer", "class", "weight_shape", "bias_shape", "weights", "biases", "total",
                          "hidden_units")


def measure(ctx) -> None:
    import math

    from fftconv import nn

    ctx.record_settings(image=IMAGE, hidden=HIDDEN, filter=FILTER, filters=FILTERS)

    for row_name, class_name, arguments, example, example_counts in LAYERS:
        key = {"layer": row_name}
        if ctx.results.has(key):
            continue
        layer_class = getattr(nn, class_name)
        shapes = layer_class.parameter_shapes(**arguments)  # the shapes the constructor would allocate
        ctx.append({
            **key, "class": class_name, "arguments": arguments,
            "weight_shape": shapes["weight"], "bias_shape": shapes.get("bias"),
            "weights": math.prod(shapes["weight"]), "biases": math.prod(shapes["bias"]) if "bias" in shapes else 0,
            "total": layer_class.parameter_count(**arguments),
            "hidden_units": _hidden_units(layer_class, arguments),
            "example_weights": example, "example_counts": example_counts,
        })


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.4g}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .harness.style import markdown_table, save_figure, write_table

    rows = ctx.rows()  # in the order measured
    example, _ = ctx.saved_settings({"image": IMAGE, "hidden": HIDDEN, "filter": FILTER, "filters": FILTERS})
    image, hidden, size, filters = example["image"], example["hidden"], example["filter"], example["filters"]
    header = ["layer", "fftconv.nn class", "weight shape", "bias shape", "hidden units", "weights", "biases",
              "total", "float32 bytes", "the example's count", "weights / example"]
    body = []
    for r in rows:
        # rows written before the fields were renamed call them lecture_weights and lecture_counts
        example = r.get("example_weights", r.get("lecture_weights"))
        counts = r.get("example_counts", r.get("lecture_counts"))
        body.append([r["layer"], f"`{r['class']}`", f"`{tuple(r['weight_shape'])}`",
                     f"`{tuple(r['bias_shape'])}`" if r["bias_shape"] else "-", f"{r['hidden_units']:,}",
                     f"{r['weights']:,}", f"{r['biases']:,}", f"{r['total']:,}", _bytes(4 * r["total"]),
                     f"{_human(example)}: {counts}" if example else "not in the example",
                     f"{r['weights'] / example:.3f}" if example else "-"])
    text = (f"# Parameters for a {image}x{image} image, {hidden:,} hidden units\n\n"
            f"The example: a {image}x{image} grey image feeding {hidden:,} hidden units (one {image}x{image} map), "
            f"fully connected; locally connected with {size}x{size} filters (one per unit); and a convolution with "
            f"{filters} filters of {size}x{size}. Counts from the parameter shapes the `fftconv.nn` layers allocate "
            "(`parameter_shapes`); analytic, machine-independent, identical in quick and full mode. The locally "
            "connected layer uses `padding=\"same\"` (PyTorch's split, 4 before and 5 after) so that each of the "
            f"{hidden:,} units has its own {size}x{size} filter. The example counts weights only; biases are listed "
            "apart. The convolution's count does not depend on the image size.\n\n" + markdown_table(header, body))
    write_table(ctx.out_dir, "param_counts", text)

    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [r["layer"].replace(", ", "\n", 1) for r in rows]
    bars = ax.bar(range(len(rows)), [r["total"] for r in rows], color=["tab:red", "tab:orange", "tab:orange",
                                                                        "tab:blue"][:len(rows)])
    for bar, r in zip(bars, rows):
        ax.annotate(_human(r["total"]), (bar.get_x() + bar.get_width() / 2, r["total"]), ha="center",
                    va="bottom", fontsize=9)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set(yscale="log", ylabel="parameters (weights + biases)", ylim=(None, 6 * max(r["total"] for r in rows)))
    ax.set_title(f"Parameters: a {image}x{image} grey image into {hidden // 1000}K hidden units (a {image}x{image} map); "
                 f"{size}x{size} filters; the convolution has {filters} of them\n"
                 "Counts from fftconv.nn layer shapes. Analytic (no timing): machine-independent, same in quick and "
                 "full mode", fontsize=9)
    fig.tight_layout()
    save_figure(fig, ctx.out_dir, "param_counts")
    plt.close(fig)
