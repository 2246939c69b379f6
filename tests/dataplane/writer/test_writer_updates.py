"""Event updates in the writer, on a real nats-server and chDB: patches are merged in version
order whatever order they arrive in, survive redelivery and writer restarts, and never
make the session rollups count an event twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, cast

import orjson
import pytest
from _writer_loops import CrashBeforeAck, Writers, until
from nats.aio.msg import Msg

from apiary.dataplane.writer import UpdateApplier, WriterLoop, validate_patch
from apiary.errors import PoisonMessage
from apiary.event import (
    API_KIND,
    UPDATES_KIND,
    Event,
    EventBatch,
    EventPatch,
    Tenant,
    apply_patch,
    new_event,
)
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA
from apiary.store import DirectStoreClient, EventStore

# --- apply_patch: the merge rules ------------------------------------------------------------


def test_apply_patch_merges_objects_and_replaces_the_rest() -> None:
    event = new_event(event_id="e", start_time=1000.0, end_time=1500.0, duration=500.0,
                      metadata={"a": 1, "n": {"x": 1}}, outputs={"old": 1},
                      feedback={"f": 1}, children_ids=["c0"])
    apply_patch(event, {"event_id": "e", "version": 1, "metadata": {"b": 2, "n": {"y": 2}},
                        "outputs": {"new": 2}, "feedback": {"g": 2}, "children_ids": [],
                        "end_time": 1800.0})
    assert event["metadata"] == {"a": 1, "b": 2, "n": {"y": 2}}  # shallow: n replaced
    assert event["outputs"] == {"new": 2}
    assert event["feedback"] == {"f": 1, "g": 2}
    assert event["children_ids"] == ["c0"]  # an empty list is ignored (HoneyHive)
    assert (event["end_time"], event["duration"]) == (1800.0, 800.0)
    apply_patch(event, {"event_id": "e", "version": 2, "duration": 42.0, "end_time": 1900.0,
                        "children_ids": ["c1"]})
    assert (event["end_time"], event["duration"], event["children_ids"]) == (
        1900.0, 42.0, ["c1"])


def test_applying_all_patches_again_is_idempotent() -> None:
    patches: list[EventPatch] = [
        {"event_id": "e", "version": 1, "metadata": {"k": 1, "a": True}},
        {"event_id": "e", "version": 2, "metadata": {"k": 2}, "outputs": {"o": 2}},
    ]
    once = new_event(event_id="e", metadata={"base": 0})
    for patch in patches:
        apply_patch(once, patch)
    twice: Event = {**once}
    for patch in patches:
        apply_patch(twice, patch)
    assert twice == once == {**once, "metadata": {"base": 0, "k": 2, "a": True},
                             "outputs": {"o": 2}}


@pytest.mark.parametrize("raw", [
    "x", {"version": 1}, {"event_id": "e"}, {"event_id": "e", "version": True},
    {"event_id": "e", "version": 1, "metadata": [1]},
    {"event_id": "e", "version": 1, "duration": "long"},
    {"event_id": "e", "version": 1, "end_time": float("nan")},
    {"event_id": "e", "version": 1, "children_ids": [1]},
])
def test_unusable_patches_are_poison(raw: Any) -> None:
    with pytest.raises(PoisonMessage):
        validate_patch(raw)


# --- the writer ------------------------------------------------------------------------------


def _tenant(project: str) -> Tenant:
    return {"org_id": "o", "workspace_id": "w", "project_id": project}


def _events_batch(project: str, events: list[Event], kind: str = "spans") -> EventBatch:
    return {"schema": WIRE_SCHEMA, "kind": kind, "tenant": _tenant(project),
            "version": time.time_ns(), "events": events}


def _patch_batch(project: str, event_id: str, version: int | None = None,
                 **fields: Any) -> EventBatch:
    version = version or time.time_ns()
    patch = cast(EventPatch, {"event_id": event_id, "version": version, **fields})
    return {"schema": WIRE_SCHEMA, "kind": UPDATES_KIND, "tenant": _tenant(project),
            "version": version, "events": [], "patches": [patch]}


def _model(session_id: str, event_id: str | None = None, **fields: Any) -> Event:
    return new_event(event_id=event_id or str(uuid.uuid4()), session_id=session_id,
                     parent_id=session_id, event_type="model",
                     config={"model": "gpt-4o-mini"}, start_time=1e12, end_time=1e12 + 5,
                     metadata={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.5},
                     **fields)


def _event(store: EventStore, project: str, event_id: str) -> dict[str, Any] | None:
    found = store.latest_events(project, [event_id])
    return found[0] if found else None


async def _has(store: EventStore, project: str, event_id: str, **expected: Any) -> bool:
    event = _event(store, project, event_id)
    return event is not None and all(
        all(event[k].get(kk) == vv for kk, vv in v.items()) if isinstance(v, dict)
        else event[k] == v for k, v in expected.items())


async def _settled(loop: WriterLoop, project: str, event_id: str) -> bool:
    """The writer knows the event's updates are merged (nothing pending for it)."""
    return (project, event_id) not in loop.updates.pending()


async def test_patches_merge_in_version_order_not_arrival_order(
    writers: Writers, project: str
) -> None:
    session_id = str(uuid.uuid4())
    event = _model(session_id)
    event_id = event["event_id"]
    base = time.time_ns()
    # The later version is published first; both arrive before the event.
    await writers.publish(_patch_batch(project, event_id, base + 2, metadata={"k": "second"},
                                       outputs={"v": 2}))
    await writers.publish(_patch_batch(project, event_id, base + 1, metadata={"k": "first",
                                                                              "only1": 1},
                                       outputs={"v": 1}))
    loop = writers.start()
    await until(lambda: _patches(writers.store, project, event_id, 2))
    await writers.publish(_events_batch(project, [event]))
    await until(lambda: _has(writers.store, project, event_id, metadata={"k": "second"}))
    stored = _event(writers.store, project, event_id)
    assert stored is not None
    assert stored["metadata"]["only1"] == 1
    assert stored["outputs"] == {"v": 2}
    assert loop.updates.stats.applied_on_arrival == 1
    # Another update after the event: a merged version, still in version order.
    await writers.publish(_patch_batch(project, event_id, base + 3, metadata={"k": "third"}))
    await until(lambda: _has(writers.store, project, event_id, metadata={"k": "third"}))
    await until(lambda: _settled(loop, project, event_id))


async def _patches(store: EventStore, project: str, event_id: str, n: int) -> bool:
    return len(store.event_patches(project, [event_id]).get(event_id, [])) >= n


async def test_updates_survive_redelivery_and_rollups_count_once(
    writers: Writers, project: str
) -> None:
    session_id = str(uuid.uuid4())
    session = new_event(event_id=session_id, session_id=session_id, event_type="session",
                        start_time=1e12, end_time=1e12 + 9)
    model = _model(session_id)
    model_id = model["event_id"]
    await writers.publish(_events_batch(project, [session, model]))
    await writers.publish(_patch_batch(project, model_id, metadata={"reviewed": True,
                                                                   "cost": 0.75}))
    await writers.publish(_patch_batch(project, session_id, metrics={"score": 1}))
    crashing = writers.start(CrashBeforeAck, "crashing")
    await until(lambda: _has(writers.store, project, model_id, metadata={"reviewed": True}))
    await until(lambda: _has(writers.store, project, session_id, metrics={"score": 1}))
    await writers.stop(crashing)

    healthy = writers.start(name="healthy")
    await until(lambda: _redelivered_and_drained(writers, healthy))
    await writers.stop(healthy)
    model_now = _event(writers.store, project, model_id)
    assert model_now is not None
    assert model_now["metadata"]["cost"] == 0.75
    patches = writers.store.event_patches(project, [model_id, session_id])
    assert [len(patches[model_id]), len(patches[session_id])] == [1, 1]
    [summary] = writers.store.list_sessions(project)["sessions"]
    assert summary["event_count"] == 2
    assert summary["cost"] == pytest.approx(0.75)  # the update's cost, counted once
    assert summary["total_tokens"] == 15


async def _waits(loop: WriterLoop, project: str, event_id: str) -> bool:
    return (project, event_id) in loop.updates.pending()


async def _redelivered_and_drained(writers: Writers, loop: WriterLoop) -> bool:
    return loop.stats.redelivered_messages >= 3 and await writers.drained()


async def test_a_restarted_writer_still_applies_updates_waiting_for_their_event(
    writers: Writers, project: str
) -> None:
    event = _model(str(uuid.uuid4()))
    event_id = event["event_id"]
    first = writers.start(name="first")
    await writers.publish(_patch_batch(project, event_id, feedback={"rating": 3}))
    await until(lambda: _patches(writers.store, project, event_id, 1))
    # (Remembered just after the patch's insert returned: wait for it, not for the row.)
    await until(lambda: _waits(first, project, event_id))
    await writers.stop(first)  # its memory of the pending update is gone

    second = writers.start(name="second")
    await writers.publish(_events_batch(project, [event]))
    await until(lambda: _has(writers.store, project, event_id, feedback={"rating": 3}))
    await until(lambda: _settled(second, project, event_id))


async def test_an_event_stored_by_another_writer_is_merged_by_the_patch_owner(
    writers: Writers, project: str, store: EventStore
) -> None:
    event = _model(str(uuid.uuid4()))
    event_id = event["event_id"]
    owner = writers.start(name="owner")
    await writers.publish(_patch_batch(project, event_id, metadata={"late": 1}))
    await until(lambda: _patches(store, project, event_id, 1))
    # Another writer, which never saw the update, stores the event as it arrived.
    store.insert_events(_tenant(project), time.time_ns(), [event])
    await until(lambda: _has(store, project, event_id, metadata={"late": 1}))
    await until(lambda: _settled(owner, project, event_id))
    assert owner.updates.stats.merged_versions >= 1
    [summary] = store.list_sessions(project)["sessions"]
    assert summary["cost"] == pytest.approx(0.5)  # merged version adds no cost


async def test_a_session_started_again_merges_into_the_stored_session(
    writers: Writers, project: str
) -> None:
    session_id = str(uuid.uuid4())

    def start(**metadata: Any) -> Event:
        return new_event(event_id=session_id, session_id=session_id, event_type="session",
                         event_name="chat", start_time=1e12, metadata=metadata)

    writers.start()
    # Two starts in one batch, then a third later: one session, metadata merged.
    await writers.publish(_events_batch(project, [start(a=1), start(b=2)], API_KIND))
    await until(lambda: _has(writers.store, project, session_id, metadata={"b": 2}))
    await writers.publish(_events_batch(project, [start(c=3, a=0)], API_KIND))
    await until(lambda: _has(writers.store, project, session_id, metadata={"c": 3}))
    stored = _event(writers.store, project, session_id)
    assert stored is not None
    assert stored["metadata"] == {"a": 0, "b": 2, "c": 3}
    assert writers.store.count_events(project) == 1


async def test_a_poison_update_is_dead_lettered_and_others_applied(
    writers: Writers, project: str
) -> None:
    event = _model(str(uuid.uuid4()))
    await writers.publish(_events_batch(project, [event]))
    poison = _patch_batch(project, event["event_id"], metadata={"x": 1})
    poison["patches"][0]["metadata"] = "not an object"  # type: ignore[typeddict-item]
    await writers.publish(poison)
    await writers.publish(_patch_batch(project, event["event_id"], metadata={"y": 2}))
    loop = writers.start()
    await until(lambda: _has(writers.store, project, event["event_id"], metadata={"y": 2}))
    await until(writers.drained)
    assert loop.stats.dead_lettered == 1
    [key] = await LocalObjectStore(writers.tmp_path / "objects").keys("dlq/")
    record = orjson.loads(await LocalObjectStore(writers.tmp_path / "objects").get(key))
    assert record["error_type"] == "PoisonMessage"
    stored = _event(writers.store, project, event["event_id"])
    assert stored is not None
    assert "x" not in stored["metadata"]


async def test_pending_updates_back_off_and_expire(store: EventStore, project: str) -> None:
    calls: list[str] = []

    async def retrying(call: Any, *args: Any, **_: Any) -> Any:
        calls.append(call.__name__)
        return await call(*args)

    async def dead_letter(msg: Msg, error: Exception) -> None:
        raise AssertionError("nothing to dead-letter")

    from apiary.dataplane.enrich import Enricher, PriceTable

    applier = UpdateApplier(store=DirectStoreClient(store), enricher=Enricher(
        PriceTable.bundled()), retrying=retrying, dead_letter=dead_letter, interval_s=0.05,
        max_backoff_s=0.2, max_age_s=0.3)
    applier._remember(project, "never-arrives", time.monotonic() - 1)
    assert await applier.reconcile() == 0
    entry = applier._pending[(project, "never-arrives")]
    assert entry.delay > 0
    assert entry.due > time.monotonic()
    await asyncio.sleep(0.35)
    await applier.reconcile()
    assert applier.pending() == set()  # expired
    assert applier.stats.dropped_pending == 1
