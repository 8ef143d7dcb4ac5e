"""The timing helper: warm-up calls, then timed calls until a repeat count and a time budget are reached; the
median, minimum and maximum are kept with every sample. docs/experiments.md ("How a time is measured") gives the
whole method; this module is only the arithmetic.

Examples
--------
>>> ticks = iter([0.0, 0.0, 0.0, 1.0, 1.0, 3.0, 3.0, 4.0])  # fake clock: no warm-up, calls take 1, 2 and 1 s
>>> t = time_function(lambda: None, warmup=0, min_repeats=3, max_repeats=3, clock=lambda: next(ticks))
>>> t.median, t.min, t.max, t.repeats
(1.0, 1.0, 2.0, 3)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence


# ---------------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min and max of the timed repeats, plus the warm-up time and every sample."""

    median: float
    min: float
    max: float
    repeats: int
    warmup: int
    warmup_seconds: float
    samples: tuple[float, ...] = field(repr=False)

    @classmethod
    def from_samples(cls, samples: Sequence[float], warmup: int = 0, warmup_seconds: float = 0.0) -> "Timing":
        """Summarise ``samples`` (seconds per call).

        Examples
        --------
        >>> Timing.from_samples([3.0, 1.0, 2.0, 10.0]).median
        2.5
        """
        if not samples:
            raise ValueError("samples must hold at least one timed call, got none")
        return cls(median=float(statistics.median(samples)), min=float(min(samples)), max=float(max(samples)),
                   repeats=len(samples), warmup=warmup, warmup_seconds=float(warmup_seconds),
                   samples=tuple(float(s) for s in samples))

    def as_row(self) -> dict[str, Any]:
        """Fields for a results row (seconds)."""
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "repeats": self.repeats,
                "warmup_calls": self.warmup, "warmup_s": self.warmup_seconds, "samples_s": list(self.samples)}


def time_function(fn: Callable[[], Any], *, warmup: int = 1, min_repeats: int = 3, max_repeats: int = 7,
                  budget_seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then timed calls until both ``min_repeats`` calls and
    ``budget_seconds`` of timed calls are done, or ``max_repeats`` calls are.

    The result of ``fn`` is dropped after each call (inside the timed region, as a caller would drop it), so its
    memory is freed and reused by the next call.

    Parameters
    ----------
    fn : callable with no arguments
    warmup : int
        Untimed calls first (plans, page faults, caches). Their total time is kept as ``warmup_seconds``.
    min_repeats, max_repeats : int
        Bounds on the number of timed calls; ``1 <= min_repeats <= max_repeats``.
    budget_seconds : float
        Keep timing (up to ``max_repeats``) until this much timed time has passed: fast calls get more repeats.
    clock : callable
        Seconds as a float; :func:`time.perf_counter` unless a test passes a fake clock.

    Examples
    --------
    >>> t = time_function(lambda: sum(range(100)), warmup=1, min_repeats=5, max_repeats=5)
    >>> t.repeats, t.min <= t.median <= t.max
    (5, True)
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got min_repeats={min_repeats}, "
                         f"max_repeats={max_repeats}")
    start = clock()
    for _ in range(warmup):
        fn()
    warmup_seconds = clock() - start
    samples: list[float] = []
    while len(samples) < max_repeats:
        start = clock()
        fn()
        samples.append(clock() - start)
        if len(samples) >= min_repeats and sum(samples) >= budget_seconds:
            break
    return Timing.from_samples(samples, warmup, warmup_seconds)


def time_phases(phases: Sequence[Callable[[], Any]], *, warmup: int = 1, min_repeats: int = 3,
                max_repeats: int = 7, budget_seconds: float = 1.0,
                clock: Callable[[], float] = time.perf_counter) -> tuple[list[Timing], Timing]:
    """Time consecutive phases of one iteration (e.g. forward then backward), each call of each phase separately.

    Every repeat runs ``phases`` in order, reading the clock between them, so phases that depend on each other
    (backward needs the forward's saved state) are timed as they run in training. Same repeat rule as
    :func:`time_function`; returns one :class:`Timing` per phase and one for the whole iteration.

    Examples
    --------
    >>> ticks = iter([0.0, 0.0, 0.0, 1.0, 3.0, 3.0, 4.0, 6.0])  # no warm-up; then phases take 1 s and 2 s, twice
    >>> (first, second), whole = time_phases([lambda: 0, lambda: 1], warmup=0, min_repeats=2, max_repeats=2,
    ...                                      clock=lambda: next(ticks))
    >>> first.median, second.median, whole.median
    (1.0, 2.0, 3.0)
    """
    if not phases:
        raise ValueError("phases must hold at least one callable")
    if warmup < 0 or not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"need warmup >= 0 and 1 <= min_repeats <= max_repeats, got warmup={warmup}, "
                         f"min_repeats={min_repeats}, max_repeats={max_repeats}")
    start = clock()
    for _ in range(warmup):
        for phase in phases:
            phase()
    warmup_seconds = clock() - start
    samples: list[list[float]] = [[] for _ in phases]
    totals: list[float] = []
    while len(totals) < max_repeats:
        marks = [clock()]
        for phase in phases:
            phase()
            marks.append(clock())
        for index in range(len(phases)):
            samples[index].append(marks[index + 1] - marks[index])
        totals.append(marks[-1] - marks[0])
        if len(totals) >= min_repeats and sum(totals) >= budget_seconds:
            break
    return ([Timing.from_samples(s, warmup, warmup_seconds) for s in samples],
            Timing.from_samples(totals, warmup, warmup_seconds))


@dataclass(frozen=True)
class TimingSettings:
    """How many calls :func:`time_function` makes; quick mode uses fewer repeats than full mode."""

    warmup: int = 1
    min_repeats: int = 5
    max_repeats: int = 11
    budget_seconds: float = 2.0

    @classmethod
    def for_mode(cls, quick: bool) -> "TimingSettings":
        return cls(warmup=1, min_repeats=3, max_repeats=7, budget_seconds=0.5) if quick else cls()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
