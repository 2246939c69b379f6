"""A resizable pool of named Ray actors that consume one JetStream consumer.

The actors (writers, evaluators) expose ``start()`` (idempotent: connect and begin
consuming), ``stop()`` (drain: finish and acknowledge what they hold, return their final
stats) and ``stats()``. :class:`ActorPool` creates them as ``<prefix>-<n>``, owned by the
process that holds the pool (a scaler actor), so they die with it.

Growing creates actors and starts them in the background: an actor that needs a node the
cluster does not have yet stays *pending* (it counts toward the size, so the pool does not
ask again) until the Ray autoscaler adds one. Shrinking removes pending actors first, then
the newest ones (on a cluster, the ones on the nodes added last, which the autoscaler can
then remove), each drained before it is killed: a removed actor never abandons a message.
An actor whose start failed is dropped and replaced on the next resize.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

log = logging.getLogger("apiary.dataplane.scaling")

NAMESPACE = "apiary"


@dataclass
class Member:
    name: str
    handle: Any
    starting: asyncio.Task[None]

    @property
    def ready(self) -> bool:
        return self.starting.done() and not self.starting.cancelled() and \
            self.starting.exception() is None

    @property
    def failed(self) -> bool:
        return self.starting.done() and (self.starting.cancelled()
                                         or self.starting.exception() is not None)


class ActorPool:
    """Named actors of one Ray actor class; see the module docstring."""

    def __init__(self, actor_class: Any, prefix: str, args: Callable[[str], tuple[Any, ...]],
                 options: dict[str, Any], *, drain_timeout_s: float = 120.0) -> None:
        self._class = actor_class
        # A restarted owner must not collide with names of actors still being torn down.
        self._prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self._args = args
        self._options = options
        self._drain_timeout = drain_timeout_s
        self._next = 0
        self.members: list[Member] = []
        #: Final stats of the actors drained so far (for accounting).
        self.retired: list[dict[str, Any]] = []
        self.start_failures = 0

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def ready(self) -> int:
        return sum(1 for m in self.members if m.ready)

    @property
    def pending(self) -> int:
        return sum(1 for m in self.members if not m.starting.done())

    async def resize(self, size: int) -> None:
        """Grow to ``size`` (starting in the background) or shrink to it (draining)."""
        await self._drop_failed()
        while len(self.members) < size:
            self._add()
        if len(self.members) > size:
            pending = [m for m in self.members if not m.starting.done()]
            ready = [m for m in self.members if m.starting.done()]
            # Pending first (they hold nothing), then the newest.
            order = list(reversed(pending)) + list(reversed(ready))
            removed = order[:len(self.members) - size]
            self.members = [m for m in self.members if m not in removed]
            await asyncio.gather(*(self._remove(m) for m in removed))

    def _add(self) -> None:
        name = f"{self._prefix}-{self._next}"
        self._next += 1
        handle = self._class.options(name=name, namespace=NAMESPACE,
                                     **self._options).remote(*self._args(name))
        starting = asyncio.ensure_future(self._start(handle))
        self.members.append(Member(name, handle, starting))

    @staticmethod
    async def _start(handle: Any) -> None:
        await handle.start.remote()

    async def _drop_failed(self) -> None:
        failed = [m for m in self.members if m.failed]
        for member in failed:
            self.start_failures += 1
            log.warning("pool actor failed to start; replacing it",
                        extra={"actor": member.name, "error": repr(
                            None if member.starting.cancelled()
                            else member.starting.exception())})
            self.members.remove(member)
            with contextlib.suppress(Exception):
                ray.kill(member.handle, no_restart=True)

    async def _remove(self, member: Member) -> None:
        if not member.starting.done():
            member.starting.cancel()
            with contextlib.suppress(BaseException):
                await member.starting
        else:
            try:
                final = await asyncio.wait_for(member.handle.stop.remote(),
                                               self._drain_timeout)
                self.retired.append(dict(final))
            except Exception as exc:  # what it held is redelivered by JetStream
                log.warning("pool actor did not drain", extra={"actor": member.name,
                                                               "error": repr(exc)})
        with contextlib.suppress(Exception):
            ray.kill(member.handle, no_restart=True)

    async def ensure_running(self) -> None:
        """Start again actors Ray restarted after a crash (``start`` is idempotent)."""
        ready = [m for m in self.members if m.ready]
        results = await asyncio.gather(*(m.handle.start.remote() for m in ready),
                                       return_exceptions=True)
        for member, result in zip(ready, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("pool actor not running", extra={"actor": member.name,
                                                             "error": repr(result)})

    async def stats(self) -> list[dict[str, Any]]:
        ready = [m for m in self.members if m.ready]
        results = await asyncio.gather(*(m.handle.stats.remote() for m in ready),
                                       return_exceptions=True)
        return [r if isinstance(r, dict) else {"name": m.name, "error": repr(r)}
                for m, r in zip(ready, results, strict=True)]

    async def close(self) -> list[dict[str, Any]]:
        """Drain and remove every actor; the final stats of all actors ever drained."""
        await self.resize(0)
        return list(self.retired)


__all__ = ["ActorPool", "Member"]
