"""Dead letters read back, replayed and purged (:mod:`apiary.queue.dead_letters`), on a real
nats-server, over both object-store drivers (a local directory, and S3 on ``moto_server``).

The dead letters are written by the real :class:`~apiary.queue.outcomes.Outcomes` from real
JetStream deliveries, so the records are exactly what a writer or evaluator leaves behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from apiary._private import metrics
from apiary.errors import Conflict, InvalidRequest, NotFound, PoisonMessage, StoreRejected
from apiary.objects import LocalObjectStore, ObjectStore, S3ObjectStore
from apiary.queue import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    WIRE_SCHEMA,
    NatsServer,
    TableBatch,
    connect,
    encode_table,
    ensure_topology,
)
from apiary.queue.dead_letters import (
    REPLAYED_FROM_HEADER,
    UNREADABLE,
    DeadLetters,
    Selection,
    counts,
    id_of,
    key_of,
)
from apiary.queue.outcomes import DeadLetterInfo, DeadPart, Outcomes
from apiary.settings import ApiarySettings

WINDOW_S = 3.0  # the streams' duplicate window here: short, so the originals' ids expire


@dataclass
class _Stats:
    dead_lettered: int = 0
    last_error: str = ""
    dead_letter_failures: int = 0
    dead_letters_pending: int = 0


@pytest.fixture
async def js(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    nc: Client = await connect(nats_server.url, name="dead-letters-test")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path, duplicate_window_s=WINDOW_S))
    yield js
    await nc.close()


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3ObjectStore(bucket, "dp", endpoint_url=endpoint)


async def _dead_letter(js: JetStreamContext, objects: ObjectStore, stream: str, subject: str,
                       data: bytes, error: BaseException, headers: dict[str, str],
                       **how: Any) -> int:
    """Publish a message, take it from the stream's durable consumer and dead-letter it as a
    consumer does (``how``: :meth:`Outcomes.dead_letter`'s keywords); its stream
    sequence."""
    ack = await js.publish(subject, data, headers=headers, stream=stream)
    consumer = {"events": "writers", "evaluation": "evaluators"}[stream]
    sub = await js.pull_subscribe_bind(consumer, stream)
    try:
        [msg] = await sub.fetch(1, timeout=5)
        outcomes = Outcomes(stream=stream, objects=objects, stats=_Stats(),
                            log=logging.getLogger("test"), what="message")
        await outcomes.dead_letter(msg, error, **how)
    finally:
        await sub.unsubscribe()
    return ack.seq


def _replays(outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "apiary_dead_letters_replayed_total", {"stream": "events", "outcome": outcome})
    return value or 0.0


def _json_batch(project: str, n: int = 2) -> bytes:
    return orjson.dumps({"schema": WIRE_SCHEMA, "kind": "api", "version": 7,
                         "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
                         "events": [{"event_id": f"e{i}"} for i in range(n)]})


async def _stream_messages(js: JetStreamContext, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    return [await js.get_msg(stream, seq)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
            if info.state.messages]


async def _settled(dead: DeadLetters, letter_id: str, wait_s: float = 15.0) -> bool:
    """Replay ``letter_id`` once JetStream no longer remembers its original's id."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await dead.replay(await dead.get(letter_id))
        except Conflict as exc:
            retry_after = exc.context["retry_after"]
            if time.monotonic() > deadline:
                raise
        assert retry_after <= WINDOW_S + 1
        await asyncio.sleep(0.2)


async def test_list_counts_by_reason_and_stage_and_shows_the_payload(
    js: JetStreamContext, objects: ObjectStore
) -> None:
    seq_a = await _dead_letter(js, objects, "events", "events.api.proj-a", _json_batch("proj-a"),
                               PoisonMessage("unknown batch schema 9"), {"Nats-Msg-Id": "m-a"})
    table = pa.table({"event_id": ["s1", "s2"], "duration": [1.5, 2.5]})
    arrow = encode_table(TableBatch(kind="spans", tenant={"org_id": "o", "workspace_id": "w",
                                                          "project_id": "proj-b"},
                                    version=9, table=table))
    await _dead_letter(js, objects, "events", "events.spans.proj-b", arrow,
                       StoreRejected("ClickHouse rejected insert"),
                       {"Nats-Msg-Id": "m-b", ENCODING_HEADER: ARROW_ENCODING})
    await _dead_letter(js, objects, "events", "events.api.proj-a", b"{not json",
                       PoisonMessage("message is not JSON"), {"Nats-Msg-Id": "m-c"})
    await _dead_letter(js, objects, "evaluation", "evaluation.online.proj-a", b"{}",
                       PoisonMessage("task has no tenant"), {"Nats-Msg-Id": "t-1"})

    dead = DeadLetters(objects)
    letters = await dead.select()
    assert [d.msg_id for d in letters] == ["t-1", "m-a", "m-b", "m-c"]  # stream, sequence
    summary = counts(letters)
    assert summary["total"] == 4
    assert summary["by_reason"] == {"PoisonMessage": 3, "StoreRejected": 1}
    assert summary["by_stage"] == {"evaluator": 1, "writer": 3}
    assert summary["by_stream"] == {"evaluation": 1, "events": 3}
    assert summary["by_reason_and_stage"] == [
        {"reason": "PoisonMessage", "stage": "evaluator", "count": 1},
        {"reason": "PoisonMessage", "stage": "writer", "count": 2},
        {"reason": "StoreRejected", "stage": "writer", "count": 1}]

    first = next(d for d in letters if d.msg_id == "m-a")
    assert first.stream_sequence == seq_a
    assert first.summary() | {"dead_lettered_at": None} == {
        "id": first.id, "stream": "events", "subject": "events.api.proj-a",
        "project_id": "proj-a", "stream_sequence": seq_a, "deliveries": 1, "msg_id": "m-a",
        "reason": "PoisonMessage", "stage": "writer",
        "error": "unknown batch schema 9", "dead_lettered_at": None,
        "size": len(_json_batch("proj-a")), "rows": None}
    assert abs((first.dead_lettered_at or 0) - time.time()) < 60
    shown = (await dead.get(first.id)).detail()
    assert shown["payload"] == {"encoding": "json", "json": orjson.loads(_json_batch("proj-a"))}
    assert shown["headers"]["Nats-Msg-Id"] == "m-a"

    spans = (await dead.get(next(d.id for d in letters if d.msg_id == "m-b"))).payload()
    assert spans["encoding"] == "arrow"
    assert spans["envelope"]["tenant"]["project_id"] == "proj-b"
    assert spans["rows"] == [{"event_id": "s1", "duration": 1.5},
                             {"event_id": "s2", "duration": 2.5}]
    garbled = (await dead.get(next(d.id for d in letters if d.msg_id == "m-c"))).payload()
    assert garbled["encoding"] == "base64"
    assert base64.b64decode(garbled["base64"]) == b"{not json"

    only = await dead.select(Selection(reason="StoreRejected", everything=True))
    assert [d.msg_id for d in only] == ["m-b"]
    of_a = await dead.select(Selection(project_id="proj-a", stage="writer", everything=True))
    assert [d.msg_id for d in of_a] == ["m-a", "m-c"]


async def test_records_name_their_stage_project_and_rows_and_a_part_is_its_own_message(
    js: JetStreamContext, objects: ObjectStore
) -> None:
    """What a writer leaves now: every record names the stage that failed, its project and
    rows; the unstorable spans of a message whose other spans were stored are a record of
    their own (``<sequence>-spans``), listed, counted by stage and replayed as a message
    under their own id; the message itself was acknowledged, not terminated."""
    whole = await _dead_letter(
        js, objects, "events", "events.api.proj-s", _json_batch("proj-s", 3),
        PoisonMessage("the message crashed its writer 3 times"), {"Nats-Msg-Id": "m-crash"},
        info=DeadLetterInfo(stage="crash_loop", project_id="proj-s", rows=3))
    hooked: list[str] = []

    async def durable() -> None:
        hooked.append("ledger")

    part = _json_batch("proj-s", 1)
    seq = await _dead_letter(
        js, objects, "events", "events.api.proj-s", _json_batch("proj-s", 4),
        TypeError("expected a dict"), {"Nats-Msg-Id": "m-part"},
        info=DeadLetterInfo(stage="insert", project_id="proj-s", rows=1),
        part=DeadPart(data=part, msg_id="m-part-spans"), durable=durable)
    assert hooked == ["ledger"]  # awaited once the record was durable
    assert sorted(await objects.keys("dlq/events/"))[-1].endswith(f"{seq:012d}-spans.json")

    dead = DeadLetters(objects, js)
    letters = await dead.select(Selection(project_id="proj-s", everything=True))
    assert [(d.stage, d.rows, d.msg_id, d.reason) for d in letters] == [
        ("crash_loop", 3, "m-crash", "PoisonMessage"),
        ("insert", 1, "m-part-spans", "TypeError")]
    assert letters[1].id.endswith("-spans")
    assert letters[1].data == part  # the bad span only
    assert letters[0].stream_sequence == whole
    assert counts(letters)["by_reason_and_stage"] == [
        {"reason": "PoisonMessage", "stage": "crash_loop", "count": 1},
        {"reason": "TypeError", "stage": "insert", "count": 1}]
    assert (await dead.select(Selection(stage="crash_loop", everything=True)))[0].rows == 3
    # The part's message was acknowledged (its other spans stored), the other terminated:
    # nothing of either is left pending.
    info = await js.consumer_info("events", "writers")
    assert info.num_ack_pending == 0
    # Replayed, the part is a message of its own: under its own id, with only its span.
    assert await _settled(dead, letters[1].id)
    replayed = [m for m in await _stream_messages(js, "events")
                if (m.headers or {}).get("Nats-Msg-Id") == "m-part-spans"]
    assert [m.data for m in replayed] == [part]


async def test_replay_publishes_under_the_original_id_and_twice_stores_once(
    js: JetStreamContext, objects: ObjectStore
) -> None:
    data = _json_batch("proj-r", 3)
    seq = await _dead_letter(js, objects, "events", "events.api.proj-r", data,
                             PoisonMessage("writer bug"),
                             {"Nats-Msg-Id": "orig-1", "Apiary-Trace": "t"})
    dead = DeadLetters(objects, js)
    [letter] = await dead.select()
    record = await objects.get(letter.key)
    before = {o: _replays(o) for o in ("replayed", "already_replayed", "deferred")}

    # Right after the dead letter, JetStream still remembers the original's id and would
    # drop the replay: refused, the record kept, and told when to come back.
    with pytest.raises(Conflict) as refused:
        await dead.replay(letter)
    assert 0 < refused.value.context["retry_after"] <= WINDOW_S + 1
    assert [d.id for d in await dead.select()] == [letter.id]
    assert await _stream_messages(js, "events") == []

    assert await _settled(dead, letter.id) is True
    assert await dead.select() == []  # the record is gone once JetStream has the message
    [replayed] = await _stream_messages(js, "events")
    assert replayed.seq != seq
    assert replayed.subject == "events.api.proj-r"
    assert replayed.data == data
    assert replayed.headers["Nats-Msg-Id"] == "orig-1"
    assert replayed.headers["Apiary-Trace"] == "t"
    assert replayed.headers[REPLAYED_FROM_HEADER] == letter.id

    # A crash between the publish and the removal: the record is back, and replaying it
    # again stores nothing new; the record goes.
    await objects.put(letter.key, record)
    assert await dead.replay(await dead.get(letter.id)) is False
    assert len(await _stream_messages(js, "events")) == 1
    assert await dead.select() == []
    # Counted: one replay, one copy recognised, and at least the one deferral above.
    assert _replays("replayed") - before["replayed"] == 1
    assert _replays("already_replayed") - before["already_replayed"] == 1
    assert _replays("deferred") - before["deferred"] >= 1


async def test_a_message_without_an_id_is_replayed_under_one_derived_from_its_letter(
    js: JetStreamContext, objects: ObjectStore
) -> None:
    await _dead_letter(js, objects, "evaluation", "evaluation.online.proj-x", b'{"t": 1}',
                       PoisonMessage("bad task"), {})
    dead = DeadLetters(objects, js)
    [letter] = await dead.select()
    assert letter.msg_id == f"dlq.{letter.id}"
    record = await objects.get(letter.key)
    report = await dead.replay_all([letter])
    assert report.replayed == [letter.id]
    await objects.put(letter.key, record)
    report = await dead.replay_all(await dead.select())
    assert report.already_replayed == [letter.id]
    [message] = await _stream_messages(js, "evaluation")
    assert message.headers["Nats-Msg-Id"] == f"dlq.{letter.id}"


async def test_purge_by_id_by_reason_and_all(js: JetStreamContext, objects: ObjectStore) -> None:
    for i, error in enumerate([PoisonMessage("p"), PoisonMessage("p"),
                               StoreRejected("r"), StoreRejected("r")]):
        await _dead_letter(js, objects, "events", f"events.api.p{i}", b"{}", error,
                           {"Nats-Msg-Id": f"m{i}"})
    dead = DeadLetters(objects)
    letters = await dead.select()
    await dead.purge(letters[0])
    await dead.purge(letters[0])  # already gone: fine
    assert [d.msg_id for d in await dead.select()] == ["m1", "m2", "m3"]
    for letter in await dead.select(Selection(reason="StoreRejected", everything=True)):
        await dead.purge(letter)
    assert [d.msg_id for d in await dead.select()] == ["m1"]
    for letter in await dead.select(Selection(everything=True)):
        await dead.purge(letter)
    assert await dead.select() == []
    assert await objects.keys("dlq/") == []
    with pytest.raises(NotFound):
        await dead.get(letters[0].id)
    with pytest.raises(NotFound):  # a named id that is gone is said so, not skipped
        await dead.select(Selection(ids=(letters[0].id,)))


async def test_an_unreadable_record_is_listed_never_replayed_and_can_be_purged(
    js: JetStreamContext, objects: ObjectStore
) -> None:
    await objects.put("dlq/events/2026/01/02/000000000005.json", b"\x00 not a record")
    await objects.put("dlq/events/2026/01/02/000000000006.json",
                      orjson.dumps({"subject": "evaluation.online.p", "data_base64": ""}))
    dead = DeadLetters(objects, js)
    letters = await dead.select()
    assert [d.reason for d in letters] == [UNREADABLE, UNREADABLE]
    assert "not on stream" in letters[1].error  # a record cannot replay into another stream
    report = await dead.replay_all(letters)
    assert [f["id"] for f in report.failed] == [d.id for d in letters]
    with pytest.raises(InvalidRequest):
        await dead.replay(letters[0])
    assert await _stream_messages(js, "events") == []
    for letter in letters:
        await dead.purge(letter)
    assert await dead.select() == []


def test_ids_name_keys_under_the_dead_letter_prefix_only() -> None:
    assert key_of("events.2026.12.05.000000000042") == "dlq/events/2026/12/05/000000000042.json"
    assert id_of("dlq/events/2026/12/05/000000000042.json") == "events.2026.12.05.000000000042"
    assert id_of("other/events/x.json") is None
    assert id_of("dlq/events/x.tmp") is None
    for bad in ("..", "events", "events/../../etc/passwd", "events..x", ".events.x",
                "events.x/y", "", "events.%2e%2e"):
        with pytest.raises(InvalidRequest):
            key_of(bad)


def test_an_empty_selection_selects_nothing() -> None:
    assert Selection().empty
    assert not Selection(everything=True).empty
    assert not Selection(reason="PoisonMessage").empty
