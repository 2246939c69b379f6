from __future__ import annotations

import pytest

from apiary.errors import QueueError
from apiary.queue import NatsServer, connect, consumer_backlog, ensure_topology
from apiary.settings import ApiarySettings


async def test_ensure_topology_creates_streams_and_consumers_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = NatsServer(tmp_path_factory.mktemp("topology"))
    url = server.start()
    try:
        nc = await connect(url, name="test")
        js = nc.jetstream()
        settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("s"))
        first = await ensure_topology(js, settings)
        assert sorted(first) == sorted([
            "created stream events", "created consumer events/writers",
            "created stream evaluation", "created consumer evaluation/evaluators",
            "created stream notifications", "created consumer notifications/notifiers",
            "created stream alert-activity",
            "created consumer alert-activity/federation-activity",
        ])
        assert await ensure_topology(js, settings) == []
        info = await js.stream_info("events")
        assert info.config.subjects == ["events.>"]
        assert info.config.max_bytes == settings.events_stream_max_bytes
        consumer = await js.consumer_info("events", "writers")
        assert consumer.config.durable_name == "writers"
        assert consumer.config.max_deliver == settings.writer_max_deliver
        assert await consumer_backlog(js, "events", "writers") == 0
        activity = await js.consumer_info("alert-activity", "federation-activity")
        assert activity.config.ack_wait == 30.0
        assert activity.config.max_deliver == -1

        bigger = settings.model_copy(update={"events_stream_max_bytes": 2 * 1024**3})
        changed = await ensure_topology(js, bigger)
        assert "updated stream events" in changed
        assert not any("consumer" in c for c in changed)
        assert (await js.stream_info("events")).config.max_bytes == 2 * 1024**3
        await nc.close()
    finally:
        server.stop()


async def test_embedded_server_requires_its_token(nats_server: NatsServer) -> None:
    host = nats_server.url.split("@", 1)[1]
    with pytest.raises(QueueError, match=r"refused the credentials.*(?i:authorization)"):
        await connect(f"nats://{host}", name="intruder", wait_s=30)


async def test_a_refused_token_is_not_reported_as_a_connection_reset(
    nats_server: NatsServer,
) -> None:
    """CI once saw 'Connection reset by peer' here: the server closes after refusing, so later
    attempts are reset and the last problem hid the first. A refusal now ends the attempt."""
    host = nats_server.url.split("@", 1)[1]
    for attempt in range(5):
        with pytest.raises(QueueError) as refused:
            await connect(f"nats://wrong-token@{host}", name=f"intruder-{attempt}", wait_s=30)
        assert "refused the credentials" in str(refused.value)
        assert "reset" not in str(refused.value).lower()
        assert "wrong-token" not in str(refused.value)
