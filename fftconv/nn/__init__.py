"""Layers for training convolutional networks with the FFT convolutions of :mod:`fftconv`.

Torch7-style modules over plain numpy arrays: ``forward`` (updateOutput), ``backward`` (updateGradInput, and
accGradParameters into ``grad_*``), ``parameters()``, ``zero_grad()`` and ``nbytes``. The FFT convolution layers
transform each input map, kernel and output-gradient map once per training step (``memory="reuse"``), or recompute
them into one shared :class:`Workspace` (``memory="recompute"``, the paper's memory-efficient mode). With
``algo="auto"`` each pass runs the algorithm :func:`fftconv.choose.choose` picks for its input shape.

Examples
--------
>>> import numpy as np
>>> from fftconv import nn
>>> net = nn.Sequential(nn.Conv2d(1, 6, 5, dtype=np.float64, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
...                     nn.Linear(6 * 14 * 14, 10, dtype=np.float64, rng=1))
>>> criterion, optimizer = nn.CrossEntropyLoss(), nn.SGD(net.parameters(), lr=0.1, momentum=0.9)
>>> x, labels = np.random.default_rng(2).standard_normal((8, 1, 32, 32)), np.arange(8)
>>> losses = []
>>> for _ in range(5):
...     optimizer.zero_grad()
...     losses.append(criterion.forward(net.forward(x), labels))
...     _ = net.backward(criterion.backward())
...     optimizer.step()
>>> losses[-1] < losses[0]
True
"""

from .conv import MEMORY_POLICIES, Conv1d, Conv2d, Conv3d
from .layers import Flatten, Linear, LocallyConnected2d, ReLU, Sequential
from .loss import CrossEntropyLoss
from .module import Module
from .optim import SGD
from .pooling import MaxPool1d, MaxPool2d, MaxPool3d
from .workspace import Workspace, default_workspace

__all__ = [
    "Module", "Conv1d", "Conv2d", "Conv3d", "MEMORY_POLICIES", "Workspace", "default_workspace", "Linear",
    "LocallyConnected2d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "ReLU", "Flatten", "Sequential", "CrossEntropyLoss",
    "SGD",
]
