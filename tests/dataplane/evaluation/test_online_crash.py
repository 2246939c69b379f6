"""Online evaluation survives a writer that dies between storing a batch and acknowledging it.

Issue 13 (6): online tasks were published after the batch was acknowledged, so a writer that
died in between lost them; and the redelivered batch, recognised as already stored, queued
nothing. Now the tasks are published before the acknowledgement, and a redelivered batch
hands its already-stored events to the trigger again (the task ids make that idempotent).

A dying writer is simulated inside its flush: a ``BaseException`` that ends the flush with
no ack and no nak, as a killed process would; JetStream redelivers after ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _fresh_topology import fresh_topology, until
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apiary.dataplane.evaluation.definitions import DefinitionStore
from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.online import trigger_for
from apiary.dataplane.writer import WriterLoop
from apiary.event import API_KIND, EventBatch, Tenant, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA, NatsServer, connect, encode_batch, events_subject
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore


class _Crash(BaseException):
    """Ends the flush the way a dying process would."""


class _DiesAtFirstAck(WriterLoop):
    crashed = False

    async def _ack(self, msg: Msg) -> None:
        if not self.crashed:
            self.crashed = True
            raise _Crash
        await super()._ack(msg)


class _DiesAfterFirstInsert(DirectStoreClient):
    crashed = False

    async def insert_arrow(self, *args: Any, **kwargs: Any) -> None:
        await super().insert_arrow(*args, **kwargs)
        if not self.crashed:
            self.crashed = True
            raise _Crash


@pytest.fixture
async def js(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    nc = await connect(nats_server.url, name="online-crash-test")
    await fresh_topology(nc, _settings(tmp_path))
    yield nc.jetstream()
    await nc.close()


def _settings(data_dir: Path) -> ApiarySettings:
    return ApiarySettings(data_dir=data_dir, writer_flush_interval_s=0.05,
                          writer_ack_wait_s=2.0, evaluator_definitions_ttl_s=0.2)


async def _scenario(js: JetStreamContext, store: EventStore, tmp_path: Path,
                    writer_cls: type[WriterLoop], client: DirectStoreClient) -> tuple[
                        WriterLoop, int]:
    """Deploy a metric, send one event through a writer that dies once; the writer and the
    tasks the evaluation stream holds for the project once the event is stored and acked."""
    settings = _settings(tmp_path)
    tenant: Tenant = {"org_id": "o", "workspace_id": "w",
                      "project_id": f"proj-crash-{uuid.uuid4().hex[:8]}"}
    spec: MetricSpec = {"id": "m-1", "name": "m", "kind": "python", "version": 1,
                        "code": "def evaluate(event):\n    return 1\n", "criteria": None,
                        "return_type": "float", "sampling_pct": 100.0, "filters": [],
                        "model_params": {}}
    await (await DefinitionStore.open(js, settings)).put(tenant["project_id"], [spec])
    writer = writer_cls(js=js, store=client, objects=LocalObjectStore(tmp_path / "objects"),
                        settings=settings, name="crashing-writer")
    trigger = trigger_for(js, settings)

    async def deployed() -> bool:
        return bool(await trigger.definitions.metrics(tenant["project_id"]))
    await until(deployed, 10, "the metric deployed")
    event = new_event(event_id=f"ev-{uuid.uuid4().hex[:10]}", session_id="s",
                      event_type="model", outputs={"content": "hi"})
    batch: EventBatch = {"schema": WIRE_SCHEMA, "kind": API_KIND, "tenant": tenant,
                         "version": time.time_ns(), "events": [event]}
    running = asyncio.create_task(writer.run())
    try:
        await js.publish(events_subject(API_KIND, tenant["project_id"]), encode_batch(batch),
                         stream="events")

        async def acked() -> bool:
            info = await js.consumer_info("events", "writers")
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)
        await until(acked, 30, "the event stored and acknowledged")
        assert store.get_event(tenant["project_id"], event["event_id"])["event_id"] == \
            event["event_id"]
    finally:
        writer.stop()
        await asyncio.wait_for(running, 30)
    subject = f"evaluation.online.{tenant['project_id']}"
    info = await js.stream_info("evaluation", subjects_filter=subject)
    return writer, int((info.state.subjects or {}).get(subject, 0))


async def test_a_writer_dying_before_its_ack_loses_no_online_task(
        js: JetStreamContext, store: EventStore, tmp_path: Path) -> None:
    writer, tasks = await _scenario(js, store, tmp_path, _DiesAtFirstAck,
                                    DirectStoreClient(store))
    assert writer.stats.redelivered_messages == 1  # it did die once
    assert tasks == 1  # published before the ack that never came; once


async def test_a_writer_dying_right_after_its_insert_loses_no_online_task(
        js: JetStreamContext, store: EventStore, tmp_path: Path) -> None:
    client = _DiesAfterFirstInsert(store)
    writer, tasks = await _scenario(js, store, tmp_path, WriterLoop, client)
    assert client.crashed
    assert writer.stats.redelivered_messages == 1
    assert writer.stats.duplicates_dropped == 1  # recognised as stored ...
    assert tasks == 1  # ... and its task published all the same
