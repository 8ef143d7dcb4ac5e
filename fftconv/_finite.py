"""NaN, inf and overflow in the frequency domain: how they are detected, and the errors that say so.

A Fourier transform sums a whole map into every frequency, so one NaN or inf in a map reaches every output computed
from its spectrum, where a spatial algorithm (and PyTorch) keeps it to the outputs whose window reads it. And the
sums can overflow float32 while every value, and the true result, is finite. fftconv refuses both rather than
return them: :class:`NonFiniteInput` and :class:`SpectralOverflow`, which ``algo="auto"`` catches to compute the pass
with ``"im2col"`` instead.

Detection is cheap. The zero-frequency (DC) bin of a transformed map is the map's sum, so it is NaN or inf whenever
the map holds a NaN or an inf: the transforms check only the DC bins (one per map). When one is not finite, an exact
count of the operand's non-finite values tells a NaN or inf of the data from an overflow of finite values. Overflow
elsewhere in the spectra or in their products leaves NaN or inf in every output of the maps involved, which the
passes check while they crop.
"""

from __future__ import annotations

import numpy as np

#: Where a NaN or inf of each operand spreads in the frequency domain.
SPREAD = {
    "input": "every output of its sample, in every output channel, and the whole weight gradient",
    "weight": "the whole output channel of its kernel in every sample, and the whole input channel of the input "
              "gradient",
    "grad_output": "its sample's whole input gradient, in every input channel, and the whole weight gradient",
}


class NonFiniteInput(ValueError):
    """An operand of a frequency-domain pass holds NaN or inf, which the transform would spread over whole maps.

    Attributes
    ----------
    name : str
        The argument: ``"input"``, ``"weight"`` or ``"grad_output"``.
    count : int
        How many of its values are NaN or inf.
    """

    def __init__(self, name: str, count: int, size: int):
        self.name, self.count = name, count
        plural = "s" if count != 1 else ""
        super().__init__(
            f"{name} holds {count} non-finite value{plural} (NaN or inf) among {size}. In the frequency domain each "
            f"one would spread over {SPREAD.get(name, 'every output computed from its map')}: the Fourier transform "
            "sums a whole map into every frequency, where PyTorch keeps a NaN or inf to the outputs whose window reads "
            f"it. Use algo='im2col', which keeps them local as PyTorch does (algo='auto' switches to it by itself), "
            f"or remove them first (np.nan_to_num({name}), or a mask).")


class SpectralOverflow(OverflowError):
    """A frequency-domain pass overflowed its float dtype although every operand is finite."""


def count_nonfinite(array: np.ndarray) -> int:
    """How many entries of ``array`` are NaN or inf.

    Examples
    --------
    >>> count_nonfinite(np.array([1.0, np.nan, -np.inf, 2.0]))
    2
    """
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def all_finite(array: np.ndarray) -> bool:
    """Whether every entry is finite: a sum first (one pass, no temporary), the exact test only if it is not finite.

    Examples
    --------
    >>> all_finite(np.array([1.0, 2.0])), all_finite(np.array([1.0, np.inf])), all_finite(np.full(4, 1e308))
    (True, False, True)
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(array)):
            return True
    return count_nonfinite(array) == 0


def check_transform(dc_bins: np.ndarray, operand: np.ndarray, name: str, points: int) -> None:
    """Raise if a transform's DC bins (one per map) are not all finite: :class:`NonFiniteInput` when ``operand``
    (what was transformed) holds NaN or inf, :class:`SpectralOverflow` when its sums overflowed.

    ``points`` is how many values of ``operand`` a map sums, for the message.
    """
    if np.isfinite(dc_bins).all():
        return
    count = count_nonfinite(operand)
    if count:
        raise NonFiniteInput(name, count, operand.size)
    dtype = operand.dtype
    raise SpectralOverflow(
        f"the Fourier transform of {name} overflowed {dtype}: its values reach {np.abs(operand).max():.3g} in "
        f"magnitude, and each frequency sums up to {points} of them, beyond {dtype}'s largest value "
        f"{np.finfo(dtype).max:.3g}. Use float64 ({name}.astype(np.float64)), or algo='im2col', which sums only a "
        "kernel's window (algo='auto' switches to it by itself), or scale the data down.")


def overflow_in_pass(pass_name: str, dtype: np.dtype, result: np.ndarray) -> SpectralOverflow:
    """The error for a pass whose result holds NaN or inf although its operands are finite."""
    count = count_nonfinite(result)
    return SpectralOverflow(
        f"the {pass_name} pass overflowed {np.dtype(dtype)} in the frequency domain: {count} of its {result.size} "
        f"results are inf or NaN although every operand is finite. Products of spectra sum whole maps, and here they "
        f"exceed {np.dtype(dtype)}'s largest value {np.finfo(dtype).max:.3g}. Use float64 (cast the arrays with "
        ".astype(np.float64)), or algo='im2col', which sums only each kernel window (algo='auto' switches to it by "
        "itself), or scale the data down.")
