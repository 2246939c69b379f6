"""Schema and detail tracking derived by the inserting process (migration 0013,
apiary.store._tracking) answers every reader exactly as the materialized views it replaced.

One seeded corpus (nested metadata deeper than the walk's 5 levels, arrays, empty objects,
numbers, strings, booleans and nulls, keys with dots and non-ASCII characters, several
projects, event types and names, updated versions of events) is inserted the same way into
a database migrated up to 0012 (the views walk the JSON) and into one at 0013 (the store
inserts the rows :func:`track_fields` derived), with redeliveries: inserts retried with
their token, and events delivered again in another flush under another token. Every reader
of ``event_schemas`` and ``project_event_details`` (the schema/fields API's
``event_schema`` and ``event_details``, with each filter, and the chart name rollup) must
give the same answer from both. A third database switches from the views to the new path
half-way (migration 0013 applied on stored rollups): same answers again.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pytest
from _migrated import store_before
from factory import BASE_MS, tenant

from apiary.event import Event, new_event
from apiary.store import (
    EmbeddedClickHouse,
    EventStore,
    apply_migrations,
    arrow_ipc,
    events_to_arrow,
    insert_dedup_token,
    load_migrations,
    track_fields,
    with_attributes,
)
from apiary.store._tracking import MAX_DEPTH, leaves

TRACKING = "0013"
PROJECTS = ("proj-diff-a", "proj-diff-b", "proj-diff-c")
NAMES = {"session": ["chat"], "model": ["openai.chat", "anthropic.chat"],
         "tool": ["search", "rerank"], "chain": ["answer"]}


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(10)
    if kind == 0 and depth < 8:
        return _object(rng, depth + 1)
    if kind == 1:
        return {}
    if kind == 2:
        return [rng.randrange(5), "x", {"in": "array"}][: rng.randrange(4)]
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return rng.choice([0, -1, 2**63 - 1, 1.5, -0.0, 1e-7, 3.0])
    return rng.choice(["", "plain", "é\"quoted\"\n", "1", "true", "{}", "[]"])


def _object(rng: random.Random, depth: int) -> dict[str, Any]:
    keys = ["a", "b", "k.dot", "ключ", "", "user_id", "deep", "n"]
    return {rng.choice(keys) + str(rng.randrange(3)): _value(rng, depth)
            for _ in range(rng.randrange(1, 5))}


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for i in range(levels):
        node = {f"l{i}": node, "s": "x"}
    return node


def corpus(seed: int = 17) -> list[tuple[str, Event]]:
    """(project, event) pairs of varied shapes."""
    rng = random.Random(seed)
    out: list[tuple[str, Event]] = []
    for i in range(420):
        project = PROJECTS[i % 3] if i % 7 else PROJECTS[0]
        event_type = rng.choice(list(NAMES))
        start = BASE_MS + rng.randrange(0, 86_400_000)
        fields: dict[str, Any] = {
            "config": _object(rng, 1) if rng.random() < 0.5 else {},
            "inputs": {"messages": [{"role": "user", "content": "hi"}]}
            if rng.random() < 0.5 else _object(rng, 1),
            "outputs": _object(rng, 1) if rng.random() < 0.7 else {},
            "metadata": {"tenant": f"t{i % 4}", "shared": {"v": 1},
                         "nested": _object(rng, 2), "deep": _deep(i % 8)},
            "metrics": {"score": rng.random(), "ok": rng.random() < 0.5}
            if rng.random() < 0.5 else {},
            "feedback": _object(rng, 1) if rng.random() < 0.2 else {},
            "user_properties": {"plan": rng.choice(["free", "pro", None])},
        }
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append((project, new_event(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))), session_id=sid,
            event_type=event_type, event_name=rng.choice(NAMES[event_type]),
            start_time=start, end_time=start + 5.0, duration=5.0, **fields)))
    return out


def inserts(seed: int = 17) -> list[tuple[pa.Table, str | None]]:
    """The corpus as a writer would insert it: flushes of varied sizes with their tokens,
    a retried flush (same token), events delivered again in a later flush (new token),
    new versions of some events (an update's merge: no token), and a retried update."""
    rng = random.Random(seed)
    events = corpus(seed)
    out: list[tuple[pa.Table, str | None]] = []
    i = 0
    flush = 0
    while i < len(events):
        size = rng.choice([1, 5, 17, 40, 90])
        chunk = events[i:i + size]
        i += size
        by_project: dict[str, list[Event]] = {}
        for project, event in chunk:
            by_project.setdefault(project, []).append(event)
        tables = [events_to_arrow(tenant(p), 1, evs) for p, evs in by_project.items()]
        table = pa.concat_tables(tables)
        token = insert_dedup_token([f"{flush}:m"], table)
        out.append((table, token))
        if flush % 4 == 1:
            out.append((table, token))  # retried after a timeout that hid the commit
        if flush % 5 == 2:
            again = table.slice(0, max(1, table.num_rows // 2))
            out.append((again, insert_dedup_token([f"{flush}:redelivered"], again)))
        flush += 1
    updated = []
    for project, event in events[::9]:
        patched = {**event, "metadata": {**event["metadata"], "patched": {"by": "update"}},
                   "feedback": {"rating": 4, "comment": None},
                   "start_time": event["start_time"] - 1000.0}
        updated.append(events_to_arrow(tenant(project), 2, [patched]))
    table = pa.concat_tables(updated)
    out.append((table, None))
    out.append((table, None))  # the merge retried (no token: its ids and versions)
    return out


def _database(driver: EmbeddedClickHouse, before: str | None) -> EventStore:
    if before is None:
        database = f"t_{uuid.uuid4().hex[:10]}"
        apply_migrations(driver, database)
        return EventStore(driver, database=database)
    return store_before(driver, before)


def insert_through_views(store: EventStore, table: pa.Table, token: str | None) -> None:
    """How EventStore.insert_arrow inserted before 0013: the events alone (views do the
    rest)."""
    store.driver.insert_arrow(f"{store.database}.events", with_attributes(table),
                              dedup_token=token)


@pytest.fixture
def stores(driver: EmbeddedClickHouse) -> Iterator[dict[str, EventStore]]:
    made = {"views": _database(driver, TRACKING), "tracked": _database(driver, None),
            "switched": _database(driver, TRACKING)}
    yield made
    for store in made.values():
        driver.command(f"DROP DATABASE IF EXISTS `{store.database}`")


def answers(store: EventStore) -> dict[str, Any]:
    """Every reader's answer, per project (and per event type and name)."""
    out: dict[str, Any] = {}
    for project in PROJECTS:
        schema = store.event_schema(project)
        out[f"{project}/schema"] = schema
        out[f"{project}/details"] = store.event_details(project)
        for event_type, names in NAMES.items():
            out[f"{project}/schema/{event_type}"] = store.event_schema(
                project, event_type=event_type)
            for name in names:
                out[f"{project}/schema/{event_type}/{name}"] = store.event_schema(
                    project, event_type=event_type, event_name=name)
        for group in ("event_name", "event_type"):
            out[f"{project}/chart/{group}"] = store.chart_data(
                project, {"metric": "event_count", "bucketing": "all", "groupBy": group})
    return out


def test_tracked_rollups_answer_as_the_views(driver: EmbeddedClickHouse,
                                             stores: dict[str, EventStore]) -> None:
    views, tracked, switched = stores["views"], stores["tracked"], stores["switched"]
    assert driver.query_rows(
        "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND "
        "name IN ('event_schemas_mv', 'project_event_details_mv')",
        {"db": tracked.database})[0]["n"] == 0
    batches = inserts()
    half = len(batches) // 2
    seen: set[str] = set()
    for i, (table, token) in enumerate(batches):
        # A retry with the same token stores no events, yet the view on event_schemas
        # (a table without a deduplication window) counted its block again: measured on
        # this chDB. The tracked path does not, so the views are given each insert once.
        if token is None or token not in seen:
            insert_through_views(views, table, token)
        if token is not None:
            seen.add(token)
        if i % 2:  # derived by the caller (a writer) or, unasked, by the store
            tracked.insert_arrow(table, token, track_fields(table))
        else:
            tracked.insert_arrow(table, token)
        if i < half:
            if token is None or i == 0 or token != batches[i - 1][1]:
                insert_through_views(switched, table, token)
        else:
            if i == half:
                assert apply_migrations(driver, switched.database) == [
                    m for m in (f"{x.version}_{x.name}" for x in load_migrations("x"))
                    if m >= TRACKING]
            switched.insert_arrow(table, token)
    expected = answers(views)
    assert sum(len(v) for k, v in expected.items() if k.endswith("/schema")) > 150
    assert any(r["value_type"] == "object" and r["path"].count(".") == MAX_DEPTH
               for r in expected[f"{PROJECTS[0]}/schema"])
    assert {r["value_type"] for r in expected[f"{PROJECTS[0]}/schema"]} == {
        "string", "number", "boolean", "array", "object", "null"}
    assert answers(tracked) == expected
    assert answers(switched) == expected


def test_retried_insert_does_not_count_twice(fresh_store: EventStore) -> None:
    """The same insert repeated with its token (a timeout that hid the commit) adds no
    occurrences; a repeat of the tracking insert alone (the events part had been stored
    before a failure) stores the rows it missed, once."""
    project = "proj-retry"
    table = events_to_arrow(tenant(project), 1, [e for p, e in corpus(3)[:30]])
    token = insert_dedup_token(["1:m"], table)
    fresh_store.insert_arrow(table, token)
    once = fresh_store.event_schema(project)
    details = fresh_store.event_details(project)
    assert once
    assert sum(r["occurrences"] for r in once) > 30
    assert sum(r["event_count"] for r in details) == 30
    fresh_store.insert_arrow(table, token)
    fresh_store.insert_arrow_ipc(arrow_ipc(table), token, track_fields(table))
    assert fresh_store.event_schema(project) == once
    assert fresh_store.event_details(project) == details

    # The events were stored, the tracking rows were not (the owner died in between):
    # the retry stores the events nothing more and the tracking rows once.
    other = events_to_arrow(tenant("proj-retry-2"), 1, [e for p, e in corpus(4)[:25]])
    token2 = insert_dedup_token(["2:m"], other)
    insert_through_views(fresh_store, other, token2)
    assert fresh_store.event_schema("proj-retry-2") == []
    fresh_store.insert_arrow(other, token2)
    fresh_store.insert_arrow(other, token2)
    rows = fresh_store.event_schema("proj-retry-2")
    expected: dict[tuple[str, str, str, str], int] = {}
    for row in other.to_pylist():
        for column in ("config", "inputs", "outputs", "metadata", "metrics", "feedback",
                       "user_properties"):
            walked: list[tuple[str, str]] = []
            leaves(orjson.loads(row[column]), column + ".", walked)
            for path, kind in walked:
                key = (row["event_type"], row["event_name"], path, kind)
                expected[key] = expected.get(key, 0) + 1
    assert {(r["event_type"], r["event_name"], r["path"], r["value_type"]): r["occurrences"]
            for r in rows} == expected
    assert fresh_store.count_rows("proj-retry-2") == 25


def test_track_fields_is_the_same_whatever_the_chunking() -> None:
    """A flush is a concatenation of one table per message (one chunk each, their own
    dictionaries of texts): the rows do not depend on how it is cut, and an empty flush has
    none."""
    pairs = corpus(5)[:120]
    tables = [events_to_arrow(tenant(p), 1, [e]) for p, e in pairs]
    chunked = track_fields(pa.concat_tables(tables))
    whole = track_fields(pa.concat_tables(tables).combine_chunks())

    def rows(t: pa.Table) -> list[tuple[Any, ...]]:  # ids as a set: uniq ignores order
        return sorted(tuple(sorted(v) if isinstance(v, list) else v for v in r.values())
                      for r in t.to_pylist())

    assert rows(chunked.schemas) == rows(whole.schemas)
    assert len(chunked.schemas) > 50
    assert rows(chunked.details) == rows(whole.details)
    assert sum(len(r["event_ids"]) for r in chunked.details.to_pylist()) == 120
    empty = track_fields(pa.concat_tables(tables).slice(0, 0))
    assert empty.schemas.num_rows == 0
    assert empty.details.num_rows == 0
