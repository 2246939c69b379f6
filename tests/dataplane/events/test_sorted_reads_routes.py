"""Sorting and searching over HTTP: ``sort_by``/``sort_order`` on the export and the session
list, ``search`` on the export; an unknown sort field or order is a 400 naming it, a cursor
continues only the order it came from, and another project's events never show."""

from __future__ import annotations

import pytest
from _event_api_plane import Api

from apiary.event import new_event

BASE_MS = 1_750_000_000_000.0


@pytest.fixture(scope="module")
def stored(api: Api) -> None:
    """Three sessions in project a with distinct durations and costs, one in project b
    that would sort first on every key."""
    events = []
    for s, (duration, cost) in enumerate([(300.0, 0.02), (900.0, 0.01), (100.0, 0.03)]):
        sid = f"sorted-{s}"
        start = BASE_MS + s * 60_000
        events.append(new_event(event_id=sid, session_id=sid, event_type="session",
                                start_time=start, end_time=start + duration))
        events.append(new_event(event_id=f"{sid}-m", session_id=sid, parent_id=sid,
                                event_type="model", event_name=f"llm-{s}", start_time=start + 1,
                                end_time=start + 1 + duration, duration=duration,
                                inputs={"prompt": f"question number {s} about walruses"},
                                metadata={"cost": cost, "total_tokens": 10 * (s + 1)}))
    api.store.insert_events({"org_id": "org-1", "workspace_id": "ws-1",
                             "project_id": api.projects["a"]}, 1, events)
    api.store.insert_events({"org_id": "org-1", "workspace_id": "ws-1",
                             "project_id": api.projects["b"]}, 1, [
        new_event(event_id="other-m", session_id="other", event_type="model",
                  start_time=BASE_MS, end_time=BASE_MS + 99_999, duration=99_999.0,
                  inputs={"prompt": "walruses"}, metadata={"cost": 9.0})])


async def test_export_sorts_and_pages_in_order(api: Api, stored: None) -> None:
    body = {"filters": [{"field": "event_type", "operator": "is", "value": "model"}],
            "sort_by": "duration", "sort_order": "desc", "limit": 2}
    first = await api.ok("POST", "/v1/events/export", json=body)
    assert [e["event_id"] for e in first["events"]] == ["sorted-1-m", "sorted-0-m"]
    rest = await api.ok("POST", "/v1/events/export",
                        json={**body, "cursor": first["next_cursor"]})
    assert [e["event_id"] for e in rest["events"]] == ["sorted-2-m"]
    by_cost = await api.ok("POST", "/v1/events/export", json={
        **body, "sort_by": "cost", "sort_order": "asc", "limit": 10})
    assert [e["event_id"] for e in by_cost["events"]] == [
        "sorted-1-m", "sorted-0-m", "sorted-2-m"]


async def test_session_list_sorts(api: Api, stored: None) -> None:
    listed = await api.ok("GET", "/v1/sessions",
                          params={"sort_by": "total_tokens", "sort_order": "desc", "limit": 2})
    assert [s["session_id"] for s in listed["sessions"]] == ["sorted-2", "sorted-1"]
    more = await api.ok("GET", "/v1/sessions", params={
        "sort_by": "total_tokens", "sort_order": "desc", "cursor": listed["next_cursor"]})
    assert [s["session_id"] for s in more["sessions"]] == ["sorted-0"]
    by_duration = await api.ok("GET", "/v1/sessions",
                               params={"sort_by": "duration", "sort_order": "asc"})
    assert [s["session_id"] for s in by_duration["sessions"]] == [
        "sorted-2", "sorted-0", "sorted-1"]
    error = await api.fails(400, "GET", "/v1/sessions", "a",
                            params={"cursor": listed["next_cursor"]})
    assert "cursor" in error["message"]


async def test_search_finds_text_in_inputs_of_this_project_only(api: Api, stored: None) -> None:
    found = await api.ok("POST", "/v1/events/export",
                         json={"search": "NUMBER 1 about", "limit": 10})
    assert [e["event_id"] for e in found["events"]] == ["sorted-1-m"]
    walruses = await api.ok("POST", "/v1/events/export", json={"search": "walruses"})
    assert "other-m" not in {e["event_id"] for e in walruses["events"]}
    assert walruses["totalEvents"] == 3


async def test_bad_sorts_are_400s_naming_the_field(api: Api, stored: None) -> None:
    error = await api.fails(400, "POST", "/v1/events/export", "a",
                            json={"sort_by": "metadata.user_id"})
    assert "sort_by" in error["message"]
    error = await api.fails(400, "POST", "/v1/events/export", "a",
                            json={"sort_by": "cost", "sort_order": "up"})
    assert "sort_order" in error["message"]
    error = await api.fails(400, "GET", "/v1/sessions", "a", params={"sort_by": "name"})
    assert "sort_by" in error["message"]
