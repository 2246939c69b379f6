"""The writer service's supervision (apiary/dataplane/writer/_service.py) on a real
nats-server and chDB: a loop that raises is started again with back-off and counted, and
``ensure_running`` starts a loop whose task ended. No writer dies silently."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from _writer_loops import spans_batch, until, writer_settings
from nats.aio.client import Client

from apiary.dataplane.writer import WriterLoop, WriterService
from apiary.event import new_event
from apiary.queue import EventPublisher, NatsServer
from apiary.store import DirectStoreClient, EventStore


@pytest.fixture
def service(nats_server: NatsServer, nc: Client, store: EventStore, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> WriterService:
    # The embedded store's client needs its Ray owner; here the loop writes to this
    # process's chDB directly (the same EventStore methods).
    monkeypatch.setattr("apiary.dataplane.writer._service.store_client",
                        lambda _s: DirectStoreClient(store))
    return WriterService(writer_settings(tmp_path), nats_server.url, f"w-{uuid.uuid4().hex[:6]}")


async def _publish_one(nc: Client, project: str) -> str:
    event_id = str(uuid.uuid4())
    publisher = EventPublisher(nc.jetstream(), timeout=5, max_message_bytes=nc.max_payload)
    await publisher.publish(spans_batch(project, [new_event(event_id=event_id,
                                                            session_id=event_id,
                                                            event_type="session")]),
                            msg_id=uuid.uuid4().hex)
    return event_id


async def test_writer_loop_that_raises_is_restarted_with_back_off_and_counted(
        service: WriterService, nc: Client, store: EventStore, project: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = WriterLoop.run
    runs: list[int] = []

    async def run_that_fails_twice(loop: WriterLoop) -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise RuntimeError("injected bug in the writer loop")
        await real_run(loop)

    monkeypatch.setattr(WriterLoop, "run", run_that_fails_twice)
    await service.start()
    try:
        async def restarted() -> bool:
            stats = await service.stats()
            return bool(stats["loop_restarts"] == 2 and stats["running"])

        await until(restarted, 20.0)
        stats = await service.stats()
        assert "injected bug" in stats["last_error"]
        # The restarted loop stores what is published.
        event_id = await _publish_one(nc, project)

        async def stored() -> bool:
            return bool(await asyncio.to_thread(store.count_events, project) == 1)

        await until(stored, 20.0)
        assert (await asyncio.to_thread(store.get_event, project, event_id))["event_id"] \
            == event_id
    finally:
        final = await service.stop()
    assert final["running"] is False
    assert len(runs) == 3


async def test_ensure_running_starts_a_writer_whose_task_ended(
        service: WriterService, nc: Client, store: EventStore, project: str) -> None:
    await service.start()
    try:
        # The supervisor's task itself ended (it never should: only cancellation ends it).
        task: Any = service._task  # the fault under test
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ended = await service.stats()
        assert ended["running"] is False
        assert "supervisor ended" in ended["last_error"]

        await service.ensure_running()
        again = await service.stats()
        assert again["running"] is True
        assert again["loop_restarts"] == 1
        await _publish_one(nc, project)

        async def stored() -> bool:
            return bool(await asyncio.to_thread(store.count_events, project) == 1)

        await until(stored, 20.0)
    finally:
        await service.stop()
    await service.ensure_running()  # a stopped writer stays stopped
    assert (await service.stats())["running"] is False
