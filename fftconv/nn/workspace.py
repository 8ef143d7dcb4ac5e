"""One buffer for the spectra of every FFT layer: the paper's memory-efficient mode.

Mathieu et al. (2014, section 2.3) note that keeping the Fourier representations of every layer from forward to
backward "might become prohibitively expensive in terms of memory for large networks", so they "reuse the same memory
for all the different convolutions in the network, so that the necessary amount of memory is determined only by the
largest convolution layer". A :class:`Workspace` is that memory: layers built with ``memory="recompute"`` write the
three spectra of each pass (``S*f`` input maps, ``f'*f/groups`` kernels, ``S*f'`` output-gradient maps) into it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from .._parallel import fork_safe_lock
from ..spectral import SpectralPlan

#: Byte alignment of every spectrum inside the buffer (a cache line; FFTW and SIMD loads like it).
ALIGNMENT = 64


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class Workspace:
    """A growable, reusable buffer holding the three spectra of one convolution at a time.

    The buffer grows to the largest layer's need (each of the spectra ``spectrum_shapes`` of its plan, one after the
    other) and is then reused by every layer on every call: after the first training step nothing is allocated.

    Threads: a pass holds the workspace (:meth:`borrow`) from its first transform to its last product, and a pass of
    another thread waits meanwhile. One buffer per process is the point of the memory-efficient mode (its size is
    that of the largest layer, however many layers and threads there are); a per-thread buffer would multiply it by
    the number of threads. Threads that should run their recompute passes concurrently give their layers their own
    ``Workspace()`` and pay its memory. A forked child starts with the workspace free, even if a thread of the
    parent held it at the fork.

    Attributes
    ----------
    allocations : int
        How many times the buffer was (re)allocated; it stops growing once the largest layer has run.

    Examples
    --------
    >>> import numpy as np
    >>> from fftconv import ConvGeometry, SpectralPlan
    >>> workspace = Workspace()
    >>> plan = SpectralPlan.create(ConvGeometry.from_shapes((2, 3, 8, 8), (4, 3, 3, 3)), np.float64)
    >>> buffers = workspace.spectra(plan)
    >>> buffers["input"].shape == plan.spectrum_shapes["input"], buffers["input"].dtype
    (True, dtype('complex128'))
    >>> first = workspace.address
    >>> _ = workspace.spectra(plan)
    >>> workspace.address == first, workspace.allocations
    (True, 1)
    """

    def __init__(self) -> None:
        self._storage = np.empty(0, dtype=np.uint8)
        self._buffer = self._storage
        self.allocations = 0
        self._lock = fork_safe_lock()  # a forked child finds it free, even if a parent thread held it

    @contextmanager
    def borrow(self, plan: SpectralPlan) -> Iterator[dict[str, np.ndarray]]:
        """Hold the workspace for one pass and give its views for ``plan`` (see :meth:`spectra`).

        Other threads' ``borrow`` calls wait until the ``with`` block ends, so no pass overwrites another's spectra.
        Not re-entrant: a pass must not borrow the workspace it already holds.

        Examples
        --------
        >>> import numpy as np
        >>> from fftconv import ConvGeometry, SpectralPlan
        >>> plan = SpectralPlan.create(ConvGeometry.from_shapes((1, 1, 8), (1, 1, 3)), np.float64)
        >>> with Workspace().borrow(plan) as buffers:
        ...     sorted(buffers)
        ['grad_output', 'input', 'weight']
        """
        with self._lock:
            yield self.spectra(plan)

    def reserve(self, nbytes: int) -> None:
        """Make the buffer hold at least ``nbytes`` (aligned); only ever grows."""
        if nbytes <= self._buffer.nbytes:
            return
        storage = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        offset = (-storage.ctypes.data) % ALIGNMENT
        self._storage, self._buffer = storage, storage[offset:offset + nbytes]
        self.allocations += 1

    @staticmethod
    def bytes_needed(plan: SpectralPlan) -> int:
        """Bytes one convolution's three spectra take in a workspace (each aligned)."""
        return sum(_round_up(size, ALIGNMENT) for size in plan.spectrum_bytes().values())

    def spectra(self, plan: SpectralPlan) -> dict[str, np.ndarray]:
        """Views of the buffer for ``plan``'s spectra, keyed like ``plan.spectrum_shapes``, ready as ``out=``.

        The views alias the same memory for every layer: their contents are valid only until another layer asks.
        Code that may run in several threads uses :meth:`borrow`, which holds the workspace meanwhile.
        """
        self.reserve(self.bytes_needed(plan))
        dtype = plan.complex_dtype
        views, offset = {}, 0
        for name, size in plan.spectrum_bytes().items():
            views[name] = plan.spectrum_from(name, self._buffer[offset:offset + size].view(dtype))
            offset += _round_up(size, ALIGNMENT)
        return views

    @property
    def nbytes(self) -> int:
        """Bytes the workspace holds (its alignment slack included)."""
        return self._storage.nbytes

    @property
    def address(self) -> int:
        """Address of the buffer's first byte: unchanged between calls once the largest layer has run."""
        return self._buffer.ctypes.data

    def held_arrays(self) -> list[np.ndarray]:
        return [self._storage]

    def __repr__(self) -> str:
        return f"Workspace(nbytes={self.nbytes}, allocations={self.allocations})"


_DEFAULT = Workspace()


def default_workspace() -> Workspace:
    """The process-wide workspace that ``memory="recompute"`` layers share unless given their own."""
    return _DEFAULT
