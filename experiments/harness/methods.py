"""Method labels: ``"torch"`` (PyTorch), ``"fft-<backend>"`` (fftconv's FFT algorithm with one FFT backend) or any
other fftconv algorithm name (``"im2col"``, ``"direct"``, ``"auto-<backend>"``); and choosing them from
``--algos`` / ``--backends``."""

from __future__ import annotations

import importlib.util
import sys
from typing import Sequence

#: fftconv algorithms that never use an FFT backend (a worker configures none for them).
NO_FFT_BACKEND = ("im2col", "direct", "winograd")


def parse_method(label: str) -> dict[str, str | None]:
    """``"torch"`` -> PyTorch; ``"fft-pyfftw"`` -> fftconv ``algo="fft"`` with that backend; any other name is an
    fftconv algorithm.

    Examples
    --------
    >>> parse_method("fft-scipy")
    {'library': 'fftconv', 'algo': 'fft', 'backend': 'scipy'}
    >>> parse_method("torch")
    {'library': 'torch', 'algo': None, 'backend': None}
    """
    if label == "torch":
        return {"library": "torch", "algo": None, "backend": None}
    algo, _, backend = label.partition("-")
    return {"library": "fftconv", "algo": algo, "backend": backend or None}


def torch_available() -> bool:
    """Whether PyTorch is installed, found without importing it (importing would start its thread pool here)."""
    return importlib.util.find_spec("torch") is not None


def default_backend_name() -> str:
    """fftconv's default FFT backend in this environment."""
    import fftconv

    return fftconv.get_backend().name


def algorithms() -> list[str]:
    """fftconv's registry of algorithms (``fftconv.ALGORITHMS``)."""
    import fftconv

    return list(fftconv.ALGORITHMS)


def select_methods(ctx, default_algos: Sequence[str] | None = None,
                   default_backends: Sequence[str] | None = None) -> list[str]:
    """Method labels for this run from ``--algos`` and ``--backends`` (``fft`` expands to one label per backend).

    The default is every algorithm of fftconv's registry and ``torch``, so that an algorithm joins the comparisons
    once it is registered. ``torch`` is dropped, with a message, when PyTorch is not installed.
    """
    import fftconv

    algos = list(getattr(ctx.options, "algos", None) or default_algos or [*algorithms(), "torch"])
    backends = list(getattr(ctx.options, "backends", None) or default_backends or [default_backend_name()])
    known_algos = set(algorithms()) | {"torch"}
    unknown = [a for a in algos if a not in known_algos]
    if unknown:
        raise ValueError(f"--algos {' '.join(unknown)}: unknown; valid: {' '.join(sorted(known_algos))}")
    missing = [b for b in backends if b not in fftconv.available_backends()]
    if missing:
        raise ValueError(f"--backends {' '.join(missing)}: not available here; available: "
                         f"{' '.join(fftconv.available_backends())}")
    labels: list[str] = []
    for algo in algos:
        if algo == "fft":
            labels += [f"fft-{backend}" for backend in backends]
        elif algo == "torch" and not torch_available():
            print(f"{ctx.name}: PyTorch is not installed; the torch baseline is skipped", file=sys.stderr)
        else:
            labels.append(algo)
    return labels
