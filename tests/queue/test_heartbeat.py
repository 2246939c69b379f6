"""The heartbeat loop behind /readyz's writer check (apiary.queue.heartbeats)."""

from __future__ import annotations

import asyncio

from apiary.queue import NatsServer, connect
from apiary.queue.heartbeats import Heartbeat, read_heartbeats


class _SwallowsTheCancel(Heartbeat):
    """A beat whose NATS request swallows a cancellation that races its reply, as Python
    3.11's ``asyncio.wait_for`` under nats-py's requests does."""

    swallowed = 0

    async def beat(self) -> bool:
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            self.swallowed += 1
            return False
        return await super().beat()


async def test_a_heartbeat_whose_beat_swallows_its_cancel_still_ends(
        nats_server: NatsServer) -> None:
    """Two full CI runs stalled in a writer test's teardown: the writer had cancelled its
    heartbeat, the cancel was lost inside a beat, and the heartbeat slept on for ever."""
    nc = await connect(nats_server.url, name="heartbeat-test")
    try:
        heartbeat = _SwallowsTheCancel(nc.jetstream(), "writer", "cancel-test",
                                       running=lambda: True, period_s=0.05)
        task = asyncio.create_task(heartbeat.run())
        await asyncio.sleep(0.05)  # inside the first beat
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the heartbeat kept beating after it was cancelled"
        assert task.cancelled()
        assert heartbeat.swallowed == 1
    finally:
        await nc.close()


async def test_a_heartbeat_beats_until_cancelled(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url, name="heartbeat-test")
    try:
        heartbeat = Heartbeat(nc.jetstream(), "writer", "beats-test", running=lambda: True,
                              period_s=0.05)
        task = asyncio.create_task(heartbeat.run())
        await asyncio.sleep(0.3)
        beats = [b for b in await read_heartbeats(nc.jetstream(), "writer")
                 if b.name == "beats-test"]
        assert len(beats) == 1
        assert beats[0].running
        assert beats[0].age_s < 1.0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    finally:
        await nc.close()
