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
in the paper's layer table (quick mode: S = 16, the only change). Methodology: ``experiments/_timing.py``.
"""

from __future__ import annotations

from typing import Iterator

from . import _timing
from ._harness import markdown_table, save_figure, write_table

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


def measure(ctx) -> None:
    methods = _timing.select_methods(ctx, default_algos=("fft", "im2col", "torch"))
    batch = batch_size(ctx)
    point = {"S": batch, "seed": 0, "net": "paper-5conv-fc1000"}
    jobs = []
    for method in methods:
        skip = None
        if method == "direct":
            seconds = 3 * direct_flops(batch) / _timing.DIRECT_FLOPS_PER_SECOND
            if seconds > 10 * _timing.DIRECT_MAX_SECONDS_PER_CALL[ctx.quick]:
                skip = f"direct (a float64 reference) would take ~{seconds:.0f} s per iteration; not timed"
        jobs.append(_timing.Job(method, point, [{"phase": p} for p in PHASES], case=point, skip_reason=skip))
    _timing.measure_jobs(ctx, jobs, "experiments.network:iteration", desc="network")


# ---------------------------------------------------------------------------------------------------- worker task
def fftconv_network(session: _timing.Session):
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


def iteration(case: dict, session: _timing.Session) -> Iterator[dict]:
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
    (forward_t, backward_t), whole = _timing.time_phases([forward, backward], **settings)
    common = {"plan_s": session.plan_seconds() - plan_before if session.backend is not None else None,
              "network": description}
    for phase, timing in zip(PHASES, (forward_t, backward_t, whole)):
        if {"phase": phase} in case["todo"]:
            yield {"phase": phase, **timing.as_row(), **common}


# ---------------------------------------------------------------------------------------------------- output
def _scaling(ctx, batch: int) -> str:
    return f"batch S={batch}" + (" (paper 128)" if batch != PAPER_BATCH else " as in the paper")


def fft_size(batch: int, in_shape: tuple, params: tuple) -> str:
    """The FFT size fftconv's default policy picks for one conv layer of the network."""
    import fftconv

    f, fp, k, p = params
    geometry = fftconv.ConvGeometry.from_shapes(in_shape, (fp, f, k, k), padding=p)
    return "x".join(str(n) for n in fftconv.fft_shape_for(geometry))


def architecture_table(batch: int) -> str:
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
    return markdown_table(["layer", "output (maps x height x width)"], rows)


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = batch_size(ctx)
    rows = [r for r in ctx.results.rows() if r.get("S") == batch and "phase" in r]
    timed = {(r["method"], r["phase"]): r for r in _timing.timed_rows(rows)}
    methods = sorted({r["method"] for r in rows}, key=_timing.method_order)
    ffts = [m for m in methods if _timing.parse_method(m)["algo"] == "fft"]

    def seconds(method, phase):
        row = timed.get((method, phase))
        return row["median_s"] if row else None

    table_rows = [[m, *(_timing.fmt_ms(seconds(m, p)) for p in PHASES),
                   *(_timing.fmt_ratio(seconds(m, "iteration"), seconds(f, "iteration")) for f in ffts)]
                  for m in methods]
    plans = {m: timed[(m, "iteration")].get("plan_s") for m in ffts if (m, "iteration") in timed}
    notes = sorted({f"- {r['method']}: {r.get('skipped') or 'failed: ' + r['error']}" for r in rows
                    if "skipped" in r or "error" in r})
    caption = ctx.describe("fftconv layers vs PyTorch autograd, float32; times in ms (median)", _scaling(ctx, batch))
    header = ["method", "forward", "backward", "iteration (forward + backward)", *(f"iteration / {f}'s" for f in ffts)]
    text = (f"# Whole-network training iteration ({ctx.mode} mode)\n\n{caption}\n\n" + _timing.provenance(rows)
            + "\n" + markdown_table(header, table_rows)
            + "\nBackward = updateGradInput + accGradParameters of every layer (each library computes both in one "
              "call per layer, so the paper's split of the backward is not available).\n"
            + "".join(f"\n{m}: FFT planning in the warm-up iteration took {s:.1f} s (excluded).\n"
                      for m, s in plans.items() if s)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\n## The network (choices the paper leaves open; see experiments/network.py)\n\n"
            + architecture_table(batch))
    write_table(ctx.out_dir, "network", text)

    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for position, method in enumerate(methods):
        style = _timing.method_style(method)
        bottom = 0.0
        for phase, hatch in (("forward", ""), ("backward", "//")):
            value = seconds(method, phase)
            if value is None:
                continue
            ax.bar(position, value * 1e3, bottom=bottom, color=style["color"], hatch=hatch, edgecolor="black",
                   linewidth=0.5, label=phase if position == 0 else None)
            bottom += value * 1e3
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("ms per training iteration")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="bottom: forward, hatched: backward", fontsize=8)
    fig.suptitle(ctx.describe("Whole-network iteration (5 conv + ReLU + max pool + FC 1000), float32: "
                              "fftconv vs PyTorch", _scaling(ctx, batch)), fontsize=10)
    save_figure(fig, ctx.out_dir, "network")
    plt.close(fig)
