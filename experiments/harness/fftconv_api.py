"""Every fftconv name the experiments use beyond the public API.

The experiments call what ``fftconv`` exports (``conv{1,2,3}d*``, ``ConvGeometry``, the backends, ``ALGORITHMS``),
``fftconv.nn``, ``fftconv.costs`` and ``fftconv.passes`` directly. What they need from the cost model, the
calibration, ``algo="auto"``'s decisions, an algorithm's own options (a Winograd tile) and the stage functions of a
spectral pass goes through the functions below, so that a change of fftconv's internal layout is one edit here.
Imports are lazy: numpy must load only after the command line has pinned the thread counts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

#: The algorithms ``algo="auto"`` chooses between.
AUTO_CANDIDATES = ("fft", "im2col", "direct")


def geometry(point: dict):
    """The :class:`fftconv.ConvGeometry` of a point (see :mod:`experiments.harness.points`)."""
    import fftconv

    from .points import shapes

    input_shape, weight_shape = shapes(point)
    return fftconv.ConvGeometry.from_shapes(input_shape, weight_shape, stride=point.get("stride", 1),
                                            padding=point.get("padding", 0), dilation=point.get("dilation", 1),
                                            groups=point.get("groups", 1))


def unsupported_reason(method_algo: str, point: dict, **options) -> str | None:
    """Why fftconv's registered algorithm ``method_algo`` cannot run ``point`` (with its own keyword ``options``,
    such as Winograd's ``tile``), or ``None``: it can, or it is not a registered algorithm (``torch``, ``auto``).

    Without options this is the registry entry's ``unsupported_reason``; with them, that of the algorithm's module,
    which takes them."""
    import fftconv

    entry = fftconv.ALGORITHMS.get(method_algo)
    check = getattr(entry, "unsupported_reason", None)
    if check is None:
        return None
    if options:
        from fftconv import tiled, winograd

        check = {"winograd": winograd.unsupported_reason, "tiled": tiled.unsupported_reason}[method_algo]
    return check(geometry(point), **options)


def configured_options(algo: str, point: dict, pass_name: str, backend=None) -> dict[str, Any]:
    """The keyword options (a tile) the public functions run the registered algorithm ``algo`` with at ``point``:
    the cost model's choice on this machine, recorded with the timings. ``{}`` for an algorithm without options,
    or a name that is not a registered algorithm (``torch``, ``auto``)."""
    import fftconv
    from fftconv.choose.decide import configure

    entry = fftconv.ALGORITHMS.get(algo)
    if entry is None or not entry.options:
        return {}
    _, options = configure(algo, geometry(point), pass_name, point.get("dtype", "float32"), backend)
    return {name: list(value) if isinstance(value, tuple) else value for name, value in options.items()}


def run_pass(algo: str, pass_name: str, x, w, gy, padding, **options):
    """One pass of the registered algorithm ``algo`` with its own keyword ``options`` (Winograd's ``tile``): the
    public functions take those from the cost model instead, within ``algo="auto"``'s accuracy bound. Valid,
    C-contiguous arrays are the caller's business (the public functions check them; this does not)."""
    import fftconv

    g = fftconv.ConvGeometry.from_shapes(x.shape, w.shape, padding=padding)
    entry = fftconv.ALGORITHMS[algo]
    if pass_name == "forward":
        return entry.forward(x, w, None, g, **options)
    if pass_name == "input":
        return entry.grad_input(gy, w, g, **options)
    if pass_name == "weight":
        return entry.grad_weight(x, gy, g, **options)
    raise ValueError(f"pass_name must be one of forward, input, weight; got {pass_name!r}")


def default_rates():
    """The cost model's documented default rates (not this machine's calibration), as fftconv defines them."""
    from fftconv import choose

    return choose.MachineRates()


def estimates(point: dict, pass_name: str, rates: dict | None = None) -> dict[str, float]:
    """The model's seconds per candidate for one pass; ``rates`` (a dict) or the documented defaults."""
    from fftconv import choose

    rates_object = choose.MachineRates(**rates) if rates else choose.MachineRates()
    return dict(choose.estimate(geometry(point), pass_name, rates_object))


def calibrate() -> dict[str, Any]:
    """Calibrate the cost model's rates on this machine with the current backend, without saving them."""
    import fftconv

    return asdict(fftconv.calibrate(save=False))


def use_rates(rates: dict | None) -> None:
    """Make ``algo="auto"`` use ``rates`` (a dict from :func:`calibrate`), or its own again with ``None``."""
    from fftconv import choose

    choose.set_rates(None if rates is None else choose.MachineRates(**rates))


def auto_decision(point: dict, pass_name: str, dtype, backend) -> dict[str, Any]:
    """What ``algo="auto"`` decided for one pass in this process's current ``FFTCONV_AUTO`` mode. fftconv caches
    decisions per (geometry, pass, dtype, backend, size policy, mode), so after a timed auto call of that pass this
    is the decision that call used."""
    from fftconv import choose

    decision = choose.choose(geometry(point), pass_name, dtype, backend=backend)
    return {"choice": decision.algo, "options": dict(decision.options), "estimates": dict(decision.estimates),
            "excluded": dict(decision.excluded), "fft_shape": list(decision.fft_shape),
            "timed_by_auto": sorted(decision.measured)}


def measure_mode_candidates(estimates_by_algo: dict[str, float]) -> list[str]:
    """The candidates ``FFTCONV_AUTO=measure`` would time (fftconv's own rule)."""
    from fftconv.choose import candidates_to_time

    return list(candidates_to_time(estimates_by_algo, "measure"))


def auto_windows() -> dict[str, float]:
    """The constants of auto's modes: the measure window, and the hybrid mode's windows with their time limits."""
    from fftconv import choose

    return {"measure_window": choose.MEASURE_WINDOW, "hybrid_window": choose.HYBRID_WINDOW,
            "hybrid_max_seconds": choose.HYBRID_MAX_SECONDS, "hybrid_close_window": choose.HYBRID_CLOSE_WINDOW,
            "hybrid_close_max_seconds": choose.HYBRID_CLOSE_MAX_SECONDS}


def stacked_complex_gemm() -> Callable | None:
    """fftconv's threaded per-bin GEMM ``f(a, b, out)`` where it exists (the roofline measures its rate)."""
    try:
        from fftconv._parallel import batched_matmul
    except ImportError:
        return None
    return batched_matmul


def step_stages() -> list[tuple[object, str, str]]:
    """The functions a spectral pass calls, for :mod:`experiments.stage_profile` to wrap: ``(owner, attribute,
    stage)``, ``owner`` a module or the default backend (an instance attribute set on it shadows the method)."""
    import fftconv
    from fftconv.spectral import hermitian

    backend = fftconv.get_backend()
    return [(hermitian, "batched_matmul", "per-bin GEMMs"), (backend, "rfftn", "forward FFTs"),
            (backend, "irfftn_blocks", "inverse FFTs and crops"),
            (backend, "rfftn_by_matrix", "kernel DFTs (forward)"),
            (backend, "irfftn_by_matrix", "kernel DFTs (inverse)")]
