"""Accuracy: float32 error of each pass and each algorithm against a float64 oracle.

Four studies, all with data drawn uniformly from [-1, 1] (Lavin & Gray's choice; the paper does not say what it
used) in float32. The float64 oracle sees exactly the same numbers (the float32 arrays cast up), so the errors are
purely arithmetic:

- ``paper_layers``: the paper's five (k, n, f, f') layers, all three passes, at a small batch (quick) or the
  paper's batch of 128 (full). The paper reports differences "of the order of 1e-5" for updateOutput and
  updateGradInput and "1e-4" for accGradParameters, against Torch (metric not stated).
- ``vgg``: Lavin & Gray's accuracy table (CVPR 2016, Table 4: maximum element error of the forward pass on the VGG
  layers 1.2 ... 5.2, 3x3 kernels, padding 1) in their layout: float32 direct, then Winograd ``F(2x2,3x3)``,
  ``F(4x4,3x3)`` and ``F(6x6,3x3)``, with the FFT columns their table lacks, and their published values beside
  ours (``experiments/data/lavin_gray2016.json``). Quick mode uses batch 1 and caps the spatial size
  (``--vgg-size``); full mode uses the real VGG sizes.
- ``kernel_size``: error against k at n=32 (the paper's Fig. 3 middle row, with fewer maps in quick mode).
- ``input_size``: error against n at k=5.

Methods: every algorithm of fftconv's registry (``fftconv.ALGORITHMS``) and PyTorch: ``fft[<backend>]`` for each
FFT backend, ``im2col`` (float32 GEMM), ``winograd[m]`` for each output tile ``m`` in :data:`WINOGRAD_TILES`
(``F(m, k)``: Winograd's ``tile`` keyword, run through the registry because the public functions take the tile from
the cost model), ``tiled`` (the tiled FFT with the cost model's tile, as ``algo="tiled"`` runs it), ``direct``
(fftconv's reference, which accumulates in float64 and rounds once: its error is the float32 rounding of the
output, a floor rather than a float32 direct convolution) and ``torch`` (PyTorch's float32 CPU convolution, when
installed). A method that cannot run a case (a Winograd tile whose transform would exceed its size limit) gets a
row saying why.

The oracle is PyTorch in float64 when torch is installed, else fftconv's ``direct`` algorithm in float64; each row
records which. PyTorch runs in a separate worker process, so that its thread pool never shares this process with
OpenBLAS and FFTW (accuracy is not timed, but that keeps the run fast on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .harness import points

NAME = "accuracy"
DESCRIPTION = ("Float32 error of every pass and algorithm (fft per backend, im2col, Winograd per tile, tiled, direct, "
               "torch) vs a float64 oracle: paper layers, Lavin & Gray's VGG table, error vs kernel and input size")

#: The paper's layer table: (k, n, f, f').
PAPER_LAYERS = ((11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384))
#: The paper's stated error levels (section 3): ~1e-5 for (1) and (2), ~1e-4 for (3).
PAPER_ERROR_LEVEL = {"forward": 1e-5, "input": 1e-5, "weight": 1e-4}
#: VGG-16/19 second convolution of each block: (name, channels in = out, spatial size), 3x3 kernels, padding 1.
VGG_LAYERS = (("1.2", 64, 224), ("2.2", 128, 112), ("3.2", 256, 56), ("4.2", 512, 28), ("5.2", 512, 14))
#: Winograd output tiles ``m`` measured (``F(m, k)``): Lavin & Gray's F(2x2,3x3) and F(4x4,3x3), and F(6x6,3x3).
WINOGRAD_TILES = (2, 4, 6)
KERNEL_SIZES = (3, 5, 7, 9, 11, 13, 17, 21, 25, 29)
INPUT_SIZES = (8, 16, 32, 52, 64)
FULL_INPUT_SIZES = INPUT_SIZES + (128,)
#: Studies whose default methods are the full set; the sweeps default to the default FFT backend, im2col and torch
#: (the backends differ little, and ``direct``'s error is only the output rounding, shown in the layer tables).
FULL_METHOD_STUDIES = ("paper_layers", "vgg")
STUDIES = ("paper_layers", "vgg", "kernel_size", "input_size")
FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24


@dataclass(frozen=True)
class Case:
    """One geometry of one study; its data are a deterministic function of ``study`` and ``label``."""

    study: str
    label: str
    batch: int
    in_channels: int
    out_channels: int
    n: int
    k: int
    padding: int = 0
    passes: tuple = field(default_factory=lambda: tuple(points.PASSES))
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def fields(self) -> dict:
        return {"study": self.study, "case": self.label, "batch": self.batch, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "n": self.n, "k": self.k, "padding": self.padding, **self.extra}


def add_arguments(parser) -> None:
    parser.add_argument("--studies", nargs="+", choices=STUDIES, default=list(STUDIES),
                        help="which studies to run (default: all)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch of the paper-layer study (default: 2 quick, 128 full, the paper's)")
    parser.add_argument("--vgg-size", type=int, default=16,
                        help="quick mode: cap on the spatial size of the VGG layers (full mode uses 224 ... 14)")
    parser.add_argument("--fft-size", default="fast", choices=("fast", "pow2", "minimal"),
                        help="fftconv's FFT size policy (default: fast, fftconv's default)")
    parser.add_argument("--planner-effort", default="FFTW_ESTIMATE",
                        choices=("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT"),
                        help="pyFFTW planner effort; accuracy is not timed, so the cheap planner is the default")


def cases(quick: bool, options=None) -> list[Case]:
    """Every geometry, in the order measured."""
    studies = getattr(options, "studies", None) or STUDIES
    batch = getattr(options, "batch", None) or (2 if quick else 128)
    vgg_cap = getattr(options, "vgg_size", 16) if quick else None
    result = []
    if "paper_layers" in studies:
        result += [Case("paper_layers", f"({k},{n},{f},{fo})", batch, f, fo, n, k) for k, n, f, fo in PAPER_LAYERS]
    if "vgg" in studies:
        for name, channels, size in VGG_LAYERS:
            n = min(size, vgg_cap) if vgg_cap else size
            result.append(Case("vgg", name, 1, channels, channels, n, 3, padding=1, passes=("forward",),
                               extra={"vgg_size": size}))
    # Sweeps: the paper's Fig. 3 settings (S=128, f=96, f'=256) in full mode; fewer maps and a small batch in quick.
    sweep_batch, f, fo = (2, 64, 64) if quick else (128, 96, 256)
    if "kernel_size" in studies:
        result += [Case("kernel_size", f"k={k}", sweep_batch, f, fo, 32, k) for k in KERNEL_SIZES]
    if "input_size" in studies:
        sizes = INPUT_SIZES if quick else FULL_INPUT_SIZES
        result += [Case("input_size", f"n={n}", sweep_batch, f, fo, n, 5) for n in sizes]
    return result


# ------------------------------------------------------------------------------------------------- data, errors
def make_data(case: Case):
    """Float32 uniform [-1, 1] input, weight and output gradient, seeded by the case (reproducible on resume)."""
    import numpy as np

    from fftconv import ConvGeometry

    geometry = ConvGeometry.from_shapes((case.batch, case.in_channels, case.n, case.n),
                                        (case.out_channels, case.in_channels, case.k, case.k), padding=case.padding)
    rng = np.random.default_rng(zlib.crc32(f"{case.study}/{case.label}".encode()))

    def uniform(shape):
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32)

    return geometry, uniform(geometry.full_input_shape), uniform(geometry.full_weight_shape), uniform(
        geometry.full_output_shape)


def errors(result, reference) -> dict:
    """Max abs error, max abs error over max |reference| (relative max-norm) and relative L2 error."""
    import numpy as np

    difference = result.astype(np.float64) - reference
    max_abs, ref_max = float(np.max(np.abs(difference))), float(np.max(np.abs(reference)))
    return {"max_abs_error": max_abs, "ref_max_abs": ref_max, "max_rel_error": max_abs / ref_max,
            "rel_l2_error": float(np.linalg.norm(difference) / np.linalg.norm(reference))}


def run_fftconv(pass_name: str, algo: str, backend, x, w, gy, padding: int, fft_size: str):
    import fftconv

    options = {"padding": padding, "algo": algo}
    if algo == "fft":
        options.update(backend=backend, fft_size=fft_size)
    if pass_name == "forward":
        return fftconv.conv2d(x, w, **options)
    if pass_name == "input":
        return fftconv.conv2d_input(x.shape, w, gy, **options)
    return fftconv.conv2d_weight(x, w.shape, gy, **options)


# ------------------------------------------------------------------------------------------------- torch worker
def _torch_passes(torch, pass_name, x, w, gy, padding):
    if pass_name == "forward":
        return torch.nn.functional.conv2d(x, w, padding=padding)
    if pass_name == "input":
        return torch.nn.grad.conv2d_input(x.shape, w, gy, padding=padding)
    return torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=padding)


def torch_worker() -> None:
    """Loop of the worker process: read a folder name per line, write PyTorch float64 and float32 results there."""
    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(json.dumps({"torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        folder = Path(line.strip())
        try:
            request = json.loads((folder / "request.json").read_text())
            arrays = np.load(folder / "inputs.npz")
            outputs = {}
            with torch.no_grad():
                for dtype_name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
                    x, w, gy = (torch.from_numpy(arrays[name]).to(dtype) for name in ("x", "w", "gy"))
                    for pass_name in request["passes"]:
                        result = _torch_passes(torch, pass_name, x, w, gy, request["padding"])
                        outputs[f"{pass_name}_{dtype_name}"] = result.numpy()
            np.save(folder / "outputs.npy", outputs, allow_pickle=True)
            print(json.dumps({"ok": True}), flush=True)
        except Exception as error:  # report, keep serving: the parent decides what to do
            print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}), flush=True)


class TorchWorker:
    """A PyTorch process that computes the float64 oracle and the float32 torch results, one case at a time."""

    def __init__(self, threads: int):
        from .harness.context import REPO_ROOT

        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from experiments.accuracy import torch_worker; torch_worker()"],
            cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = self._reply()["torch"]
        self.folder = tempfile.TemporaryDirectory(prefix="fftconv-accuracy-")

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch worker exited (code {self.process.poll()}); see its messages above")
        return json.loads(line)

    def compute(self, x, w, gy, padding: int, passes) -> dict:
        import numpy as np

        folder = Path(self.folder.name)
        np.savez(folder / "inputs.npz", x=x, w=w, gy=gy)
        (folder / "request.json").write_text(json.dumps({"padding": padding, "passes": list(passes)}))
        self.process.stdin.write(f"{folder}\n")
        self.process.stdin.flush()
        reply = self._reply()
        if not reply["ok"]:
            raise RuntimeError(f"torch worker failed: {reply['error']}")
        outputs = np.load(folder / "outputs.npy", allow_pickle=True).item()
        for name in ("inputs.npz", "outputs.npy"):
            (folder / name).unlink()
        return outputs

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        self.folder.cleanup()


# ------------------------------------------------------------------------------------------------- measure
def torch_installed() -> bool:
    """Whether PyTorch can be imported (checked without importing it into this process)."""
    return importlib.util.find_spec("torch") is not None


@dataclass(frozen=True)
class Method:
    """One column: ``label``, the registry's ``algo`` (or ``"torch"``), the FFT ``backend`` and the algorithm's own
    keyword ``options`` (Winograd's ``tile``; empty: the public function with the cost model's choice)."""

    label: str
    algo: str
    backend: str | None = None
    options: dict = field(default_factory=dict, compare=False, hash=False)


def methods(ctx, torch_available: bool, study: str) -> list[Method]:
    """Every method selected by ``--algos`` (names of fftconv's registry, or ``torch``) and ``--backends``.

    Without those options the layer studies run every method and the sweeps one FFT backend (the default), the
    registry's other algorithms and torch; ``direct``'s error is only the output rounding, shown in the layer tables
    (see ``FULL_METHOD_STUDIES``).
    """
    import fftconv

    every = study in FULL_METHOD_STUDIES
    registry = list(fftconv.ALGORITHMS)
    algos = ctx.selected("algos", [*registry, "torch"],
                         default=None if every else [a for a in registry if a != "direct"] + ["torch"])
    if "torch" in algos and not torch_available:
        algos.remove("torch")
    result = []
    for algo in algos:
        if algo == "fft":
            backends = ctx.selected("backends", fftconv.available_backends(),
                                    default=None if every else [fftconv.get_backend().name])
            result += [Method(f"fft[{b}]", "fft", b) for b in backends]
        elif algo == "winograd":
            result += [Method(f"winograd[{m}]", "winograd", options={"tile": m}) for m in WINOGRAD_TILES]
        else:
            result.append(Method(algo, algo))
    return result


def unsupported(case: Case, method: Method) -> str | None:
    """Why ``method`` cannot run ``case`` (``None``: it can)."""
    from .harness import fftconv_api

    point = points.conv_point(S=case.batch, f=case.in_channels, fp=case.out_channels, n=case.n, k=case.k,
                              padding=case.padding)
    return fftconv_api.unsupported_reason(method.algo, point, **method.options)


def compute(method: Method, pass_name: str, x, w, gy, padding: int, fft_size: str):
    """The float32 result of one pass by ``method`` (not ``torch``, which its worker computes)."""
    from .harness import fftconv_api

    if method.options:
        return fftconv_api.run_pass(method.algo, pass_name, x, w, gy, padding, **method.options)
    return run_fftconv(pass_name, method.algo, method.backend, x, w, gy, padding, fft_size)


def measure(ctx) -> None:
    import fftconv
    from fftconv import fft_shape_for

    options = ctx.options
    fft_size = getattr(options, "fft_size", "fast")
    effort = getattr(options, "planner_effort", "FFTW_ESTIMATE")
    threads = getattr(options, "threads", None) or 2
    if "pyfftw" in fftconv.available_backends():
        fftconv.configure_pyfftw(threads=threads, planner_effort=effort)
    fftconv.configure_scipy(workers=threads)
    ctx.record_settings(fft_backends={name: repr(fftconv.get_backend(name)) for name in fftconv.available_backends()},
                        fft_size=fft_size, planner_effort=effort)
    torch_available = torch_installed()
    if not torch_available:
        print(f"{NAME}: torch is not installed; no torch column, and the oracle is fftconv's direct algorithm in "
              "float64", file=sys.stderr)
    oracle = "torch float64" if torch_available else "fftconv direct float64"
    worker = None
    try:
        for case in ctx.progress(cases(ctx.quick, options), desc=NAME):
            chosen = methods(ctx, torch_available, case.study)
            todo = [(p, m) for p in case.passes for m in chosen
                    if not ctx.results.has({"study": case.study, "case": case.label, "pass": p, "method": m.label})]
            if not todo:
                continue
            geometry, x, w, gy = make_data(case)
            torch_outputs = {}
            if torch_available:
                worker = worker or TorchWorker(threads)
                torch_outputs = worker.compute(x, w, gy, case.padding, case.passes)
            for pass_name in case.passes:
                pending = [m for p, m in todo if p == pass_name]
                if not pending:
                    continue
                if torch_available:
                    reference = torch_outputs[f"{pass_name}_float64"]
                else:
                    reference = run_fftconv(pass_name, "direct", None, x.astype("float64"), w.astype("float64"),
                                            gy.astype("float64"), case.padding, fft_size)
                for method in pending:
                    fields = {**case.fields, "pass": pass_name, "method": method.label, "algo": method.algo,
                              "backend": method.backend, "options": method.options, "oracle": oracle}
                    reason = unsupported(case, method)
                    if reason is not None:
                        ctx.append({**fields, "skipped": reason})
                        continue
                    start = time.perf_counter()
                    try:
                        if method.algo == "torch":
                            result = torch_outputs[f"{pass_name}_float32"]
                        else:
                            result = compute(method, pass_name, x, w, gy, case.padding, fft_size)
                    except MemoryError as error:  # e.g. im2col's unfolded input at full size: say so, go on
                        ctx.append({**fields, "skipped": str(error)})
                        continue
                    seconds = time.perf_counter() - start
                    fft = method.algo == "fft"
                    row = {**fields, "dtype": "float32", "data": "uniform[-1,1]",
                           "fft_size": list(fft_shape_for(geometry, fft_size)) if fft else None,
                           "fft_size_policy": fft_size if fft else None,
                           "planner_effort": effort if method.backend == "pyfftw" else None,
                           "torch_version": worker.version if worker and method.algo == "torch" else None,
                           # not a benchmark: a budget aid only
                           "seconds": None if method.algo == "torch" else round(seconds, 3),
                           **errors(result, reference)}
                    ctx.append(row)
    finally:
        if worker is not None:
            worker.close()


# ------------------------------------------------------------------------------------------------- plot
METHOD_STYLE = {"fft[pyfftw]": ("tab:red", "s"), "fft[scipy]": ("tab:orange", "D"), "fft[numpy]": ("gold", "v"),
                "tiled": ("tab:cyan", "*"), "im2col": ("tab:blue", "o"), "winograd[2]": ("tab:olive", "P"),
                "winograd[4]": ("tab:brown", "P"), "winograd[6]": ("tab:pink", "P"), "torch": ("tab:purple", "^"),
                "direct": ("tab:gray", "x")}


def _method_order(rows) -> list[str]:
    present = {row["method"] for row in rows}
    return [m for m in METHOD_STYLE if m in present] + sorted(present - set(METHOD_STYLE))


def _style(method: str):
    return METHOD_STYLE.get(method, ("black", "."))


def _lookup(rows) -> dict:
    return {(row["study"], row["case"], row["pass"], row["method"]): row for row in rows}


def _scaling(rows, study: str) -> str:
    rows = [row for row in rows if row["study"] == study]
    if not rows:
        return ""
    batches = sorted({row["batch"] for row in rows})
    text = f"batch {'/'.join(map(str, batches))}"
    if study in ("kernel_size", "input_size"):
        text += f", f={rows[0]['in_channels']}, f'={rows[0]['out_channels']}"
    return text


def _oracle(rows) -> str:
    return ", ".join(sorted({row["oracle"] for row in rows}))


def _fmt(value: float) -> str:
    return f"{value:.2e}"


def validate(row: dict) -> str | None:
    from .harness.results import missing_fields

    problem = missing_fields(row, "study", "case", "batch", "in_channels", "out_channels", "n", "k", "pass",
                             "method", "oracle")
    if problem or "skipped" in row:
        return problem
    return missing_fields(row, "max_abs_error", "max_rel_error", "rel_l2_error", "ref_max_abs")


def trend(values: Sequence[float]) -> float:
    """How an error changes along a sweep: the median of the last third over the median of the first third.

    Examples
    --------
    >>> trend([1, 1, 1, 4, 4, 4])
    4.0
    """
    import statistics

    third = max(1, len(values) // 3)
    return statistics.median(values[-third:]) / statistics.median(values[:third])


def describe_trend(factor: float) -> str:
    """``"grows"`` above 2x, ``"falls"`` below 0.5x, else ``"flat"`` (within the spread of random data)."""
    return "grows" if factor > 2 else ("falls" if factor < 0.5 else "flat")


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    every_row = ctx.rows()
    if not every_row:
        raise SystemExit(f"{NAME}: no results in {ctx.results.path}")
    rows = [row for row in every_row if "skipped" not in row]
    skipped = [row for row in every_row if "skipped" in row]
    studies = {row["study"] for row in rows}
    sections = [f"# Accuracy: float32 error against a float64 oracle ({_oracle(rows)})\n",
                ctx.provenance_note(),
                f"Machine: {ctx.machine}; {ctx.mode} mode. Data uniform in [-1, 1] (float32; the oracle gets the same "
                "numbers in float64). `direct` is fftconv's reference, which accumulates in float64 and rounds once, "
                "so its error is only the rounding of the output to float32; `im2col` is a float32 GEMM (OpenBLAS); "
                "`torch` is PyTorch's float32 CPU convolution; `fft[b]` is fftconv's FFT algorithm with FFT backend "
                "b, computed in complex64; `tiled` is the FFT algorithm on tiles (the cost model's tile); "
                "`winograd[m]` is Winograd's minimal filtering F(m, k) with output tiles of m (F(m x m, k x k)).\n"]
    if "paper_layers" in studies:
        sections.append(_plot_paper_layers(ctx, [r for r in rows if r["study"] == "paper_layers"]))
    if "vgg" in studies:
        sections.append(_table_vgg(ctx, [r for r in rows if r["study"] == "vgg"]))
    for study, variable, label in (("kernel_size", "k", "kernel size k (n = 32)"),
                                   ("input_size", "n", "input size n (k = 5)")):
        if study in studies:
            sections.append(_plot_sweep(ctx, [r for r in rows if r["study"] == study], study, variable, label))
    if skipped:
        sections.append("## Not measured\n\n" + _not_measured(skipped))
    from .harness.style import write_table

    write_table(ctx.out_dir, "accuracy", "\n".join(sections))


def _not_measured(skipped: list[dict]) -> str:
    """One line per (study, method, reason), the reason cut at its first ';' and the cases and passes listed.

    Examples
    --------
    >>> print(_not_measured([{"study": "kernel_size", "case": f"k={k}", "pass": p, "method": "winograd[6]",
    ...                       "skipped": f"too large; k={k}"} for k in (13, 17) for p in ("forward", "input")]))
    - kernel_size, winograd[6] (k=13, k=17; updateOutput, updateGradInput): too large
    <BLANKLINE>
    """
    groups: dict[tuple, tuple[dict, dict]] = {}
    for row in skipped:
        cases, passes = groups.setdefault((row["study"], row["method"], row["skipped"].split(";")[0]), ({}, {}))
        cases[row["case"]] = passes[row["pass"]] = None
    return "\n".join(f"- {study}, {method} ({', '.join(cases)}; "
                     f"{', '.join(points.PAPER_NAMES.get(p, p) for p in passes)}): {reason}"
                     for (study, method, reason), (cases, passes) in groups.items()) + "\n"


def _plot_paper_layers(ctx, rows) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    from .harness.style import markdown_table, save_figure

    known = [f"({k},{n},{f},{fo})" for k, n, f, fo in PAPER_LAYERS]
    layers = sorted(dict.fromkeys(r["case"] for r in rows),
                    key=lambda case: known.index(case) if case in known else len(known))
    methods_ = _method_order(rows)
    table = _lookup(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13.3, 4.6), sharey=True)
    offsets = np.linspace(-0.3, 0.3, len(methods_))
    for ax, pass_name in zip(axes, points.PASSES):
        for offset, method in zip(offsets, methods_):
            color, marker = _style(method)
            marks = [(i + offset, table[("paper_layers", layer, pass_name, method)]["max_abs_error"])
                     for i, layer in enumerate(layers) if ("paper_layers", layer, pass_name, method) in table]
            if marks:
                ax.scatter(*zip(*marks), color=color, marker=marker, label=method, zorder=3)
        ax.axhline(PAPER_ERROR_LEVEL[pass_name], color="black", linestyle=":", linewidth=1,
                   label="paper's stated level: ~1e-5, ~1e-4 for accGradParameters")
        ax.set_xticks(range(len(layers)), layers, fontsize=8)
        ax.set(yscale="log", title=points.PAPER_NAMES[pass_name], xlabel="layer (k, n, f, f')")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("max abs error (float32 vs float64)")
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"Float32 max abs error of each pass on the paper's layers, per algorithm (oracle: {_oracle(rows)})\n"
                 f"{ctx.machine}; {ctx.mode} mode ({_scaling(rows, 'paper_layers')}; paper: 128); uniform [-1, 1] "
                 f"data; {ctx.short_provenance()}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, ctx.out_dir, "accuracy_paper_layers")
    plt.close(fig)

    body = []
    for layer in layers:
        for pass_name in points.PASSES:
            cells = []
            for method in methods_:
                row = table.get(("paper_layers", layer, pass_name, method))
                cells.append(f"{_fmt(row['max_abs_error'])} ({_fmt(row['max_rel_error'])})" if row else "-")
            body.append([layer, points.PAPER_NAMES[pass_name], *cells])
    return (f"## The paper's five layers ({_scaling(rows, 'paper_layers')}; the paper used 128)\n\n"
            "Max abs error (in brackets: max abs error / max |oracle|). The paper reports differences from Torch "
            "of about 1e-5 (updateOutput, updateGradInput) and 1e-4 (accGradParameters), metric and data "
            "unstated. Figure: `accuracy_paper_layers.png`.\n\n"
            + markdown_table(["layer (k,n,f,f')", "pass", *methods_], body))


#: Lavin & Gray's columns (their key in ``experiments/data/lavin_gray2016.json``) and the method measured here for
#: each: their fp32 direct convolution is cuDNN's, ours PyTorch's float32 CPU convolution (im2col's GEMM without it).
LAVIN_GRAY_COLUMNS = (("direct", "fp32 direct", ("torch", "im2col")), ("winograd_2", "fp32 F(2x2,3x3)", ("winograd[2]",)),
                      ("winograd_4", "fp32 F(4x4,3x3)", ("winograd[4]",)))


def _table_vgg(ctx, rows) -> str:
    """Lavin & Gray's Table 4 in their layout, their published value beside ours in each of their columns, then the
    columns their table lacks (F(6x6,3x3), the FFT and fftconv's other algorithms)."""
    from .harness.paper import lavin_gray, lavin_gray_citation
    from .harness.style import markdown_table

    published = lavin_gray()["accuracy"]
    table = _lookup(rows)
    present = _method_order(rows)
    pairs = [(key, title, next((m for m in candidates if m in present), None))
             for key, title, candidates in LAVIN_GRAY_COLUMNS]
    paired = {method for _, _, method in pairs}
    extra = [m for m in present if m not in paired]
    header = ["layer", "channels, size"]
    for _, title, method in pairs:
        header += [f"{title}: L&G", f"{title}: ours ({method or '-'})"]
    header += [_vgg_title(m) for m in extra]
    body = []
    for name, _, size in VGG_LAYERS:
        cells = {m: table.get(("vgg", name, "forward", m)) for m in present}
        first = next((c for c in cells.values() if c), None)
        if first is None:
            continue
        n = first["n"]
        line = [name, f"{first['in_channels']}->{first['out_channels']}, {n}x{n}" + (f" (VGG: {size})" if n != size
                                                                                    else "")]
        reported = published["rows"].get(name, {})
        for key, _, method in pairs:
            line += [_fmt(reported[key]) if key in reported else "-", _cell(cells.get(method))]
        line += [_cell(cells[m]) for m in extra]
        body.append(line)
    quick_note = (f"Quick mode: batch 1 and spatial size capped at {max(r['n'] for r in rows)} (VGG's own size in "
                  "brackets), so our maxima are over fewer outputs than theirs; run `--full` for the real sizes. "
                  if ctx.quick else "Full VGG spatial sizes, batch 1. ")
    return ("## Lavin & Gray's accuracy table: VGG 3x3 layers, forward pass, max element error\n\n"
            f"The layout of Table 4 of {lavin_gray_citation()}: maximum absolute element error of the float32 "
            "forward pass against a float64 direct convolution, data and filters uniform in [-1, 1]. In each of "
            "their columns their published value (L&G; GPU, cuDNN's fp32 direct) stands beside ours; "
            f"{published['note']} Their table has no F(6x6,3x3) and no FFT column: those, and fftconv's other "
            "algorithms, follow (`winograd[m]` is F(m x m, 3x3), `direct` is fftconv's float64-accumulated "
            f"reference, whose error is only the output's rounding). {quick_note}Padding 1.\n\n"
            + markdown_table(header, body))


def _vgg_title(method: str) -> str:
    if method.startswith("winograd["):
        m = method[len("winograd["):-1]
        return f"fp32 F({m}x{m},3x3) ({method})"
    return method


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return _fmt(row["max_abs_error"]) if "max_abs_error" in row else "not run"


def _plot_sweep(ctx, rows, study: str, variable: str, label: str) -> str:
    import matplotlib.pyplot as plt

    from .harness.style import markdown_table, save_figure

    methods_ = _method_order(rows)
    values = sorted({r[variable] for r in rows})
    table = {(r[variable], r["pass"], r["method"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(13.3, 4.8), sharey=True)
    trends = []
    for ax, pass_name in zip(axes, points.PASSES):
        notes = []
        for method in methods_:
            color, marker = _style(method)
            marks = [(v, table[(v, pass_name, method)]["max_rel_error"]) for v in values
                     if (v, pass_name, method) in table]
            if marks:
                ax.plot(*zip(*marks), marker=marker, color=color, label=method)
            if len(marks) >= 3:
                factor = trend([error for _, error in marks])
                notes.append(f"{method} {describe_trend(factor)} ({factor:.1f}x)")
                trends.append((points.PAPER_NAMES[pass_name], method, factor))
        ax.axhline(FLOAT32_UNIT_ROUNDOFF, color="black", linestyle=":", linewidth=1,
                   label="float32 unit roundoff 2^-24")
        ax.set(yscale="log", xlabel=label)
        # one trend per line: seven methods' notes on one line overlap the neighbouring panels
        ax.set_title(points.PAPER_NAMES[pass_name] + "\n" + "\n".join(notes), fontsize=7)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("max abs error / max |oracle|")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"Float32 error against {label}, per algorithm (oracle: {_oracle(rows)}); in each title: the "
                 f"median error of the last third of the sweep over the first third\n"
                 f"{ctx.machine}; {ctx.mode} mode ({_scaling(rows, study)}); uniform [-1, 1] data; "
                 f"{ctx.short_provenance()}", fontsize=9)
    fig.tight_layout()
    stem = f"accuracy_vs_{study}"
    save_figure(fig, ctx.out_dir, stem)
    plt.close(fig)
    body = [[v, points.PAPER_NAMES[p], *(_fmt(table[(v, p, m)]["max_rel_error"]) if (v, p, m) in table else "-"
                                  for m in methods_)] for v in values for p in points.PASSES]
    trend_text = "; ".join(f"{name} {method} {describe_trend(f)} ({f:.1f}x)" for name, method, f in trends)
    return (f"## Error against {label} ({_scaling(rows, study)})\n\n"
            f"Max abs error / max |oracle|. Figure: `{stem}.png`. Trend along the sweep (median error of the last "
            f"third over the first third; above 2x 'grows', below 0.5x 'falls', else 'flat'): {trend_text}.\n\n"
            + markdown_table([variable, "pass", *methods_], body))
