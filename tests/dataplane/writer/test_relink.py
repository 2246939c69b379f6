"""Late session names in the writer, on a real nats-server and chDB: spans exported before
the root that names their session end up in that session, once, with its metadata."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from _writer_loops import Writers, spans_batch, until

from apiary.dataplane.enrich import session_id_for_trace
from apiary.dataplane.writer import WriterLoop
from apiary.errors import StoreRejected
from apiary.event import Event, new_event
from apiary.store import DirectStoreClient, EventStore

NOW_MS = time.time() * 1000.0


def _child(trace: str, parent: str, **fields: Any) -> Event:
    """A span exported before its root: it names no session (the writer links it)."""
    return new_event(event_id=str(uuid.uuid4()), session_id="", trace_id=trace,
                     parent_id=parent, event_type="model", config={"model": "gpt-4o-mini"},
                     metadata={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.25,
                               "own": "kept"},
                     start_time=NOW_MS + 1, end_time=NOW_MS + 2, **fields)


def _root(trace: str, session: str) -> Event:
    return new_event(event_id=session, session_id=session, trace_id=trace,
                     event_type="session", event_name="support",
                     metadata={"tier": "gold", "own": "overridden?"},
                     user_properties={"user_id": "u-7"}, start_time=NOW_MS,
                     end_time=NOW_MS + 10)


async def _stored(store: EventStore, project: str, n: int) -> bool:
    return store.count_events(project) >= n


def _sessions(store: EventStore, project: str) -> dict[str, dict[str, Any]]:
    return {s["session_id"]: s for s in store.list_sessions(project, limit=100)["sessions"]}


async def test_children_exported_before_the_root_that_names_the_session_move_into_it(
    writers: Writers, store: EventStore, project: str
) -> None:
    trace, session = os.urandom(16).hex(), f"sess-{uuid.uuid4()}"
    derived = session_id_for_trace(trace)
    loop = writers.start()
    children = [_child(trace, parent=str(uuid.uuid4())) for _ in range(4)]
    await writers.publish(spans_batch(project, children))
    await until(lambda: _stored(store, project, 4))
    await until(writers.drained)  # acknowledged: the rollups' inserts have returned too
    assert set(_sessions(store, project)) == {derived}
    assert store.derived_traces(project, [trace]) == {trace: derived}

    await writers.publish(spans_batch(project, [_root(trace, session)]))
    await until(lambda: _stored(store, project, 5))
    await until(writers.drained)

    tree = store.session_tree(project, session)
    assert tree["event_id"] == session
    moved = {c["event_id"]: c for c in tree["children"]}
    assert set(moved) == {c["event_id"] for c in children}  # orphans hang under the root
    for event in moved.values():
        assert event["session_id"] == session
        assert event["metadata"]["tier"] == "gold"  # inherited from the late session event
        assert event["metadata"]["own"] == "kept"  # the event's own key wins
        assert event["user_properties"] == {"user_id": "u-7"}
    assert store.session_events(project, derived) == []
    assert store.derived_traces(project, [trace]) == {}
    sessions = _sessions(store, project)
    assert set(sessions) == {session}
    assert sessions[session]["event_count"] == 5
    assert sessions[session]["cost"] == 1.0  # each moved event counted once
    assert sessions[session]["total_tokens"] == 60
    assert store.count_events(project) == 5
    assert store.count_rows(project) == 5  # nothing left behind, nothing twice
    assert loop.relinker.stats.relinked_traces == 1
    assert loop.relinker.stats.moved_events == 4

    # A straggler of the trace, exported after the root, joins the named session too.
    straggler = _child(trace, parent=session)
    await writers.publish(spans_batch(project, [straggler]))
    await until(lambda: _stored(store, project, 6))
    await until(writers.drained)
    assert store.latest_events(project, [straggler["event_id"]])[0]["session_id"] == session
    assert set(_sessions(store, project)) == {session}


class _FailsOnceAfterMoving(DirectStoreClient):
    """Deletes the derived session only on the second try: the first flush fails after
    the moved events were inserted, as if the writer had crashed there."""

    failed = False

    async def forget_sessions(self, project_id: str, session_ids: Any, trace_ids: Any) -> None:
        if not self.failed:
            self.failed = True
            raise StoreRejected("simulated failure between the move's insert and delete")
        await super().forget_sessions(project_id, session_ids, trace_ids)


async def test_a_move_interrupted_after_its_insert_is_finished_once_by_the_rerun(
    writers: Writers, store: EventStore, project: str
) -> None:
    """The failed relink is run again at once (the flush is isolated: a message that fails
    alone is tried once more before it is blamed), without a redelivery; the second run
    finishes the move and inserts nothing twice."""
    trace, session = os.urandom(16).hex(), f"sess-{uuid.uuid4()}"
    first = writers.start()
    children = [_child(trace, parent=str(uuid.uuid4())) for _ in range(3)]
    await writers.publish(spans_batch(project, children))
    await until(lambda: _stored(store, project, 3))
    await writers.stop(first)

    flaky = writers.client = _FailsOnceAfterMoving(store)
    loop: WriterLoop = writers.start(name="flaky")
    await writers.publish(spans_batch(project, [_root(trace, session)]))
    await until(lambda: _stored(store, project, 4))
    await until(writers.drained, wait_s=30)

    assert flaky.failed
    assert loop.stats.isolations == 1
    assert loop.stats.redelivered_messages == 0  # no delivery charged
    assert loop.stats.dead_lettered == 0
    assert set(_sessions(store, project)) == {session}
    sessions = _sessions(store, project)
    assert sessions[session]["event_count"] == 4
    assert sessions[session]["cost"] == 0.75  # the retried move inserted nothing again
    assert store.count_rows(project) == 4
    assert {e["session_id"] for e in store.session_events(project, session)} == {session}
    assert loop.relinker.stats.moved_events == 3


async def test_a_trace_that_never_names_a_session_stays_in_its_own(
    writers: Writers, store: EventStore, project: str
) -> None:
    trace = os.urandom(16).hex()
    loop = writers.start()
    await writers.publish(spans_batch(project, [_child(trace, parent="p")]))
    await writers.publish(spans_batch(project, [_child(trace, parent="p")]))
    await until(lambda: _stored(store, project, 2))
    await until(writers.drained)
    assert set(_sessions(store, project)) == {session_id_for_trace(trace)}
    assert loop.relinker.stats.relinked_traces == 0
