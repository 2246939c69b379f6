"""The register of keys stored twice (apiary.store._duplicates) and the exports that read
without FINAL because of it (apiary.store._export_reads), on the real chDB engine.

Two readers share each database: ``tracked`` keeps the register and makes every insert,
``final`` collapses versions with FINAL as before. Whatever was inserted, updated or
re-sent, they must answer every export the same.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from factory import many_events, tenant

from apiary.event import Event
from apiary.store import EmbeddedClickHouse, EventStore, events_to_arrow
from apiary.store._duplicates import DuplicateRegister, key_hashes


@pytest.fixture
def stores(fresh_store: EventStore, driver: EmbeddedClickHouse) -> tuple[EventStore, EventStore]:
    tracked = EventStore(driver, database=fresh_store.database)
    tracked.track_duplicates(background=False)
    return tracked, fresh_store


def _again(events: list[Event], **changes: Any) -> list[Event]:
    out = []
    for e in events:
        e = copy.deepcopy(e)
        e.update(changes)  # type: ignore[typeddict-item]
        out.append(e)
    return out


def _all_ids(store: EventStore, project: str) -> list[str]:
    result = store.export(project, {"limit": 10_000, "projections": ["event_id"]})
    assert result["totalEvents"] == len(result["events"])
    return [e["event_id"] for e in result["events"]]


def test_key_hashes_are_the_stored_key_hash_column(stores: tuple[EventStore, EventStore],
                                                   project: str) -> None:
    tracked, _ = stores
    events = many_events(40, seed=3)
    tracked.insert_events(tenant(project), 1, events)
    rows = tracked.driver.query_rows(
        f"SELECT project_id, session_id, event_id, key_hash FROM `{tracked.database}`.events "
        "WHERE project_id = {p:String} ORDER BY event_id", {"p": project})
    expected = key_hashes([r["project_id"] for r in rows], [r["session_id"] for r in rows],
                          [r["event_id"] for r in rows])
    assert [int(r["key_hash"]) for r in rows] == expected.tolist()
    assert len(set(expected.tolist())) == 40


def test_a_key_inserted_again_is_marked_and_a_new_one_is_not(
        stores: tuple[EventStore, EventStore], project: str) -> None:
    tracked, _ = stores
    register = tracked.duplicates
    assert register is not None
    events = many_events(30, seed=4)
    tracked.insert_events(tenant(project), 1, events)
    assert register.marked(project) == {}
    tracked.insert_events(tenant(project), 2, _again(events[:3], metadata={"v": 2}))
    assert len(register.marked(project)) == 3
    # The same ids in another project are other keys: nothing of it is marked.
    other = f"{project}-other"
    tracked.insert_events(tenant(other), 1, events[:3])
    assert register.marked(other) == {}


def test_a_key_twice_in_one_insert_is_marked() -> None:
    register = DuplicateRegister()
    register.load(np.array([], dtype=np.uint64), [])
    table = pa.table({"project_id": ["p", "p", "p"], "session_id": ["s", "s", "s"],
                      "event_id": ["a", "b", "a"]})
    register.settle(register.observe(table))
    assert len(register.marked("p")) == 1


def test_the_load_marks_keys_stored_twice_and_checks_inserts_made_while_it_ran(
        fresh_store: EventStore, driver: EmbeddedClickHouse, project: str) -> None:
    events = many_events(50, seed=5)
    fresh_store.insert_events(tenant(project), 1, events)
    fresh_store.insert_events(tenant(project), 2, _again(events[:4], metadata={"v": 2}))
    owner = EventStore(driver, database=fresh_store.database)
    register = DuplicateRegister()
    owner.duplicates = register
    # An insert observed before the load ends: a key the load will find stored already.
    owner.insert_events(tenant(project), 3, _again(events[10:12], metadata={"v": 3}))
    assert register.snapshot(project) is None  # not loaded: reads use FINAL
    owner.track_duplicates(background=False, register=register)
    assert register.ready
    assert len(register.marked(project)) == 6
    assert owner.export(project, {"limit": 100})["totalEvents"] == 50
    assert owner.export_reads["without_final"] == 1


def test_a_prune_unmarks_merged_keys_but_not_those_of_an_insert_in_flight(
        stores: tuple[EventStore, EventStore], project: str) -> None:
    tracked, _ = stores
    register = tracked.duplicates
    assert register is not None
    events = many_events(60, seed=6)
    tracked.insert_events(tenant(project), 1, events)
    tracked.insert_events(tenant(project), 2, _again(events[:20], metadata={"v": 2}))
    assert len(register.marked(project)) == 20
    tracked.driver.command(f"OPTIMIZE TABLE `{tracked.database}`.events FINAL")
    # An insert observed but not returned yet: its key must stay marked whatever the
    # prune's query sees.
    pending = events_to_arrow(tenant(project), 3, _again(events[30:31], metadata={"v": 3}))
    token = register.observe(pending)
    assert len(register.marked(project)) == 21
    tracked.PRUNE_ABOVE = 0
    tracked._maybe_prune(project)
    left = register.marked(project)
    assert len(left) == 1
    register.settle(token)


def test_above_max_keys_a_project_is_read_with_final(
        fresh_store: EventStore, driver: EmbeddedClickHouse, project: str) -> None:
    tracked = EventStore(driver, database=fresh_store.database)
    tracked.track_duplicates(background=False, register=DuplicateRegister(max_keys=5))
    events = many_events(30, seed=8)
    tracked.insert_events(tenant(project), 1, events)
    tracked.insert_events(tenant(project), 2, _again(events[:6], metadata={"v": 2}))
    assert tracked.duplicates is not None
    assert tracked.duplicates.snapshot(project) is None
    assert len(_all_ids(tracked, project)) == 30
    assert tracked.export_reads == {"without_final": 0, "final": 1}


def _requests(events: list[Event], rng: random.Random) -> list[dict[str, Any]]:
    users = sorted({str(e["metadata"].get("user_id")) for e in events})
    filters: list[list[dict[str, Any]]] = [
        [],
        [{"field": "event_type", "operator": "is", "value": "model", "type": "string"}],
        [{"field": "metadata.v", "operator": "is", "value": "2", "type": "string"}],
        [{"field": "metadata.v", "operator": "is not", "value": "2", "type": "string"}],
        [{"field": "metadata.user_id", "operator": "is", "value": users[0], "type": "string"}],
        [{"field": "duration", "operator": "greater than", "value": 100, "type": "number"}],
    ]
    out = []
    for chosen in filters:
        for sort_by, order in [(None, None), ("start_time", "desc"), ("duration", "asc"),
                               ("cost", "desc"), ("total_tokens", "asc")]:
            for limit, page in [(7, 1), (7, 3), (50, 1), (1000, 1)]:
                request: dict[str, Any] = {"filters": chosen, "limit": limit, "page": page}
                if sort_by:
                    request.update(sort_by=sort_by, sort_order=order)
                out.append(request)
    rng.shuffle(out)
    return out


def test_exports_without_final_answer_as_with_final_after_updates_and_resends(
        stores: tuple[EventStore, EventStore], project: str) -> None:
    tracked, final = stores
    rng = random.Random(9)
    events = many_events(120, seed=9)
    # Equal start times and durations across events: ties the pages must break by id.
    for e in events[::7]:
        e["start_time"] = events[0]["start_time"]
    tracked.insert_events(tenant(project), 1, events)
    tracked.insert_events(tenant(project), 2, _again(rng.sample(events, 25), metadata={"v": 2}))
    # Newer versions that stop matching, change the order, or re-send the same row.
    moved = _again(rng.sample(events, 10), duration=1.0, start_time=events[5]["start_time"])
    tracked.insert_events(tenant(project), 3, moved)
    tracked.insert_events(tenant(project), 4, rng.sample(events, 8))
    assert tracked.duplicates is not None
    assert len(tracked.duplicates.marked(project)) > 30
    for request in _requests(events, rng):
        assert tracked.export(project, request) == final.export(project, request), request
    assert tracked.export_reads["final"] == 0
    assert tracked.export_reads["without_final"] > 100


def test_cursor_pages_without_final_walk_every_event_once(
        stores: tuple[EventStore, EventStore], project: str) -> None:
    tracked, final = stores
    events = many_events(90, seed=10)
    for e in events[::5]:
        e["duration"] = 10.0
    tracked.insert_events(tenant(project), 1, events)
    tracked.insert_events(tenant(project), 2, _again(events[::3], metadata={"v": 2}))
    for sort_by, order in [(None, None), ("duration", "desc"), ("start_time", "desc")]:
        walked: list[str] = []
        cursor = None
        for _ in range(20):
            request: dict[str, Any] = {"limit": 8, "projections": ["event_id"]}
            if sort_by:
                request.update(sort_by=sort_by, sort_order=order)
            if cursor:
                request["cursor"] = cursor
            page = tracked.export(project, request)
            assert page == final.export(project, request)
            walked += [e["event_id"] for e in page["events"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(walked) == sorted(e["event_id"] for e in events)


def test_another_projects_rows_with_the_same_ids_never_show(
        stores: tuple[EventStore, EventStore], project: str) -> None:
    """The attacker's test: another project stores the same session and event ids (as a
    tenant could, copying ids it saw), updated many times; neither project's export shows
    the other's rows, counts them, or loses its own."""
    tracked, _ = stores
    events = many_events(40, seed=11)
    intruder = f"{project}-x"
    tracked.insert_events(tenant(project), 1, events)
    for version in range(1, 4):
        tracked.insert_events(tenant(intruder), version,
                              _again(events, metadata={"leak": True}))
    assert tracked.duplicates is not None
    assert tracked.duplicates.marked(project) == {}
    mine = tracked.export(project, {"limit": 1000, "projections": ["event_id", "metadata"]})
    assert mine["totalEvents"] == 40
    assert not any("leak" in e["metadata"] for e in mine["events"])
    theirs = tracked.export(intruder, {"limit": 1000})
    assert theirs["totalEvents"] == 40


def test_exports_while_versions_are_inserted_never_show_an_event_twice(
        stores: tuple[EventStore, EventStore], project: str) -> None:
    """Reads race inserts of new versions (the chDB owner serves both at once): a read that
    saw an insert whose keys it did not know is retried or read with FINAL, never answered
    with two versions of an event or one missing."""
    tracked, _ = stores
    events = many_events(150, seed=12)
    tracked.insert_events(tenant(project), 1, events)
    stop = threading.Event()
    errors: list[BaseException] = []

    def update() -> None:
        rng = random.Random(13)
        try:
            for version in itertools.count(2):
                if stop.is_set():
                    return
                tracked.insert_events(tenant(project), version,
                                      _again(rng.sample(events, 5), metadata={"v": version}))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=update)
    writer.start()
    reads = 0
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            ids = _all_ids(tracked, project)
            assert len(ids) == len(set(ids)) == 150
            reads += 1
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert reads > 5
    assert tracked.duplicates is not None
    assert len(tracked.duplicates.marked(project)) > 5


def test_the_page_reads_every_column_a_sort_needs_of_a_marked_key() -> None:
    """A sort added to EXPORT_SORTS must be readable from a marked key's newest version
    (the page reads a few named columns of it, not the wide ones)."""
    import re

    from apiary.store._export_reads import _SORTABLE
    from apiary.store._queries import EXPORT_SORTS

    readable = {c.strip() for c in _SORTABLE.split(",")}
    for expression in EXPORT_SORTS.values():
        # Identifiers not followed by "(": the columns (functions are called).
        names = set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", expression))
        assert names, expression
        assert names <= readable, expression


def test_rows_tied_on_a_superseded_version_do_not_stop_the_read() -> None:
    """Two rows of a key may share a version and disagree (never written by Apiary); only
    when that version is the key's newest must the read fall back to FINAL."""
    from apiary.store._export_reads import _newest_versions

    older_tie = [(7, 1, 1, 1, 10), (7, 1, 0, 1, 12), (7, 2, 1, 1, 11)]
    assert _newest_versions(older_tie) == [(7, 2, 1, 1, 11)]
    assert _newest_versions(list(reversed(older_tie))) == [(7, 2, 1, 1, 11)]
    assert _newest_versions([(7, 2, 1, 1, 11), (7, 2, 0, 1, 11)]) is None
    assert _newest_versions([(7, 2, 1, 1, 11), (7, 2, 1, 1, 11)]) == [(7, 2, 1, 1, 11)]


def test_a_failed_load_keeps_reads_on_final_and_holds_no_inserts() -> None:
    register = DuplicateRegister()
    register.fail()
    table = pa.table({"project_id": ["p"], "session_id": ["s"], "event_id": ["e"]})
    for _ in range(3):
        register.settle(register.observe(table))
    assert register.snapshot("p") is None
    assert not register.ready
    assert register._pending == []
