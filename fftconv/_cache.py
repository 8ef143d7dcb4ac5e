"""A least-recently-used cache bounded by a number of entries and by bytes: the home of every cache fftconv keeps.

A long run meets many shapes (variable-size images, the last short batch of an epoch, a sweep over layers); an
unbounded cache of plans and their buffers would grow with each of them. The callers lock around it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

Value = TypeVar("Value")


class LRUCache(Generic[Value]):
    """At most ``max_entries`` values and ``max_bytes`` bytes; the least recently used go first.

    ``on_evict(value)`` is called for each value dropped (by the bounds or by :meth:`clear`). The entry just put is
    never dropped by its own insertion, so a single value over ``max_bytes`` is still cached. Not thread-safe: the
    callers hold their own lock.

    Examples
    --------
    >>> cache = LRUCache(max_entries=2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a"); cache.put("c", 3)
    1
    >>> list(cache.keys())  # "b" was the least recently used
    ['a', 'c']
    >>> sized = LRUCache(max_bytes=100)
    >>> sized.put("x", "first", nbytes=60); sized.put("y", "second", nbytes=60)
    >>> list(sized.keys()), sized.nbytes
    (['y'], 60)
    """

    def __init__(self, max_entries: int | None = None, max_bytes: int | None = None,
                 on_evict: Callable[[Value], object] | None = None):
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {bound!r}")
        self.max_entries, self.max_bytes, self.on_evict = max_entries, max_bytes, on_evict
        self._entries: OrderedDict[Hashable, tuple[Value, int]] = OrderedDict()
        self.nbytes = 0

    def get(self, key: Hashable) -> Value | None:
        """The value for ``key``, now the most recently used, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: Value, nbytes: int = 0) -> None:
        """Cache ``value`` (of about ``nbytes``) under ``key``, then drop the least recently used over the bounds."""
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (value, int(nbytes))
        self.nbytes += int(nbytes)
        while len(self._entries) > 1 and self._over():
            self.evict_oldest()

    def _over(self) -> bool:
        return ((self.max_entries is not None and len(self._entries) > self.max_entries)
                or (self.max_bytes is not None and self.nbytes > self.max_bytes))

    def _drop(self, key: Hashable) -> None:
        value, nbytes = self._entries.pop(key)
        self.nbytes -= nbytes
        if self.on_evict is not None:
            self.on_evict(value)

    def evict_oldest(self) -> None:
        """Drop the least recently used entry (after lowering a bound, say)."""
        self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        """Drop every entry."""
        while self._entries:
            self.evict_oldest()

    def keys(self) -> Iterator[Hashable]:
        return iter(list(self._entries))

    def values(self) -> Iterator[Value]:
        return iter([value for value, _ in self._entries.values()])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries
