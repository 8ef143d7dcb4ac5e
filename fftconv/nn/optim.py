"""Stochastic gradient descent with momentum and weight decay, PyTorch's update rule."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .module import Parameter


class SGD:
    """SGD over ``(parameter, gradient)`` pairs, updating the parameters in place; ``torch.optim.SGD``'s rule.

    For each parameter ``p`` with gradient ``g``::

        d = g + weight_decay * p
        if momentum:
            buf = d                                          (first step)
            buf = momentum * buf + (1 - dampening) * d       (later steps)
            d = d + momentum * buf if nesterov else buf
        p -= lr * d

    Parameters
    ----------
    params : iterable of (ndarray, ndarray)
        Usually ``model.parameters()``.
    lr : float
    momentum, weight_decay, dampening : float, default 0
    nesterov : bool, default False

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import SGD
    >>> p, g = np.array([1.0]), np.array([0.5])
    >>> opt = SGD([(p, g)], lr=0.1, momentum=0.9)
    >>> opt.step(); opt.step(); p  # 1 - 0.1*0.5 - 0.1*(0.9*0.5 + 0.5)
    array([0.855])
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0, weight_decay: float = 0.0, *,
                 dampening: float = 0.0, nesterov: bool = False):
        self.params = [(p, g) for p, g in params]
        for index, (p, g) in enumerate(self.params):
            if not (isinstance(p, np.ndarray) and isinstance(g, np.ndarray)) or p.shape != g.shape:
                raise TypeError(f"params[{index}] must be a (parameter, gradient) pair of ndarrays of one shape; "
                                "pass model.parameters()")
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not value >= 0:
                raise ValueError(f"{name} must be non-negative, got {value!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening == 0 (as in PyTorch)")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.dampening, self.nesterov = float(dampening), bool(nesterov)
        self.momentum_buffers: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        """Apply one update to every parameter, in place."""
        for index, (p, g) in enumerate(self.params):
            d = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                buffer = self.momentum_buffers[index]
                if buffer is None:
                    buffer = self.momentum_buffers[index] = np.array(d, copy=True)
                else:
                    buffer *= self.momentum
                    buffer += (1 - self.dampening) * d
                d = d + self.momentum * buffer if self.nesterov else buffer
            p -= self.lr * d

    def zero_grad(self) -> None:
        """Set all gradients to zero."""
        for _, g in self.params:
            g.fill(0)

    def __repr__(self) -> str:
        extras = "".join(f", {n}={v}" for n, v in (("momentum", self.momentum), ("weight_decay", self.weight_decay),
                                                  ("dampening", self.dampening)) if v)
        return f"SGD(lr={self.lr}{extras}{', nesterov=True' if self.nesterov else ''})"
