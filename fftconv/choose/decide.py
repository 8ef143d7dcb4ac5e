"""``algo="auto"``: pick an algorithm per pass from the cost model, timing the candidates where it cannot tell.

A measure mode times the candidates once per geometry and caches the decision, like Theano's meta-optimiser and
fbcunn's autotuner; the default hybrid mode times only where the model cannot separate the candidates and timing is
cheap. :func:`explain` returns the decisions with a printable report, in the spirit of opt_einsum's ``PathInfo``.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, Union

import numpy as np

from .._parallel import fork_safe_lock
from ..algorithms import ALGORITHMS
from ..backends import get_backend
from ..costs import spatial_workspace_bytes
from ..geometry import ConvGeometry, parse_dtype, parse_shape
from ..params import IntOrTuple, Padding
from ..passes import Pass
from ..rates import MachineRates, get_rates, rates_status
from ..sizes import fft_shape_for
from ..spectral import SpectralPlan
from .model import CANDIDATES, Estimate, estimates

AUTO_MODES = ("hybrid", "model", "measure")
#: ``measure`` times the candidates the model ranks within this factor of its best (``direct`` beyond it never).
MEASURE_WINDOW = 4.0
#: ``hybrid`` times the candidates whose estimates are within this factor of the best, when the best is under
#: ``HYBRID_MAX_SECONDS``: the model's error reaches a few x, and timing small problems once costs little.
HYBRID_WINDOW = 4.0
HYBRID_MAX_SECONDS = 0.01
#: Decisions kept (least recently used dropped first): one per geometry, pass, dtype, option and rates.
MAX_DECISIONS = 4096


@dataclass(frozen=True)
class Choice:
    """The decision for one pass: estimated (and optionally measured) seconds per candidate, and the winner.

    ``estimates`` maps each candidate to its estimated seconds, ``details`` to its :class:`~.model.Estimate` (the
    split into transforms, products, copies and fixed costs, and the flops).
    """

    pass_name: Pass
    algo: str
    estimates: dict
    measured: dict = field(default_factory=dict)
    fft_shape: tuple = ()
    reason: str = ""
    details: dict = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        lines = [f"{self.pass_name}: {self.algo}  ({self.reason})"]
        best = min(self.estimates.values())
        for algo, seconds in sorted(self.estimates.items(), key=lambda item: item[1]):
            measured = f"   measured {self.measured[algo] * 1e3:9.3f} ms" if algo in self.measured else ""
            lines.append(f"  {algo:7s} estimated {seconds * 1e3:9.3f} ms  ({seconds / best:5.2f}x){measured}")
        return "\n".join(lines)


class _Decisions:
    """A bounded, thread-safe cache of decisions."""

    def __init__(self, limit: int):
        self.limit, self._entries, self._lock = limit, OrderedDict(), fork_safe_lock()

    def get(self, key) -> Choice | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            return None

    def put(self, key, choice: Choice) -> None:
        with self._lock:
            self._entries[key] = choice
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_decisions = _Decisions(MAX_DECISIONS)


def clear_decisions() -> None:
    """Forget every cached decision (the next ``algo="auto"`` call decides, and may time, again)."""
    _decisions.clear()


def _auto_mode() -> str:
    mode = os.environ.get("FFTCONV_AUTO", "hybrid")
    if mode not in AUTO_MODES:
        raise ValueError(f"FFTCONV_AUTO must be one of {AUTO_MODES}, got {mode!r}")
    return mode


def estimate(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates | None = None,
             fft_size=None) -> dict[str, float]:
    """Estimated seconds of each algorithm for one pass of ``g``, at ``rates`` (default: the rates in use).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 96, 32, 32), (256, 96, 7, 7))
    >>> costs = estimate(g, "forward", MachineRates())
    >>> sorted(costs) == sorted(CANDIDATES) and costs["fft"] < costs["im2col"] < costs["direct"]
    True
    """
    return {algo: e.seconds for algo, e in estimates(g, pass_name, rates or get_rates(), fft_size).items()}


def candidates_to_time(estimates: dict[str, float], mode: str) -> list[str]:
    """The candidates ``mode`` times (none: the lowest estimate wins); the auto_grid experiment applies it too."""
    best = min(estimates.values())
    if mode == "measure":
        return [algo for algo, seconds in estimates.items() if seconds <= MEASURE_WINDOW * best]
    if mode == "hybrid" and best <= HYBRID_MAX_SECONDS:
        close = [algo for algo, seconds in estimates.items() if seconds <= HYBRID_WINDOW * best]
        return close if len(close) > 1 else []
    return []


def _time_candidates(g: ConvGeometry, pass_name: Pass, dtype, candidates: Sequence[str], backend,
                     fft_size) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.full_input_shape).astype(dtype)
    w = rng.standard_normal(g.full_weight_shape).astype(dtype)
    gy = rng.standard_normal(g.full_output_shape).astype(dtype)
    runners = {
        Pass.FORWARD: lambda algo: ALGORITHMS[algo].forward(x, w, None, g, backend, fft_size),
        Pass.INPUT: lambda algo: ALGORITHMS[algo].grad_input(gy, w, g, backend, fft_size),
        Pass.WEIGHT: lambda algo: ALGORITHMS[algo].grad_weight(x, gy, g, backend, fft_size),
    }
    return _best_interleaved({algo: (lambda algo=algo: runners[pass_name](algo)) for algo in candidates})


def _best_interleaved(runs: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Best seconds of each run over ``rounds`` rounds that call every run once, after one warm-up call each.

    Interleaving keeps a change of the machine's state during the timing (frequent on shared machines) from
    favouring whichever candidate was timed in the quiet moment.
    """
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, math.inf)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def choose(g: ConvGeometry, pass_name: Union[Pass, str], dtype=np.float32, *, measure: bool | None = None,
           backend=None, fft_size=None) -> Choice:
    """Pick the algorithm for one pass; cached per (geometry, pass, dtype, backend, fft_size, mode, rates).

    Three modes, from ``measure`` or else ``FFTCONV_AUTO``:

    - ``"hybrid"`` (the default): the lowest model estimate wins, unless the model cannot tell the candidates apart
      (estimates within :data:`HYBRID_WINDOW` of the lowest) and the problem is small (lowest estimate under
      :data:`HYBRID_MAX_SECONDS`); then those candidates are timed once on random data and the fastest wins;
    - ``"model"`` (``measure=False``): the lowest estimate, nothing is timed;
    - ``"measure"`` (``measure=True``): the candidates within :data:`MEASURE_WINDOW` of the lowest estimate are timed
      and the fastest wins, like Theano's meta-optimiser and fbcunn's autotuner. ``direct`` is never timed beyond
      that window because it is a slow float64 reference.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 96, 32, 32), (256, 96, 7, 7))
    >>> choose(g, "weight", measure=False).algo
    'fft'
    """
    pass_name = Pass.parse(pass_name)
    dtype = parse_dtype(dtype)
    if g.batch == 0:  # the functional API returns PyTorch's result for a batch of 0 without choosing
        raise ValueError(f"a batch of 0 samples has no cost to compare, so there is no algorithm to choose: {g}")
    get_backend(backend)  # a bad backend or size fails here, not after a cached decision hid it
    fft_shape = fft_shape_for(g, fft_size)
    mode = _auto_mode() if measure is None else ("measure" if measure else "model")
    rates = get_rates()
    key = (g, pass_name, dtype.str, repr(backend), repr(fft_size), mode, rates)
    cached = _decisions.get(key)
    if cached is not None:
        return cached
    details = estimates(g, pass_name, rates, fft_size)
    seconds = {algo: e.seconds for algo, e in details.items()}
    candidates = candidates_to_time(seconds, mode)
    measured: dict[str, float] = {}
    if candidates:
        measured = _time_candidates(g, pass_name, dtype, candidates, backend, fft_size)
        algo, reason = min(measured, key=measured.get), f"fastest when timed ({mode} mode)"
    else:
        algo = min(seconds, key=seconds.get)
        reason = f"lowest model estimate, {'calibrated' if rates.calibrated else 'default'} rates"
    choice = Choice(pass_name, algo, seconds, measured, fft_shape, reason, details)
    _decisions.put(key, choice)
    return choice


# ---------------------------------------------------------------------- explain
@dataclass(frozen=True)
class Explanation:
    """What ``algo="auto"`` picks for each pass of one convolution, and why: a sequence of :class:`Choice`.

    Index it by position or by pass (``explanation["weight"]``); ``print`` it for the report: the problem, the rates
    and where they come from, then per pass and per candidate the FFT size, flops, workspace, and the estimate split
    into transforms, products, copies and fixed costs.
    """

    geometry: ConvGeometry
    dtype: np.dtype
    backend: str
    fft_size: object
    rates: MachineRates
    rates_status: str
    choices: tuple[Choice, ...]
    workspace_bytes: dict[str, int]

    def __len__(self) -> int:
        return len(self.choices)

    def __iter__(self) -> Iterator[Choice]:
        return iter(self.choices)

    def __getitem__(self, index: Union[int, str, Pass]) -> Choice:
        if isinstance(index, str):
            index = list(Pass).index(Pass.parse(index, "index"))
        return self.choices[index]

    def __repr__(self) -> str:
        picks = ", ".join(f"{c.pass_name}={c.algo!r}" for c in self.choices)
        return f"Explanation({self.geometry!r}, {picks})"

    def __str__(self) -> str:
        g, r = self.geometry, self.rates
        lines = [
            f"Convolution: input {g.full_input_shape}, weight {g.full_weight_shape} -> output {g.full_output_shape}",
            f"  stride {g.stride}, padding {g.padding_before}/{g.padding_after}, dilation {g.dilation}, "
            f"groups {g.groups}, dtype {self.dtype}",
            f"  FFT backend {self.backend}, FFT size policy {self.fft_size or 'fast'}",
            f"Rates: {self.rates_status}",
            f"  FFT {r.fft_flops / 1e9:.1f} GFLOP/s, complex GEMM {r.complex_gemm_flops / 1e9:.1f} GFLOP/s, "
            f"real GEMM {r.real_gemm_flops / 1e9:.1f} GFLOP/s, copies {r.copy_bytes / 1e9:.2f} GB/s, "
            f"direct {r.direct_flops / 1e9:.2f} GFLOP/s",
        ]
        header = (f"  {'algo':7s} {'estimate':>11s} {'ratio':>7s} {'FFT size':>12s} {'flops':>10s} "
                  f"{'workspace':>10s} {'transforms':>11s} {'products':>11s} {'copies':>11s} {'fixed':>11s}"
                  f" {'measured':>11s}")
        for choice in self.choices:
            lines += ["", f"{choice.pass_name}: {choice.algo}  ({choice.reason})", header]
            best = min(choice.estimates.values())
            for algo, seconds in sorted(choice.estimates.items(), key=lambda item: item[1]):
                e: Estimate = choice.details[algo]
                size = "x".join(map(str, e.fft_shape)) if e.fft_shape else "-"
                measured = _ms(choice.measured[algo]) if algo in choice.measured else "-"
                lines.append(f"  {algo:7s} {_ms(seconds):>11s} {seconds / best:6.2f}x {size:>12s} {e.flops:10.3g} "
                             f"{_bytes(self.workspace_bytes[algo]):>10s} {_ms(e.transforms):>11s} "
                             f"{_ms(e.products):>11s} {_ms(e.copies):>11s} {_ms(e.fixed):>11s} {measured:>11s}")
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _bytes(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def explain(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple = 1, padding: Padding = 0,
            dilation: IntOrTuple = 1, groups: int = 1, *, dtype=np.float32, measure: bool | None = False,
            backend=None, fft_size=None) -> Explanation:
    """Estimated cost of each algorithm for each pass of a convolution, and what ``algo="auto"`` picks.

    Parameters
    ----------
    input_shape, weight_shape : sequence of int
        Shapes of the input ``(batch, in_channels, *spatial)`` and the weight ``(out_channels, in_channels //
        groups, *kernel)``.
    stride, padding, dilation, groups
        As in :func:`fftconv.conv2d`.
    dtype : float32 or float64, default float32
    measure : bool or None, default False
        ``False``: the model's choice, nothing is timed; ``None``: decide as ``algo="auto"`` does in the current
        ``FFTCONV_AUTO`` mode (the default ``"hybrid"`` may time close candidates); ``True``: time the candidates
        as the measure mode does.
    backend, fft_size
        FFT options, as in :func:`fftconv.conv2d`.

    Returns
    -------
    Explanation
        One :class:`Choice` per pass (forward, input, weight); printing it gives the whole report.

    Examples
    --------
    >>> report = explain((32, 96, 32, 32), (256, 96, 7, 7))
    >>> [(str(c.pass_name), c.algo) for c in report]
    [('forward', 'fft'), ('input', 'fft'), ('weight', 'fft')]
    >>> print(report)  # doctest: +ELLIPSIS
    Convolution: input (32, 96, 32, 32), weight (256, 96, 7, 7) -> output (32, 256, 26, 26)
    ...
    forward: fft  (lowest model estimate, ... rates)
      algo       estimate   ratio     FFT size      flops  workspace  transforms ...
      fft     ...
    """
    input_shape = parse_shape(input_shape, "input_shape")
    weight_shape = parse_shape(weight_shape, "weight_shape")
    dtype = parse_dtype(dtype)
    g = ConvGeometry.from_shapes(input_shape, weight_shape, stride, padding, dilation, groups,
                                 input_name="input_shape", weight_name="weight_shape")
    choices = tuple(choose(g, p, dtype, measure=measure, backend=backend, fft_size=fft_size) for p in Pass)
    resolved = get_backend(backend)
    plan = SpectralPlan.create(g, dtype, resolved, fft_size, check_memory=False)
    workspace = {"fft": plan.peak_bytes(), "im2col": spatial_workspace_bytes(g, dtype, "im2col"),
                 "direct": spatial_workspace_bytes(g, np.float64, "direct")}
    return Explanation(g, dtype, resolved.name, fft_size, get_rates(), rates_status(), choices, workspace)

