"""Keyset paging: ``cursor`` continues exports and session lists where a page ended, with the
same rows as ``page`` and the same total on every page; a cursor is only ever accepted back
by the read that issued it."""

from __future__ import annotations

from typing import Any

import pytest
from factory import BASE_MS, event, tenant

from apiary.errors import InvalidRequest
from apiary.store import EventStore


def _export_pages(store: EventStore, project: str, request: dict[str, Any]
                  ) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = store.export(project, {**request, **({"cursor": cursor} if cursor else {})})
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_export_cursor_pages_match_numbered_pages(store: EventStore, project: str) -> None:
    # Ties in start_time are ordered by event_id, across a page boundary too.
    events = [event(event_id=f"p{i:02d}", session_id=f"s{i % 4}", event_type=(
        "model" if i % 3 else "tool"), start_time=BASE_MS + (i // 2) * 1000)
        for i in range(25)]
    store.insert_events(tenant(project), 1, events)
    for request in ({"limit": 10}, {"limit": 4, "filters": [
            {"field": "event_type", "operator": "is", "value": "model"}]}):
        by_cursor = _export_pages(store, project, request)
        numbered = [store.export(project, {**request, "page": n})
                    for n in range(1, len(by_cursor) + 1)]
        assert [[e["event_id"] for e in p["events"]] for p in by_cursor] == [
            [e["event_id"] for e in p["events"]] for p in numbered]
        assert [p["events"] for p in by_cursor] == [p["events"] for p in numbered]
        assert {p["totalEvents"] for p in by_cursor} == {numbered[0]["totalEvents"]}
    ids = [e["event_id"] for p in _export_pages(store, project, {"limit": 10})
           for e in p["events"]]
    assert ids == [f"p{i:02d}" for i in range(25)]
    # A full last page still hands out a cursor; the page after it is empty.
    full = _export_pages(store, project, {"limit": 5})
    assert [len(p["events"]) for p in full] == [5, 5, 5, 5, 5, 0]
    assert full[-1]["totalEvents"] == 25


def test_a_cursor_is_only_accepted_by_its_own_read(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, [
        event(event_id=f"e{i}", session_id=f"s{i}", start_time=BASE_MS + i) for i in range(3)])
    export_cursor = store.export(project, {"limit": 1})["next_cursor"]
    session_cursor = store.list_sessions(project, limit=1)["next_cursor"]
    assert export_cursor
    assert session_cursor
    for bad in ("", "not-a-cursor", session_cursor, "W10", "x" * 2000):
        with pytest.raises(InvalidRequest, match="cursor"):
            store.export(project, {"cursor": bad})
    with pytest.raises(InvalidRequest, match="cursor"):
        store.list_sessions(project, cursor=export_cursor)
    with pytest.raises(InvalidRequest, match="either page or cursor"):
        store.export(project, {"cursor": export_cursor, "page": 2})
    with pytest.raises(InvalidRequest, match="either page or cursor"):
        store.list_sessions(project, cursor=session_cursor, page=2)


def test_session_cursor_pages_match_numbered_pages(store: EventStore, project: str) -> None:
    events = []
    for s in range(7):
        sid = f"sess-{s}"
        # Two sessions start at the same time: the id breaks the tie (descending).
        start = BASE_MS + (s // 2) * 60_000
        events.append(event(event_id=sid, session_id=sid, event_type="session",
                            start_time=start, end_time=start + 500))
        events.append(event(event_id=f"{sid}-m", session_id=sid, parent_id=sid,
                            event_type="model", start_time=start + 10, end_time=start + 20,
                            metadata={"cost": 0.5, "total_tokens": 3}))
    store.insert_events(tenant(project), 1, events)
    by_cursor, cursor = [], None
    while True:
        page = store.list_sessions(project, limit=3, cursor=cursor)
        by_cursor.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    numbered = [store.list_sessions(project, limit=3, page=n) for n in (1, 2, 3)]
    strip = [[{k: v for k, v in s.items() if k != "last_update"} for s in p["sessions"]]
             for p in by_cursor]
    assert strip == [[{k: v for k, v in s.items() if k != "last_update"}
                      for s in p["sessions"]] for p in numbered]
    assert [s["session_id"] for p in by_cursor for s in p["sessions"]] == [
        "sess-6", "sess-5", "sess-4", "sess-3", "sess-2", "sess-1", "sess-0"]
    assert {p["totalSessions"] for p in by_cursor} == {7}
    assert by_cursor[0]["sessions"][0]["cost"] == 0.5
    within = store.list_sessions(project, limit=2, date_range={"$lte": BASE_MS + 60_000})
    after = store.list_sessions(project, limit=2, date_range={"$lte": BASE_MS + 60_000},
                                cursor=within["next_cursor"])
    assert [s["session_id"] for s in within["sessions"] + after["sessions"]] == [
        "sess-3", "sess-2", "sess-1", "sess-0"]
    assert within["totalSessions"] == after["totalSessions"] == 4
