"""The pipeline as ``apiary up`` runs it, minus HTTP: a real nats-server, real local Ray,
the chDB owner actor and the writer actors, started by the one start-up sequence
(:class:`apiary.startup.sequence.DataPlaneServices`); batches are published to JetStream as a
replica publishes them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from apiary.event import Event, EventBatch, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import (
    EVENTS_STREAM,
    WIRE_SCHEMA,
    WRITERS_CONSUMER,
    EventPublisher,
    NatsServer,
    connect,
)
from apiary.settings import ApiarySettings
from apiary.startup.sequence import NODE_PLACEMENT, DataPlaneServices
from apiary.store import CLICKHOUSE_ACTOR_NAME, ActorStoreClient

__all__ = ["ACK_WAIT_S", "RayPipeline", "eventually", "wait_for"]

#: JetStream redelivers what a writer held after this long (kept short: the writer-kill
#: fault waits for it); the writer's heartbeats (``in_progress``) run every third of it.
ACK_WAIT_S = 6.0


def wait_for(condition: Callable[[], bool], wait_s: float, what: str,
             every_s: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"{what}: not reached within {wait_s} s")


async def eventually(condition: Callable[[], Awaitable[bool]], wait_s: float, what: str,
                     every_s: float = 0.2) -> None:
    """:func:`wait_for` for an async condition."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"{what}: not reached within {wait_s} s")


class RayPipeline:
    """Starts nats-server, Ray, the chDB owner and ``writer_count`` writers on ``data_dir``."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.settings = ApiarySettings(data_dir=data_dir, ray_num_cpus=2, **settings)
        self.nats = NatsServer(data_dir)
        self.services: DataPlaneServices | None = None
        self._started_ray = False

    @property
    def objects_root(self) -> Path:
        """The local dead-letter store's directory."""
        return self.settings.data_dir / "objects"

    def start(self) -> None:
        import ray

        url = self.nats.start()
        services = self.services = DataPlaneServices(
            self.settings, url, NODE_PLACEMENT, client_name="faults")
        asyncio.run(services.ensure_streams())
        if not ray.is_initialized():
            ray.init(num_cpus=self.settings.ray_num_cpus, include_dashboard=False,
                     namespace="apiary", logging_level="WARNING", log_to_driver=False,
                     configure_logging=False,
                     object_store_memory=self.settings.ray_object_store_bytes)
            self._started_ray = True
        services.prepare_clickhouse()
        services.start_writers()

    def stop(self) -> None:
        import ray

        if self.services is not None:
            self.services.stop()
            self.services = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self.nats.stop()

    # -- looking in -------------------------------------------------------------------------

    def owner(self) -> Any:
        import ray

        return ray.get_actor(CLICKHOUSE_ACTOR_NAME, namespace="apiary")

    def store(self) -> ActorStoreClient:
        return ActorStoreClient(self.owner())

    def writer(self) -> dict[str, Any]:
        """The one writer's stats (raises while Ray restarts it)."""
        assert self.services is not None
        [stats] = self.services.writer_stats()
        return stats

    def writer_or_none(self) -> dict[str, Any] | None:
        try:
            return self.writer()
        except Exception:  # dead or restarting
            return None

    def ensure_running(self) -> None:
        assert self.services is not None
        self.services.ensure_running()

    async def dead_letters(self) -> list[str]:
        return await LocalObjectStore(self.objects_root).keys(f"dlq/{EVENTS_STREAM}/")

    async def consumer(self) -> Any:
        nc = await connect(self.nats.url, name="faults-probe")
        try:
            return await nc.jetstream().consumer_info(EVENTS_STREAM, WRITERS_CONSUMER)
        finally:
            await nc.close()

    async def drained(self) -> bool:
        info = await self.consumer()
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    # -- traffic ----------------------------------------------------------------------------

    async def publish_steadily(self, project: str, *, batches: int, per_batch: int,
                               interval_s: float) -> list[str]:
        """Publish ``batches`` spans batches of ``per_batch`` events, one every
        ``interval_s``; the event ids published (each acknowledged by JetStream)."""
        nc = await connect(self.nats.url, name="faults-publisher")
        published: list[str] = []
        try:
            publisher = EventPublisher(nc.jetstream(), timeout=10,
                                       max_message_bytes=nc.max_payload)
            for i in range(batches):
                events = _events(per_batch, i)
                await publisher.publish(_spans(project, events), msg_id=uuid.uuid4().hex)
                published.extend(e["event_id"] for e in events)
                await asyncio.sleep(interval_s)
        finally:
            await nc.close()
        return published

    async def publish_raw(self, subject: str, data: bytes) -> None:
        nc = await connect(self.nats.url, name="faults-publisher")
        try:
            await nc.jetstream().publish(subject, data, stream=EVENTS_STREAM,
                                         headers={"Nats-Msg-Id": uuid.uuid4().hex})
        finally:
            await nc.close()


def _events(n: int, seq: int) -> list[Event]:
    session = str(uuid.uuid4())
    trace = uuid.uuid4().hex
    start = 1.7e12 + seq * 1000
    events = [new_event(event_id=session, session_id=session, event_type="session",
                        trace_id=trace, start_time=start, end_time=start + 5)]
    events += [
        new_event(event_id=str(uuid.uuid4()), session_id=session, trace_id=trace,
                  parent_id=session, event_type="model", config={"model": "gpt-4o-mini"},
                  metadata={"prompt_tokens": 10, "completion_tokens": 5},
                  start_time=start + i, end_time=start + i + 1)
        for i in range(n - 1)
    ]
    return events


def _spans(project: str, events: list[Event]) -> EventBatch:
    return {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
            "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
            "events": events}
