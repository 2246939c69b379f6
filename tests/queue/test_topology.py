from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apiary.errors import ConfigurationError, QueueError
from apiary.queue import NatsServer, connect, consumer_backlog, ensure_topology, nats_server_binary
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


@contextlib.contextmanager
def _nats_with_store(root: Path, max_file_store: int) -> Iterator[str]:
    """A nats-server whose JetStream store takes ``max_file_store`` bytes, as on a machine
    with a third more than that free; yields its URL."""
    config = root / "nats.conf"
    config.write_text("listen: 127.0.0.1:-1\njetstream {\n"
                      f"  store_dir: {json.dumps(str(root / 'store'))}\n"
                      f"  max_file_store: {max_file_store}\n}}\n")
    process = subprocess.Popen([nats_server_binary(), "-c", str(config),
                                "--ports_file_dir", str(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not list(root.glob("*.ports")):
            assert process.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server wrote no ports file in 20 s"
            time.sleep(0.05)
        yield str(json.loads(next(root.glob("*.ports")).read_text())["nats"][0])
    finally:
        process.terminate()
        process.wait(20)


async def test_apiary_up_on_a_store_smaller_than_the_default_streams_sizes_them_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CI (~14 GiB free disk, so a 10.5 GiB store) refused every `apiary up` whose
    environment did not set APIARY_EVENTS_STREAM_MAX_BYTES: the default reserved 10.75 GiB.
    Unset, the setting is now a ceiling and the streams fit the store; set, it is still an
    error (the test above)."""
    monkeypatch.delenv("APIARY_EVENTS_STREAM_MAX_BYTES", raising=False)
    settings = ApiarySettings(data_dir=tmp_path / "s")
    assert "events_stream_max_bytes" not in settings.model_fields_set
    with _nats_with_store(tmp_path, 1024**3) as url:
        await _sizes_the_streams_down_to_fit(url, settings)


async def _sizes_the_streams_down_to_fit(url: str, settings: ApiarySettings) -> None:
    nc = await connect(url, name="test")
    try:
        js = nc.jetstream()
        first = await ensure_topology(js, settings)
        assert first[0].startswith("sized stream events to ")
        assert "APIARY_EVENTS_STREAM_MAX_BYTES" in first[0]
        assert {"created stream events", "created stream evaluation",
                "created stream notifications", "created stream alert-activity"} <= set(first)
        reserved = {str(info.config.name): int(info.config.max_bytes or 0)
                    for info in await js.streams_info()}
        assert sum(reserved.values()) <= 1024**3
        # A fifth at a time: no less than 80% of the ~800 MiB that could fit.
        assert reserved["events"] >= 640 * 1024**2
        assert reserved["evaluation"] == reserved["events"] // 4
        # A restart finds the same sizes and changes nothing but saying so again.
        second = await ensure_topology(js, settings)
        assert second == [first[0]]
        # Set explicitly, a size that does not fit is still refused.
        explicit = settings.model_copy(update={"events_stream_max_bytes": 8 * 1024**3})
        with pytest.raises(ConfigurationError, match="lower APIARY_EVENTS_STREAM_MAX_BYTES"):
            await ensure_topology(js, explicit)
        assert (await js.stream_info("events")).config.max_bytes == reserved["events"]
    finally:
        await nc.close()


async def test_a_store_too_small_for_the_smallest_automatic_size_says_to_free_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("APIARY_EVENTS_STREAM_MAX_BYTES", raising=False)
    with _nats_with_store(tmp_path, 32 * 1024**2) as url:
        nc = await connect(url, name="test")
        try:
            with pytest.raises(ConfigurationError, match="Free disk space") as caught:
                await ensure_topology(nc.jetstream(), ApiarySettings(data_dir=tmp_path / "s"))
            assert "max_file_store" in str(caught.value)
            assert not caught.value.retryable
        finally:
            await nc.close()


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
