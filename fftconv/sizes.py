"""Transform sizes: the half spectrum of a real transform, fast FFT lengths and the FFT size policies.

The only home of the half-spectrum rule (a real transform of ``N`` points keeps ``N // 2 + 1`` bins along its last
axis) and of where a half spectrum still holds conjugate pairs.
"""

from __future__ import annotations

import functools
import math
from typing import Literal, Sequence, Union

from .geometry import ConvGeometry
from .params import _is_int

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


def parse_fft_size(fft_size: Union[FFTSizePolicy, int, Sequence[int], None], ndim: int
                   ) -> Union[FFTSizePolicy, tuple[int, ...]]:
    """``fft_size`` as a policy name or a tuple of ``ndim`` positive ints; raise an error naming the argument.

    ``None`` is the default policy; an int means that size in every dimension, as for ``stride``. Floats and bools
    are refused rather than truncated.

    Examples
    --------
    >>> parse_fft_size(None, 2), parse_fft_size(16, 2), parse_fft_size((8, 12), 2)
    ('fast', (16, 16), (8, 12))
    >>> parse_fft_size((8.5, 8.5), 2)
    Traceback (most recent call last):
    ...
    TypeError: fft_size must be one of ('fast', 'pow2', 'minimal'), an int or a tuple of 2 ints, got (8.5, 8.5)
    """
    if fft_size is None:
        return DEFAULT_FFT_SIZE
    if isinstance(fft_size, str):
        if fft_size not in FFT_SIZE_POLICIES:
            raise ValueError(f"fft_size must be one of {FFT_SIZE_POLICIES}, an int or a tuple of {ndim} ints, "
                             f"got {fft_size!r}")
        return fft_size  # type: ignore[return-value]
    accepted = f"fft_size must be one of {FFT_SIZE_POLICIES}, an int or a tuple of {ndim} ints, got {fft_size!r}"
    if _is_int(fft_size):
        shape = (int(fft_size),) * ndim  # type: ignore[arg-type]
    else:
        try:
            values = tuple(fft_size)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(accepted) from None
        if not all(_is_int(n) for n in values):  # 8.5 must not become 8, nor True become 1
            raise TypeError(accepted)
        shape = tuple(int(n) for n in values)
    if len(shape) != ndim:
        raise ValueError(f"fft_size={shape} must have one entry per spatial dimension ({ndim})")
    if any(n < 1 for n in shape):
        raise ValueError(f"fft_size must be positive in every dimension, got {shape}")
    return shape


def fft_shape_for(geometry: ConvGeometry, policy: Union[FFTSizePolicy, int, Sequence[int], None] = None
                  ) -> tuple[int, ...]:
    """Circular FFT size per spatial dimension for ``geometry`` under a size policy.

    Parameters
    ----------
    geometry : ConvGeometry
    policy : {"fast", "pow2", "minimal"}, int or tuple of int, optional
        ``"minimal"``: the smallest exact size (:attr:`ConvGeometry.minimal_fft_shape`); ``"pow2"``: the next power
        of two (as in the paper); ``"fast"`` (default): the next ``2^a 3^b 5^c 7^d``. An explicit size (an int for
        every dimension, or a tuple) is checked against the minimum (see :func:`parse_fft_size`).

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((1, 1, 27, 27), (1, 1, 5, 5))
    >>> fft_shape_for(g, "minimal"), fft_shape_for(g, "fast"), fft_shape_for(g, "pow2"), fft_shape_for(g, 32)
    ((27, 27), (27, 27), (32, 32), (32, 32))
    >>> fft_shape_for(g, 16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: fft_size=(16, 16) is too small for this convolution: every dimension must be at least (27, 27), ...
    """
    minimal = geometry.minimal_fft_shape
    policy = parse_fft_size(policy, geometry.ndim)
    if policy == "minimal":
        return minimal
    if policy == "pow2":
        return tuple(next_power_of_two(n) for n in minimal)
    if policy == "fast":
        return tuple(next_fast_size(n) for n in minimal)
    if any(n < m for n, m in zip(policy, minimal)):
        raise ValueError(f"fft_size={policy} is too small for this convolution: every dimension must be at least "
                         f"{minimal}, the minimal exact size (the circular convolution would wrap around); use "
                         "fft_size='minimal' or larger sizes")
    return policy
