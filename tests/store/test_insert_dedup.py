"""Idempotent and durable inserts: deduplication tokens and fsync'ed parts (issue 13)."""

from __future__ import annotations

import uuid

from factory import BASE_MS, tenant

from apiary.event import Event, new_event
from apiary.store import EventStore, events_to_arrow, insert_dedup_token


def _session(project: str, *, cost: float = 0.25, tokens: int = 30) -> list[Event]:
    sid = str(uuid.uuid4())
    session = new_event(event_id=sid, session_id=sid, event_type="session",
                        start_time=BASE_MS, end_time=BASE_MS + 10)
    calls = [
        new_event(event_id=str(uuid.uuid4()), session_id=sid, parent_id=sid,
                  event_type="model", start_time=BASE_MS + i, end_time=BASE_MS + i + 1,
                  metadata={"cost": cost, "prompt_tokens": tokens - 10,
                            "completion_tokens": 10, "total_tokens": tokens})
        for i in range(3)
    ]
    return [session, *calls]


def _only_session(store: EventStore, project: str) -> dict[str, object]:
    listed = store.list_sessions(project)
    assert listed["totalSessions"] == 1
    session: dict[str, object] = listed["sessions"][0]
    return session


def test_the_same_insert_repeated_with_its_token_is_stored_and_aggregated_once(
        fresh_store: EventStore) -> None:
    project = f"p-{uuid.uuid4().hex[:8]}"
    table = events_to_arrow(tenant(project), 1, _session(project))
    token = insert_dedup_token(["1:a", "2:b"], table)
    for _ in range(3):  # the first attempt committed; its caller saw a timeout and retried
        fresh_store.insert_arrow(table, token)
    assert fresh_store.count_rows(project) == 4
    session = _only_session(fresh_store, project)
    assert session["event_count"] == 4
    assert session["cost"] == 0.75  # three model calls of 0.25, once each
    assert session["total_tokens"] == 90
    assert session["prompt_tokens"] == 60


def test_inserts_with_different_tokens_are_all_stored(fresh_store: EventStore) -> None:
    project = f"p-{uuid.uuid4().hex[:8]}"
    first = events_to_arrow(tenant(project), 1, _session(project))
    second = events_to_arrow(tenant(project), 1, _session(project))
    fresh_store.insert_arrow(first, insert_dedup_token(["1:a"], first))
    fresh_store.insert_arrow(second, insert_dedup_token(["1:a"], second))
    assert fresh_store.count_rows(project) == 8
    assert fresh_store.list_sessions(project)["totalSessions"] == 2


def test_the_token_names_the_messages_and_the_rows() -> None:
    events = _session("p")
    table = events_to_arrow(tenant("p"), 1, events)
    token = insert_dedup_token(["1:a", "2:b"], table)
    assert token == insert_dedup_token(["1:a", "2:b"], table)
    # a slice of the batch (one of its messages), other rows, another version: other tokens
    assert token != insert_dedup_token(["1:a"], table)
    assert token != insert_dedup_token(["1:a", "2:b"], table.slice(0, 2))
    assert token != insert_dedup_token(["1:a", "2:b"],
                                       events_to_arrow(tenant("p"), 2, events))


def test_events_and_rollups_fsync_parts_and_deduplicate(fresh_store: EventStore) -> None:
    rows = fresh_store.driver.query_rows(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
        {"db": fresh_store.database},
    )
    tables = {r["name"]: r["engine_full"] for r in rows}
    for name in ("events", "session_aggregates", "event_schemas"):
        assert "non_replicated_deduplication_window = 10000" in tables[name], name
    for name in ("events", "session_aggregates", "event_schemas", "project_event_details",
                 "event_updates", "derived_traces", "uninherited_sessions"):
        assert "fsync_after_insert = 1" in tables[name], name
        assert "fsync_part_directory = 1" in tables[name], name
