"""A bounded map whose entries expire: the in-process store behind caches and limiters.

Not thread-safe and not awaitable: it is meant for one event loop, where every operation
runs to completion without interleaving. Memory is bounded by ``max_entries``: inserting
beyond it forgets the least recently used entry, expired or not. Expired entries are
dropped when they are read, or when they reach the old end and are evicted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    """At most ``max_entries`` entries, each readable until its own deadline."""

    __slots__ = ("_clock", "_entries", "max_entries")

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value of ``key`` (marking it recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if deadline <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def set(self, key: K, value: V, ttl_s: float) -> None:
        """Keep ``value`` for ``ttl_s`` seconds; a ttl of zero or less removes ``key``."""
        if ttl_s <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
