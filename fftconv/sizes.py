"""Transform sizes: the half spectrum of a real transform, fast FFT lengths and the FFT size policies.

The only home of the half-spectrum rule (a real transform of ``N`` points keeps ``N // 2 + 1`` bins along its last
axis) and of where a half spectrum still holds conjugate pairs.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Literal, Sequence, Union

from .geometry import ConvGeometry

FFTSizePolicy = Literal["fast", "pow2", "minimal"]
FFT_SIZE_POLICIES = ("fast", "pow2", "minimal")
#: 7-smooth sizes avoid both the slow large-prime sizes of "minimal" and the up-to-2x padding of "pow2".
DEFAULT_FFT_SIZE: FFTSizePolicy = "fast"


def half_length(n: int) -> int:
    """Bins a real transform of ``n`` points keeps: ``n // 2 + 1`` (the rest are their conjugates).

    Examples
    --------
    >>> half_length(8), half_length(7)
    (5, 4)
    """
    return n // 2 + 1


def half_spectrum_shape(fft_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of the half spectrum of a real ``fft_shape`` transform: the last axis halved.

    Examples
    --------
    >>> half_spectrum_shape((16, 16))
    (16, 9)
    """
    return (*(int(n) for n in fft_shape[:-1]), half_length(int(fft_shape[-1])))


def conjugate_pairs(fft_shape: Sequence[int]) -> tuple[int, slice, slice] | None:
    """Where a half spectrum holds conjugate pairs: ``(half, self_conjugate, middle)``, or None if it holds none.

    The columns ``self_conjugate`` (``xi_last = 0`` and, for even sizes, ``N_last / 2``) are the ones the halving
    maps to themselves: there bin ``(xi_0, xi_1, ...)`` is the conjugate of ``(-xi_0, -xi_1, ...)``, so their rows
    ``xi_0 < half`` determine the rest. The ``middle`` columns hold no pairs.
    """
    rows, last = fft_shape[0], fft_shape[-1]
    half = half_length(rows)
    if len(fft_shape) == 1 or half >= rows:
        return None
    columns = half_length(last)
    self_conjugate = slice(0, columns, columns - 1) if last % 2 == 0 and columns > 1 else slice(0, 1)
    middle = slice(1, columns - 1 if last % 2 == 0 else columns)
    return half, self_conjugate, middle


def multiplied_bins(fft_shape: Sequence[int]) -> int:
    """Bins of a half spectrum whose per-bin products are computed; the others are conjugated copies.

    Examples
    --------
    >>> math.prod(half_spectrum_shape((16, 16))), multiplied_bins((16, 16)), multiplied_bins((16,))
    (144, 130, 9)
    """
    bins = math.prod(half_spectrum_shape(fft_shape))
    pairs = conjugate_pairs(fft_shape)
    if pairs is None:
        return bins
    half, self_conjugate, _ = pairs
    columns = len(range(half_length(fft_shape[-1]))[self_conjugate])
    return bins - (fft_shape[0] - half) * math.prod(fft_shape[1:-1]) * columns


def smooth_sizes_between(low: int, high: int, primes: Sequence[int] = (2, 3, 5, 7)) -> list[int]:
    """All ``primes``-smooth integers in ``[low, high]``, sorted (fbfft's autotuner candidates).

    Examples
    --------
    >>> smooth_sizes_between(11, 16)
    [12, 14, 15, 16]
    """
    sizes = []
    for n in range(max(low, 1), high + 1):
        m = n
        for p in primes:
            while m % p == 0:
                m //= p
        if m == 1:
            sizes.append(n)
    return sizes


@functools.lru_cache(maxsize=1024)  # every convolution asks, and the search walks up to n integers
def next_fast_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c 7^d >= n``.

    Examples
    --------
    >>> [next_fast_size(n) for n in (11, 13, 17, 22, 64)]
    [12, 14, 18, 24, 64]
    """
    return smooth_sizes_between(n, 2 * n)[0]


def next_power_of_two(n: int) -> int:
    """Smallest power of two ``>= n``.

    Examples
    --------
    >>> next_power_of_two(33)
    64
    """
    return 1 << max(0, (n - 1).bit_length())


def fft_shape_for(geometry: ConvGeometry, policy: Union[FFTSizePolicy, Sequence[int], None] = None) -> tuple[int, ...]:
    """Circular FFT size per spatial dimension for ``geometry`` under a size policy.

    Parameters
    ----------
    geometry : ConvGeometry
    policy : {"fast", "pow2", "minimal"} or tuple of int, optional
        ``"minimal"``: the smallest exact size (:attr:`ConvGeometry.minimal_fft_shape`); ``"pow2"``: the next power
        of two (as in the paper); ``"fast"`` (default): the next ``2^a 3^b 5^c 7^d``. An explicit tuple is checked
        against the minimum.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((1, 1, 27, 27), (1, 1, 5, 5))
    >>> fft_shape_for(g, "minimal"), fft_shape_for(g, "fast"), fft_shape_for(g, "pow2")
    ((27, 27), (27, 27), (32, 32))
    """
    minimal = geometry.minimal_fft_shape
    if policy is None:
        policy = DEFAULT_FFT_SIZE
    if isinstance(policy, str):
        if policy == "minimal":
            return minimal
        if policy == "pow2":
            return tuple(next_power_of_two(n) for n in minimal)
        if policy == "fast":
            return tuple(next_fast_size(n) for n in minimal)
        raise ValueError(f"fft_size must be one of {FFT_SIZE_POLICIES} or a tuple of ints, got {policy!r}")
    try:  # operator.index accepts Python and numpy ints but not floats: 8.5 must not become 8
        shape = tuple(operator.index(n) for n in policy)
    except TypeError:
        raise TypeError(f"fft_size must be one of {FFT_SIZE_POLICIES} or a tuple of ints, got {policy!r}") from None
    if len(shape) != geometry.ndim:
        raise ValueError(f"fft_size={shape} must have one entry per spatial dimension ({geometry.ndim})")
    if any(n < m for n, m in zip(shape, minimal)):
        raise ValueError(f"fft_size={shape} is too small for this convolution; every dimension must be at least "
                         f"{minimal} to avoid wrap-around")
    return shape
