"""Fair turns for the tasks one evaluator holds: metrics take turns, none holds every slot.

JetStream hands an evaluator tasks in queue order; a metric with a backlog of slow tasks
(a busy loop that runs to the sandbox's timeout every time) would otherwise fill every
slot, and a metric deployed next would wait for the whole backlog. :class:`FairTurns`
lets at most ``total`` tasks run at once and at most ``per_key`` of one key (the evaluator
uses (project, metric); a key may have a cap of its own); when a slot frees, the keys that
wait are served in turn (round robin), not in arrival order. So a task waits for at most
one task of each other key ahead of it, never for another key's backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class TurnsClosed(Exception):
    """The evaluator stops: a task still waiting for its turn goes back to the queue."""


class FairTurns:
    def __init__(self, *, total: int, per_key: int) -> None:
        self._total = total
        self._per_key = per_key
        self._running = 0
        self._per: dict[Hashable, int] = {}
        self._limits: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._order: deque[Hashable] = deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @property
    def running(self) -> int:
        return self._running

    def _can_run(self, key: Hashable) -> bool:
        return (self._running < self._total
                and self._per.get(key, 0) < self._limits.get(key, self._per_key))

    def _take(self, key: Hashable) -> None:
        self._running += 1
        self._per[key] = self._per.get(key, 0) + 1

    @asynccontextmanager
    async def turn(self, key: Hashable, limit: int | None = None) -> AsyncIterator[None]:
        """Wait for ``key``'s turn, run the body, give the slot to the next key in turn.
        ``limit``: this key's cap instead of ``per_key``. Raises :class:`TurnsClosed`
        (before the body) once :meth:`close` was called."""
        if self._closed:
            raise TurnsClosed
        if limit is not None:
            self._limits[key] = max(1, limit)
        if self._can_run(key) and not self._waiting.get(key):
            self._take(key)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self._waiting.setdefault(key, deque())
            if not queue and key not in self._order:
                self._order.append(key)
            queue.append(future)
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._give_back(key)  # granted, then cancelled: pass the slot on
                else:
                    self._forget(key, future)
                raise
        try:
            yield
        finally:
            self._give_back(key)

    def _forget(self, key: Hashable, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                self._drop_key(key)

    def _drop_key(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        if key in self._order:
            self._order.remove(key)

    def _give_back(self, key: Hashable) -> None:
        self._running -= 1
        left = self._per.get(key, 1) - 1
        if left:
            self._per[key] = left
        else:
            self._per.pop(key, None)
            if key not in self._waiting:
                self._limits.pop(key, None)
        self._grant()

    def _grant(self) -> None:
        """Serve the waiting keys round robin while slots are free."""
        idle = 0
        while self._order and self._running < self._total and idle < len(self._order):
            key = self._order[0]
            self._order.rotate(-1)
            queue = self._waiting.get(key)
            if not queue:
                self._drop_key(key)
                continue
            if self._per.get(key, 0) >= self._limits.get(key, self._per_key):
                idle += 1
                continue
            idle = 0
            future = queue.popleft()
            if not queue:
                self._drop_key(key)
            self._take(key)
            future.set_result(None)

    def close(self) -> None:
        """Fail every waiter with :class:`TurnsClosed` (running tasks finish)."""
        self._closed = True
        for queue in self._waiting.values():
            for future in queue:
                if not future.done():
                    future.set_exception(TurnsClosed())
        self._waiting.clear()
        self._order.clear()


__all__ = ["FairTurns", "TurnsClosed"]
