"""The shared point format of a convolution problem, the inputs and passes a worker builds from it, and the lookup
of timed rows by point.

A point is a dict with the fields :data:`POINT_FIELDS`: batch ``S``, ``f`` input and ``fp`` output channels, input
size ``n`` and kernel size ``k``, ``stride``, ``padding``, ``dilation``, ``groups``, ``dtype`` and the data ``seed``.
``n``, ``k``, ``stride``, ``padding`` and ``dilation`` are an int (the same on every spatial axis, a square 2-d
problem) or a list with one value per spatial axis (1 to 3 axes); ``padding`` may also be ``"same"`` or ``"valid"``.
Every experiment that times convolutions uses this format, so their rows can be compared and resumed alike.

The passes are fftconv's (:mod:`fftconv.passes`): ``"forward"``, ``"input"`` (the input gradient) and ``"weight"``
(the weight gradient). ``PASSES`` and ``Pass`` are re-exported from there on first use, because importing fftconv
loads numpy, which must wait until the command line has pinned the thread counts.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator, Sequence

#: The fields that identify one convolution point, in order.
POINT_FIELDS = ("S", "f", "fp", "n", "k", "stride", "padding", "dilation", "groups", "dtype", "seed")
#: Values of the optional fields (rows written before a field existed read as these).
DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "dtype": "float32", "seed": 0}
#: The paper's (Torch 7) name of each of fftconv's passes, and the words for it in captions.
PAPER_NAMES = {"forward": "updateOutput", "input": "updateGradInput", "weight": "accGradParameters"}
PROSE_NAMES = {"forward": "forward", "input": "input gradient", "weight": "weight gradient"}
DTYPES = ("float32", "float64")


def __getattr__(name: str):
    """``PASSES`` and ``Pass``: :mod:`fftconv.passes`'s, imported when first asked for (see the module docstring)."""
    if name in ("PASSES", "Pass"):
        from fftconv import passes

        return getattr(passes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _normal(value: Any) -> Any:
    """Ints stay ints; tuples and lists become lists of ints (what JSON reads back)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return int(value)


def spatial_ndim(point: dict) -> int:
    """Number of spatial axes: the length of the first list-valued size field, else 2 (a square 2-d problem)."""
    for name in ("n", "k", "stride", "padding", "dilation"):
        value = point.get(name)
        if isinstance(value, list):
            return len(value)
    return 2


def per_axis(value: int | list[int], ndim: int) -> tuple[int, ...]:
    """``3`` -> ``(3, 3)``; ``[3, 5]`` -> ``(3, 5)``."""
    return tuple(value) if isinstance(value, (list, tuple)) else (int(value),) * ndim


def shapes(point: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(input shape, weight shape)`` of a point."""
    ndim = spatial_ndim(point)
    groups = point.get("groups", 1)
    return ((point["S"], point["f"], *per_axis(point["n"], ndim)),
            (point["fp"], point["f"] // groups, *per_axis(point["k"], ndim)))


def conv_point(S: int, f: int, fp: int, n: int | Sequence[int], k: int | Sequence[int],
               stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
               dilation: int | Sequence[int] = 1, groups: int = 1, dtype: str = "float32", seed: int = 0) -> dict:
    """One convolution point (see the module docstring); checked so that every pass can run on it.

    Examples
    --------
    >>> conv_point(S=2, f=3, fp=4, n=8, k=3)["stride"]
    1
    >>> conv_point(S=2, f=3, fp=4, n=4, k=5)
    Traceback (most recent call last):
        ...
    ValueError: kernel k=5 (dilation 1) does not fit input n=4 with padding 0: no output
    """
    point = {"S": int(S), "f": int(f), "fp": int(fp), "n": _normal(n), "k": _normal(k), "stride": _normal(stride),
             "padding": _normal(padding), "dilation": _normal(dilation), "groups": int(groups), "dtype": str(dtype),
             "seed": int(seed)}
    if point["dtype"] not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if groups < 1 or f % groups or fp % groups:
        raise ValueError(f"groups={groups} must divide both channel counts f={f} and fp={fp}")
    ndim = spatial_ndim(point)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, one per axis, 'same' or 'valid'; got {padding!r}")
        pads = per_axis(0, ndim) if padding == "valid" else None
    else:
        pads = per_axis(point["padding"], ndim)
    if pads is not None:
        sizes = zip(per_axis(point["n"], ndim), per_axis(point["k"], ndim), pads, per_axis(point["dilation"], ndim))
        if any(size + 2 * pad - dil * (kern - 1) < 1 for size, kern, pad, dil in sizes):
            raise ValueError(f"kernel k={point['k']} (dilation {point['dilation']}) does not fit input n={point['n']} "
                             f"with padding {point['padding']}: no output")
    return point


def point_of(row: dict) -> dict:
    """The point of a results row, the optional fields filled with :data:`DEFAULTS` (older rows lack some)."""
    return {name: row.get(name, DEFAULTS.get(name)) for name in POINT_FIELDS}


def point_key(row: dict) -> tuple:
    """A hashable identity of the point of a row."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in point_of(row).values())


def has_point(row: dict) -> bool:
    return all(name in row for name in ("S", "f", "fp", "n", "k"))


def label(point: dict) -> str:
    """``S=8 16->32 n=16 k=5`` plus any non-default field, e.g. ``s=2``.

    Examples
    --------
    >>> label(conv_point(S=8, f=16, fp=32, n=16, k=5, stride=2))
    'S=8 16->32 n=16 k=5 s=2'
    """
    text = f"S={point['S']} {point['f']}->{point['fp']} n={_axes(point['n'])} k={_axes(point['k'])}"
    short = {"stride": "s", "padding": "p", "dilation": "d", "groups": "g", "dtype": ""}
    for name, prefix in short.items():
        value = point.get(name, DEFAULTS[name])
        if value != DEFAULTS[name]:
            text += f" {prefix}={_axes(value)}" if prefix else f" {value}"
    return text


def _axes(value) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, list) else str(value)


# ---------------------------------------------------------------------------------------------------- cost
def direct_flops(point: dict) -> int:
    """Multiply-adds x 2 of one pass done directly: ``2 S (f / groups) f' prod(output) prod(k)`` (the same for all
    three passes)."""
    from .fftconv_api import geometry

    g = geometry(point)
    return 2 * point["S"] * (point["f"] // point.get("groups", 1)) * point["fp"] * math.prod(g.output_shape) \
        * math.prod(per_axis(point["k"], spatial_ndim(point)))


#: ``algo="direct"`` is a float64 reference: einsum per tap runs at roughly this many flop/s on the project's 2-core
#: machine (measured ~2e9; taken lower to be safe). Used only to decide what to skip.
DIRECT_FLOPS_PER_SECOND = 1.5e9
#: Skip ``direct`` at a point when one call is expected to take longer than this (quick mode, full mode).
DIRECT_MAX_SECONDS_PER_CALL = {True: 0.5, False: 5.0}


def direct_too_slow(point: dict, limit_seconds: float = DIRECT_MAX_SECONDS_PER_CALL[False]) -> str | None:
    """Why ``direct`` is skipped at ``point`` (or ``None`` if it is fast enough to time)."""
    estimate = direct_flops(point) / DIRECT_FLOPS_PER_SECOND
    if estimate > limit_seconds:
        return (f"direct (a float64 reference) would take ~{estimate:.0f} s per call here "
                f"(limit {limit_seconds:g} s); not timed")
    return None


# ---------------------------------------------------------------------------------------------------- worker side
def conv_inputs(point: dict) -> dict:
    """Seeded input, weight and output gradient of a point (drawn in float32, then cast to the point's dtype)."""
    import numpy as np

    from .fftconv_api import geometry

    g = geometry(point)
    rng = np.random.default_rng(point.get("seed", 0))
    dtype = np.dtype(point.get("dtype", "float32"))
    return {name: rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
            for name, shape in (("x", g.full_input_shape), ("w", g.full_weight_shape), ("gy", g.full_output_shape))}


def conv_options(point: dict) -> dict:
    """``stride``, ``padding``, ``dilation`` and ``groups`` as both fftconv and PyTorch take them."""
    ndim = spatial_ndim(point)
    options = {}
    for name in ("stride", "padding", "dilation"):
        value = point.get(name, DEFAULTS[name])
        options[name] = value if isinstance(value, str) else per_axis(value, ndim)
    options["groups"] = point.get("groups", 1)
    return options


def torch_padding(point: dict) -> tuple[int, ...]:
    """The point's padding as the explicit per-axis ints PyTorch's gradient functions need ("same" and "valid"
    resolved as fftconv resolves them); an error if "same" pads unevenly, which those functions cannot express."""
    from .fftconv_api import geometry

    g = geometry(point)
    if g.padding_before != g.padding_after:
        raise ValueError(f"padding={point['padding']!r} pads unevenly here ({g.padding_before} before, "
                         f"{g.padding_after} after); PyTorch's gradient functions take only even padding: pass "
                         "explicit integer padding")
    return tuple(g.padding_before)


def conv_pass_functions(session, point: dict) -> dict[str, Callable[[], Any]]:
    """The three passes of a point as no-argument callables, for fftconv (``session``'s algorithm and backend) or
    PyTorch (``session.torch``)."""
    arrays = conv_inputs(point)
    options = conv_options(point)
    ndim = spatial_ndim(point)
    if session.torch is not None:
        torch = session.torch
        options["padding"] = torch_padding(point)
        x, w, gy = (torch.from_numpy(arrays[name]) for name in ("x", "w", "gy"))
        forward = getattr(torch.nn.functional, f"conv{ndim}d")
        grad_input = getattr(torch.nn.grad, f"conv{ndim}d_input")
        grad_weight = getattr(torch.nn.grad, f"conv{ndim}d_weight")

        def no_grad(fn):
            def call():
                with torch.no_grad():
                    return fn()
            return call

        return {"forward": no_grad(lambda: forward(x, w, **options)),
                "input": no_grad(lambda: grad_input(x.shape, w, gy, **options)),
                "weight": no_grad(lambda: grad_weight(x, w.shape, gy, **options))}
    import fftconv

    x, w, gy = arrays["x"], arrays["w"], arrays["gy"]
    options["algo"] = session.parsed["algo"]
    if session.backend is not None:
        options["backend"] = session.backend
    forward = getattr(fftconv, f"conv{ndim}d")
    grad_input = getattr(fftconv, f"conv{ndim}d_input")
    grad_weight = getattr(fftconv, f"conv{ndim}d_weight")
    return {"forward": lambda: forward(x, w, **options),
            "input": lambda: grad_input(x.shape, w, gy, **options),
            "weight": lambda: grad_weight(x, w.shape, gy, **options)}


def conv_passes(case: dict, session) -> Iterator[dict]:
    """Task: time the passes listed in ``case["todo"]`` (``[{"pass": ...}, ...]``) at one point; a row of an
    algorithm with options records those the public function ran it with (a tile)."""
    functions = conv_pass_functions(session, case)
    for subkey in case["todo"]:
        row = session.measure(functions[subkey["pass"]])
        row["gflops"] = direct_flops(case) / row["median_s"] / 1e9
        yield {**subkey, **row, **run_options(session, case, subkey["pass"])}


def run_options(session, point: dict, pass_name: str) -> dict:
    """``{"options": {...}}`` for an fftconv algorithm with keyword options (the cost model's choice); for
    ``algo="auto"`` its decision (:func:`.fftconv_api.auto_decision`: ``"choice"``, its options, the estimates);
    else ``{}``."""
    from .fftconv_api import auto_decision, configured_options

    if session.torch is not None or pass_name not in PROSE_NAMES:
        return {}
    if session.parsed["algo"] == "auto":
        return auto_decision(point, pass_name, point.get("dtype", "float32"), session.backend)
    options = configured_options(session.parsed["algo"], point, pass_name, session.backend)
    return {"options": options} if options else {}


# ---------------------------------------------------------------------------------------------------- parent side
def conv_jobs(methods: Sequence[str], points: Iterable[dict], quick: bool,
              passes: Sequence[str] | None = None) -> list:
    """One job per (point, method) with one row per pass (default: all three). A method is skipped, its rows saying
    why, where its algorithm cannot run the point (Winograd at stride 2) and, for ``direct``, where it is too slow."""
    from fftconv.passes import PASSES

    from .jobs import Job

    passes = PASSES if passes is None else passes
    jobs = []
    for point in points:
        for method in methods:
            jobs.append(Job(method, dict(point), [{"pass": p} for p in passes], case=dict(point),
                            skip_reason=skip_reason(method, point, quick)))
    return jobs


def skip_reason(method: str, point: dict, quick: bool = True, direct_limit: float | None = None) -> str | None:
    """Why ``method`` (a label of :mod:`.methods`) is not timed at ``point``, or ``None``: its algorithm cannot run
    the point, or it is ``direct`` and one call would take longer than ``direct_limit`` seconds (default: the
    mode's :data:`DIRECT_MAX_SECONDS_PER_CALL`)."""
    from .fftconv_api import geometry, unsupported_reason
    from .methods import parse_method

    try:
        geometry(point)
    except ValueError:  # a point fftconv rejects outright: the worker's row records the error, as for any method
        return None
    reason = unsupported_reason(parse_method(method)["algo"] or "", point)
    if reason is None and method == "direct":
        limit = DIRECT_MAX_SECONDS_PER_CALL[quick] if direct_limit is None else direct_limit
        reason = direct_too_slow(point, limit)
    return reason


def measure_conv(ctx, methods: Sequence[str], points: Iterable[dict], passes: Sequence[str] | None = None,
                 desc: str | None = None) -> None:
    """Time every pass of every point for every method (resumable): the common case of the speed experiments."""
    from .jobs import measure_jobs

    measure_jobs(ctx, conv_jobs(methods, points, ctx.quick, passes), "experiments.harness.points:conv_passes",
                 desc=desc)


def validate(row: dict, subkey: str | None = "pass") -> str | None:
    """Why a conv timing row is unusable (``None``: usable): the point, ``method`` and ``subkey`` fields, and either
    a timing (median, min and max) or a reason (``skipped`` or ``error``)."""
    from .results import missing_fields

    problem = missing_fields(row, "S", "f", "fp", "n", "k", "method", *((subkey,) if subkey else ()))
    if problem:
        return problem
    if "median_s" in row:
        return missing_fields(row, "min_s", "max_s")
    if "skipped" not in row and "error" not in row:
        return "neither a timing (median_s) nor a reason (skipped, error)"
    return None


def timed_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows with a timing (neither skipped nor failed)."""
    return [row for row in rows if "median_s" in row]


class ConvResults:
    """Lookup of timing rows by point, method and pass.

    A point measured several times (in rounds) counts with its lowest median; untimed rows (skipped, failed) count
    only where no row has a timing, the last one winning. When rows of several (commit, machine) groups are mixed
    (``--mix``), each point uses the rows of one group only (the one with the most timed rows there, then the
    newest), so every ratio at a point compares times from one machine.
    """

    def __init__(self, rows: Iterable[dict]):
        from .provenance import group_of, row_time

        self.rows = [row for row in rows if has_point(row) and "method" in row]
        by_point: dict[tuple, dict] = {}
        for row in self.rows:
            groups = by_point.setdefault(point_key(row), {})
            groups.setdefault(group_of(row), []).append(row)
        self._index: dict[tuple, dict] = {}
        for key, groups in by_point.items():
            chosen = max(groups.values(), key=lambda members: (len(timed_rows(members)),
                                                               max(row_time(r) for r in members)))
            for row in chosen:
                if "pass" not in row:
                    continue
                index_key = (key, row["method"], row["pass"])
                kept = self._index.get(index_key)
                if kept is None or "median_s" not in kept or row.get("median_s", math.inf) < kept["median_s"]:
                    self._index[index_key] = row

    def row(self, point: dict, method: str, pass_: str) -> dict | None:
        return self._index.get((point_key(point), method, pass_))

    def seconds(self, point: dict, method: str, pass_: str, stat: str = "median_s") -> float | None:
        """Seconds of one pass, or ``None`` if not timed (missing, skipped or failed)."""
        row = self.row(point, method, pass_)
        return row.get(stat) if row else None

    def total(self, point: dict, method: str, passes: Sequence[str] | None = None,
              stat: str = "median_s") -> float | None:
        """Sum over ``passes`` (default: all three; ``None`` if any is missing)."""
        from fftconv.passes import PASSES

        passes = PASSES if passes is None else passes
        parts = [self.seconds(point, method, p, stat) for p in passes]
        return None if any(t is None for t in parts) else sum(parts)

    def methods(self) -> list[str]:
        """Methods present, in a fixed order: FFT variants first, then fftconv baselines, then torch."""
        from .style import method_order

        return sorted({row["method"] for row in self.rows}, key=method_order)

    def points(self) -> list[dict]:
        """The distinct points, in the order their first row appears."""
        seen: dict[tuple, dict] = {}
        for row in self.rows:
            seen.setdefault(point_key(row), point_of(row))
        return list(seen.values())
