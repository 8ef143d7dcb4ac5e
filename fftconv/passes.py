"""The three passes of a convolution layer's training step: one vocabulary for the whole package.

The public functions also accept the plain strings ``"forward"``, ``"input"`` and ``"weight"``.
"""

from __future__ import annotations

from enum import Enum
from typing import Union


class Pass(str, Enum):
    """A pass of the training step, named by what it computes.

    ============  ==================  =========================================
    member        the paper's name    result
    ============  ==================  =========================================
    ``FORWARD``   updateOutput        the output ``y``
    ``INPUT``     updateGradInput     the input gradient ``dL/dx``
    ``WEIGHT``    accGradParameters   the weight gradient ``dL/dw``
    ============  ==================  =========================================

    Examples
    --------
    >>> Pass.parse("input") is Pass.INPUT, f"{Pass.WEIGHT}", [str(p) for p in Pass]
    (True, 'weight', ['forward', 'input', 'weight'])
    """

    FORWARD = "forward"
    INPUT = "input"
    WEIGHT = "weight"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, value: Union["Pass", str], name: str = "pass_name") -> "Pass":
        """The member for ``value`` (a member or its string); raise naming the argument and the valid values."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{name} must be one of {PASSES}, got {value!r}") from None


#: The passes in the order the paper lists them, as their strings.
PASSES = tuple(p.value for p in Pass)
