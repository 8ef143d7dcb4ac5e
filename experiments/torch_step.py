"""A training step through PyTorch's autograd: fftconv.torch against fftconv.nn, PyTorch and two PyTorch FFT peers.

One step is a forward pass and the backward of a random output gradient (layers) or of a cross-entropy loss
(network), timed as a whole and by phase (:func:`experiments.harness.timing.time_phases`), float32, on

- the paper's five layers ``(k, n, f, f')`` (``roofline.LAYERS``), valid convolutions, no bias, batch 32 (quick
  mode: 8), in two protocols: ``all_grads`` (the input needs a gradient, so all three passes run) and
  ``no_input_grad`` (a network's first layer: the input-gradient pass is skipped where the library can skip it);
- a small whole network (:data:`NETWORK`: three convolutions with ReLU and max pooling, and a linear classifier on
  32 x 32 images), whose input needs no gradient.

Methods, each in its own worker process (:mod:`experiments.harness.workers`; docs/experiments.md):

``fftconv.torch``         :class:`fftconv.torch.FFTConv2d`, ``algo="fft"``, ``memory="reuse"`` (the paper's reuse)
``fftconv.torch.auto``    the same with ``algo="auto"``
``fftconv.torch.spinning`` ``algo="fft"`` with ``FFTCONV_TORCH_RELEASE_OPENMP=0``: torch's OpenMP workers are not
                          released before fftconv's operators (docs/torch.md, "Threads")
``fftconv.nn``            the numpy layers :class:`fftconv.nn.Conv2d` (no autograd; its backward always returns the
                          input gradient, so it has no ``no_input_grad`` row)
``torch``                 PyTorch's own convolution (oneDNN)
``fft_conv_pytorch``      ``fft_conv_pytorch.fft_conv`` (PyPI ``fft-conv-pytorch``, pinned in the experiments extra)
``torch_fftconv``         ``torch_fftconv.fft_conv2d`` (PyPI ``torch-fftconv``, pinned likewise)

A peer that is not installed is skipped with a note. Quick mode leaves out ``fftconv.torch.spinning`` (unless
``--methods`` names it) and times the two peer libraries on the network and the first layer only. A method whose
first step on a point (a warm-up call) takes longer than ``--max-step-seconds`` (:data:`MAX_STEP_SECONDS`) is not
timed further on it, nor on its later layers: ``fft-conv-pytorch`` took 15 s per step on the (5,16,384,384) layer at
batch 8 on the project's machine (PyTorch: 0.14 s), and repeating that would not fit a run; the row keeps the first
step's time. Torch workers run ``torch.set_num_threads(--threads)``. Every torch-based row records the relative max
error of the layer's output against ``torch.nn.functional.conv2d`` (or of the network's logits against the same
network built with ``torch.nn``), and every row the first loss or output
norm, so a fast but wrong method shows.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import time
from typing import Callable, Iterator

from .harness import points
from .harness.jobs import Job, measure_jobs
from .harness.style import fmt_ms, fmt_ratio, markdown_table, save_figure, write_table
from .harness.timing import TimingSettings, time_phases
from .harness.workers import Session
from .roofline import LAYERS

NAME = "torch_step"
DESCRIPTION = "Training step through autograd: fftconv.torch vs fftconv.nn, PyTorch, fft-conv-pytorch, torch-fftconv"

BATCH = {True: 8, False: 32}
#: A point whose first step (a warm-up call) takes longer is not timed further (quick mode, full mode); seconds.
MAX_STEP_SECONDS = {True: 2.0, False: 60.0}
PROTOCOLS = ("all_grads", "no_input_grad")
METHODS = ("fftconv.torch", "fftconv.torch.auto", "fftconv.torch.spinning", "fftconv.nn", "torch",
           "fft_conv_pytorch", "torch_fftconv")
#: Quick mode leaves these out unless ``--methods`` names them: a diagnostic of fftconv.torch's thread handling.
FULL_ONLY_METHODS = ("fftconv.torch.spinning",)
#: Quick mode times the PyTorch FFT libraries on the network and this many of the first layers only: on the others
#: one step of theirs took 8-17 s at batch 8 on the project's machine (before the cap stops them), a sizeable part
#: of ``make figures``' budget.
QUICK_PEER_LAYERS = 1
#: Methods that are separate packages: (import name, PyPI name and pinned version).
PEERS = {"fft_conv_pytorch": ("fft_conv_pytorch", "fft-conv-pytorch==1.2.0"),
         "torch_fftconv": ("torch_fftconv", "torch-fftconv==1.0.0")}
#: The small network: ("conv", in, out, kernel, padding), ("relu",), ("pool", size), ("flatten",), ("fc", in, out).
NETWORK = (("conv", 3, 32, 5, 2), ("relu",), ("pool", 2), ("conv", 32, 64, 5, 2), ("relu",), ("pool", 2),
           ("conv", 64, 64, 3, 1), ("relu",), ("flatten",), ("fc", 64 * 8 * 8, 10))
NETWORK_INPUT = (3, 32, 32)
CLASSES = 10


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None,
                        help=f"batch of the layers and the network (default {BATCH[False]}, quick {BATCH[True]})")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, metavar="METHOD",
                        help=f"methods to time (default all: {' '.join(METHODS)})")
    parser.add_argument("--layers", nargs="+", default=None, metavar="K,N,F,FP",
                        help="layers as k,n,f,f' (default the paper's five)")
    parser.add_argument("--no-network", action="store_true", help="time the layers only")
    parser.add_argument("--max-step-seconds", type=float, default=None,
                        help="stop timing a method whose first step takes longer (default "
                             f"{MAX_STEP_SECONDS[False]:g} s, quick {MAX_STEP_SECONDS[True]:g} s)")


def timing_settings(quick: bool) -> TimingSettings:
    # two warm-up steps: the first plans the FFTs (and, for algo="auto", times candidates), the second settles
    # malloc's heap and the thread pools
    return (TimingSettings(warmup=2, min_repeats=3, max_repeats=7, budget_seconds=0.5) if quick
            else TimingSettings(warmup=2, min_repeats=7, max_repeats=15, budget_seconds=2.0))


def layers(ctx) -> list[tuple[int, int, int, int]]:
    given = getattr(ctx.options, "layers", None)
    if not given:
        return list(LAYERS)
    try:
        parsed = [tuple(int(v) for v in text.split(",")) for text in given]
    except ValueError:
        parsed = []
    if not parsed or any(len(layer) != 4 for layer in parsed):
        raise ValueError(f"--layers takes k,n,f,fp quadruples of ints, got {' '.join(given)}")
    return parsed


def batch_size(ctx) -> int:
    return getattr(ctx.options, "batch", None) or BATCH[ctx.quick]


def skip_reason(method: str, part: str, protocol: str, layer_index: int = 0, quick: bool = False) -> str | None:
    """Why a method is not timed on a part (layer ``layer_index`` or the network) in a protocol (``None``: it is)."""
    if method in PEERS and importlib.util.find_spec(PEERS[method][0]) is None:
        return f"{PEERS[method][1].split('==')[0]} is not installed (pip install --no-deps {PEERS[method][1]})"
    if method in PEERS and quick and part == "layer" and layer_index >= QUICK_PEER_LAYERS:
        return (f"quick mode times {method} on the network and the first layer only (its steps on the larger layers "
                "take seconds each); --full times every layer")
    if method == "fftconv.nn" and part == "layer" and protocol == "no_input_grad":
        return "fftconv.nn layers always compute the input gradient"
    return None


def network_point(batch: int) -> dict:
    return {"part": "network", "S": batch, "seed": 0}


def jobs(ctx) -> list[Job]:
    methods = selected_methods(ctx)
    batch = batch_size(ctx)
    cap = max_step_seconds(ctx)
    result = []
    for index, (k, n, f, fp) in enumerate(layers(ctx)):
        point = {"part": "layer", **points.conv_point(S=batch, f=f, fp=fp, n=n, k=k)}
        case = {**point, "max_step_seconds": cap}
        for method in methods:
            for protocol in PROTOCOLS:  # one job per protocol: each has its own skip reason
                result.append(Job(method, point, [{"protocol": protocol}], case=case,
                                  skip_reason=skip_reason(method, "layer", protocol, index, ctx.quick)))
    if not getattr(ctx.options, "no_network", False):
        point = network_point(batch)
        case = {**point, "network": NETWORK, "max_step_seconds": cap}
        for method in methods:
            result.append(Job(method, point, [{"protocol": "no_input_grad"}], case=case,
                              skip_reason=skip_reason(method, "network", "no_input_grad")))
    return result


def selected_methods(ctx) -> list[str]:
    """``--methods``, else every method (quick mode: less :data:`FULL_ONLY_METHODS`)."""
    asked = getattr(ctx.options, "methods", None)
    if asked:
        return list(asked)
    return [m for m in METHODS if not (ctx.quick and m in FULL_ONLY_METHODS)]


def max_step_seconds(ctx) -> float:
    return getattr(ctx.options, "max_step_seconds", None) or MAX_STEP_SECONDS[ctx.quick]


def peer_versions() -> dict[str, str | None]:
    """Installed versions of the PyTorch FFT peers (``None``: not installed)."""
    versions = {}
    for _, requirement in PEERS.values():
        package = requirement.split("==")[0]
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def validate(row: dict) -> str | None:
    """A row needs its part, batch, method and protocol (a layer also its sizes), and a timing or a reason."""
    from .harness.results import missing_fields

    problem = missing_fields(row, "part", "S", "method", "protocol")
    if problem or row["part"] != "layer":
        return problem
    return points.validate(row, subkey="protocol")


def measure(ctx) -> None:
    ctx.record_settings(batch=batch_size(ctx), layers=[list(layer) for layer in layers(ctx)], network=NETWORK,
                        max_step_seconds=max_step_seconds(ctx), peers=peer_versions())
    measure_jobs(ctx, jobs(ctx), "experiments.torch_step:step_task", timing_settings(ctx.quick), desc="torch_step")


# ---------------------------------------------------------------------------------------------------- worker side
def _torch(session: Session):
    """torch, with the worker's thread count (the session sets it only for the method named "torch")."""
    import torch

    if session.torch is None:
        torch.set_num_threads(session.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set
            pass
    return torch


def _convolution(method: str, session: Session, torch) -> Callable:
    """``(x, w) -> y``: a valid, bias-free 2-d convolution by ``method``."""
    if method.startswith("fftconv.torch"):
        import fftconv.torch as ft

        if method == "fftconv.torch.spinning":
            os.environ["FFTCONV_TORCH_RELEASE_OPENMP"] = "0"
        algo = "auto" if method == "fftconv.torch.auto" else "fft"
        backend = session.backend.name if session.backend is not None else None
        return lambda x, w: ft.conv2d(x, w, algo=algo, backend=backend)
    if method == "fft_conv_pytorch":
        from fft_conv_pytorch import fft_conv

        return lambda x, w: fft_conv(x, w)
    if method == "torch_fftconv":
        from torch_fftconv import fft_conv2d

        return lambda x, w: fft_conv2d(x, w)
    return torch.nn.functional.conv2d


def _relative_error(actual, expected) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def layer_step(case: dict, session: Session, protocol: str) -> tuple[list[Callable], dict]:
    """The forward and backward phases of one layer's step, and facts to record."""
    arrays = points.conv_inputs(case)
    if session.method == "fftconv.nn":
        from fftconv import nn

        layer = nn.Conv2d(case["f"], case["fp"], case["k"], bias=False, algo="fft", backend=session.backend)
        layer.weight = arrays["w"]
        x, gy = arrays["x"], arrays["gy"]
        return [lambda: layer.forward(x), lambda: layer.backward(gy)], {}
    torch = _torch(session)
    x = torch.from_numpy(arrays["x"]).requires_grad_(protocol == "all_grads")
    w = torch.from_numpy(arrays["w"]).requires_grad_()
    gy = torch.from_numpy(arrays["gy"])
    convolution = _convolution(session.method, session, torch)
    with torch.no_grad():
        facts = {"max_rel_error": _relative_error(convolution(x, w), torch.nn.functional.conv2d(x, w))}
    state = {}

    def forward():
        x.grad = w.grad = None
        state["y"] = convolution(x, w)

    def backward():
        state.pop("y").backward(gy)
    return [forward, backward], facts


def _parameters(network: list, seed: int) -> list:
    """Seeded float32 weights and biases of ``network`` (fan-in uniform), shared by every method."""
    import numpy as np

    rng = np.random.default_rng(seed)
    parameters = []
    for layer in network:
        if layer[0] in ("conv", "fc"):
            shape = (layer[2], layer[1], layer[3], layer[3]) if layer[0] == "conv" else (layer[2], layer[1])
            bound = 1 / np.sqrt(np.prod(shape[1:]))
            parameters.append((rng.uniform(-bound, bound, shape).astype(np.float32),
                               rng.uniform(-bound, bound, shape[0]).astype(np.float32)))
    return parameters


def torch_network(torch, network: list, parameters: list, conv_factory: Callable | None = None):
    """``network`` (:data:`NETWORK`'s form) with ``torch.nn`` layers, convolutions from ``conv_factory``."""
    layers, weights = [], iter(parameters)
    for spec in network:
        kind = spec[0]
        if kind in ("conv", "fc"):
            layer = ((conv_factory or torch.nn.Conv2d)(*spec[1:4], padding=spec[4]) if kind == "conv"
                     else torch.nn.Linear(*spec[1:]))
            w, b = next(weights)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
            layers.append(layer)
        else:
            layers.append({"relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d, "flatten": torch.nn.Flatten}[kind](
                *spec[1:]))
    return torch.nn.Sequential(*layers)


def fftconv_network(session: Session, network: list, parameters: list):
    """``network`` (:data:`NETWORK`'s form) with :mod:`fftconv.nn` layers."""
    from fftconv import nn

    layers, weights = [], iter(parameters)
    for spec in network:
        kind = spec[0]
        if kind in ("conv", "fc"):
            layer = (nn.Conv2d(*spec[1:4], padding=spec[4], algo="fft", backend=session.backend) if kind == "conv"
                     else nn.Linear(*spec[1:]))
            layer.weight, layer.bias = next(weights)
            layers.append(layer)
        else:
            layers.append({"relu": nn.ReLU, "pool": nn.MaxPool2d, "flatten": nn.Flatten}[kind](*spec[1:]))
    return nn.Sequential(*layers), nn.CrossEntropyLoss()


def _peer_conv_factory(method: str, torch):
    """A constructor ``(in, out, k, padding=p)`` of the method's own convolution module (``None``: torch's)."""
    if method == "fft_conv_pytorch":
        from fft_conv_pytorch import FFTConv2d

        return lambda f, fp, k, padding: FFTConv2d(f, fp, k, padding=padding, bias=True)
    if method == "torch_fftconv":
        from torch_fftconv import FFTConv2d

        return lambda f, fp, k, padding: FFTConv2d(f, fp, k, padding=padding)
    return None


def network_step(case: dict, session: Session) -> tuple[list[Callable], dict]:
    """The forward (with the loss) and backward phases of one training step of ``case["network"]``."""
    import numpy as np

    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["S"], *NETWORK_INPUT), dtype=np.float32)
    labels = rng.integers(0, CLASSES, size=case["S"])
    network = case["network"]
    parameters = _parameters(network, case["seed"])
    if session.method == "fftconv.nn":
        net, criterion = fftconv_network(session, network, parameters)
        loss = criterion.forward(net.forward(x), labels)

        def forward():
            net.zero_grad()
            criterion.forward(net.forward(x), labels)
        facts = {"first_loss": float(loss), "note": "fftconv.nn computes the first layer's input gradient too"}
        return [forward, lambda: net.backward(criterion.backward())], facts
    torch = _torch(session)
    net = torch_network(torch, network, parameters, _peer_conv_factory(session.method, torch))
    if session.method.startswith("fftconv.torch"):
        import fftconv.torch as ft

        if session.method == "fftconv.torch.spinning":
            os.environ["FFTCONV_TORCH_RELEASE_OPENMP"] = "0"
        algo = "auto" if session.method == "fftconv.torch.auto" else "fft"
        backend = session.backend.name if session.backend is not None else None
        net, _ = ft.convert(net, algo=algo, backend=backend, inplace=True)
    xt, target = torch.from_numpy(x), torch.from_numpy(labels)
    with torch.no_grad():
        logits = net(xt)
        expected = torch_network(torch, network, parameters)(xt)
    facts = {"max_rel_error": _relative_error(logits, expected),
             "first_loss": float(torch.nn.functional.cross_entropy(logits, target))}
    state = {}

    def forward():
        net.zero_grad(set_to_none=True)
        state["loss"] = torch.nn.functional.cross_entropy(net(xt), target)

    def backward():
        state.pop("loss").backward()
    return [forward, backward], facts


def step_task(case: dict, session: Session) -> Iterator[dict]:
    """Task: time one training step (forward, backward, whole) per protocol listed in ``case["todo"]``.

    The first step is the first warm-up call. If it takes longer than ``case["max_step_seconds"]`` the point is not
    timed further, and (for layers) neither are the method's later layers: some libraries take tens of seconds per
    step at these sizes, and repeating that would not fit a run.
    """
    cap = case["max_step_seconds"]
    for subkey in case["todo"]:
        too_slow = getattr(session, "torch_step_too_slow", None)
        if case["part"] == "layer" and too_slow:
            yield {**subkey, "skipped": f"not timed: a step took {too_slow}"}
            continue
        if case["part"] == "network":
            phases, facts = network_step(case, session)
        else:
            phases, facts = layer_step(case, session, subkey["protocol"])
        plan_before = session.plan_seconds()
        start = time.perf_counter()
        for phase in phases:
            phase()
        first = time.perf_counter() - start
        if first > cap:
            if case["part"] == "layer":
                session.torch_step_too_slow = f"{first:.1f} s on {_label(case)}, over the {cap:g} s cap"
            yield {**subkey, **facts, "first_step_s": first,
                   "skipped": f"not timed: the first step took {first:.1f} s, over the {cap:g} s cap "
                              "(--max-step-seconds)"}
            continue
        settings = session.settings.as_dict()
        settings["warmup"] = max(0, settings["warmup"] - 1)  # the first step was a warm-up call
        (forward, backward), whole = time_phases(phases, **settings)
        row = {**subkey, **whole.as_row(), **facts, "forward_median_s": forward.median,
               "backward_median_s": backward.median, "first_step_s": first}
        if session.backend is not None:
            row["plan_s"] = session.plan_seconds() - plan_before
        if case["part"] == "layer":
            row["gflops"] = 3 * points.direct_flops(case) / whole.median / 1e9
        yield row


# ---------------------------------------------------------------------------------------------------- output
def _label(point: dict) -> str:
    if point.get("part") == "network":
        return f"network, S={point['S']}"
    return f"({point['k']},{point['n']},{point['f']},{point['fp']})"


def summarise(rows: list[dict]) -> dict:
    """Best median per (point, method, protocol) over the timed rows, the notes of untimed ones, and the points."""
    best: dict[tuple, dict] = {}
    notes: dict[tuple, str] = {}
    parts: dict[str, dict] = {}
    for row in rows:
        if "method" not in row or "protocol" not in row:
            continue
        part = {k: row[k] for k in ("part", "S", "k", "n", "f", "fp") if k in row}
        label = _label(part)
        parts.setdefault(label, part)
        key = (label, row["method"], row["protocol"])
        if "median_s" in row:
            if key not in best or row["median_s"] < best[key]["median_s"]:
                best[key] = row
        else:
            notes[key] = row.get("skipped") or row.get("error", "")
    return {"best": best, "notes": notes, "points": parts}


def saved(ctx) -> tuple[dict, bool]:
    """The batch, layers, network, step cap and peer versions stored with the shown rows (else the code's values)."""
    defaults = {"batch": batch_size(ctx), "layers": [list(layer) for layer in LAYERS], "network": NETWORK,
                "max_step_seconds": max_step_seconds(ctx), "peers": {}}
    return ctx.saved_settings(defaults)


def tables(ctx, summary: dict) -> str:
    best, notes = summary["best"], summary["notes"]
    settings, recorded = saved(ctx)
    methods = [m for m in METHODS if any(key[1] == m for key in (*best, *notes))]
    peers = ", ".join(f"{name} {version or 'not installed'}" for name, version in settings["peers"].items())
    lines = [f"# Training step through autograd, float32 ({ctx.mode} mode, batch {settings['batch']})\n",
             ctx.describe("fftconv.torch, fftconv.nn, PyTorch and PyTorch FFT libraries: a training step through "
                          "autograd", f"batch S={settings['batch']}") + "\n",
             ctx.provenance_note()]
    if peers:
        lines.append(f"Peers: {peers}.\n")
    if not recorded:
        lines.append("The settings were not stored with these rows; the batch and the step cap are the code's "
                     "current values.\n")
    for protocol in PROTOCOLS:
        body = []
        for label in summary["points"]:
            cells = []
            torch_row = best.get((label, "torch", protocol))
            for method in methods:
                row = best.get((label, method, protocol))
                if row is None:
                    cells.append("-")
                    continue
                ratio = fmt_ratio(torch_row["median_s"], row["median_s"]) if torch_row else "-"
                cells.append(f"{fmt_ms(row['median_s'])} ({ratio})")
            if any(cell != "-" for cell in cells):
                body.append([label, *cells])
        if body:
            lines.append(f"## Step time, ms (PyTorch time / method time), protocol `{protocol}`\n\n"
                         + markdown_table(["layer (k,n,f,f') or network", *methods], body))
    errors = [[label, method, protocol, f"{row['max_rel_error']:.1e}"]
              for (label, method, protocol), row in best.items() if "max_rel_error" in row]
    if errors:
        lines.append("## Relative max error against torch.nn.functional.conv2d (network: logits)\n\n"
                     + markdown_table(["point", "method", "protocol", "error"], errors))
    if notes:
        grouped: dict[tuple[str, str], list[str]] = {}
        for (label, method, protocol), note in notes.items():
            grouped.setdefault((method, note), []).append(f"{label} `{protocol}`")
        lines.append("Not timed:\n\n" + "\n".join(f"- {method}: {note} ({'; '.join(where)})"
                                                  for (method, note), where in grouped.items()) + "\n")
    return "\n".join(lines)


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = summarise(ctx.rows())
    settings, _ = saved(ctx)
    best = summary["best"]
    labels = list(summary["points"])
    methods = [m for m in METHODS if any(key[1] == m for key in best)]
    fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(13.3, 5.2), layout="constrained", squeeze=False)
    width = 0.8 / max(len(methods), 1)
    colors = plt.get_cmap("tab10")
    for axis, protocol in zip(axes[0], PROTOCOLS):
        positions = np.arange(len(labels))
        for index, method in enumerate(methods):
            heights = [best[(label, method, protocol)]["median_s"] * 1e3 if (label, method, protocol) in best
                       else np.nan for label in labels]
            axis.bar(positions + (index - (len(methods) - 1) / 2) * width, heights, width, label=method,
                     color=colors(index), edgecolor="black", linewidth=0.4)
        axis.set_xticks(positions, labels, fontsize=8)
        axis.set_yscale("log")
        axis.set_ylabel("ms per training step (forward + backward), log scale")
        axis.set_title(f"protocol {protocol}", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(ctx.describe("Training step through autograd, float32: fftconv.torch, fftconv.nn, PyTorch and "
                              "PyTorch FFT libraries", f"batch S={settings['batch']}"), fontsize=11)
    save_figure(fig, ctx.out_dir, "torch_step")
    plt.close(fig)
    write_table(ctx.out_dir, "torch_step", tables(ctx, summary))
