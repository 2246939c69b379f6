"""Keyset paging over HTTP: the export, search and session list hand out ``next_cursor`` on
a full page and accept it back as ``cursor``; a last page carries none, and a foreign or
malformed cursor is a 400 naming ``cursor``."""

from __future__ import annotations

import pytest
from _event_api_plane import Api

from apiary.event import new_event

BASE_MS = 1_750_000_000_000.0


@pytest.fixture(scope="module")
def stored(api: Api) -> list[str]:
    """Three sessions of four events in project a, stored directly; their ids in export
    order."""
    events = []
    for s in range(3):
        sid = f"sess-{s}"
        start = BASE_MS + s * 60_000
        events.append(new_event(event_id=sid, session_id=sid, event_type="session",
                                start_time=start, end_time=start + 900))
        events += [new_event(event_id=f"{sid}-{i}", session_id=sid, parent_id=sid,
                             event_type="model", start_time=start + 10 + i,
                             end_time=start + 20 + i) for i in range(3)]
    api.store.insert_events({"org_id": "org-1", "workspace_id": "ws-1",
                             "project_id": api.projects["a"]}, 1, events)
    return [e["event_id"] for e in events]


async def test_export_and_search_continue_from_the_cursor(api: Api, stored: list[str]) -> None:
    first = await api.ok("POST", "/v1/events/export", json={"limit": 5})
    assert len(first["events"]) == 5
    assert first["next_cursor"]
    rest = await api.ok("POST", "/v1/events/export",
                        json={"limit": 50, "cursor": first["next_cursor"]})
    assert "next_cursor" not in rest  # a short page is the last
    assert rest["totalEvents"] == first["totalEvents"] == len(stored)
    assert [e["event_id"] for e in first["events"] + rest["events"]] == stored
    searched = await api.search({"limit": 5, "cursor": first["next_cursor"]})
    assert [e["event_id"] for e in searched["events"]] == stored[5:10]


async def test_session_list_continues_from_the_cursor(api: Api, stored: list[str]) -> None:
    listed = await api.ok("GET", "/v1/sessions", params={"limit": 2})
    assert [s["session_id"] for s in listed["sessions"]] == ["sess-2", "sess-1"]
    assert listed["next_cursor"]
    more = await api.ok("GET", "/v1/sessions",
                        params={"limit": 100, "cursor": listed["next_cursor"]})
    assert "next_cursor" not in more
    assert [s["session_id"] for s in more["sessions"]] == ["sess-0"]
    assert more["totalSessions"] == listed["totalSessions"] == 3


async def test_a_bad_cursor_is_a_400(api: Api, stored: list[str]) -> None:
    listed = await api.ok("GET", "/v1/sessions", params={"limit": 1})
    exported = await api.ok("POST", "/v1/events/export", json={"limit": 1})
    for body in ({"cursor": "nope"}, {"cursor": listed["next_cursor"]},
                 {"cursor": exported["next_cursor"], "page": 2}):
        error = await api.fails(400, "POST", "/v1/events/export", "a", json=body)
        assert "cursor" in error["message"]
    error = await api.fails(400, "GET", "/v1/sessions", "a",
                            params={"cursor": exported["next_cursor"]})
    assert "cursor" in error["message"]
