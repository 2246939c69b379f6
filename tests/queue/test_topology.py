from __future__ import annotations

import pytest

from apiary.errors import ConfigurationError, QueueError
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


async def test_insufficient_storage_resources_is_a_configuration_error_naming_the_setting(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CI failed start-ups with JetStream's bare 'insufficient storage resources available'
    (err 10047) on a machine with less free disk than the streams reserve. It is now a
    configuration error that says what to lower, and the streams reserved before stay."""
    server = NatsServer(tmp_path_factory.mktemp("topology-full"))
    url = server.start()
    try:
        nc = await connect(url, name="test")
        js = nc.jetstream()
        # More than any disk here: the first reservation cannot fit.
        huge = ApiarySettings(data_dir=tmp_path_factory.mktemp("s"),
                              events_stream_max_bytes=1 << 50)
        with pytest.raises(ConfigurationError,
                           match=r"stream 'events'.*APIARY_EVENTS_STREAM_MAX_BYTES") as caught:
            await ensure_topology(js, huge)
        assert caught.value.context["stream"] == "events"
        assert not caught.value.retryable
        names = [info.config.name for info in await js.streams_info()]
        assert "events" not in names
        # The same server takes a size that fits.
        fits = huge.model_copy(update={"events_stream_max_bytes": 256 * 1024**2})
        assert "created stream events" in await ensure_topology(js, fits)
        await nc.close()
    finally:
        server.stop()


def test_the_small_streams_reserve_a_bounded_share_of_the_events_stream() -> None:
    """Notifications and alert activity carry messages of a few hundred bytes; reserving a
    quarter of the events stream for each made the start-up need 14 GiB of store."""
    from apiary.queue._topology import stream_specs
    settings = ApiarySettings(events_stream_max_bytes=8 * 1024**3)
    sizes = {spec.name: spec.max_bytes for spec in stream_specs(settings)}
    assert sizes["evaluation"] == 2 * 1024**3
    assert sizes["notifications"] == sizes["alert-activity"] == 256 * 1024**2
    small = {spec.name: spec.max_bytes
             for spec in stream_specs(ApiarySettings(events_stream_max_bytes=1024**2))}
    assert small["notifications"] == 16 * 1024**2


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
