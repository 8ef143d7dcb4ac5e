"""``algo="auto"``: choose an algorithm per pass from a cost model calibrated on this machine, or by measuring.

Three parts: :mod:`~fftconv.choose.model` (the pure cost model: estimates of time, memory and round-off from
operation counts and :class:`~fftconv.rates.MachineRates`), :mod:`~fftconv.choose.calibration` (measures this
machine's rates and saves them, once automatically, see :mod:`fftconv.rates`) and :mod:`~fftconv.choose.decide`
(``choose``, the ``auto`` modes, the accuracy bound and ``explain``). docs/auto.md describes the decision.
"""

from ..passes import PASSES, Pass
from ..rates import MachineRates, get_rates, rates_status, set_rates
from .calibration import calibrate
from .decide import (AUTO_MODES, DEFAULT_MAX_ERROR, HYBRID_CLOSE_MAX_SECONDS, HYBRID_CLOSE_WINDOW, HYBRID_MAX_SECONDS,
                     HYBRID_WINDOW, MEASURE_WINDOW, Choice, Explanation, candidates_to_time, choose, choose_step, clear_decisions, configure, estimate, explain,
                     get_accuracy, set_accuracy)
from .model import CANDIDATES, Estimate, best_estimate, estimates, predicted_error

__all__ = ["choose", "choose_step", "explain", "estimate", "estimates", "best_estimate", "predicted_error", "configure",
           "calibrate", "candidates_to_time", "clear_decisions", "set_accuracy", "get_accuracy", "Choice",
           "Explanation", "Estimate", "MachineRates", "get_rates", "set_rates", "rates_status", "Pass", "PASSES",
           "CANDIDATES", "DEFAULT_MAX_ERROR", "AUTO_MODES", "MEASURE_WINDOW", "HYBRID_WINDOW", "HYBRID_MAX_SECONDS",
           "HYBRID_CLOSE_WINDOW", "HYBRID_CLOSE_MAX_SECONDS"]
