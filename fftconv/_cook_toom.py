"""Exact Winograd / Cook-Toom transforms ``F(m, r)``, built in rational arithmetic from their interpolation points.

``F(m, r)`` computes ``m`` outputs of the correlation ``y[i] = sum_k d[i + k] g[k]`` of ``alpha = m + r - 1`` inputs
``d`` with ``r`` taps ``g`` using ``alpha`` multiplications instead of ``m r``::

    y = A^T [ (G g) * (B^T d) ]    (``*`` element-wise; A^T: m x alpha, G: alpha x r, B^T: alpha x alpha)

Construction (the transposed Toom-Cook algorithm). A linear *convolution* of polynomials ``p`` (``m`` coefficients)
and ``q`` (``r`` coefficients) is fixed by the product's values at ``alpha`` points: ``s = V^-1 [(V_r q) * (V_m p)]``,
where ``V_n`` evaluates an ``n``-coefficient polynomial at the points (for the point at infinity: its leading
coefficient) and ``V = V_alpha``. As a linear map of ``p`` this is ``s = T(q) p`` with ``T(q)[j, i] = q[j - i]``; its
transpose ``T(q)^T`` maps ``alpha`` values to ``m`` correlation outputs. Hence ``A^T = V_m^T``, ``G = V_r`` and
``B^T = V^-T``. Column ``j`` of ``V^-1`` holds the coefficients of the Lagrange polynomial ``N_j(x) / D_j`` of the
finite point ``p_j`` (``N_j = prod_{l != j} (x - p_l)`` over the other finite points, ``D_j = N_j(p_j)``), and the
column of the point at infinity those of ``M(x) = prod_l (x - p_l)``. As in Lavin & Gray (2016) the scalars
``1/|D_j|`` move from ``B^T`` to ``G`` (a diagonal between the two factors of an element-wise product is free; the
signs stay in ``B^T``), so ``B^T`` holds the polynomial coefficients of ``N_j`` and ``M``, and the kernel transform,
computed once per layer, carries the divisions.

``B^T`` depends only on ``alpha`` and the points, not on how ``alpha`` splits into ``m + r - 1``: ``F(m, r)`` and
``F(r, m)`` transform their data tiles identically, and swap the roles of ``A`` and ``G`` (up to the ``1/D_j``).

Points: ``0``, ``1``, ``-1``, then ``1/p, -p, -1/p, p`` for ``p = 2, 4, ...`` (``0, 1, -1, 1/2, -2, -1/2, 2, 1/4,
-4, ...``), as many as needed (``alpha - 1`` finite points), plus the point at infinity. Small magnitudes and their
reciprocals keep the Vandermonde matrices as well conditioned as rational points allow, and powers of two make many
entries exact in floating point. For ``alpha = 4, 8, 12`` the points come in complete ``+-`` pairs; otherwise the
last ones pair ``p`` with ``-1/p``: F(4, 3) uses ``0, +-1, 1/2, -2``, which measured 3.8x more accurate in float32
than ``0, +-1, +-1/2`` (docs/winograd.md), as Barabasz et al. (2020) also found.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Iterator

import numpy as np

Matrix = tuple[tuple[Fraction, ...], ...]

#: Largest transform size ``alpha = m + r - 1`` this module builds. The error of floating-point Winograd grows
#: roughly geometrically with ``alpha`` (the points spread over ever more octaves); by 16 float64 has lost about half
#: its digits, so a larger request is a mistake, not a trade-off.
MAX_TRANSFORM_SIZE = 16


def _nonzero_points() -> Iterator[Fraction]:
    """``1, -1``, then for ``p = 2, 4, 8, ...``: ``1/p, -p, -1/p, p``."""
    yield Fraction(1)
    yield Fraction(-1)
    power = Fraction(2)
    while True:
        yield from (1 / power, -power, -1 / power, power)
        power *= 2


def interpolation_points(count: int) -> tuple[Fraction, ...]:
    """The first ``count`` finite interpolation points: ``0, 1, -1, 1/2, -2, -1/2, 2, 1/4, -4, -1/4, 4, ...``.

    Examples
    --------
    >>> [str(p) for p in interpolation_points(7)]
    ['0', '1', '-1', '1/2', '-2', '-1/2', '2']
    """
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    points = [Fraction(0)]
    for point in _nonzero_points():
        if len(points) >= count:
            break
        points.append(point)
    return tuple(points[:count])


def _polynomial_from_roots(roots: tuple[Fraction, ...], length: int) -> tuple[Fraction, ...]:
    """Coefficients, lowest power first, of ``prod (x - root)``, zero-extended to ``length``."""
    coefficients = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0), *coefficients]  # x * p(x)
        coefficients = [high - root * low for high, low in zip(shifted, [*coefficients, Fraction(0)])]
    return tuple(coefficients) + (Fraction(0),) * (length - len(coefficients))


def _check_sizes(m: int, r: int) -> None:
    for name, value in (("m", m), ("r", r)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if m + r - 1 > MAX_TRANSFORM_SIZE:
        raise ValueError(f"F(m={m}, r={r}) needs a transform of size m + r - 1 = {m + r - 1}; at most "
                         f"{MAX_TRANSFORM_SIZE} is supported (the float error grows geometrically with it); use a "
                         "smaller tile")


@functools.lru_cache(maxsize=64)
def cook_toom(m: int, r: int) -> tuple[Matrix, Matrix, Matrix]:
    """The exact matrices ``(A^T, G, B^T)`` of ``F(m, r)``, as tuples of rows of :class:`fractions.Fraction`.

    Shapes ``(m, alpha)``, ``(alpha, r)`` and ``(alpha, alpha)`` with ``alpha = m + r - 1``; the points are
    :func:`interpolation_points` ``(alpha - 1)`` followed by infinity (the last row of ``G`` and ``B^T``). With one
    output or one tap (``m == 1`` or ``r == 1``) the transforms are identities and sums, with no points at all.

    Examples
    --------
    Lavin & Gray's ``F(2, 3)``, up to the sign of the point at infinity:

    >>> AT, G, BT = cook_toom(2, 3)
    >>> [[str(v) for v in row] for row in AT]
    [['1', '1', '1', '0'], ['0', '1', '-1', '1']]
    >>> [[str(v) for v in row] for row in G]
    [['1', '0', '0'], ['1/2', '1/2', '1/2'], ['1/2', '-1/2', '1/2'], ['0', '0', '1']]
    >>> [[str(v) for v in row] for row in BT]
    [['1', '0', '-1', '0'], ['0', '1', '1', '0'], ['0', '-1', '1', '0'], ['0', '-1', '0', '1']]
    """
    _check_sizes(m, r)
    if m == 1 or r == 1:
        return _trivial(m, r)
    alpha = m + r - 1
    points = interpolation_points(alpha - 1)
    a_transposed = tuple(tuple(p ** i for p in points) + (Fraction(int(i == m - 1)),) for i in range(m))
    g_rows, b_rows = [], []
    for j, p in enumerate(points):
        others = points[:j] + points[j + 1:]
        numerator = _polynomial_from_roots(others, alpha)
        denominator = sum(c * p ** i for i, c in enumerate(numerator))  # N_j(p_j), nonzero: points are distinct
        sign = 1 if denominator > 0 else -1  # the sign stays in B^T, as in Lavin & Gray's tables
        g_rows.append(tuple(p ** k / abs(denominator) for k in range(r)))
        b_rows.append(tuple(sign * c for c in numerator))
    g_rows.append(tuple(Fraction(int(k == r - 1)) for k in range(r)))
    b_rows.append(_polynomial_from_roots(points, alpha))
    return a_transposed, tuple(g_rows), tuple(b_rows)


def _trivial(m: int, r: int) -> tuple[Matrix, Matrix, Matrix]:
    """``F(1, r)`` (one output: a dot product) and ``F(m, 1)`` (one tap: a scaling) with identity transforms.

    Both already use the minimal ``alpha`` multiplications, so interpolation has nothing to save; its Vandermonde
    matrices would only add round-off (through nine points, F(1, 9)'s predicted float64 error was 120x the sum's).
    """
    alpha = m + r - 1
    identity = tuple(tuple(Fraction(int(i == j)) for j in range(alpha)) for i in range(alpha))
    if m == 1:  # y = sum_k g[k] d[k]: A^T sums the products
        return ((Fraction(1),) * alpha,), identity, identity
    return identity, tuple((Fraction(1),) for _ in range(alpha)), identity  # y[i] = g[0] d[i]: G copies the tap


def correlate_exact(d, g, m: int) -> list[Fraction]:
    """``F(m, r)`` evaluated in exact rational arithmetic: ``A^T [(G g) * (B^T d)]``.

    ``d`` has ``m + len(g) - 1`` entries; the result equals ``[sum_k d[i + k] g[k] for i in range(m)]`` exactly.

    Examples
    --------
    >>> correlate_exact([1, 2, 3, 4], [1, 0, -1], 2)
    [Fraction(-2, 1), Fraction(-2, 1)]
    """
    a_transposed, g_matrix, b_transposed = cook_toom(m, len(g))
    if len(d) != m + len(g) - 1:
        raise ValueError(f"d must have m + len(g) - 1 = {m + len(g) - 1} entries, got {len(d)}")
    d, g = [Fraction(v) for v in d], [Fraction(v) for v in g]
    product = [sum(gr * gv for gr, gv in zip(g_row, g)) * sum(br * dv for br, dv in zip(b_row, d))
               for g_row, b_row in zip(g_matrix, b_transposed)]
    return [sum(a * v for a, v in zip(a_row, product)) for a_row in a_transposed]


@functools.lru_cache(maxsize=128)
def float_transforms(m: int, r: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of ``F(m, r)`` as read-only arrays of ``dtype``, the exact values rounded (via float64).

    Cached per ``(m, r, dtype)`` (bounded); the arrays are shared, hence read-only.

    Examples
    --------
    >>> AT, G, BT = float_transforms(4, 3, "float32")
    >>> AT.shape, G.shape, BT.shape, AT.dtype.name, AT.flags.writeable
    ((4, 6), (6, 3), (6, 6), 'float32', False)
    """
    arrays = []
    for exact in cook_toom(m, r):
        array = np.array([[float(v) for v in row] for row in exact], dtype=np.dtype(dtype))
        array.setflags(write=False)
        arrays.append(array)
    return tuple(arrays)  # type: ignore[return-value]
