"""Late session events in the writer, on a real nats-server and chDB: events stored before
their session event get what they inherit from it once it arrives, and count once."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from _writer_loops import Writers, spans_batch, until

from apiary.event import Event, new_event
from apiary.store import EventStore

NOW_MS = time.time() * 1000.0


def _child(trace: str, session: str) -> Event:
    """A span that names its session, exported before the session's root."""
    return new_event(event_id=str(uuid.uuid4()), session_id=session, trace_id=trace,
                     parent_id=session, event_type="model", config={"model": "gpt-4o-mini"},
                     metadata={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.25,
                               "tier": "own"},
                     start_time=NOW_MS + 1, end_time=NOW_MS + 2)


def _session_event(trace: str, session: str) -> Event:
    return new_event(event_id=session, session_id=session, trace_id=trace,
                     event_type="session", event_name="support",
                     metadata={"tier": "gold", "region": "eu"},
                     user_properties={"user_id": "u-9"}, start_time=NOW_MS,
                     end_time=NOW_MS + 10)


def _session(store: EventStore, project: str, session: str) -> dict[str, Any]:
    sessions = store.list_sessions(project, limit=100)["sessions"]
    return next(s for s in sessions if s["session_id"] == session)


async def _inheriting(store: EventStore, project: str, ids: list[str]) -> bool:
    events = store.latest_events(project, ids)
    return len(events) == len(ids) and all(
        e["metadata"].get("region") == "eu" for e in events)


async def test_events_stored_before_their_session_event_inherit_it_when_it_arrives(
    writers: Writers, store: EventStore, project: str
) -> None:
    trace, session = os.urandom(16).hex(), f"sess-{uuid.uuid4()}"
    loop = writers.start()
    children = [_child(trace, session) for _ in range(3)]
    await writers.publish(spans_batch(project, children))
    await until(writers.drained)
    ids = [c["event_id"] for c in children]
    assert all("region" not in e["metadata"] for e in store.latest_events(project, ids))
    assert store.uninherited_sessions(project, [session]) == [session]

    await writers.publish(spans_batch(project, [_session_event(trace, session)]))
    await until(lambda: _inheriting(store, project, ids))
    await until(writers.drained)

    for event in store.latest_events(project, ids):
        assert event["metadata"]["region"] == "eu"  # inherited from the late session event
        assert event["metadata"]["tier"] == "own"  # the event's own key wins
        assert event["user_properties"] == {"user_id": "u-9"}
    summary = _session(store, project, session)
    assert summary["event_count"] == 4
    assert summary["cost"] == 0.75  # the new versions added nothing to the rollup
    assert summary["total_tokens"] == 45
    assert store.count_events(project) == 4
    assert store.uninherited_sessions(project, [session]) == []
    assert loop.backfill.stats.backfilled_events == 3


async def test_a_session_event_that_arrives_first_needs_no_backfill(
    writers: Writers, store: EventStore, project: str
) -> None:
    trace, session = os.urandom(16).hex(), f"sess-{uuid.uuid4()}"
    loop = writers.start()
    await writers.publish(spans_batch(project, [_session_event(trace, session)]))
    await until(writers.drained)
    child = _child(trace, session)
    await writers.publish(spans_batch(project, [child]))
    await until(writers.drained)
    assert store.latest_events(project, [child["event_id"]])[0]["metadata"]["region"] == "eu"
    assert store.uninherited_sessions(project, [session]) == []
    assert loop.backfill.stats.uninherited_sessions == 0
    assert loop.backfill.stats.backfilled_sessions == 0
