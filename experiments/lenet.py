"""LeNet-5 on scikit-learn's handwritten digits, trained with FFT convolutions and with direct (im2col) ones.

The question: does training through the paper's FFT convolutions learn exactly what direct training learns? Two (or
more) copies of one LeNet-5-style network start from the same seeded weights and see the same seeded mini-batches;
they differ only in the convolution algorithm of their conv layers. They are trained in lockstep, so after every
step the losses are compared, and after every epoch the parameters and the test accuracy.

Data: ``sklearn.datasets.load_digits`` (1797 8x8 images, 10 classes), upsampled to 32x32 (bilinear), scaled to
[0, 1] and standardised with the training mean and deviation; a fixed stratified 80/20 split (``random_state=0``).
Network: conv 5x5 (1->6), ReLU, max-pool 2, conv 5x5 (6->16), ReLU, max-pool 2, FC 400->120, ReLU, FC 120->84,
ReLU, FC 84->10; softmax cross-entropy; SGD with momentum and a cosine learning-rate decay over the epochs.

Resumable per run (one run = one dtype, every algorithm in lockstep): each epoch appends a row tagged with the
run's id, and a final ``kind="run"`` row marks the run complete. An interrupted run is retrained from the start under
a new id; plots use only complete runs.
"""

from __future__ import annotations

import math
import time
import uuid

NAME = "lenet"
DESCRIPTION = "LeNet-5 on sklearn digits (32x32), FFT vs im2col conv layers in lockstep: losses, parameters, accuracy"

ALGOS = ("fft", "im2col", "direct")
DEFAULT_ALGOS = ("fft", "im2col")
DTYPES = ("float64", "float32")
TARGET_ACCURACY = 0.95


def add_arguments(parser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 10 quick, 30 full)")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--lr", type=float, default=0.02,
                        help="SGD learning rate of the first epoch, then a cosine decay over the epochs (default 0.02)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batch order")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), help="dtypes to train in")
    parser.add_argument("--train-threads", type=int, default=1,
                        help="BLAS and FFT threads while training (default 1: LeNet's matrices are too small for "
                             "threads to pay off, and on a busy machine idle threads spin)")


def _settings(ctx) -> dict:
    options = ctx.options
    epochs = getattr(options, "epochs", None) or (10 if ctx.quick else 30)
    return {"epochs": epochs, "batch_size": getattr(options, "batch_size", 32), "lr": getattr(options, "lr", 0.02),
            "momentum": getattr(options, "momentum", 0.9), "seed": getattr(options, "seed", 0),
            "train_threads": getattr(options, "train_threads", 1)}


# ---------------------------------------------------------------------------------------------------- data and net
def load_digits_32(seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: 32x32 float64 images ``(N, 1, 32, 32)`` and integer labels."""
    import numpy as np
    import scipy.ndimage
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = scipy.ndimage.zoom(digits.images / 16.0, (1, 4, 4), order=1, grid_mode=True, mode="nearest")
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.2, random_state=seed,
                                                        stratify=digits.target)
    mean, std = x_train.mean(), x_train.std()
    prepare = lambda x: np.ascontiguousarray(((x - mean) / std)[:, None])  # noqa: E731
    return prepare(x_train), y_train.astype(np.int64), prepare(x_test), y_test.astype(np.int64)


def lenet5(algo: str, dtype, seed: int, backend=None):
    """LeNet-5 with ReLU and max pooling for 32x32 inputs; the weights depend on ``seed`` only, not on ``algo``."""
    import numpy as np

    from fftconv import nn

    rng = np.random.default_rng(seed)
    conv = dict(algo=algo, dtype=dtype, rng=rng, backend=backend if algo == "fft" else None)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, **conv), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, **conv), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, dtype=dtype, rng=rng), nn.ReLU(),
        nn.Linear(120, 84, dtype=dtype, rng=rng), nn.ReLU(),
        nn.Linear(84, 10, dtype=dtype, rng=rng))


def _accuracy(net, x, y) -> float:
    net.eval()
    predictions = net.forward(x).argmax(axis=1)
    net.train()
    return float((predictions == y).mean())


def _relative_difference(net, reference) -> float:
    """Max-norm difference of all parameters, relative to the reference's largest parameter."""
    import numpy as np

    scale = max(float(np.abs(p).max()) for p, _ in reference.parameters())
    return max(float(np.abs(p.astype(np.float64) - q).max()) for (p, _), (q, _) in
               zip(net.parameters(), reference.parameters())) / scale


# ---------------------------------------------------------------------------------------------------- measure
def _labels(ctx) -> list[str]:
    """Models to train: ``fft`` (one per selected backend when several are given) and the direct algorithms."""
    algos = ctx.selected("algos", ALGOS, DEFAULT_ALGOS)
    backends = getattr(ctx.options, "backends", None) or [None]
    labels = []
    for algo in algos:
        labels += [f"fft[{b}]" if b else "fft" for b in backends] if algo == "fft" else [algo]
    return labels


def _fft_backend(name: str | None, threads: int):
    """A private backend instance with ``threads`` threads (the shared default may have been made with more)."""
    import fftconv

    name = name or fftconv.get_backend().name
    if name == "pyfftw":
        return fftconv.PyfftwBackend(threads=threads)
    if name == "scipy":
        return fftconv.ScipyBackend(workers=threads)
    return fftconv.get_backend(name)


def _train_run(ctx, dtype_name: str, labels: list[str], settings: dict) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=settings["train_threads"]):
        _train_run_pinned(ctx, dtype_name, labels, settings)


def _train_run_pinned(ctx, dtype_name: str, labels: list[str], settings: dict) -> None:
    import numpy as np

    from fftconv import nn

    dtype = np.dtype(dtype_name)
    x_train, y_train, x_test, y_test = load_digits_32()
    x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    nets, optimizers, backends = {}, {}, {}
    for label in labels:
        algo, _, backend = label.partition("[")
        if algo == "fft":
            backends[label] = _fft_backend(backend.rstrip("]") or None, settings["train_threads"])
        nets[label] = lenet5(algo, dtype, settings["seed"], backends.get(label))
        optimizers[label] = nn.SGD(nets[label].parameters(), lr=settings["lr"], momentum=settings["momentum"])
    reference = next((label for label in labels if not label.startswith("fft")), labels[0])
    criterion = nn.CrossEntropyLoss()
    order_rng = np.random.default_rng(settings["seed"] + 1)
    run_id = uuid.uuid4().hex[:12]
    batch = settings["batch_size"]
    for epoch in ctx.progress(range(1, settings["epochs"] + 1), total=settings["epochs"], desc=f"{NAME} {dtype_name}"):
        # Cosine learning-rate decay: without it the test accuracy of this small problem keeps jumping by 2-3%.
        lr = settings["lr"] * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / settings["epochs"]))
        for optimizer in optimizers.values():
            optimizer.lr = lr
        order = order_rng.permutation(len(x_train))
        losses = {label: [] for label in labels}
        seconds = dict.fromkeys(labels, 0.0)
        for start in range(0, len(order), batch):
            indices = order[start:start + batch]
            x, y = x_train[indices], y_train[indices]
            for label in labels:
                began = time.perf_counter()
                optimizers[label].zero_grad()
                losses[label].append(criterion.forward(nets[label].forward(x), y))
                nets[label].backward(criterion.backward())
                optimizers[label].step()
                seconds[label] += time.perf_counter() - began
        ctx.append({
            "kind": "epoch", "run_id": run_id, "dtype": dtype_name, "epoch": epoch, "lr": lr, "reference": reference,
            "losses": losses, "seconds": seconds,
            "test_accuracy": {label: _accuracy(net, x_test, y_test) for label, net in nets.items()},
            "parameter_difference": {label: _relative_difference(net, nets[reference])
                                     for label, net in nets.items() if label != reference}})
    ctx.append({"kind": "run", "run_id": run_id, "dtype": dtype_name, "labels": labels, **settings,
                        "fft_backends": {label: repr(b) for label, b in backends.items()},
                        "train_size": len(x_train), "test_size": len(x_test)})


def measure(ctx) -> None:
    settings = _settings(ctx)
    labels = _labels(ctx)
    for dtype_name in getattr(ctx.options, "dtypes", None) or DTYPES:
        if ctx.results.has({"kind": "run", "dtype": dtype_name, "labels": labels, **settings}):
            continue
        _train_run(ctx, dtype_name, labels, settings)


# ---------------------------------------------------------------------------------------------------- plot
SETTING_NAMES = ("epochs", "batch_size", "lr", "momentum", "seed", "train_threads")


def validate(row: dict) -> str | None:
    from .harness.results import missing_fields

    if row.get("kind") == "epoch":
        return missing_fields(row, "run_id", "dtype", "epoch", "reference", "losses", "seconds", "test_accuracy",
                              "parameter_difference")
    if row.get("kind") == "run":
        return missing_fields(row, "run_id", "dtype", "labels", "train_size", *SETTING_NAMES)
    return "kind is neither 'epoch' nor 'run'"


def _complete_runs(ctx) -> list[tuple[dict, list[dict]]]:
    """``(run row, its epoch rows)`` for the latest complete run of each dtype, with the settings of the latest
    run (read from the rows: a redraw does not depend on the command line's options)."""
    rows = ctx.rows()
    runs = [row for row in rows if row.get("kind") == "run"]
    if not runs:
        raise SystemExit(f"{NAME}: no complete run in {ctx.results.path}")
    settings = {k: runs[-1][k] for k in SETTING_NAMES}
    latest = {}
    for row in runs:
        if all(row.get(k) == v for k, v in settings.items()):
            latest[row["dtype"]] = row  # the latest one wins
    result = []
    for dtype_name in DTYPES:
        if dtype_name in latest:
            run = latest[dtype_name]
            epochs = sorted((r for r in rows if r.get("run_id") == run["run_id"] and r["kind"] == "epoch"),
                            key=lambda r: r["epoch"])
            result.append((run, epochs))
    return result


def _step_losses(epochs: list[dict], label: str):
    import numpy as np

    return np.array([loss for row in epochs for loss in row["losses"][label]])


#: A relative loss gap below this counts as agreement in the "steps in agreement" column (float32 rounding of a
#: loss near 1 is 6e-8; this leaves room for the conv layers' own rounding, about 1e-6 relative).
AGREEMENT = 1e-5


def _comparisons(runs) -> list[dict]:
    """Pairs of models trained on the same batches: each algorithm vs the direct reference within a dtype, and each
    float32 model vs the same algorithm in float64 (rounding-error growth, the yardstick for the first kind)."""
    by_dtype = {run["dtype"]: (run, epochs) for run, epochs in runs}
    pairs = []
    for run, epochs in runs:
        reference = epochs[0]["reference"]
        for label in run["labels"]:
            if label != reference:
                pairs.append(dict(name=f"{label} vs {reference}, {run['dtype']}", dtype=run["dtype"], style="-",
                                  colour={"float64": "tab:blue", "float32": "tab:orange"}[run["dtype"]],
                                  losses=_step_losses(epochs, label), reference=_step_losses(epochs, reference),
                                  parameters=epochs[-1]["parameter_difference"][label]))
    if "float32" in by_dtype and "float64" in by_dtype:
        (run32, epochs32), (run64, epochs64) = by_dtype["float32"], by_dtype["float64"]
        for label, colour in zip(run32["labels"], ("tab:green", "tab:purple", "tab:brown", "tab:grey")):
            if label in run64["labels"]:
                pairs.append(dict(name=f"{label} float32 vs float64", dtype="float32", style=":", colour=colour,
                                  losses=_step_losses(epochs32, label), reference=_step_losses(epochs64, label),
                                  parameters=None))
    for pair in pairs:
        pair["gap"] = abs(pair["losses"] - pair["reference"]) / abs(pair["reference"])
    return pairs


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .harness.style import markdown_table, save_figure, write_table

    runs = _complete_runs(ctx)
    settings = {k: runs[-1][0][k] for k in SETTING_NAMES}
    colours = {"float64": "tab:blue", "float32": "tab:orange"}
    fig, (curves, gaps, accuracy) = plt.subplots(1, 3, figsize=(13.3, 4.8))
    for run, epochs in runs:
        colour = colours[run["dtype"]]
        for label, style in zip(run["labels"], ("-", "--", "-.", ":")):
            losses = _step_losses(epochs, label)
            curves.plot(np.arange(1, len(losses) + 1), losses, style, color=colour, lw=0.9 if style == "-" else 1.4,
                        alpha=0.8, label=f"{label}, {run['dtype']}")
            accuracy.plot([row["epoch"] for row in epochs], [100 * row["test_accuracy"][label] for row in epochs],
                          style, marker="o", ms=3, color=colour, label=f"{label}, {run['dtype']}")
    pairs = _comparisons(runs)
    for pair in pairs:
        steps = np.arange(1, len(pair["gap"]) + 1)
        gaps.semilogy(steps, np.maximum(pair["gap"], 1e-17), pair["style"], color=pair["colour"], lw=0.9,
                      label=pair["name"])
    curves.set(xlabel="SGD step", ylabel="mini-batch cross-entropy", yscale="log")
    curves.set_title("Training loss per step\n" + _agreement_summary(pairs), fontsize=9)
    gaps.set(xlabel="SGD step", ylabel="|loss_a - loss_b| / loss_b", ylim=(1e-17, 10))
    gaps.set_title("Relative loss gap per step\n(0 drawn at 1e-17)", fontsize=9)
    for dtype_name, colour in colours.items():
        gaps.axhline(np.finfo(dtype_name).eps, color=colour, lw=0.6, ls="--", label=f"{dtype_name} epsilon")
    accuracy.axhline(100 * TARGET_ACCURACY, color="grey", lw=0.8, ls="--", label="95% target")
    accuracy.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(80, 100.5))
    accuracy.set_title("Test accuracy\n(held-out digits)", fontsize=9)
    for ax in (curves, gaps, accuracy):
        ax.legend(fontsize=7)
    first = runs[0][0]
    fig.suptitle(ctx.describe(
        f"LeNet-5 on sklearn digits (32x32): FFT conv layers vs {first['labels'][-1]} (direct GEMM), same seed, "
        "same batches", f"{settings['epochs']} epochs of {first['train_size']} images, batch "
        f"{settings['batch_size']}, SGD lr {settings['lr']} (cosine decay) momentum {settings['momentum']}, "
        f"{settings['train_threads']} training thread(s)"), fontsize=9)
    fig.tight_layout()
    save_figure(fig, ctx.out_dir, "lenet_loss_curves")
    plt.close(fig)
    write_table(ctx.out_dir, "lenet", _table(runs, settings, markdown_table))


def _agreement_summary(pairs: list[dict]) -> str:
    """What the loss curves show, from the data: where FFT and direct coincide and where they part.

    Examples
    --------
    >>> import numpy as np
    >>> _agreement_summary([{"name": "fft vs im2col, float64", "dtype": "float64", "parameters": 1e-14,
    ...                      "gap": np.array([1e-15, 2e-13])}])
    'float64: FFT and direct curves coincide (gap <= 2e-13)'
    """
    import numpy as np

    parts = []
    for pair in pairs:
        if pair["parameters"] is None:  # the float32-vs-float64 yardsticks
            continue
        beyond = np.flatnonzero(pair["gap"] > AGREEMENT)
        if not beyond.size:
            parts.append(f"{pair['dtype']}: FFT and direct curves coincide (gap <= {pair['gap'].max():.0e})")
        else:
            parts.append(f"{pair['dtype']}: they part after step {beyond[0]} (rounding, grown by SGD)")
    return "\n".join(parts)


def _table(runs, settings: dict, markdown_table) -> str:
    import numpy as np

    models = []
    for run, epochs in runs:
        for label in run["labels"]:
            final = epochs[-1]
            models.append([run["dtype"], label, f"{100 * final['test_accuracy'][label]:.2f}%",
                           "yes" if final["test_accuracy"][label] >= TARGET_ACCURACY else "**no**",
                           f"{np.mean(final['losses'][label]):.4f}",
                           f"{sum(row['seconds'][label] for row in epochs):.1f}"])
    comparisons = []
    for pair in _comparisons(runs):
        steps_per_epoch = len(runs[0][1][0]["losses"][runs[0][0]["labels"][0]])
        beyond = np.flatnonzero(pair["gap"] > AGREEMENT)
        comparisons.append([pair["name"], f"{pair['gap'][:steps_per_epoch].max():.1e}", f"{pair['gap'].max():.1e}",
                            f"{beyond[0]} of {len(pair['gap'])}" if beyond.size else f"all {len(pair['gap'])}",
                            f"{pair['parameters']:.1e}" if pair["parameters"] is not None else "-"])
    return (
        "# LeNet-5 on sklearn digits: FFT vs direct convolution layers\n\n"
        f"{settings['epochs']} epochs, batch {settings['batch_size']}, SGD lr {settings['lr']} with cosine decay, "
        f"momentum {settings['momentum']}, seed {settings['seed']}, {settings['train_threads']} training thread(s). All "
        "models start from the same weights and see the same batches; they differ only in the conv layers' "
        "algorithm (and dtype).\n\n## Models\n\n"
        "Seconds: forward + backward + SGD step of that model only, summed over all epochs (the models alternate "
        "step by step in one process).\n\n"
        + markdown_table(["dtype", "model", "final test accuracy", ">= 95%", "mean loss, last epoch", "seconds"],
                         models)
        + "\n## Agreement\n\n"
        "Gap: |loss_a - loss_b| / loss_b at each step. Steps in agreement: steps before the gap first exceeds "
        f"{AGREEMENT:g}. Parameter difference: max |p_a - p_b| / max |p_b| over all parameters after the last "
        "epoch. The float32-vs-float64 rows show how fast rounding differences grow under SGD by themselves: an "
        "FFT-vs-direct gap of the same size is rounding, not a difference in what is computed.\n\n"
        + markdown_table(["pair", "max gap, first epoch", "max gap, all steps", "steps in agreement",
                          "parameter difference"], comparisons))
