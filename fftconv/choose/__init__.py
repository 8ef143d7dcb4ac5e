"""``algo="auto"``: choose an algorithm per pass from a cost model calibrated on this machine, or by measuring.

Three parts: :mod:`~fftconv.choose.model` (the pure cost model: estimates from operation counts and
:class:`~fftconv.rates.MachineRates`), :mod:`~fftconv.choose.calibration` (measures this machine's rates and saves
them, see :mod:`fftconv.rates`) and :mod:`~fftconv.choose.decide` (``choose``, the ``auto`` modes and ``explain``).
"""

from ..passes import PASSES, Pass
from ..rates import MachineRates, get_rates, rates_status, set_rates
from .calibration import calibrate
from .decide import (AUTO_MODES, HYBRID_MAX_SECONDS, HYBRID_WINDOW, MEASURE_WINDOW, Choice, Explanation,
                     candidates_to_time, choose, clear_decisions, estimate, explain)
from .model import CANDIDATES, Estimate, estimates

__all__ = ["choose", "explain", "estimate", "estimates", "calibrate", "candidates_to_time", "clear_decisions",
           "Choice", "Explanation", "Estimate", "MachineRates", "get_rates", "set_rates", "rates_status", "Pass",
           "PASSES", "CANDIDATES", "AUTO_MODES", "MEASURE_WINDOW", "HYBRID_WINDOW", "HYBRID_MAX_SECONDS"]
