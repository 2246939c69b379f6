"""The embedded nats-server's JetStream store is encrypted at rest (apiary/queue/_server.py).

Against the real nats-server: a message's marker (payload and header) is in no file of the
encrypted store, while the same message in a plaintext store is (so the check can fail);
a restart with the same key reads everything back; a plaintext store written the old way
(the config an earlier Apiary wrote) is encrypted at its first start with a key, keeping
every message and the consumer's position; a wrong or missing key is a ConfigurationError
before anything starts empty; the key file is 0600 and the key is in no file but that one.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr

from apiary.errors import ConfigurationError
from apiary.queue import (
    EVENTS_STREAM,
    NatsServer,
    connect,
    ensure_topology,
    events_subject,
    nats_server_binary,
)
from apiary.settings import ApiarySettings, load_settings

PROBE = "probe"  # a durable consumer whose position must survive the encryption


def _store_files_containing(store: Path, marker: bytes) -> list[Path]:
    return [path for path in store.rglob("*") if path.is_file() and marker in path.read_bytes()]


async def _publish(url: str, settings: ApiarySettings, marker: str, count: int) -> None:
    nc = await connect(url, name="test-encrypted-store")
    try:
        js = nc.jetstream()
        await ensure_topology(js, settings)
        for i in range(count):
            ack = await js.publish(events_subject("spans", "p1"), f"{marker}-{i}".encode(),
                                   headers={"Nats-Msg-Id": f"{marker}-id-{i}"})
            assert ack.seq >= 1
    finally:
        await nc.close()


async def _read_all(url: str) -> tuple[list[bytes], list[str]]:
    """Every message of the events stream (payloads and ids), in order."""
    nc = await connect(url, name="test-encrypted-store-read")
    try:
        js: JetStreamContext = nc.jetstream()
        state = (await js.stream_info(EVENTS_STREAM)).state
        payloads, ids = [], []
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(EVENTS_STREAM, seq)
            payloads.append(msg.data or b"")
            ids.append((msg.headers or {})["Nats-Msg-Id"])
        return payloads, ids
    finally:
        await nc.close()


async def _ack_first(url: str) -> None:
    nc = await connect(url, name="test-encrypted-store-ack")
    try:
        sub = await nc.jetstream().pull_subscribe(events_subject("spans", "p1"), durable=PROBE,
                                                  stream=EVENTS_STREAM)
        (first,) = await sub.fetch(1, timeout=10)
        await first.ack_sync()
    finally:
        await nc.close()


async def _probe_acked(url: str) -> int:
    nc = await connect(url, name="test-encrypted-store-probe")
    try:
        info = await nc.jetstream().consumer_info(EVENTS_STREAM, PROBE)
        return info.ack_floor.stream_seq if info.ack_floor else 0
    finally:
        await nc.close()


@contextmanager
def _plaintext_server(data_dir: Path) -> Iterator[str]:
    """A nats-server on ``data_dir``'s store, started as Apiary did before the store was
    encrypted (the same config, no cipher); its URL."""
    root = data_dir / "nats"
    ports_dir = root / "ports"
    ports_dir.mkdir(parents=True, mode=0o700)
    token = "old-apiary-token"
    config = root / "nats-server.conf"
    config.write_text("\n".join([
        "listen: 127.0.0.1:-1",
        f"authorization {{ token: {json.dumps(token)} }}",
        "max_payload: 8388608",
        "jetstream {",
        f"  store_dir: {json.dumps(str(root / 'jetstream'))}",
        "  sync_interval: always",
        "}",
        "",
    ]))
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(config), "--ports_file_dir", str(ports_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports_file = ports_dir / f"nats-server_{process.pid}.ports"
        deadline = time.monotonic() + 20
        while not ports_file.exists() or not ports_file.read_text().strip():
            assert process.poll() is None, "the plaintext nats-server exited"
            assert time.monotonic() < deadline, "the plaintext nats-server did not start"
            time.sleep(0.05)
        address = json.loads(ports_file.read_text())["nats"][0].removeprefix("nats://")
        yield f"nats://{token}@{address}"
    finally:
        process.terminate()
        process.wait(15)
        ports_file.unlink(missing_ok=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _marker() -> str:
    return f"apiary-marker-{uuid.uuid4().hex}"


def test_a_published_marker_is_in_no_store_file_and_reads_back_after_a_restart(
        tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    marker = _marker()
    server = NatsServer(tmp_path)
    url = server.start()
    try:
        asyncio.run(_publish(url, settings, marker, 3))
        assert _store_files_containing(server.store_dir, marker.encode()) == []
        key = server.key_file.read_text().strip()
        assert len(key) >= 32
        assert _mode(server.key_file) == 0o600
        # The key is in its own file only: not in the config, the log, or the store.
        config = server.root / "nats-server.conf"
        assert _mode(config) == 0o600
        for path in (config, server.root / "nats-server.log"):
            assert key not in path.read_text(), path
        assert _store_files_containing(server.store_dir, key.encode()) == []

        server.restart()
        payloads, ids = asyncio.run(_read_all(server.url))
        assert payloads == [f"{marker}-{i}".encode() for i in range(3)]
        assert ids == [f"{marker}-id-{i}" for i in range(3)]
        assert _store_files_containing(server.store_dir, marker.encode()) == []
    finally:
        server.stop()


def test_a_plaintext_store_shows_the_marker_and_is_encrypted_at_its_first_keyed_start(
        tmp_path: Path) -> None:
    """Data dirs from before the encryption keep every acknowledged message."""
    settings = ApiarySettings(data_dir=tmp_path)
    marker = _marker()
    with _plaintext_server(tmp_path) as old_url:
        asyncio.run(_publish(old_url, settings, marker, 4))
        asyncio.run(_ack_first(old_url))
    store = tmp_path / "nats" / "jetstream"
    assert _store_files_containing(store, marker.encode()) != []  # the check can fail

    server = NatsServer(tmp_path)
    url = server.start()
    try:
        assert _store_files_containing(store, marker.encode()) == []
        payloads, ids = asyncio.run(_read_all(url))
        assert payloads == [f"{marker}-{i}".encode() for i in range(4)]
        assert ids == [f"{marker}-id-{i}" for i in range(4)]
        assert asyncio.run(_probe_acked(url)) == 1
        server.restart()
        assert asyncio.run(_read_all(server.url))[0] == payloads
    finally:
        server.stop()


def test_a_configured_key_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    # Unquoted, nats-server would read a value starting with "-3" as a number and refuse it.
    key = SecretStr("-3" + os.urandom(32).hex())
    marker = _marker()
    server = NatsServer(tmp_path, store_key=key)
    try:
        asyncio.run(_publish(server.start(), ApiarySettings(data_dir=tmp_path), marker, 2))
        assert not server.key_file.exists()
        assert _store_files_containing(server.store_dir, marker.encode()) == []
        server.restart()
        assert len(asyncio.run(_read_all(server.url))[0]) == 2
    finally:
        server.stop()
    # Without the configured key, the store is not started empty under a new one.
    with pytest.raises(ConfigurationError, match="encrypted and its key is missing"):
        NatsServer(tmp_path).start()
    assert not NatsServer(tmp_path).key_file.exists()
    # The key nats-server used is the configured one (not, say, the literal variable name):
    # nats-server itself refuses another key once the fingerprint is gone.
    (server.root / "store-key.check").unlink()
    with pytest.raises(ConfigurationError, match="could not decrypt"):
        NatsServer(tmp_path, store_key=SecretStr("-3" + os.urandom(32).hex())).start()


def test_a_wrong_key_is_refused_before_the_server_starts(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    marker = _marker()
    server = NatsServer(tmp_path)
    try:
        asyncio.run(_publish(server.start(), settings, marker, 2))
    finally:
        server.stop()
    wrong = SecretStr(os.urandom(32).hex())
    refused = NatsServer(tmp_path, store_key=wrong)
    with pytest.raises(ConfigurationError, match="encrypted with another key") as error:
        refused.start()
    assert refused.pid is None  # nothing was started
    assert wrong.get_secret_value() not in str(error.value)
    assert server.key_file.read_text().strip() not in str(error.value)

    # A key file replaced by another key is refused the same way.
    right = server.key_file.read_text()
    server.key_file.write_text(os.urandom(32).hex() + "\n")
    with pytest.raises(ConfigurationError, match="encrypted with another key"):
        NatsServer(tmp_path).start()

    # Nothing was lost: with its own key, the store has every message.
    server.key_file.write_text(right)
    again = NatsServer(tmp_path)
    try:
        assert len(asyncio.run(_read_all(again.start()))[0]) == 2
    finally:
        again.stop()


def test_a_wrong_key_is_refused_even_without_the_fingerprint(tmp_path: Path) -> None:
    """With ``store-key.check`` gone, nats-server's own log says it could not decrypt:
    the server is stopped and the start refused, never left running with an empty store."""
    server = NatsServer(tmp_path)
    try:
        asyncio.run(_publish(server.start(), ApiarySettings(data_dir=tmp_path), _marker(), 1))
    finally:
        server.stop()
    (server.root / "store-key.check").unlink()
    refused = NatsServer(tmp_path, store_key=SecretStr(os.urandom(32).hex()))
    with pytest.raises(ConfigurationError, match="could not decrypt"):
        refused.start()
    assert refused.pid is None
    assert not (server.root / "store-key.check").exists()


def test_a_missing_key_file_is_refused_and_not_regenerated(tmp_path: Path) -> None:
    server = NatsServer(tmp_path)
    try:
        asyncio.run(_publish(server.start(), ApiarySettings(data_dir=tmp_path), _marker(), 1))
    finally:
        server.stop()
    server.key_file.unlink()
    with pytest.raises(ConfigurationError, match="encrypted and its key is missing"):
        NatsServer(tmp_path).start()
    assert not server.key_file.exists()
    # The store's own key files give it away even without the fingerprint.
    (server.root / "store-key.check").unlink()
    with pytest.raises(ConfigurationError, match="encrypted and its key is missing"):
        NatsServer(tmp_path).start()
    assert not server.key_file.exists()


def test_a_key_that_is_not_base64_is_refused_without_echoing_it(tmp_path: Path) -> None:
    bad = 'x" } listen: 0.0.0.0:4222 { "' + "y" * 32
    with pytest.raises(ConfigurationError, match="base64") as error:
        NatsServer(tmp_path, store_key=SecretStr(bad)).start()
    assert bad not in str(error.value)
    with pytest.raises(ConfigurationError, match="jetstream_key"):
        load_settings(data_dir=tmp_path, jetstream_key=bad)
