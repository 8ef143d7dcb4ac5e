"""``algo="auto"``: pick an algorithm per pass from the cost model, timing the candidates where it cannot tell.

A measure mode times the candidates once per geometry and caches the decision, like Theano's meta-optimiser and
fbcunn's autotuner; the default hybrid mode times only where the model cannot separate the candidates and timing is
cheap. Candidates whose predicted error exceeds the accuracy bound (:func:`set_accuracy`) or whose workspace does
not fit in the available memory are left out. :func:`explain` returns the decisions with a printable report, in the
spirit of opt_einsum's ``PathInfo``. docs/auto.md describes the whole decision.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence, Union

import numpy as np

from .. import _memory
from .._finite import NonFiniteInput, SpectralOverflow, all_finite
from .._parallel import fork_safe_lock
from ..algorithms import ALGORITHMS
from ..backends import get_backend
from ..geometry import ConvGeometry, parse_dtype, parse_shape
from ..params import IntOrTuple, Padding
from ..passes import PASSES, Pass
from ..rates import MachineRates, get_rates, rates_status
from ..sizes import fft_shape_for
from .calibration import calibrate_once
from .model import CANDIDATES, Estimate, best_estimate, estimates, fft_reuse_seconds, unsupported, winograd_saves

AUTO_MODES = ("hybrid", "model", "measure")
#: ``measure`` times the candidates the model ranks within this factor of its best (``direct`` beyond it never).
MEASURE_WINDOW = 4.0
#: ``hybrid`` times the candidates whose estimates are within this factor of the best, when the best is under
#: ``HYBRID_MAX_SECONDS``: the model's error reaches a few x, and timing small problems once costs little.
HYBRID_WINDOW = 4.0
HYBRID_MAX_SECONDS = 0.01
#: Up to ``HYBRID_CLOSE_MAX_SECONDS`` it still times the candidates within ``HYBRID_CLOSE_WINDOW`` of the best:
#: estimates that close are the model's guess (on the auto grid, the medians of measured over estimated time run from
#: 1.1x to 1.9x between algorithms), and the timing (about 4 calls each) is repaid within a few hundred calls.
HYBRID_CLOSE_WINDOW = 1.5
HYBRID_CLOSE_MAX_SECONDS = 0.1
#: Decisions kept (least recently used dropped first): one per geometry, pass, dtype, option and rates.
MAX_DECISIONS = 4096


# ---------------------------------------------------------------------- the accuracy bound
#: The default bound: the project's float32 accuracy target. It only ever leaves out Winograd's larger tiles (the
#: other algorithms' predicted float32 errors stay near 1e-6) and nothing in float64.
DEFAULT_MAX_ERROR = 1e-5
_accuracy_lock = fork_safe_lock()
_max_error: float | None = DEFAULT_MAX_ERROR


class _Setting:
    """The default of ``max_error`` arguments: the bound :func:`set_accuracy` set."""

    def __repr__(self) -> str:
        return "the set_accuracy() bound"


SETTING = _Setting()


def set_accuracy(max_error: float | None) -> float | None:
    """Bound the predicted relative error of what ``algo="auto"`` picks; ``None`` removes the bound.

    Candidates whose predicted error (:func:`fftconv.choose.model.predicted_error`, in the dtype of the call)
    exceeds ``max_error`` are left out, and Winograd's tile is the cheapest within it. Explicitly named algorithms
    take their tile within it too. Process-wide, like :func:`fftconv.set_backend`. Returns the previous bound.

    Parameters
    ----------
    max_error : float or None
        A relative error (``max|error| / max|result|``), positive and finite; the default is
        :data:`DEFAULT_MAX_ERROR` (``1e-5``). ``None``: no bound.

    Examples
    --------
    >>> import fftconv
    >>> previous = fftconv.choose.set_accuracy(1e-6)
    >>> report = fftconv.explain((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    >>> all(c.details[c.algo].error <= 1e-6 for c in report)
    True
    >>> fftconv.choose.set_accuracy(previous)
    1e-06
    """
    global _max_error
    bound = _check_max_error(max_error)
    with _accuracy_lock:
        previous, _max_error = _max_error, bound
    return previous


def get_accuracy() -> float | None:
    """The bound :func:`set_accuracy` set (``None``: no bound)."""
    return _max_error


def _resolve_bound(max_error) -> float | None:
    return get_accuracy() if max_error is SETTING else _check_max_error(max_error)


def _check_max_error(max_error) -> float | None:
    if max_error is None:
        return None
    if isinstance(max_error, bool) or not isinstance(max_error, (int, float, np.floating, np.integer)) or not (
            math.isfinite(max_error) and max_error > 0):
        raise ValueError(f"max_error must be a positive finite number or None, got {max_error!r}")
    return float(max_error)


# ---------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Choice:
    """The decision for one pass: estimated (and optionally measured) seconds per candidate, and the winner.

    ``estimates`` maps each candidate that supports the geometry to its estimated seconds, ``details`` to its
    :class:`~.model.Estimate` (the split into transforms, products, copies and fixed costs, the flops, the options
    such as a tile, the workspace and the predicted error). ``excluded`` maps each candidate left out to the reason:
    it cannot run the geometry, its predicted error exceeds the bound, or its workspace does not fit in memory.
    ``options`` are the winner's keyword options.
    """

    pass_name: Pass
    algo: str
    estimates: dict
    measured: dict = field(default_factory=dict)
    fft_shape: tuple = ()
    reason: str = ""
    details: dict = field(default_factory=dict, repr=False)
    excluded: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.pass_name}: {self.algo}  ({self.reason})"]
        best = min(self.estimates.values())
        for algo, seconds in sorted(self.estimates.items(), key=lambda item: item[1]):
            measured = f"   measured {self.measured[algo] * 1e3:9.3f} ms" if algo in self.measured else ""
            left_out = f"   excluded: {self.excluded[algo]}" if algo in self.excluded else ""
            lines.append(f"  {algo:8s} estimated {seconds * 1e3:9.3f} ms  ({seconds / best:5.2f}x){measured}"
                         f"{left_out}")
        lines += [f"  {algo:8s} excluded: {reason}" for algo, reason in self.excluded.items()
                  if algo not in self.estimates]
        return "\n".join(lines)


class _Decisions:
    """A bounded, thread-safe cache of decisions."""

    def __init__(self, limit: int):
        self.limit, self._entries, self._lock = limit, OrderedDict(), fork_safe_lock()

    def get(self, key):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._entries[key] = value
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
    """Estimated seconds of each algorithm that supports ``g`` for one pass, at ``rates`` (default: those in use).

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
    if mode == "hybrid" and best <= HYBRID_CLOSE_MAX_SECONDS:
        window = HYBRID_WINDOW if best <= HYBRID_MAX_SECONDS else HYBRID_CLOSE_WINDOW
        close = [algo for algo, seconds in estimates.items() if seconds <= window * best]
        return close if len(close) > 1 else []
    return []


def _time_candidates(g: ConvGeometry, pass_name: Pass, dtype, candidates: dict[str, dict], backend,
                     fft_size, rounds: int = 5) -> dict[str, float]:
    """Best seconds of each candidate (name -> its options) on random data, timed in ``rounds`` interleaved
    rounds."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.full_input_shape).astype(dtype)
    w = rng.standard_normal(g.full_weight_shape).astype(dtype)
    gy = rng.standard_normal(g.full_output_shape).astype(dtype)

    def runner(algo: str, options: dict) -> Callable[[], object]:
        entry = ALGORITHMS[algo]
        return {Pass.FORWARD: lambda: entry.forward(x, w, None, g, backend, fft_size, **options),
                Pass.INPUT: lambda: entry.grad_input(gy, w, g, backend, fft_size, **options),
                Pass.WEIGHT: lambda: entry.grad_weight(x, gy, g, backend, fft_size, **options)}[pass_name]

    return _best_interleaved({algo: runner(algo, options) for algo, options in candidates.items()}, rounds)


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


def _headroom(sizes) -> _memory.Headroom | None:
    """The memory limit to test ``sizes`` against, read only when one of them could exceed it (reading the limits
    costs tens of microseconds; the algorithms' own checks skip it below :data:`fftconv._memory.ALWAYS_FITS_BYTES`
    too)."""
    if max(sizes, default=0) < _memory.ALWAYS_FITS_BYTES and not os.environ.get(_memory.ENVIRONMENT_VARIABLE):
        return None
    return _memory.headroom()


def _fits(needed: int, limit: _memory.Headroom | None) -> bool:
    return limit is None or needed <= limit.nbytes


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


@dataclass
class _Ranking:
    """What a decision keeps whatever the memory: the estimates, the exclusions by geometry and accuracy, the
    timings, and the order of preference; one :class:`Choice` per set of candidates that fit."""

    details: dict
    excluded: dict
    measured: dict
    order: list
    reason: str
    mode: str
    fft_shape: tuple
    choices: dict = field(default_factory=dict)


def choose(g: ConvGeometry, pass_name: Union[Pass, str], dtype=np.float32, *, measure: bool | None = None,
           backend=None, fft_size=None, max_error: float | None | _Setting = SETTING) -> Choice:
    """Pick the algorithm (and its options) for one pass.

    The candidates are every registered algorithm that supports ``g`` (:data:`~.model.CANDIDATES`), less those whose
    predicted error exceeds ``max_error`` (default: :func:`get_accuracy`) and those whose workspace does not fit in
    the available memory (:mod:`fftconv._memory`). Three modes, from ``measure`` or else ``FFTCONV_AUTO``:

    - ``"hybrid"`` (the default): the lowest model estimate wins, unless the model cannot tell the candidates apart
      (estimates within :data:`HYBRID_WINDOW` of the lowest, and the lowest under :data:`HYBRID_MAX_SECONDS`; or
      within :data:`HYBRID_CLOSE_WINDOW`, and the lowest under :data:`HYBRID_CLOSE_MAX_SECONDS`); then those
      candidates are timed once on random data and the fastest wins;
    - ``"model"`` (``measure=False``): the lowest estimate, nothing is timed;
    - ``"measure"`` (``measure=True``): the candidates within :data:`MEASURE_WINDOW` of the lowest estimate are timed
      and the fastest wins, like Theano's meta-optimiser and fbcunn's autotuner. ``direct`` is never timed beyond
      that window because it is a slow float64 reference.

    Cached per (geometry, pass, dtype, backend, fft_size, mode, rates, bound); the memory test runs at every call.

    Raises
    ------
    ValueError
        When no candidate's predicted error is within the bound.
    MemoryError
        When no candidate fits in memory; the message names each one's need and the limit.

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
    bound = _resolve_bound(max_error)
    mode = _auto_mode() if measure is None else ("measure" if measure else "model")
    rates = get_rates()
    key = (g, pass_name, dtype.str, repr(backend), repr(fft_size), mode, rates, bound)
    ranking = _decisions.get(key)
    if ranking is None:
        ranking = _rank(g, pass_name, dtype, backend, fft_size, mode, rates, bound, fft_shape)
        _decisions.put(key, ranking)
    return _fitting_choice(g, pass_name, ranking)


def _rank(g: ConvGeometry, pass_name: Pass, dtype: np.dtype, backend, fft_size, mode: str, rates: MachineRates,
          bound: float | None, fft_shape: tuple) -> _Ranking:
    details = estimates(g, pass_name, rates, fft_size, dtype, bound)
    excluded = dict(unsupported(g))
    if "winograd" in details and not winograd_saves(g):
        excluded["winograd"] = ("no tile saves a multiplication here (one output per tile, or one tap, on every "
                                "axis): im2col computes the same products")
    for algo, e in details.items():
        if bound is not None and e.error > bound:
            excluded[algo] = f"predicted error {e.error:.1e} exceeds max_error={bound:g}"
    accurate = {algo: e for algo, e in details.items() if algo not in excluded}
    if not accurate:
        predictions = ", ".join(f"{algo} {e.error:.1e}" for algo, e in details.items())
        raise ValueError(f"no algorithm's predicted relative error is within max_error={bound:g} for {g} in "
                         f"{dtype}: {predictions}; raise the bound (fftconv.choose.set_accuracy) or use float64")
    limit = _headroom(e.workspace_bytes for e in accurate.values())
    fitting = {algo: e for algo, e in accurate.items() if _fits(e.workspace_bytes, limit)}
    seconds = {algo: e.seconds for algo, e in fitting.items()}
    to_time = candidates_to_time(seconds, mode) if seconds else []
    measured: dict[str, float] = {}
    if to_time:
        rounds = 5 if min(seconds.values()) <= HYBRID_MAX_SECONDS or mode == "measure" else 3
        measured = _time_candidates(g, pass_name, dtype, {algo: fitting[algo].options for algo in to_time},
                                    backend, fft_size, rounds)
        reason = f"fastest when timed ({mode} mode)"
    else:
        reason = f"lowest model estimate, {'calibrated' if rates.calibrated else 'default'} rates"
    by_estimate = sorted(accurate, key=lambda algo: accurate[algo].seconds)
    order = sorted(measured, key=measured.get) + [algo for algo in by_estimate if algo not in measured]
    return _Ranking(details, excluded, measured, order, reason, mode, fft_shape)


def _fitting_choice(g: ConvGeometry, pass_name: Pass, ranking: _Ranking) -> Choice:
    """The ranking's first candidate that fits in memory now, as a :class:`Choice` (one object per outcome)."""
    workspace = {algo: ranking.details[algo].workspace_bytes for algo in ranking.order}
    limit = _headroom([workspace[ranking.order[0]]])  # the limits are read only when the first pick is large
    too_big = tuple(algo for algo in ranking.order if not _fits(workspace[algo], limit))
    if len(too_big) == len(ranking.order):
        needs = ", ".join(f"{algo} {_gib(size)}" for algo, size in workspace.items())
        raise MemoryError(f"algo='auto' for {g}, {pass_name} pass: no candidate fits in the memory available "
                          f"({_gib(limit.nbytes)}, the limit: {limit.source}); needs: {needs}. Use a smaller batch")
    choice = ranking.choices.get(too_big)
    if choice is None:
        algo = next(name for name in ranking.order if name not in too_big)
        excluded = {**ranking.excluded, **{name: f"needs {_gib(workspace[name])} of memory, {_gib(limit.nbytes)} "
                                                 f"available ({limit.source})" for name in too_big}}
        passed_over = [name for name in ranking.order[:ranking.order.index(algo)]]
        reason = ranking.reason + (f"; {', '.join(passed_over)} would not fit in memory" if passed_over else "")
        choice = Choice(pass_name, algo, {name: e.seconds for name, e in ranking.details.items()},
                        ranking.measured, ranking.fft_shape, reason, ranking.details, excluded,
                        dict(ranking.details[algo].options))
        ranking.choices[too_big] = choice
    return choice


def choose_step(g: ConvGeometry, dtype=np.float32, *, measure: bool | None = None, backend=None, fft_size=None,
                reuse: bool = True, max_error: float | None | _Setting = SETTING) -> dict[Pass, Choice]:
    """The algorithm of each pass of one training step: :func:`choose` per pass, unless the FFT for all three is
    faster because the step then transforms each operand once.

    With ``reuse`` (a layer that keeps its spectra from forward to backward, the paper's scheme), three FFT passes
    cost the sum of their estimates less :func:`~.model.fft_reuse_seconds`. When that is below the sum of the
    per-pass picks (each pass's timed seconds where :func:`choose` timed both, else the model's estimates), every
    pass gets the FFT, and its :attr:`Choice.reason` says so. Without ``reuse``, or when the FFT is left out of a
    pass (accuracy, memory), the per-pass choices stand.

    ``measure`` is :func:`choose`'s, for each pass.

    Examples
    --------
    Three 7x7 passes on 64x64 maps: per pass the FFT and the tiled FFT are close, but only the FFT shares its
    transforms across the step (the model's ranking, nothing timed).

    >>> g = ConvGeometry.from_shapes((32, 64, 64, 64), (64, 64, 7, 7))
    >>> {str(p): c.algo for p, c in choose_step(g, measure=False).items()}
    {'forward': 'fft', 'input': 'fft', 'weight': 'fft'}
    """
    choices = {p: choose(g, p, dtype, measure=measure, backend=backend, fft_size=fft_size, max_error=max_error)
               for p in PASSES}
    if not reuse or all(c.algo == "fft" for c in choices.values()):
        return choices
    if any("fft" in c.excluded or "fft" not in c.estimates for c in choices.values()):
        return choices
    picked, all_fft = 0.0, 0.0
    for c in choices.values():
        timed = c.algo in c.measured and "fft" in c.measured
        picked += c.measured[c.algo] if timed else c.estimates[c.algo]
        all_fft += c.measured["fft"] if timed else c.estimates["fft"]
    all_fft -= fft_reuse_seconds(g, get_rates(), fft_size, dtype)
    if all_fft >= picked:
        return choices
    reason = (f"the FFT for the whole step, its transforms shared: {_ms(all_fft)} against {_ms(picked)} for the "
              f"per-pass picks ({', '.join(c.algo for c in choices.values())})")
    return {p: replace(c, algo="fft", options=dict(c.details["fft"].options), reason=reason)
            for p, c in choices.items()}


# ---------------------------------------------------------------------- what the functional API calls
def configure(algo: str, g: ConvGeometry, pass_name: Union[Pass, str], dtype, backend=None,
              fft_size=None) -> tuple[object, dict]:
    """The registry entry that runs one pass of ``algo`` on ``g``, and its keyword options.

    ``"auto"``: the entry :func:`choose` picks, with its options; on a machine without saved rates the first such
    call calibrates it (:func:`~fftconv.choose.calibration.calibrate_once`). A named algorithm: its entry, with the
    options of its lowest estimate within the accuracy bound (a Winograd or tiled tile); a geometry it cannot run
    raises ``ValueError`` with its reason.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((8, 32, 128, 128), (32, 32, 3, 3), padding="same")
    >>> entry, options = configure("tiled", g, "forward", np.float32)
    >>> entry.name, all(t < 128 for t in options["tile"])
    ('tiled', True)
    """
    if algo == "auto":
        calibrate_once()
        choice = choose(g, pass_name, dtype, backend=backend, fft_size=fft_size)
        return ALGORITHMS[choice.algo], choice.options
    entry = _entry(algo)
    if not entry.options:
        return entry, {}
    reason = entry.unsupported_reason(g)
    if reason is not None:
        raise ValueError(reason)
    bound = get_accuracy()
    best = best_estimate(algo, g, pass_name, get_rates(), fft_size, dtype, bound)
    if bound is not None and best.error > bound:  # no tile is accurate enough: refuse rather than return noise
        raise ValueError(f"algo={algo!r} cannot compute this {Pass.parse(pass_name)} pass of {g} within "
                         f"max_error={bound:g} in {np.dtype(dtype)}: its most accurate tile {best.options} has a "
                         f"predicted relative error of {best.error:.1e}. Use algo='fft' or 'im2col', float64, or "
                         "fftconv.choose.set_accuracy(None) to accept the error")
    return entry, dict(best.options)


def _entry(algo: str):
    if not isinstance(algo, str) or algo not in ALGORITHMS:
        raise ValueError(f"algo={algo!r} is unknown; valid: {sorted([*ALGORITHMS, 'auto'])}")
    return ALGORITHMS[algo]


#: The algorithm ``"auto"`` recomputes a pass with when its pick meets NaN, inf or an overflow: it keeps them where
#: PyTorch puts them.
NONFINITE_FALLBACK = "im2col"


def keeping_nonfinite_local(entry, options: dict, call: Callable) -> np.ndarray:
    """``call(entry, options)``, or the same pass by :data:`NONFINITE_FALLBACK` (``call(fallback_entry, {})``) when
    the pick mixes positions (a transform spreads each value over a map or a tile) and meets NaN, inf or an overflow.

    Entries that check their operands raise (:class:`~fftconv._finite.NonFiniteInput`, ``SpectralOverflow``); the
    results of the others are checked, unless they keep non-finite values local or refuse them themselves.
    """
    fallback = ALGORITHMS[NONFINITE_FALLBACK]
    try:
        result = call(entry, options)
    except (NonFiniteInput, SpectralOverflow):
        return call(fallback, {})
    if entry.keeps_nonfinite_local or entry.refuses_nonfinite or all_finite(result):
        return result
    return call(fallback, {})


class _Dispatch:
    """The three passes of one ``algo`` name, as :mod:`fftconv.functional` calls them: each call asks
    :func:`configure` for the entry and options of its geometry.

    ``"auto"`` keeps NaN and inf where PyTorch keeps them, whatever the geometry and the pick: a pick that mixes
    positions (a transform spreads each value over a map or a tile) and meets a NaN, an inf or an overflow computes
    the pass with ``"im2col"`` instead. Entries that check their operands raise; the results of the others are
    checked.
    """

    def __init__(self, algo: str):
        self.algo = algo

    def _run(self, g: ConvGeometry, pass_name: Pass, dtype, backend, fft_size, call: Callable) -> np.ndarray:
        entry, options = configure(self.algo, g, pass_name, dtype, backend, fft_size)
        if self.algo != "auto":
            return call(entry, options)
        return keeping_nonfinite_local(entry, options, call)

    def forward(self, x, w, bias, g, backend=None, fft_size=None):
        return self._run(g, Pass.FORWARD, x.dtype, backend, fft_size, lambda entry, options: entry.forward(
            x, w, bias, g, backend, fft_size, **options))

    def grad_input(self, grad_output, w, g, backend=None, fft_size=None):
        return self._run(g, Pass.INPUT, grad_output.dtype, backend, fft_size, lambda entry, options: entry.grad_input(
            grad_output, w, g, backend, fft_size, **options))

    def grad_weight(self, x, grad_output, g, backend=None, fft_size=None):
        return self._run(g, Pass.WEIGHT, x.dtype, backend, fft_size, lambda entry, options: entry.grad_weight(
            x, grad_output, g, backend, fft_size, **options))


_DISPATCH = {name: _Dispatch(name) for name in [*ALGORITHMS, "auto"]}


def dispatcher(algo: str) -> _Dispatch:
    """The object :mod:`fftconv.functional` calls for ``algo`` (a registered name or ``"auto"``).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    if algo == "auto":
        return _DISPATCH["auto"]
    _entry(algo)
    return _DISPATCH[algo]


# ---------------------------------------------------------------------- explain
@dataclass(frozen=True)
class Explanation:
    """What ``algo="auto"`` picks for each pass of one convolution, and why: a sequence of :class:`Choice`.

    Index it by position or by pass (``explanation["weight"]``); ``print`` it for the report: the problem, the rates
    and where they come from, the accuracy bound and the memory available, then per pass and per candidate the
    options (tile or FFT size), flops, workspace, predicted error, and the estimate split into transforms, products,
    copies and fixed costs; the candidates left out, with their reasons.
    """

    geometry: ConvGeometry
    dtype: np.dtype
    backend: str
    fft_size: object
    rates: MachineRates
    rates_status: str
    choices: tuple[Choice, ...]
    workspace_bytes: dict[str, int]
    max_error: float | None = None
    memory: str = ""

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
            f"direct {r.direct_flops / 1e9:.2f} GFLOP/s, Winograd transforms "
            f"{r.winograd_transform_flops / 1e9:.1f} GFLOP/s",
            f"Accuracy bound: {'none' if self.max_error is None else f'max_error={self.max_error:g}'}"
            " (fftconv.choose.set_accuracy)",
            f"Memory: {self.memory}",
        ]
        header = (f"  {'algo':8s} {'estimate':>11s} {'ratio':>7s} {'options':>18s} {'flops':>10s} "
                  f"{'workspace':>10s} {'error':>8s} {'transforms':>11s} {'products':>11s} {'copies':>11s} "
                  f"{'fixed':>11s} {'measured':>11s}")
        for choice in self.choices:
            lines += ["", f"{choice.pass_name}: {choice.algo}  ({choice.reason})", header]
            best = min(choice.estimates.values())
            for algo, seconds in sorted(choice.estimates.items(), key=lambda item: item[1]):
                e: Estimate = choice.details[algo]
                measured = _ms(choice.measured[algo]) if algo in choice.measured else "-"
                lines.append(f"  {algo:8s} {_ms(seconds):>11s} {seconds / best:6.2f}x {_options(e):>18s} "
                             f"{e.flops:10.3g} {_bytes(e.workspace_bytes):>10s} {e.error:8.1e} "
                             f"{_ms(e.transforms):>11s} {_ms(e.products):>11s} {_ms(e.copies):>11s} "
                             f"{_ms(e.fixed):>11s} {measured:>11s}")
            lines += [f"  {algo:8s} excluded: {reason}" for algo, reason in choice.excluded.items()]
        return "\n".join(lines)


def _options(e: Estimate) -> str:
    if "tile" in e.options:
        text = "tile " + "x".join(map(str, e.options["tile"]))
        return text + (" @" + "x".join(map(str, e.fft_shape)) if e.fft_shape else "")
    return "FFT " + "x".join(map(str, e.fft_shape)) if e.fft_shape else "-"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _bytes(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _memory_status() -> str:
    limit = _memory.headroom()
    if limit is None:
        return "unknown (no limit found)"
    return f"{_gib(limit.nbytes)} available ({limit.source})"


def explain(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple = 1, padding: Padding = 0,
            dilation: IntOrTuple = 1, groups: int = 1, *, dtype=np.float32, measure: bool | None = False,
            backend=None, fft_size=None, max_error: float | None | _Setting = SETTING) -> Explanation:
    """Estimated cost, memory and error of each algorithm for each pass of a convolution, and what ``algo="auto"``
    picks.

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
    max_error : float or None, optional
        The accuracy bound to decide under; default the one :func:`set_accuracy` set.

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
      algo        estimate   ratio            options      flops  workspace    error  transforms ...
      fft      ...
    """
    input_shape = parse_shape(input_shape, "input_shape")
    weight_shape = parse_shape(weight_shape, "weight_shape")
    dtype = parse_dtype(dtype)
    g = ConvGeometry.from_shapes(input_shape, weight_shape, stride, padding, dilation, groups,
                                 input_name="input_shape", weight_name="weight_shape")
    choices = tuple(choose(g, p, dtype, measure=measure, backend=backend, fft_size=fft_size, max_error=max_error)
                    for p in Pass)
    workspace = {algo: max(c.details[algo].workspace_bytes for c in choices) for algo in choices[0].details}
    return Explanation(g, dtype, get_backend(backend).name, fft_size, get_rates(), rates_status(), choices,
                       workspace, _resolve_bound(max_error), _memory_status())
