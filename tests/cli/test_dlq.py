"""``apiary dlq list|show|replay|purge`` on a data directory, as the operator runs it: real
dead letters written by :class:`~apiary.queue.outcomes.Outcomes` from a real nats-server's
deliveries, replayed into it (``APIARY_NATS_URL``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from apiary.cli import main
from apiary.errors import PoisonMessage, StoreRejected
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.queue.outcomes import Outcomes
from apiary.settings import ApiarySettings


@dataclass
class _Stats:
    dead_lettered: int = 0
    last_error: str = ""
    dead_letter_failures: int = 0
    dead_letters_pending: int = 0


@pytest.fixture
async def js(nats_server: NatsServer, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[JetStreamContext]:
    for name in ("APIARY_OBJECT_STORE_URL", "APIARY_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    nc = await connect(nats_server.url, name="dlq-cli-test")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    # A duplicate window short enough that the originals' ids expire during the test.
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path, duplicate_window_s=1.0))
    yield js
    await nc.close()


async def _dead_letters(js: JetStreamContext, data_dir: Path) -> None:
    outcomes = Outcomes(stream="events", objects=LocalObjectStore(data_dir / "objects"),
                        stats=_Stats(), log=logging.getLogger("test"), what="message")
    sub = await js.pull_subscribe_bind("writers", "events")
    for i, error in enumerate([PoisonMessage("bad schema"), StoreRejected("refused"),
                               StoreRejected("refused")]):
        await js.publish(f"events.api.proj-{i}", b'{"n": %d}' % i,
                         headers={"Nats-Msg-Id": f"m-{i}"})
        [msg] = await sub.fetch(1, timeout=5)
        await outcomes.dead_letter(msg, error)
    await sub.unsubscribe()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


async def test_list_show_replay_and_purge_from_the_command_line(
    js: JetStreamContext, tmp_path: Path, nats_server: NatsServer,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await _dead_letters(js, tmp_path)
    data_dir = ("--data-dir", str(tmp_path))

    code, out = await asyncio.to_thread(_run, capsys, "dlq", "list", *data_dir)
    assert code == 0
    assert out.startswith("3 dead letters")
    assert "StoreRejected                writer             2" in out
    # Each listed dead letter shows its stage and rows ('-': the record does not say).
    assert "StoreRejected        writer           - refused" in out
    code, out = await asyncio.to_thread(_run, capsys, "dlq", "list", "--json", *data_dir)
    listed = json.loads(out)
    assert listed["counts"]["by_reason"] == {"PoisonMessage": 1, "StoreRejected": 2}
    ids = [d["id"] for d in listed["dead_letters"]]

    code, out = await asyncio.to_thread(_run, capsys, "dlq", "show", ids[0], "--json",
                                        *data_dir)
    shown = json.loads(out)
    assert shown["error"] == "bad schema"
    assert shown["payload"] == {"encoding": "json", "json": {"n": 0}}

    # Replay needs NATS; without it, it says so and changes nothing.
    assert await asyncio.to_thread(main, ["dlq", "replay", "--all", *data_dir]) == 1
    assert "replaying needs NATS" in capsys.readouterr().err
    monkeypatch.setenv("APIARY_NATS_URL", nats_server.url)
    assert await asyncio.to_thread(main, ["dlq", "replay", *data_dir]) == 2  # nothing named
    capsys.readouterr()

    async def replay_rejected() -> dict[str, object]:
        # Until the originals' ids leave the duplicate window the replays are deferred
        # (exit 1, records kept); then they go through.
        for _ in range(100):
            code, out = await asyncio.to_thread(_run, capsys, "dlq", "replay", "--reason",
                                                "StoreRejected", "--json", *data_dir)
            report: dict[str, object] = json.loads(out)
            if code == 0:
                return report
            assert report["deferred"], report
            await asyncio.sleep(0.1)
        raise AssertionError("replays still deferred after 10 s")

    report = await replay_rejected()
    assert report["replayed"] == ids[1:]
    info = await js.stream_info("events")
    assert info.state.messages == 2  # back in the stream for the writers

    # Purge asks; with no terminal and no --yes it refuses and keeps everything.
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert await asyncio.to_thread(main, ["dlq", "purge", "--all", *data_dir]) == 2
    refused = capsys.readouterr()
    assert "pass --yes" in refused.err
    assert "nothing removed" in refused.out
    code, out = await asyncio.to_thread(_run, capsys, "dlq", "list", "--json", *data_dir)
    assert [d["id"] for d in json.loads(out)["dead_letters"]] == ids[:1]
    code, out = await asyncio.to_thread(_run, capsys, "dlq", "purge", ids[0], "--yes",
                                        *data_dir)
    assert (code, out.strip()) == (0, "removed 1 dead letter")
    code, out = await asyncio.to_thread(_run, capsys, "dlq", "list", *data_dir)
    assert out.startswith("0 dead letters")


def test_replay_finds_the_embedded_nats_server_of_the_data_directory(tmp_path: Path) -> None:
    assert NatsServer.running_url(tmp_path) is None  # nothing ever ran here
    server = NatsServer(tmp_path)
    server.start()
    try:
        assert NatsServer.running_url(tmp_path) == server.url
    finally:
        server.stop()
    assert NatsServer.running_url(tmp_path) is None  # stopped: its port is gone
