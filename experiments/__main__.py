"""Command line: ``python -m experiments {list | all | compare | NAME} [--quick | --full] [options]``.

Thread pools are sized when numpy, OpenBLAS, FFTW or torch load, so the common arguments are parsed first, without
importing numpy, and ``--threads`` is written to ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``FFTCONV_THREADS`` before any experiment module (and so numpy) is imported; then the experiment's own options
are added and the whole command line is parsed again (so ``NAME --help`` lists them). ``all`` runs each experiment
in a fresh process, so that one experiment's libraries and thread pools cannot slow down the next.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
import time

from . import EXPERIMENTS
from .harness.context import REPO_ROOT
from .harness.workers import THREAD_VARIABLES

COMMANDS = ("list", "all", "compare")


def build_parser(experiment=None, add_help: bool = True) -> argparse.ArgumentParser:
    """The options every experiment understands, plus ``experiment.add_arguments`` when given."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments", add_help=add_help,
        description="Regenerate the figures and tables of Mathieu et al. 2014 and the accuracy/speed comparisons. "
                    "Results go to paper_figures/<name>/results.jsonl (full mode: paper_figures/<name>/full/), "
                    "figures and tables next to them.",
        epilog="Experiments, in the order 'all' runs them: " + ", ".join(EXPERIMENTS)
               + ". 'python -m experiments compare --help': time every algorithm on one shape of yours.")
    parser.add_argument("name", nargs=None if add_help else "?", help="'list', 'all', 'compare' or one experiment name")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="full", action="store_false",
                      help="shrunk problem sizes that fit the 10-minute budget of 'make figures' (default)")
    mode.add_argument("--full", dest="full", action="store_true", help="the paper's sizes (slow)")
    parser.set_defaults(full=False)
    parser.add_argument("--force", action="store_true", help="delete earlier results and measure everything again")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw figures and tables from the saved results; measure nothing")
    parser.add_argument("--algos", nargs="+", metavar="ALGO",
                        help="algorithms to compare, e.g. fft im2col direct torch (default: the experiment's set)")
    parser.add_argument("--backends", nargs="+", metavar="BACKEND",
                        help="FFT backends for algo fft, e.g. pyfftw scipy numpy (default: the experiment's set)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for BLAS, OpenMP, MKL and fftconv's FFT backends (default 2)")
    parser.add_argument("--output-root", default=None,
                        help="folder to write <name>/ into instead of paper_figures/ (for tests and scratch runs)")
    parser.add_argument("--mix", action="store_true",
                        help="use saved rows of every commit and machine: resuming keeps them all and figures show "
                             "them all (each point's ratios still within one machine); default: rows of other "
                             "commits are measured again and figures show the newest (commit, machine) only")
    parser.add_argument("--dask", metavar="ADDRESS", default=None,
                        help="send the timed points to a dask.distributed scheduler at ADDRESS (workers started "
                             "with --nthreads 1); each point's methods run on one worker. Default: this machine")
    if experiment is not None and hasattr(experiment, "add_arguments"):
        group = parser.add_argument_group(f"options of {experiment.NAME}")
        experiment.add_arguments(group)
    return parser


def pin_threads(threads: int) -> None:
    """Set every thread-count variable; must happen before numpy (or torch) is imported in this process."""
    if threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {threads}")
    if "numpy" in sys.modules:  # pragma: no cover - a programming error, not a user error
        print("warning: numpy was imported before --threads was applied; BLAS may ignore it", file=sys.stderr)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)


def exists(name: str) -> bool:
    return importlib.util.find_spec(f"experiments.{name}") is not None


def load(name: str):
    if name not in EXPERIMENTS:
        raise SystemExit(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)} (or 'list', 'all')")
    if not exists(name):
        raise SystemExit(f"experiment {name!r} is registered but experiments/{name}.py does not exist yet")
    return importlib.import_module(f"experiments.{name}")


def list_experiments() -> int:
    for name in EXPERIMENTS:
        if exists(name):
            description = getattr(importlib.import_module(f"experiments.{name}"), "DESCRIPTION", "")
            print(f"{name:15s} {description}")
        else:
            print(f"{name:15s} (not written yet)")
    return 0


def forwarded_flags(options: argparse.Namespace) -> list[str]:
    """The common options of an ``all`` run, to pass on to each experiment's own process."""
    flags = ["--full" if options.full else "--quick", "--threads", str(options.threads)]
    flags += ["--force"] * options.force + ["--plot-only"] * options.plot_only
    if options.algos:
        flags += ["--algos", *options.algos]
    if options.backends:
        flags += ["--backends", *options.backends]
    if options.output_root:
        flags += ["--output-root", options.output_root]
    flags += ["--mix"] * bool(getattr(options, "mix", False))
    if getattr(options, "dask", None):
        flags += ["--dask", options.dask]
    return flags


def run_all(options: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise SystemExit(f"'all' takes only the common options; run experiments one by one to pass {extra}")
    failed, skipped = [], []
    start_all = time.perf_counter()
    for name in EXPERIMENTS:
        if not exists(name):
            print(f"== {name}: skipped, experiments/{name}.py does not exist yet", file=sys.stderr, flush=True)
            skipped.append(name)
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "experiments", name, *forwarded_flags(options)], cwd=REPO_ROOT)
        seconds = time.perf_counter() - start
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        print(f"== {name}: {status} in {seconds:.1f} s", file=sys.stderr, flush=True)
        if done.returncode != 0:
            failed.append(name)
    print(f"== all: {time.perf_counter() - start_all:.1f} s; failed: {failed or 'none'}; "
          f"skipped (not written yet): {skipped or 'none'}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # First pass: only the common options (no --help yet), so that threads are pinned before anything imports numpy.
    options, extra = build_parser(add_help=False).parse_known_args(argv)
    if options.name is None:
        build_parser().print_help(sys.stderr if not {"-h", "--help"} & set(argv) else sys.stdout)
        return 0 if {"-h", "--help"} & set(argv) else 2
    pin_threads(options.threads)
    if options.name == "compare":
        from . import compare

        return compare.main(argv[argv.index("compare") + 1:])
    if options.name == "list":
        return list_experiments()
    if options.name == "all":
        if {"-h", "--help"} & set(argv):
            build_parser().print_help()
            return 0
        return run_all(options, extra)
    module = load(options.name)
    options = build_parser(module).parse_args(argv)  # the experiment's own options join; --help lists them
    from .harness.context import run

    run(module, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
