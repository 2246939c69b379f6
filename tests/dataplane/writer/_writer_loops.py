"""Writer loops on a real nats-server and chDB, for the tests of this package."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from _dataplane import until
from nats.aio.client import Client
from nats.aio.msg import Msg

from apiary.dataplane.writer import WriterLoop
from apiary.event import Event, EventBatch
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA, EventPublisher
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

__all__ = ["CrashBeforeAck", "Writers", "spans_batch", "until", "writer_settings"]


def spans_batch(project: str, events: list[Event]) -> EventBatch:
    """A ``spans`` batch of ``events`` for ``project``, as a replica publishes it."""
    return {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
            "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
            "events": events}


def writer_settings(tmp_path: Path, *, ack_wait_s: float = 2.0) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path, writer_flush_interval_s=0.05,
                          writer_ack_wait_s=ack_wait_s)


class Writers:
    """Starts and stops writer loops over the ``writers`` consumer; publishes batches."""

    def __init__(self, nc: Client, store: EventStore, tmp_path: Path) -> None:
        self.js = nc.jetstream()
        self.client = DirectStoreClient(store)
        self.store = store
        self.tmp_path = tmp_path
        self.publisher = EventPublisher(self.js, timeout=5, max_message_bytes=nc.max_payload)
        self.running: list[tuple[WriterLoop, asyncio.Task[None]]] = []

    async def publish(self, batch: EventBatch) -> None:
        await self.publisher.publish(batch, msg_id=uuid.uuid4().hex)

    def start(self, cls: type[WriterLoop] = WriterLoop, name: str = "w", *,
              ack_wait_s: float = 2.0) -> WriterLoop:
        loop = cls(js=self.js, store=self.client,
                   settings=writer_settings(self.tmp_path, ack_wait_s=ack_wait_s),
                   objects=LocalObjectStore(self.tmp_path / "objects"), name=name)
        self.running.append((loop, asyncio.create_task(loop.run())))
        return loop

    async def stop(self, loop: WriterLoop) -> None:
        for item in list(self.running):
            if item[0] is loop:
                loop.stop()
                await item[1]
                self.running.remove(item)

    async def drained(self) -> bool:
        info = await self.js.consumer_info("events", "writers")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)


class CrashBeforeAck(WriterLoop):
    """Stores batches, then dies before acknowledging them (JetStream redelivers)."""

    async def _ack(self, msg: Msg) -> None:
        return None
