"""``python -m experiments compare``: time every fftconv algorithm and PyTorch on one convolution of yours.

Example::

    python -m experiments compare --input 32,96,32,32 --weight 256,96,7,7
    python -m experiments compare --input 8,64,28,28 --weight 64,32,3,3 --groups 2 --padding same --dtype float64

Every algorithm in fftconv's registry (``fftconv.ALGORITHMS``; ``fft`` once per ``--backends``) and PyTorch (when
installed) times the forward pass, the input gradient and the weight gradient, each method in its own worker process
with the method of the experiments (docs/experiments.md, "How a time is measured"). ``direct`` is a float64
reference and is skipped where one call would take longer than ``--max-direct-seconds``; an algorithm that cannot
run the shape (Winograd at a stride or dilation above 1) is skipped with its reason. Nothing is saved: the table
(median, min, max and the ratio of each median to the best median of the pass) is printed.
"""

from __future__ import annotations

import argparse
import sys

from .harness import methods, points
from .harness.style import fmt_ms, markdown_table
from .harness.timing import TimingSettings

TASK = "experiments.harness.points:conv_passes"


def _ints(text: str, name: str, allow: tuple[str, ...] = ()) -> list[int] | int | str:
    if text in allow:
        return text
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers, e.g. 1 or 1,2"
                                         + (f", or one of {', '.join(allow)}" if allow else "") + f"; got {text!r}")
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--input", required=True, metavar="S,C,H,W",
                        help="input shape: batch, channels and 1 to 3 spatial sizes")
    parser.add_argument("--weight", required=True, metavar="F,C,KH,KW",
                        help="weight shape: output channels, input channels / groups and the kernel sizes")
    parser.add_argument("--stride", default="1", help="one value, or one per spatial axis (default 1)")
    parser.add_argument("--padding", default="0", help="one value, one per axis, 'same' or 'valid' (default 0)")
    parser.add_argument("--dilation", default="1", help="one value, or one per spatial axis (default 1)")
    parser.add_argument("--groups", type=int, default=1, help="channel groups (default 1)")
    parser.add_argument("--dtype", choices=points.DTYPES, default="float32", help="default float32")
    parser.add_argument("--algos", nargs="+", metavar="ALGO",
                        help="methods to time (default: every fftconv algorithm, and torch when installed)")
    parser.add_argument("--backends", nargs="+", metavar="BACKEND",
                        help="FFT backends for algo fft (default: fftconv's default backend)")
    parser.add_argument("--threads", type=int, default=2, help="threads for BLAS, FFTs and torch (default 2)")
    parser.add_argument("--max-direct-seconds", type=float, default=1.0,
                        help="skip the float64 direct reference where one call is estimated to take longer (default 1)")
    parser.add_argument("--full", action="store_true",
                        help="more repeats (5-11 calls within 2 s per pass instead of 3-7 within 0.5 s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
    return parser


def point_from(options: argparse.Namespace) -> dict:
    """The point of the command line, with errors that name the option."""
    shape = _ints(options.input, "--input")
    weight = _ints(options.weight, "--weight")
    if not isinstance(shape, list) or not 3 <= len(shape) <= 5:
        raise SystemExit(f"--input must be S,C and 1 to 3 spatial sizes (e.g. 32,96,32,32), got {options.input}")
    if not isinstance(weight, list) or len(weight) != len(shape):
        raise SystemExit(f"--weight must have as many entries as --input ({len(shape)}: F,C/groups and the kernel "
                         f"sizes), got {options.weight}")
    if weight[1] * options.groups != shape[1]:
        raise SystemExit(f"--weight's second entry ({weight[1]}) times --groups ({options.groups}) must equal the "
                         f"input channels ({shape[1]})")
    ndim = len(shape) - 2
    fields = {}
    for name in ("stride", "padding", "dilation"):
        value = _ints(getattr(options, name), f"--{name}", ("same", "valid") if name == "padding" else ())
        if isinstance(value, list) and len(value) != ndim:
            raise SystemExit(f"--{name} needs one value or {ndim} (one per spatial axis), got {getattr(options, name)}")
        fields[name] = value
    try:
        return points.conv_point(S=shape[0], f=shape[1], fp=weight[0], n=shape[2:], k=weight[2:], groups=options.groups,
                                 dtype=options.dtype, seed=options.seed, **fields)
    except ValueError as error:
        raise SystemExit(f"compare: {error}") from error


def method_labels(options: argparse.Namespace) -> list[str]:
    import fftconv

    registry = methods.algorithms()
    algos = options.algos or [*registry, "torch"]
    unknown = [a for a in algos if a not in [*registry, "torch"]]
    if unknown:
        raise SystemExit(f"--algos {' '.join(unknown)}: unknown; valid: {' '.join([*registry, 'torch'])}")
    backends = options.backends or [methods.default_backend_name()]
    missing = [b for b in backends if b not in fftconv.available_backends()]
    if missing:
        raise SystemExit(f"--backends {' '.join(missing)}: not available; available: "
                         f"{' '.join(fftconv.available_backends())}")
    labels = []
    for algo in algos:
        if algo == "fft":
            labels += [f"fft-{backend}" for backend in backends]
        elif algo == "torch" and not methods.torch_available():
            print("compare: PyTorch is not installed; no torch column", file=sys.stderr)
        else:
            labels.append(algo)
    return labels


def table(rows: dict[tuple[str, str], dict], labels: list[str]) -> str:
    """Markdown table: per pass and method, median, min and max in ms and the median over the pass's best median."""
    body = []
    for pass_ in (*points.PASSES, "step"):
        medians = {m: rows[(m, pass_)]["median_s"] for m in labels if "median_s" in rows.get((m, pass_), {})}
        best = min(medians.values()) if medians else None
        for method in labels:
            row = rows.get((method, pass_), {})
            name = points.PAPER_NAMES.get(pass_, "all three passes")
            if "median_s" in row:
                body.append([f"{pass_} ({name})", method, fmt_ms(row["median_s"]), fmt_ms(row.get("min_s")),
                             fmt_ms(row.get("max_s")), f"{row['median_s'] / best:.2f}x" + (" best" if
                                                                                          row["median_s"] == best else "")])
            else:
                reason = row.get("skipped") or row.get("error", "-")
                body.append([f"{pass_} ({name})", method, "-", "-", "-", reason.splitlines()[0]])
    return markdown_table(["pass", "method", "median ms", "min ms", "max ms", "median / best"], body)


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    point = point_from(options)
    labels = method_labels(options)
    settings = TimingSettings.for_mode(not options.full).as_dict()
    rows: dict[tuple[str, str], dict] = {}
    timed = []
    for method in labels:
        reason = points.skip_reason(method, point, direct_limit=options.max_direct_seconds)
        if reason:
            for pass_ in (*points.PASSES, "step"):
                rows[(method, pass_)] = {"skipped": f"skipped: {reason.split(';')[0]}"}
        else:
            timed.append(method)
    from tqdm.auto import tqdm

    with tqdm(total=len(timed) * len(points.PASSES), desc="compare", file=sys.stderr, leave=False) as bar:
        for method in timed:
            bar.set_postfix_str(method)
            case = {**point, "todo": [{"pass": p} for p in points.PASSES]}
            for _, row in workers_measure(method, settings, case, options.threads):
                rows[(method, row["pass"])] = row
                bar.update()
            parts = [rows.get((method, p), {}).get("median_s") for p in points.PASSES]
            if all(part is not None for part in parts):
                rows[(method, "step")] = {"median_s": sum(parts)}  # min and max do not add up
    print(f"Convolution {points.label(point)}; input {points.shapes(point)[0]}, weight {points.shapes(point)[1]}; "
          f"{options.threads} threads; times of single calls after a warm-up (median of "
          f"{settings['min_repeats']}-{settings['max_repeats']} calls); step = the sum of the three passes\n")
    print(table(rows, labels))
    return 0


def workers_measure(method: str, settings: dict, case: dict, threads: int):
    """``(index, row)`` for each pass of ``case``, timed in a fresh worker process for ``method``."""
    from .harness.workers import measure_cases

    return measure_cases(method, TASK, settings, [case], threads,
                         log=lambda message: print(f"compare: {message}", file=sys.stderr))
