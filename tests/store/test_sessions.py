"""Session tree, session list, the writer's version lookup and the counting helpers."""

from __future__ import annotations

from typing import Any

import pytest
from factory import BASE_MS, event, tenant

from apiary.errors import InvalidRequest, NotFound
from apiary.store import EventStore, build_session_tree
from apiary.store import _store as store_module


def _shape(node: dict[str, Any]) -> Any:
    """(event_id, [children shapes]) — the tree without the payload."""
    return (node["event_id"], [_shape(child) for child in node["children"]])


def test_session_tree_nests_by_parent_in_time_order(store: EventStore, project: str) -> None:
    events = [
        event(event_id="S", session_id="S", event_type="session", start_time=BASE_MS),
        event(event_id="c2", session_id="S", parent_id="S", start_time=BASE_MS + 20),
        event(event_id="c1", session_id="S", parent_id="S", start_time=BASE_MS + 10),
        event(event_id="m1", session_id="S", parent_id="c1", start_time=BASE_MS + 11,
              event_type="model"),
        event(event_id="t1", session_id="S", parent_id="m1", start_time=BASE_MS + 12,
              event_type="tool"),
        event(event_id="orphan", session_id="S", parent_id="gone", start_time=BASE_MS + 5),
        event(event_id="rootless", session_id="S", parent_id=None, start_time=BASE_MS + 30),
    ]
    store.insert_events(tenant(project), 1, events)
    tree = store.session_tree(project, "S")
    assert _shape(tree) == ("S", [
        ("orphan", []), ("c1", [("m1", [("t1", [])])]), ("c2", []), ("rootless", []),
    ])
    assert tree["event_type"] == "session"
    assert tree["project_id"] == project
    assert tree["children"][1]["children"][0]["event_type"] == "model"


def test_session_tree_is_scoped_to_the_project(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, [
        event(event_id="X", session_id="X", event_type="session")])
    with pytest.raises(NotFound) as info:
        store.session_tree(project + "-other", "X")
    assert info.value.status == 404
    with pytest.raises(NotFound):
        store.session_tree(project, "missing")
    with pytest.raises(InvalidRequest):
        store.session_tree(project, "")


def test_tree_without_a_session_event_gets_a_synthetic_root() -> None:
    rows = [
        {"event_id": "a", "session_id": "S", "parent_id": "", "start_time": BASE_MS + 5,
         "end_time": BASE_MS + 50, "event_type": "chain", "source": "sdk"},
        {"event_id": "b", "session_id": "S", "parent_id": "a", "start_time": BASE_MS + 1,
         "end_time": BASE_MS + 70, "event_type": "model"},
    ]
    tree = build_session_tree("S", rows)
    assert _shape(tree) == ("S", [("a", [("b", [])])])
    assert tree["event_type"] == "session"
    assert tree["source"] == "sdk"
    assert (tree["start_time"], tree["end_time"]) == (BASE_MS + 1, BASE_MS + 70)
    assert tree["duration"] == 69.0


def test_parent_cycles_cannot_loop_the_tree() -> None:
    rows = [
        {"event_id": "S", "session_id": "S", "parent_id": "", "event_type": "session",
         "start_time": 1.0},
        {"event_id": "x", "parent_id": "y", "start_time": 2.0},
        {"event_id": "y", "parent_id": "x", "start_time": 3.0},
        {"event_id": "self", "parent_id": "self", "start_time": 4.0},
    ]
    tree = build_session_tree("S", rows)
    assert _shape(tree) == ("S", [("x", [("y", [])]), ("self", [])])


def test_session_list_pages_newest_first(store: EventStore, project: str) -> None:
    for i in range(5):
        sid = f"sess-{i}"
        store.insert_events(tenant(project), 1, [
            event(event_id=sid, session_id=sid, event_type="session", event_name=f"run {i}",
                  source="eval", start_time=BASE_MS + i * 60_000,
                  end_time=BASE_MS + i * 60_000 + 500, user_properties={"i": i}),
            event(event_id=f"{sid}-m", session_id=sid, parent_id=sid, event_type="model",
                  start_time=BASE_MS + i * 60_000 + 10, end_time=BASE_MS + i * 60_000 + 900,
                  metadata={"cost": 0.5, "prompt_tokens": 3, "completion_tokens": 4,
                            "total_tokens": 7}, error="bad" if i == 2 else None),
        ])
    first = store.list_sessions(project, limit=2)
    second = store.list_sessions(project, limit=2, page=2)
    last = store.list_sessions(project, limit=2, page=3)
    assert [s["session_id"] for s in first["sessions"]] == ["sess-4", "sess-3"]
    assert [s["session_id"] for s in second["sessions"]] == ["sess-2", "sess-1"]
    assert [s["session_id"] for s in last["sessions"]] == ["sess-0"]
    assert first["totalSessions"] == second["totalSessions"] == 5
    s2 = second["sessions"][0]
    assert s2.pop("last_update") > BASE_MS  # insert time, in epoch ms
    assert s2 == {
        "session_id": "sess-2", "session_name": "run 2", "source": "eval",
        "user_properties": {"i": 2}, "start_time": BASE_MS + 120_000,
        "end_time": BASE_MS + 120_900, "duration": 900.0, "event_count": 2,
        "error_count": 1, "model_call_count": 1, "cost": 0.5, "prompt_tokens": 3,
        "completion_tokens": 4, "total_tokens": 7,
    }
    in_range = store.list_sessions(project, date_range={
        "$gte": BASE_MS + 60_000, "$lte": BASE_MS + 180_000})
    assert [s["session_id"] for s in in_range["sessions"]] == ["sess-3", "sess-2", "sess-1"]
    assert in_range["totalSessions"] == 3
    assert store.list_sessions(project + "-other")["totalSessions"] == 0
    with pytest.raises(InvalidRequest):
        store.list_sessions(project, limit=0)


def test_existing_versions(store: EventStore, project: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    store.insert_events(tenant(project), 3, [event(event_id="a", session_id="s"),
                                             event(event_id="b", session_id="s")])
    store.insert_events(tenant(project), 5, [event(event_id="b", session_id="s")])
    store.insert_events(tenant(project + "-x"), 9, [event(event_id="a", session_id="s")])
    assert store.existing_versions(project, ["a", "b", "c"]) == {"a": 3, "b": 5}
    assert store.existing_versions(project, ["a", "b"], session_ids=["s"]) == {"a": 3, "b": 5}
    assert store.existing_versions(project, ["a"], session_ids=["other"]) == {}
    assert store.existing_versions(project, []) == {}
    monkeypatch.setattr(store_module, "VERSION_LOOKUP_CHUNK", 1)
    assert store.existing_versions(project, ["a", "b", "a"]) == {"a": 3, "b": 5}


def test_counting_helpers(store: EventStore, project: str) -> None:
    evs = [event(event_id=f"e{i}", session_id="s") for i in range(3)]
    assert store.count_events(project) == 0
    store.insert_events(tenant(project), 1, evs)
    store.insert_events(tenant(project), 2, evs[:1])
    assert store.count_events(project) == 3
    # Without FINAL the second version is a row of its own until a merge collapses it.
    assert store.count_duplicate_rows(project) in (0, 1)
    store.driver.command("OPTIMIZE TABLE apiary.events FINAL")
    assert store.count_duplicate_rows(project) == 0
    assert store.count_events(project) == 3


def test_get_event(store: EventStore, project: str) -> None:
    store.insert_events(tenant(project), 1, [event(event_id="only", session_id="s",
                                                   inputs={"q": 1})])
    assert store.get_event(project, "only")["inputs"] == {"q": 1}
    with pytest.raises(NotFound):
        store.get_event(project, "nope")
