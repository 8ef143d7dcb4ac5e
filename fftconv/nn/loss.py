"""Softmax cross-entropy, the loss at the top of a classification network."""

from __future__ import annotations

import numpy as np

from ..geometry import SUPPORTED_DTYPES


class CrossEntropyLoss:
    """Mean softmax cross-entropy over the batch, as ``torch.nn.CrossEntropyLoss()`` with class-index targets.

    ``loss = mean_s(logsumexp(logits[s]) - logits[s, target[s]])``, computed from ``logits - max`` so that large
    logits neither overflow nor lose the small ones. ``backward()`` returns ``(softmax(logits) - onehot) / S``.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv.nn import CrossEntropyLoss
    >>> criterion = CrossEntropyLoss()
    >>> loss = criterion.forward(np.array([[0.0, 0.0], [1000.0, 0.0]]), np.array([0, 0]))
    >>> round(loss, 6)  # (log 2 + 0) / 2, no overflow
    0.346574
    >>> criterion.backward()
    array([[-0.25,  0.25],
           [ 0.  ,  0.  ]])
    """

    def __init__(self) -> None:
        self._saved: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        """Return the mean loss and keep the softmax for :meth:`backward`."""
        if not isinstance(logits, np.ndarray) or logits.ndim != 2 or logits.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"logits must be a float32/float64 ndarray of shape (batch, classes), got "
                            f"{getattr(logits, 'dtype', type(logits).__name__)} {getattr(logits, 'shape', '')}")
        target = np.asarray(target)
        if target.shape != logits.shape[:1] or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(f"target must be an integer array of shape ({logits.shape[0]},) holding class indices, "
                             f"got dtype {target.dtype} and shape {target.shape}")
        if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
            raise ValueError(f"target holds class indices outside [0, {logits.shape[1]}): min {target.min()}, "
                             f"max {target.max()}")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self._saved = (np.exp(log_probabilities), target)
        return float(-log_probabilities[np.arange(len(target)), target].mean())

    __call__ = forward

    def backward(self, grad_output: float = 1.0) -> np.ndarray:
        """Gradient of the loss with respect to the logits (scaled by ``grad_output``)."""
        if self._saved is None:
            raise RuntimeError("CrossEntropyLoss.backward() needs forward(logits, target) first")
        probabilities, target = self._saved
        self._saved = None
        grad = probabilities.copy()
        grad[np.arange(len(target)), target] -= 1
        grad *= grad_output / len(target)
        return grad

    def __repr__(self) -> str:
        return "CrossEntropyLoss()"
