"""The layer protocol shared by every class in :mod:`fftconv.nn`, in the style of Torch7's ``nn.Module``.

A layer is a thin holder of state around the functional core:

- ``forward(x)`` (Torch's ``updateOutput``) computes the output and, in training mode, keeps what ``backward``
  needs (the *saved* state: spectra, an argmax, a copy of the input);
- ``backward(grad_output)`` returns the gradient with respect to the input (``updateGradInput``) and **adds** the
  parameter gradients into ``grad_*`` arrays (``accGradParameters``); it consumes the saved state when it succeeds,
  so each ``forward`` allows one ``backward`` (a ``backward`` refused for a bad argument can be retried);
- ``parameters()`` lists ``(parameter, gradient)`` pairs of arrays that optimisers update in place; the layers
  never rebind them (``reset_parameters`` writes in place too), so an optimiser built once keeps working.

There is no autograd graph: :class:`~fftconv.nn.Sequential` calls ``backward`` in reverse order.

A layer serves one thread at a time: its saved state belongs to one ``forward``. A ``forward`` or ``backward``
called while another thread is inside one of them on the same layer raises ``RuntimeError`` instead of mixing the
two threads' state into wrong gradients (every subclass's ``forward`` and ``backward`` are guarded, see
:func:`_one_thread_at_a_time`).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .._parallel import fork_safe_lock
from ..geometry import SUPPORTED_DTYPES

Parameter = tuple[np.ndarray, np.ndarray]

#: Guards the check-and-set of which thread is inside a layer (held for a dictionary lookup, not for the call).
_IN_USE_LOCK = fork_safe_lock()


def _one_thread_at_a_time(method: Callable) -> Callable:
    """Wrap a layer's ``forward`` or ``backward`` so that a second thread entering the same layer raises.

    The layer records the (process, thread) inside it; the same thread may re-enter (a subclass calling
    ``super().forward``), another one is refused with a ``RuntimeError`` naming the layer and the fix. A forked
    child does not see its parent's threads as inside. Costs about a microsecond per call.
    """

    @functools.wraps(method)
    def guarded(self: "Module", *args: Any, **kwargs: Any) -> Any:
        me = (os.getpid(), threading.get_ident())
        with _IN_USE_LOCK:
            inside = self.__dict__.get("_thread_inside")
            if inside is not None and inside != me and inside[0] == me[0]:
                raise RuntimeError(
                    f"{self!r}.{method.__name__}() was called while another thread is inside this layer's forward or "
                    "backward. A layer keeps the state of one forward for its backward, so threads sharing it would "
                    "get each other's gradients: give each thread its own layer (built with the same arguments, "
                    "its parameters copied in place: layer.weight[...] = other.weight)")
            self.__dict__["_thread_inside"] = me
        try:
            return method(self, *args, **kwargs)
        finally:
            if inside != me:  # the outermost call of this thread leaves the layer
                self.__dict__.pop("_thread_inside", None)

    guarded.one_thread_at_a_time = True
    return guarded


class Module:
    """Base class of all layers: ``forward``, ``backward``, parameters, gradients and the bytes they hold.

    Subclasses list their parameter attribute names in ``_parameter_names``; for each name ``p`` the layer holds
    arrays ``p`` and ``grad_p`` (a ``None`` parameter, such as a disabled bias, is skipped).
    """

    _parameter_names: tuple[str, ...] = ()
    training: bool = True
    _saved: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "one_thread_at_a_time", False):
                setattr(cls, name, _one_thread_at_a_time(method))

    # ------------------------------------------------------------------ the two passes
    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # ------------------------------------------------------------------ saved state between the passes
    def _save(self, **state: Any) -> None:
        """Keep what ``backward`` needs; in evaluation mode keep nothing (no backward will follow)."""
        self._saved = state if self.training else None

    @contextmanager
    def _consuming_saved(self) -> Iterator[dict[str, Any]]:
        """The state saved by ``forward``, dropped when the ``with`` block ends without an exception.

        ``backward`` validates its argument and computes inside the block: a refused or failed call leaves the state
        in place for a corrected retry, and a successful one releases it, as PyTorch frees saved tensors.
        """
        saved = self._saved
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs the state saved by forward(); call forward() "
                               "in training mode first (each forward allows one backward; eval() saves nothing)")
        yield saved
        if self._saved is saved:
            self._saved = None

    def train(self, mode: bool = True) -> "Module":
        """Training mode (default): ``forward`` saves state for ``backward``. Returns ``self``."""
        self.training = bool(mode)
        if not mode:
            self._saved = None
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``forward`` keeps nothing, so inference holds no spectra or caches."""
        return self.train(False)

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> list[Parameter]:
        """``(parameter, gradient)`` pairs; optimisers update the parameters in place."""
        pairs = []
        for name in self._parameter_names:
            value = getattr(self, name)
            if value is not None:
                pairs.append((value, getattr(self, f"grad_{name}")))
        return pairs

    def _check_parameters(self) -> None:
        """Raise if a parameter was rebound to an array of another shape or dtype than its gradient's.

        The gradients keep the shapes the layer was built with, so they are the reference; the message names the
        attribute, both shapes or dtypes, and the in-place assignment that keeps optimisers working.
        """
        for name in self._parameter_names:
            value, grad = getattr(self, name), getattr(self, f"grad_{name}")
            if grad is None:
                if value is not None:
                    raise ValueError(f"{self!r}: {name} must stay None, the layer was built without it; build a new "
                                     f"layer with {name}=True to have one")
                continue
            expected = f"shape {grad.shape} and dtype {grad.dtype}"
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{self!r}: {name} must be a numpy.ndarray of {expected}, got "
                                f"{type(value).__name__}; assign values in place with layer.{name}[...] = values")
            if value.shape != grad.shape:
                raise ValueError(f"{self!r}: {name} has shape {value.shape}, but the layer was built for "
                                 f"{grad.shape}; assign values of that shape in place (layer.{name}[...] = values) "
                                 "or build a new layer for another size")
            if value.dtype != grad.dtype:
                supported = value.dtype in SUPPORTED_DTYPES
                other_layer = f" or build the layer with dtype=np.{value.dtype}" if supported else ""
                raise TypeError(f"{self!r}: {name} has dtype {value.dtype}, but the layer was built with dtype="
                                f"{grad.dtype}; assign in place (layer.{name}[...] = values casts){other_layer}")

    def _initialise(self, name: str, values: np.ndarray | None) -> None:
        """Make ``values`` the parameter ``name``: written into the existing array when there is one (optimisers hold
        it, as ``torch.nn.init`` writes in place), bound as the attribute on the first call."""
        current = getattr(self, name, None)
        if current is None or values is None:
            setattr(self, name, values)
            return
        self._check_parameters()
        current[...] = values

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero (``backward`` accumulates into them)."""
        for _, grad in self.parameters():
            grad.fill(0)

    @classmethod
    def parameter_shapes(cls, *args: Any, **kwargs: Any) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters a layer built with these arguments holds; nothing is allocated."""
        return {}

    @classmethod
    def parameter_count(cls, *args: Any, **kwargs: Any) -> int:
        """Number of scalar parameters of a layer built with these arguments, from :meth:`parameter_shapes`.

        Examples
        --------
        >>> from fftconv.nn import Linear
        >>> Linear.parameter_count(40_000, 40_000, bias=False)  # a 200x200 image fully connected to 40K units
        1600000000
        """
        return sum(math.prod(shape) for shape in cls.parameter_shapes(*args, **kwargs).values())

    # ------------------------------------------------------------------ memory
    def held_arrays(self) -> Iterator[np.ndarray]:
        """Arrays this layer holds on its own: parameters, gradients and saved state."""
        for parameter, grad in self.parameters():
            yield parameter
            yield grad
        for value in (self._saved or {}).values():
            if isinstance(value, np.ndarray):
                yield value

    def workspaces(self) -> list["Any"]:
        """Shared workspaces this layer writes into (counted once by containers, not by the layer)."""
        return []

    @property
    def nbytes(self) -> int:
        """Bytes the layer holds now: parameters, gradients and kept spectra or caches (shared workspaces excluded).

        Saved references to the layer's input are counted too: they keep that array alive until ``backward``.
        """
        return _unique_nbytes(self.held_arrays())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""


def _unique_nbytes(arrays: Iterable[np.ndarray]) -> int:
    """Sum of ``nbytes`` over distinct arrays (an array held by two layers counts once)."""
    seen: dict[int, int] = {}
    for array in arrays:
        seen[id(array)] = array.nbytes
    return sum(seen.values())


# ---------------------------------------------------------------------- helpers for parametrised layers
def resolve_dtype(dtype: Any) -> np.dtype:
    """The layer's float dtype, or a ``TypeError`` naming the argument."""
    resolved = np.dtype(dtype)
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}; pass dtype=np.float32 or np.float64")
    return resolved


def resolve_rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a Generator (used as is) or ``None`` (fresh entropy)."""
    if rng is None or isinstance(rng, (int, np.integer, np.random.Generator)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be an int seed, a numpy.random.Generator or None, got {type(rng).__name__}")


def fan_in_uniform(rng: np.random.Generator, shape: Sequence[int], fan_in: int, dtype: np.dtype) -> np.ndarray:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: PyTorch's default for weights (kaiming_uniform, a=sqrt(5)) and biases.

    ``kaiming_uniform_(a=sqrt(5))`` has bound ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + 5))``, which
    is exactly ``1 / sqrt(fan_in)``. Drawn in float64, then cast, so float32 and float64 layers built from the same
    seed start from the same values up to rounding.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=tuple(shape)).astype(dtype)


def check_input(x: Any, dtype: np.dtype, ndim: int | None, layer: "Module", name: str = "input") -> None:
    """Raise a ``TypeError``/``ValueError`` naming the layer, the argument and the fix (the repr is built lazily)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer!r}: {name} must be a numpy.ndarray, got {type(x).__name__}; wrap it with np.asarray")
    if x.dtype != dtype:
        swapped = "" if x.dtype.isnative else f" (byte-swapped {x.dtype.newbyteorder('=')})"
        other_layer = f" or build the layer with dtype=np.{x.dtype}" if x.dtype in SUPPORTED_DTYPES else ""
        raise TypeError(f"{layer!r}: {name} has dtype {x.dtype}{swapped} but the layer was built with dtype={dtype}; "
                        f"cast with {name}.astype(np.{dtype}){other_layer}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{layer!r}: {name} must have {ndim} dimensions, got shape {x.shape}")


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int, or a ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
