"""Sizing one pool from its queue depth: the control loop a pool scaler actor
(:class:`apiary.actors.scaler.PoolScaler`) runs.

Every ``APIARY_SCALE_INTERVAL_S`` a :class:`BacklogScaler` reads the pool's JetStream
consumer (``num_pending`` + ``num_ack_pending``: what waits plus what is being worked on),
asks the :class:`~apiary.dataplane.scaling.policy.Hysteresis` for a size within the
configured bounds, and resizes its :class:`~apiary.dataplane.scaling.pool.ActorPool`, which
owns the actors: grown in the background (an actor waiting for a node is *pending*), shrunk
by draining. It keeps a history of what it saw and did (:meth:`BacklogScaler.status`), and
the final stats of every actor it drained, so a test or an operator can account for every
message. A round that fails (NATS away) keeps the size and is tried again next interval.

Writers are special: ``APIARY_WRITER_COUNT`` writers always run outside any scaler (the
node or the ``pools`` application owns them), so the writer scaler manages only the extra
ones, between 0 and ``APIARY_WRITER_MAX - APIARY_WRITER_COUNT`` (``base``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from apiary.dataplane.scaling.policy import Hysteresis, ScalingPolicy
from apiary.dataplane.scaling.pool import ActorPool
from apiary.errors import ConfigurationError
from apiary.queue import (
    EVALUATION_STREAM,
    EVALUATORS_CONSUMER,
    EVENTS_STREAM,
    WRITERS_CONSUMER,
    connect,
)
from apiary.settings import ApiarySettings

log = logging.getLogger("apiary.scaler")

EVALUATORS = "evaluators"
WRITERS = "writers"
_HISTORY = 5000


@dataclass(frozen=True, slots=True)
class PoolKind:
    """The consumer a pool works on, and the name prefix of its actors."""

    stream: str
    consumer: str
    prefix: str


POOL_KINDS = {
    EVALUATORS: PoolKind(EVALUATION_STREAM, EVALUATORS_CONSUMER, "apiary-evaluator"),
    WRITERS: PoolKind(EVENTS_STREAM, WRITERS_CONSUMER, "apiary-writer-x"),
}


class BacklogScaler:
    """Sizes one pool (``kind``: ``evaluators`` or ``writers``) of ``actor_class`` actors on
    its consumer's backlog; see the module docstring."""

    def __init__(self, kind: str, settings: ApiarySettings, nats_url: str,
                 policy: ScalingPolicy, actor_options: dict[str, Any], *, actor_class: Any,
                 base: int = 0) -> None:
        if kind not in POOL_KINDS:
            raise ConfigurationError(f"unknown pool {kind!r}")
        self._kind = kind
        self._spec = POOL_KINDS[kind]
        self._settings = settings
        self._nats_url = nats_url
        self._policy = policy
        self._base = base
        self._pool = ActorPool(
            actor_class, self._spec.prefix,
            lambda name: (settings, nats_url, name), dict(actor_options))
        self._hysteresis = Hysteresis(policy, started_at=time.monotonic())
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._nc: Client | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=_HISTORY)
        self._last: dict[str, Any] = {}
        self._stopped = False

    async def start(self) -> dict[str, Any]:
        """Start the pool at its minimum size and the control loop (idempotent)."""
        if self._task is None and not self._stopped:
            self._nc = await connect(self._nats_url, name=f"apiary-scaler-{self._kind}")
            async with self._lock:
                await self._pool.resize(max(self._policy.min_size - self._base, 0))
            self._task = asyncio.create_task(self._run())
        return await self.status()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: keep the size, try again next round
                self._last["error"] = repr(exc)
                log.warning("pool scaling round failed", extra={"pool": self._kind,
                                                                "error": repr(exc)})
            await asyncio.sleep(self._settings.scale_interval_s)

    async def tick(self) -> dict[str, Any]:
        """One round: observe the backlog, decide, resize. Returns the observation."""
        if self._nc is None:
            raise RuntimeError("the scaler is not started")
        info = await self._nc.jetstream().consumer_info(self._spec.stream, self._spec.consumer)
        pending, ack_pending = int(info.num_pending or 0), int(info.num_ack_pending or 0)
        async with self._lock:
            if self._stopped:
                return self._last
            current = self._base + self._pool.size
            target = self._hysteresis.decide(time.monotonic(), pending + ack_pending, current)
            if target != current:
                log.info("resizing pool", extra={"pool": self._kind, "from": current,
                                                 "to": target,
                                                 "backlog": pending + ack_pending})
                await self._pool.resize(max(target - self._base, 0))
            self._last = {
                "t": time.time(), "pending": pending, "ack_pending": ack_pending,
                "backlog": pending + ack_pending,
                "wanted": self._policy.wanted(pending + ack_pending),
                "size": self._base + self._pool.size, "ready": self._base + self._pool.ready,
                "starting": self._pool.pending,
            }
            self._history.append(self._last)
            return self._last

    async def status(self, history: bool = False) -> dict[str, Any]:
        """Bounds, size, ready and starting actors, the last observation, the actors' names
        and the final stats of the drained ones (with ``history``: every observation)."""
        status = {
            "pool": self._kind, "min": self._policy.min_size, "max": self._policy.max_size,
            "base": self._base, "size": self._base + self._pool.size,
            "ready": self._base + self._pool.ready, "starting": self._pool.pending,
            "running": self._task is not None and not self._task.done(),
            "start_failures": self._pool.start_failures, "last": dict(self._last),
            "actors": [m.name for m in self._pool.members],
            "retired": list(self._pool.retired),
        }
        if history:
            status["history"] = list(self._history)
        return status

    async def actor_stats(self) -> list[dict[str, Any]]:
        return await self._pool.stats()

    async def ensure_running(self) -> None:
        """Start the control loop if it is not running (a restarted actor); start actors
        Ray restarted."""
        if self._task is None or self._task.done():
            self._task = None
            await self.start()
        await self._pool.ensure_running()

    async def stop(self) -> dict[str, Any]:
        """Stop scaling and drain every actor; returns the final status."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        async with self._lock:
            await self._pool.close()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        return await self.status()


__all__ = ["EVALUATORS", "POOL_KINDS", "WRITERS", "BacklogScaler", "PoolKind"]
