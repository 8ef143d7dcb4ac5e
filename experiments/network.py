"""The whole-network training iteration of Mathieu et al. (2014), section 3.5.

The paper composes its five layers "inserting max-pooling and rectified linear units between them, and adding a
fully connected layer for prediction with 1000 outputs", and lists the layer inputs as 32, 32, 16, 16, 16. It does
not give the pooling sizes, the padding or the FC input size. The choices made here (see :data:`ARCHITECTURE`):

- each convolution is zero-padded to keep its spatial size ("same" padding: p = (k - 1) / 2), so the sizes chain
  32 -> 32 -> 16 -> 16 -> 16 as the paper lists them; padded convolutions need a larger circular FFT than the
  layer table's valid ones (the FFT size fftconv picks for each layer is printed in ``network.md``);
- a ReLU after every convolution;
- 2x2 max pooling with stride 2 after the second convolution (32 -> 16, the drop the paper's list shows) and after
  the fifth (16 -> 8), before the classifier;
- the fully connected layer maps 384 * 8 * 8 = 24576 features to 1000 outputs, followed by softmax cross-entropy
  against random labels;
- every convolution has a bias, as in a real network.

One iteration = forward (updateOutput of every layer and the loss) + backward (updateGradInput and
accGradParameters of every layer). The paper splits the backward into its two operations; here each library's
backward computes both in one call (fftconv's conv layers share the output-gradient transform between them; PyTorch's
autograd calls one fused convolution backward), so the table reports forward, backward and their sum. Both
libraries also compute the gradient of the input image (fftconv's layers always return it; PyTorch's input is
marked ``requires_grad`` so that the work is the same), which the paper leaves out for the first layer.

fftconv runs its own layers (``fftconv.nn``: Conv2d with the FFT, im2col or direct algorithm, ReLU, MaxPool2d,
Flatten, Linear, CrossEntropyLoss); PyTorch runs the same network with ``torch.nn`` and autograd. Batch S = 128 as
in the paper's layer table (quick mode: S = 16, the only change). Methodology: docs/experiments.md. The paper's
whole-network table (GTX Titan; ``experiments/data/mathieu2014.json``) is shown beside ours.
"""

from __future__ import annotations

from typing import Iterator

from .harness import methods, paper, points
from .harness.jobs import Job, measure_jobs
from .harness.results import missing_fields
from .harness.style import fmt_ms, fmt_ratio, markdown_table, method_order, method_style, save_figure, write_table
from .harness.timing import time_phases

NAME = "network"
DESCRIPTION = "Whole-network iteration (5 conv layers + ReLU + max pooling + 1000-way FC): forward, backward, total"

#: (kind, parameters) in order. conv: (in, out, kernel, padding); pool: (kernel, stride); fc: (in, out).
ARCHITECTURE = (
    ("conv", (3, 96, 11, 5)), ("relu", ()),
    ("conv", (96, 256, 7, 3)), ("relu", ()), ("pool", (2, 2)),
    ("conv", (256, 384, 5, 2)), ("relu", ()),
    ("conv", (384, 384, 5, 2)), ("relu", ()),
    ("conv", (384, 384, 3, 1)), ("relu", ()), ("pool", (2, 2)),
    ("flatten", ()), ("fc", (384 * 8 * 8, 1000)),
)
INPUT = (3, 32, 32)
CLASSES = 1000
PAPER_BATCH = 128
QUICK_BATCH = 16
PHASES = ("forward", "backward", "iteration")


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None,
                        help=f"batch size (default: {PAPER_BATCH} full, {QUICK_BATCH} quick)")


def batch_size(ctx) -> int:
    return getattr(ctx.options, "batch", None) or (QUICK_BATCH if ctx.quick else PAPER_BATCH)


def shapes(batch: int) -> list[tuple[str, tuple, tuple]]:
    """``(layer, parameters, output shape)`` for every layer: the documented size chain."""
    shape = (batch, *INPUT)
    chain = []
    for kind, params in ARCHITECTURE:
        if kind == "conv":
            f, fp, k, p = params
            if shape[1] != f:
                raise ValueError(f"ARCHITECTURE: conv expects {f} maps, gets {shape[1]}")
            shape = (batch, fp, shape[2] + 2 * p - k + 1, shape[3] + 2 * p - k + 1)
        elif kind == "pool":
            size, stride = params
            shape = (batch, shape[1], (shape[2] - size) // stride + 1, (shape[3] - size) // stride + 1)
        elif kind == "flatten":
            shape = (batch, shape[1] * shape[2] * shape[3])
        elif kind == "fc":
            if shape[1] != params[0]:
                raise ValueError(f"ARCHITECTURE: fc expects {params[0]} features, gets {shape[1]}")
            shape = (batch, params[1])
        chain.append((kind, params, shape))
    return chain


def direct_flops(batch: int) -> int:
    """Direct-convolution flops of one pass over all conv layers (to decide whether ``direct`` is worth timing)."""
    total = 0
    for kind, params, shape in shapes(batch):
        if kind == "conv":
            f, fp, k, p = params
            total += 2 * batch * f * fp * shape[2] ** 2 * k * k
    return total


def validate(row: dict) -> str | None:
    problem = missing_fields(row, "S", "method", "phase")
    if problem or "median_s" not in row:
        return problem or (None if "skipped" in row or "error" in row else "no median_s, skipped or error")
    return missing_fields(row, "min_s", "max_s")


def measure(ctx) -> None:
    labels = methods.select_methods(ctx, default_algos=("fft", "im2col", "torch"))
    batch = batch_size(ctx)
    ctx.record_settings(batch=batch, architecture=architecture_rows(batch))
    point = {"S": batch, "seed": 0, "net": "paper-5conv-fc1000"}
    jobs = []
    for method in labels:
        skip = None
        if method == "direct":
            seconds = 3 * direct_flops(batch) / points.DIRECT_FLOPS_PER_SECOND
            if seconds > 10 * points.DIRECT_MAX_SECONDS_PER_CALL[ctx.quick]:
                skip = f"direct (a float64 reference) would take ~{seconds:.0f} s per iteration; not timed"
        jobs.append(Job(method, point, [{"phase": p} for p in PHASES], case=point, skip_reason=skip))
    measure_jobs(ctx, jobs, "experiments.network:iteration", desc="network")


# ---------------------------------------------------------------------------------------------------- worker task
def fftconv_network(session):
    from fftconv import nn

    algo = session.parsed["algo"]
    layers = []
    for index, (kind, params) in enumerate(ARCHITECTURE):
        if kind == "conv":
            f, fp, k, p = params
            options = {"backend": session.backend} if session.backend is not None else {}
            layers.append(nn.Conv2d(f, fp, k, padding=p, algo=algo, rng=index, **options))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "pool":
            layers.append(nn.MaxPool2d(*params))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "fc":
            layers.append(nn.Linear(*params, rng=index))
    return nn.Sequential(*layers), nn.CrossEntropyLoss()


def torch_network(torch):
    layers = []
    for kind, params in ARCHITECTURE:
        if kind == "conv":
            f, fp, k, p = params
            layers.append(torch.nn.Conv2d(f, fp, k, padding=p))
        elif kind == "relu":
            layers.append(torch.nn.ReLU())
        elif kind == "pool":
            layers.append(torch.nn.MaxPool2d(*params))
        elif kind == "flatten":
            layers.append(torch.nn.Flatten())
        elif kind == "fc":
            layers.append(torch.nn.Linear(*params))
    return torch.nn.Sequential(*layers)


def iteration(case: dict, session) -> Iterator[dict]:
    """Task: time forward and backward of one training iteration of the network (rows per phase)."""
    import numpy as np

    rng = np.random.default_rng(case.get("seed", 0))
    batch = case["S"]
    x = rng.standard_normal((batch, *INPUT), dtype=np.float32)
    labels = rng.integers(0, CLASSES, size=batch)
    if session.torch is not None:
        torch = session.torch
        torch.manual_seed(case.get("seed", 0))
        net = torch_network(torch)
        xt = torch.from_numpy(x).requires_grad_(True)
        target = torch.from_numpy(labels)
        state = {}

        def forward():
            net.zero_grad(set_to_none=True)
            xt.grad = None
            state["loss"] = torch.nn.functional.cross_entropy(net(xt), target)

        def backward():
            state.pop("loss").backward()
        description = repr(net)
    else:
        net, criterion = fftconv_network(session)

        def forward():
            net.zero_grad()
            criterion.forward(net.forward(x), labels)

        def backward():
            net.backward(criterion.backward())
        description = repr(net)
    settings = session.settings.as_dict()
    plan_before = session.plan_seconds()
    (forward_t, backward_t), whole = time_phases([forward, backward], **settings)
    common = {"plan_s": session.plan_seconds() - plan_before if session.backend is not None else None,
              "network": description}
    for phase, timing in zip(PHASES, (forward_t, backward_t, whole)):
        if {"phase": phase} in case["todo"]:
            yield {"phase": phase, **timing.as_row(), **common}


# ---------------------------------------------------------------------------------------------------- output
def _scaling(batch: int) -> str:
    return f"batch S={batch}" + (" (paper 128)" if batch != PAPER_BATCH else " as in the paper")


def fft_size(batch: int, in_shape: tuple, params: tuple) -> str:
    """The FFT size fftconv's default policy picks for one conv layer of the network."""
    import fftconv

    f, fp, k, p = params
    geometry = fftconv.ConvGeometry.from_shapes(in_shape, (fp, f, k, k), padding=p)
    return "x".join(str(n) for n in fftconv.fft_shape_for(geometry))


def architecture_rows(batch: int) -> list[list[str]]:
    """``[layer description, output shape]`` per layer (with the FFT size fftconv picks), stored with the rows."""
    rows = []
    previous = (batch, *INPUT)
    for kind, params, shape in shapes(batch):
        if kind == "conv":
            f, fp, k, p = params
            what = f"conv {k}x{k}, {f} -> {fp} maps, padding {p} (bias); FFT size {fft_size(batch, previous, params)}"
        elif kind == "pool":
            what = f"max pooling {params[0]}x{params[0]}, stride {params[1]}"
        elif kind == "fc":
            what = f"fully connected {params[0]} -> {params[1]} (bias), softmax cross-entropy"
        else:
            what = kind
        rows.append([what, "x".join(str(s) for s in shape[1:])])
        previous = shape
    return rows


def paper_section(seconds, labels: list[str]) -> str:
    """The paper's whole-network table (GTX Titan, batch 128) and its FFT speedups beside ours."""
    data = paper.load()["network"]
    times = data["times"]
    body = []
    for peer in paper.PEERS:
        row = times[peer]
        body.append([f"paper: {paper.PEER_LABELS[peer]}", row["forward"], row["input"] + row["weight"],
                     row["total"], fmt_ratio(row["total"], times["fft"]["total"])])
    fft = next((m for m in labels if methods.parse_method(m)["algo"] == "fft"), None)
    for method in labels:
        total = seconds(method, "iteration")
        body.append([f"ours: {method}", fmt_ms(seconds(method, "forward")), fmt_ms(seconds(method, "backward")),
                     fmt_ms(total), fmt_ratio(total, seconds(fft, "iteration")) if fft else "-"])
    return (f"## The paper's table beside ours\n\nThe paper: {paper.citation()}; batch {data['batch']}; its backward "
            "is its updateGradInput + accGradParameters columns "
            f"({times['fft']['input']} + {times['fft']['weight']} ms for FFT). The hardware, batch and "
            "network details differ (the paper does not give its pooling or padding), so compare the last column, "
            "each method's time over its own FFT's.\n\n"
            + markdown_table(["method", "forward ms", "backward ms", "iteration ms", "iteration / FFT's"], body))


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    stored, recorded = ctx.saved_settings({"batch": batch_size(ctx), "architecture": None})
    rows = [r for r in ctx.rows() if "phase" in r]
    batches = sorted({r["S"] for r in rows})
    batch = stored["batch"] if recorded or len(batches) != 1 else batches[0]
    rows = [r for r in rows if r.get("S") == batch]
    timed = {(r["method"], r["phase"]): r for r in points.timed_rows(rows)}
    labels = sorted({r["method"] for r in rows}, key=method_order)
    ffts = [m for m in labels if methods.parse_method(m)["algo"] == "fft"]

    def seconds(method, phase):
        row = timed.get((method, phase))
        return row["median_s"] if row else None

    table_rows = [[m, *(fmt_ms(seconds(m, p)) for p in PHASES),
                   *(fmt_ratio(seconds(m, "iteration"), seconds(f, "iteration")) for f in ffts)] for m in labels]
    plans = {m: timed[(m, "iteration")].get("plan_s") for m in ffts if (m, "iteration") in timed}
    notes = sorted({f"- {r['method']}: {r.get('skipped') or 'failed: ' + r['error']}" for r in rows
                    if "skipped" in r or "error" in r})
    architecture = stored["architecture"] or architecture_rows(batch)
    caption = ctx.describe("fftconv layers vs PyTorch autograd, float32; times in ms (median)", _scaling(batch))
    header = ["method", "forward", "backward", "iteration (forward + backward)", *(f"iteration / {f}'s" for f in ffts)]
    text = (f"# Whole-network training iteration ({ctx.mode} mode, batch {batch})\n\n{caption}\n\n"
            + ctx.provenance_note() + "\n" + markdown_table(header, table_rows)
            + "\nBackward = updateGradInput + accGradParameters of every layer (each library computes both in one "
              "call per layer, so the paper's split of the backward is not available). Both libraries also compute "
              "the gradient of the input image.\n"
            + "".join(f"\n{m}: FFT planning in the warm-up iteration took {s:.1f} s (excluded).\n"
                      for m, s in plans.items() if s)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\n" + paper_section(seconds, labels)
            + "\n## The network (choices the paper leaves open; see experiments/network.py)\n\n"
            + ("" if recorded else "The architecture was not stored with these rows; this is the code's current one."
               "\n\n")
            + markdown_table(["layer", "output (maps x height x width)"], architecture))
    write_table(ctx.out_dir, "network", text)

    fig, (ax, ratios) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", width_ratios=(1.3, 1))
    for position, method in enumerate(labels):
        colour = method_style(method)["color"]
        bottom = 0.0
        for phase, hatch in (("forward", ""), ("backward", "//")):
            value = seconds(method, phase)
            if value is None:
                continue
            ax.bar(position, value * 1e3, bottom=bottom, color=colour, hatch=hatch, edgecolor="black", linewidth=0.5)
            bottom += value * 1e3
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("ms per training iteration")
    ax.grid(axis="y", alpha=0.3)
    # Proxy handles: one swatch per method in its bar colour, and the two phases as hatches on white.
    handles = [Patch(facecolor=method_style(m)["color"], edgecolor="black", label=method_style(m)["label"])
               for m in labels]
    handles += [Patch(facecolor="white", edgecolor="black", hatch=h, label=f"{phase} (bar part)")
                for phase, h in (("forward", ""), ("backward", "//"))]
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    ax.set_title(f"Ours: CPU, batch {batch}", fontsize=10)
    _ratio_panel(ratios, seconds, labels)
    fig.suptitle(ctx.describe("Whole-network iteration (5 conv + ReLU + max pool + FC 1000), float32: "
                              "fftconv vs PyTorch", _scaling(batch)), fontsize=10)
    save_figure(fig, ctx.out_dir, "network")
    plt.close(fig)


def _ratio_panel(ax, seconds, labels: list[str]) -> None:
    """Each peer's iteration time over the FFT's: the paper's (GPU) beside ours (CPU)."""
    times = paper.load()["network"]["times"]
    bars = [(f"paper: {paper.PEER_LABELS[p]}", times[p]["total"] / times["fft"]["total"], "#999999", "//")
            for p in ("torch7", "cudaconv")]
    fft = next((m for m in labels if methods.parse_method(m)["algo"] == "fft"), None)
    for method in labels:
        if method != fft and fft and seconds(method, "iteration") and seconds(fft, "iteration"):
            bars.append((f"ours: {method}", seconds(method, "iteration") / seconds(fft, "iteration"),
                         method_style(method)["color"], ""))
    for position, (name, value, colour, hatch) in enumerate(bars):
        ax.bar(position, value, color=colour, hatch=hatch, edgecolor="black", linewidth=0.5)
        ax.annotate(f"{value:.2f}x", (position, value), xytext=(0, 2), textcoords="offset points", ha="center",
                    fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(bars)), [b[0].replace(": ", ":\n") for b in bars], fontsize=7)
    ax.set_ylabel("iteration time / FFT's (above 1: FFT faster)")
    ax.set_title(f"Speedup of FFT: the paper (GTX Titan, batch {paper.load()['network']['batch']}) and ours",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
