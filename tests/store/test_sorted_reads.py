"""Server-side sorting of exports and session lists (the web UI's sortable columns):
``sort_by`` (start time, duration, cost, tokens) and ``sort_order``, keyset cursors that
carry the sort (and are refused by any other order), and the default order unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from factory import BASE_MS, event, tenant

from apiary.errors import InvalidRequest
from apiary.store import EventStore

SORTS = ("start_time", "duration", "cost", "total_tokens")


def _events() -> list[Any]:
    """Twelve events of four sessions with repeated durations, costs and token counts, so
    ties (broken by event_id) straddle page boundaries."""
    out = []
    for i in range(12):
        sid = f"s{i % 4}"
        start = BASE_MS + ((i * 7) % 12) * 1000
        out.append(event(event_id=f"e{i:02d}", session_id=sid, event_type="model",
                         event_name=f"call-{i}", start_time=start,
                         end_time=start + (i % 5) * 100, duration=float((i % 5) * 100),
                         inputs={"prompt": "tell me about otters" if i == 7 else "hello"},
                         metadata={"cost": (i % 3) * 0.25, "total_tokens": (i % 4) * 10}))
    return out


def _value(e: dict[str, Any], by: str) -> Any:
    if by == "start_time":
        return e["start_time"]
    if by == "duration":
        return e["duration"]
    return e[by] if by in e else e["metadata"][by]


def _walk(store: EventStore, project: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = store.export(project, {**request, **({"cursor": cursor} if cursor else {})})
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return [e for p in pages for e in p["events"]]


@pytest.mark.parametrize("by", SORTS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_export_sorts_pages_by_cursor_and_by_number(store: EventStore, project: str,
                                                     by: str, order: str) -> None:
    events = _events()
    store.insert_events(tenant(project), 1, events)
    request = {"sort_by": by, "sort_order": order, "limit": 5}
    walked = _walk(store, project, request)
    numbered = [e for n in (1, 2, 3)
                for e in store.export(project, {**request, "page": n})["events"]]
    assert [e["event_id"] for e in walked] == [e["event_id"] for e in numbered]
    expected = sorted(walked, key=lambda e: (_value(e, by), e["event_id"]),
                      reverse=order == "desc")
    assert [e["event_id"] for e in walked] == [e["event_id"] for e in expected]
    assert sorted(e["event_id"] for e in walked) == sorted(e["event_id"] for e in events)


def test_the_default_order_is_unchanged(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, _events())
    default = _walk(store, project, {"limit": 5})
    explicit = _walk(store, project, {"limit": 5, "sort_by": "start_time",
                                      "sort_order": "asc"})
    assert [e["event_id"] for e in default] == [e["event_id"] for e in explicit]
    first = store.export(project, {"limit": 5})
    same = store.export(project, {"limit": 5, "sort_by": "start_time"})
    assert first["next_cursor"] == same["next_cursor"]  # the original cursor form


def test_a_cursor_continues_only_its_own_order(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, _events())
    by_cost = store.export(project, {"limit": 3, "sort_by": "cost", "sort_order": "desc"})
    default = store.export(project, {"limit": 3})
    assert by_cost["next_cursor"]
    assert default["next_cursor"]
    for request in ({"cursor": by_cost["next_cursor"]},
                    {"cursor": by_cost["next_cursor"], "sort_by": "cost"},
                    {"cursor": by_cost["next_cursor"], "sort_by": "duration",
                     "sort_order": "desc"},
                    {"cursor": default["next_cursor"], "sort_by": "cost",
                     "sort_order": "desc"}):
        with pytest.raises(InvalidRequest, match="cursor"):
            store.export(project, request)
    sessions = store.list_sessions(project, limit=1, sort_by="cost")
    with pytest.raises(InvalidRequest, match="cursor"):
        store.list_sessions(project, limit=1, cursor=sessions["next_cursor"])
    with pytest.raises(InvalidRequest, match="cursor"):
        store.export(project, {"cursor": sessions["next_cursor"], "sort_by": "cost",
                               "sort_order": "desc"})


def test_bad_sorts_name_the_field(store: EventStore, project: str) -> None:
    with pytest.raises(InvalidRequest, match="cannot sort by 'metadata'") as raised:
        store.export(project, {"sort_by": "metadata"})
    assert raised.value.context["field"] == "sort_by"
    with pytest.raises(InvalidRequest, match="sort_order"):
        store.export(project, {"sort_by": "cost", "sort_order": "sideways"})
    with pytest.raises(InvalidRequest, match="cannot sort by"):
        store.list_sessions(project, sort_by="event_name")


def test_search_matches_name_inputs_and_outputs(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, _events())
    found = store.export(project, {"search": "OTTERS"})
    assert [e["event_id"] for e in found["events"]] == ["e07"]
    assert [e["event_id"] for e in store.export(project, {"search": "call-11"})["events"]] \
        == ["e11"]
    both = store.export(project, {"search": "hello", "sort_by": "duration",
                                  "sort_order": "desc", "limit": 100})
    assert "e07" not in {e["event_id"] for e in both["events"]}
    assert both["totalEvents"] == 11
    with pytest.raises(InvalidRequest, match="search"):
        store.export(project, {"search": 3})


@pytest.mark.parametrize("by", SORTS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_session_list_sorts(store: EventStore, project: str, by: str, order: str) -> None:
    store.insert_events(tenant(project), 1, _events())
    pages, cursor = [], None
    while True:
        page = store.list_sessions(project, limit=3, sort_by=by, sort_order=order,
                                   cursor=cursor)
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    walked = [s for p in pages for s in p["sessions"]]
    numbered = [s for n in (1, 2) for s in store.list_sessions(
        project, limit=3, page=n, sort_by=by, sort_order=order)["sessions"]]
    assert [s["session_id"] for s in walked] == [s["session_id"] for s in numbered]
    assert sorted(s["session_id"] for s in walked) == ["s0", "s1", "s2", "s3"]
    assert {p["totalSessions"] for p in pages} == {4}
    key = {"start_time": "start_time", "duration": "duration", "cost": "cost",
           "total_tokens": "total_tokens"}[by]
    expected = sorted(walked, key=lambda s: (s[key], s["session_id"]),
                      reverse=order == "desc")
    assert [s["session_id"] for s in walked] == [s["session_id"] for s in expected]


def test_session_list_default_order_is_unchanged(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, _events())
    default = store.list_sessions(project, limit=2)
    explicit = store.list_sessions(project, limit=2, sort_by="start_time", sort_order="desc")
    assert default["sessions"] == explicit["sessions"]
    assert default["next_cursor"] == explicit["next_cursor"]


def test_float_cursors_are_exact_at_ties(store: EventStore, project: str) -> None:
    # Values whose decimal text need not parse back to the same double: the cursor binds
    # the float's bits, so no row at a page boundary is skipped or repeated.
    awkward = [0.1 + 0.2, 1000 / 3, 2 / 3 * 1e-7, 123456.789012345678]
    events = [event(event_id=f"f{i:02d}", session_id=f"fs{i % 3}", duration=awkward[i % 4],
                    metadata={"cost": awkward[(i + 1) % 4]}) for i in range(16)]
    store.insert_events(tenant(project), 1, events)
    for by in ("duration", "cost"):
        for order in ("asc", "desc"):
            walked = _walk(store, project, {"sort_by": by, "sort_order": order, "limit": 3})
            ids = [e["event_id"] for e in walked]
            assert sorted(ids) == [f"f{i:02d}" for i in range(16)], (by, order, ids)
