"""A convolution's hyper-parameters, normalised and validated once for a number of spatial dimensions.

:class:`ConvParams` is what a layer knows when it is built (stride, padding, dilation, groups) and what the
functional API knows before it looks at array shapes. Ints are expanded to one value per spatial dimension the way
PyTorch's ``_ntuple`` does. :class:`~fftconv.geometry.ConvGeometry` combines it with the shapes at call time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, Union

import numpy as np

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[str, int, Sequence[int]]
PADDING_MODES = ("valid", "same")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _expand(value: IntOrTuple, ndim: int, name: str) -> tuple[int, ...]:
    """Expand an int or a length-``ndim`` sequence of ints into a tuple, the ``_ntuple`` way.

    Examples
    --------
    >>> _expand(3, 2, "stride"), _expand((1, 2), 2, "stride")
    ((3, 3), (1, 2))
    """
    if _is_int(value):
        return (int(value),) * ndim
    try:
        values = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}") from None
    if len(values) != ndim or not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or a tuple of {ndim} ints for a {ndim}-d convolution, got {value!r}")
    return tuple(int(v) for v in values)


def _require_positive(values: tuple[int, ...], name: str) -> None:
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be positive in every dimension, got {values}")


@dataclass(frozen=True)
class ConvParams:
    """Stride, padding, dilation and groups of an ``ndim``-dimensional convolution, validated.

    Build it with :meth:`create`; the constructor itself trusts its arguments.

    Attributes
    ----------
    ndim : int
        Number of spatial dimensions.
    stride, dilation : tuple of int
        One positive value per spatial dimension.
    padding : tuple of int, "valid" or "same"
        Zeros added on both sides, per spatial dimension; ``"same"`` is resolved once the kernel is known
        (:meth:`padding_for`).
    groups : int

    Examples
    --------
    >>> p = ConvParams.create(2, stride=2, padding=1)
    >>> p.stride, p.padding, p.padding_for((3, 3))
    ((2, 2), (1, 1), ((1, 1), (1, 1)))
    >>> ConvParams.create(1, padding="same").padding_for((4,))  # PyTorch puts the extra zero after
    ((1,), (2,))
    """

    ndim: int
    stride: tuple[int, ...]
    padding: Union[tuple[int, ...], Literal["valid", "same"]]
    dilation: tuple[int, ...]
    groups: int

    @classmethod
    def create(cls, ndim: int, stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
               groups: int = 1) -> "ConvParams":
        """Validate the hyper-parameters of an ``ndim``-d convolution; raise an error naming the argument."""
        if not _is_int(ndim) or ndim < 1:
            raise ValueError(f"ndim must be a positive int, got {ndim!r}")
        ndim = int(ndim)
        if not _is_int(groups) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        stride_t = _expand(stride, ndim, "stride")
        dilation_t = _expand(dilation, ndim, "dilation")
        _require_positive(stride_t, "stride")
        _require_positive(dilation_t, "dilation")
        return cls(ndim, stride_t, _check_padding(padding, ndim, stride_t), dilation_t, int(groups))

    def padding_for(self, kernel_shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(before, after)`` zeros per spatial dimension for a kernel of ``kernel_shape``.

        ``"same"`` follows PyTorch: a total of ``d * (k - 1)``, the smaller half before.
        """
        if self.padding == "valid":
            return (0,) * self.ndim, (0,) * self.ndim
        if self.padding == "same":
            total = tuple(d * (k - 1) for k, d in zip(kernel_shape, self.dilation))
            before = tuple(t // 2 for t in total)
            return before, tuple(t - b for t, b in zip(total, before))
        return self.padding, self.padding


def _check_padding(padding: Padding, ndim: int, stride: tuple[int, ...]) -> Union[tuple[int, ...], str]:
    if isinstance(padding, str):
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"padding='same' requires stride 1 (as in PyTorch), got stride={stride}; "
                             "pass explicit integer padding for strided convolutions")
        return padding
    pad = _expand(padding, ndim, "padding")
    if any(p < 0 for p in pad):
        raise ValueError(f"padding must be non-negative, got {pad}")
    return pad
