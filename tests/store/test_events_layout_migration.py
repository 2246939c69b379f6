"""Migrations 0011 and 0012 move the stored events and session rollups into their new
layouts (finer index granularity, attribute arrays) without changing any answer, and an
interrupted run of either completes when applied again."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from _migrated import store_before
from factory import session_events, tenant
from test_attribute_filters import corpus

from apiary.store import (
    EmbeddedClickHouse,
    EventStore,
    apply_migrations,
    events_to_arrow,
    load_migrations,
)
from apiary.store._attributes import ATTRIBUTE_FIELDS, attributes

LAYOUT = "0011"


@pytest.fixture
def old_store(driver: EmbeddedClickHouse) -> Iterator[EventStore]:
    """A database migrated up to the migration before 0011, as apply_migrations would."""
    store = store_before(driver, LAYOUT)
    yield store
    driver.command(f"DROP DATABASE IF EXISTS `{store.database}`")


def _insert_old(store: EventStore, version: int, events: list[Any],
                dedup_token: str | None = None) -> None:
    """Insert as a writer did before 0011: rows without the attribute arrays."""
    table = events_to_arrow(tenant(), version, events)
    store.driver.insert_arrow(f"{store.database}.events",
                              table.drop_columns([f.name for f in ATTRIBUTE_FIELDS]),
                              dedup_token=dedup_token)


def _load(store: EventStore) -> list[Any]:
    rng = random.Random(11)
    events = []
    for s in range(6):
        batch = session_events(rng, children=4)
        for i, ev in enumerate(batch):
            ev["metadata"] = {**ev["metadata"], "app": {"tenant": f"t-{(s + i) % 3}"}}
        events += batch
    _insert_old(store, 1, events)
    # A second version of one event, and a redelivered duplicate of another.
    updated = {**events[2], "metadata": {**events[2]["metadata"], "app": {"tenant": "t-9"}}}
    _insert_old(store, 2, [updated])
    _insert_old(store, 1, [events[3]], dedup_token="again")
    return events


def _answers(store: EventStore, sessions: list[str]) -> list[Any]:
    """Reads that run on either layout (nested filters need the new one's arrays)."""
    return [
        store.export("proj-a", {"limit": 7, "page": 2}),
        store.export("proj-a", {"filters": [{"field": "event_type", "operator": "is",
                                             "value": "model"}]}),
        [{k: v for k, v in s.items() if k != "last_update"}
         for s in store.list_sessions("proj-a", limit=4)["sessions"]],
        [store.session_tree("proj-a", sid) for sid in sessions],
        store.count_events("proj-a"),
    ]


def test_the_layout_migration_moves_every_row_and_keeps_every_answer(
        old_store: EventStore) -> None:
    events = _load(old_store)
    sessions = sorted({e["session_id"] for e in events})
    before = _answers(old_store, sessions)
    assert apply_migrations(old_store.driver, old_store.database) == [
        m.version + "_" + m.name for m in load_migrations(old_store.database)
        if m.version >= LAYOUT]
    after = _answers(old_store, sessions)
    assert after == before
    # Every event moved (older versions and the duplicate may be collapsed on the way:
    # the copy is inserted as merged blocks).
    assert before[-1] == len(events)
    # Nested filters now read the arrays the migration computed for the moved rows.
    found = old_store.export("proj-a", {"filters": [
        {"field": "metadata.app.tenant", "operator": "is", "value": "t-9"}]})
    assert [e["event_id"] for e in found["events"]] == [events[2]["event_id"]]
    some = old_store.export("proj-a", {"filters": [
        {"field": "metadata.app.tenant", "operator": "contains", "value": "t-"}]})
    assert some["totalEvents"] == len(events)
    db = old_store.database
    created = old_store.driver.query_rows(
        "SELECT create_table_query AS q FROM system.tables WHERE database = {d:String} "
        "AND name = 'events'", {"d": db})[0]["q"]
    assert "index_granularity = 256" in created
    rollups = old_store.driver.query_rows(
        "SELECT create_table_query AS q FROM system.tables WHERE database = {d:String} "
        "AND name = 'session_aggregates'", {"d": db})[0]["q"]
    assert "index_granularity = 256" in rollups
    rows = old_store.driver.query_rows(
        f"SELECT attr_keys, attr_values FROM `{db}`.events FINAL WHERE event_id = {{e:String}}",
        {"e": events[2]["event_id"]})
    assert dict(zip(rows[0]["attr_keys"], rows[0]["attr_values"], strict=True))[
        "metadata.app.tenant"] == "t-9"
    # The rollups' views follow the new table: a new session is counted once inserted.
    late = session_events(random.Random(12), children=2)
    old_store.insert_events(tenant(), 1, late)
    listed = {s["session_id"]: s for s in old_store.list_sessions("proj-a", limit=100)[
        "sessions"]}
    assert listed[late[0]["session_id"]]["event_count"] == len(late)
    tables = {r["name"] for r in old_store.driver.query_rows(
        "SELECT name FROM system.tables WHERE database = {d:String}", {"d": db})}
    assert not {"events_0011", "session_aggregates_0012"} & tables
    assert "session_aggregates_mv" in tables
    # 0013 (applied too) replaced the JSON-walking views by the inserting process's rows.
    assert not {"event_schemas_mv", "project_event_details_mv"} & tables


@pytest.mark.parametrize(("version", "stop_after"), [
    ("0011", "CREATE TABLE"), ("0011", "INSERT INTO"), ("0011", "EXCHANGE TABLES"),
    ("0012", "INSERT INTO"), ("0012", "EXCHANGE TABLES")])
def test_an_interrupted_layout_migration_completes_when_applied_again(
        old_store: EventStore, version: str, stop_after: str) -> None:
    events = _load(old_store)
    sessions = sorted({e["session_id"] for e in events})
    before = _answers(old_store, sessions)
    for migration in load_migrations(old_store.database):  # the run that died
        if migration.version < LAYOUT:
            continue
        for statement in migration.statements:
            old_store.driver.command(statement)
            if migration.version == version and statement.startswith(stop_after):
                break
        if migration.version == version:
            break
    # Applied again from the top: 0011 too, when only 0012 was interrupted.
    apply_migrations(old_store.driver, old_store.database)
    assert _answers(old_store, sessions) == before
    assert before[-1] == len(events)


def test_the_migration_computes_the_arrays_the_writer_builds(old_store: EventStore) -> None:
    events = corpus()  # awkward values: escapes, -0.0, 1e21, big integers, deep objects
    _insert_old(old_store, 1, events)
    apply_migrations(old_store.driver, old_store.database)
    rows = old_store.driver.query_rows(
        f"SELECT event_id, attr_keys, attr_values, attr_opaque FROM `{old_store.database}`."
        "events WHERE project_id = 'proj-a'")
    moved = {r["event_id"]: (list(r["attr_keys"]), list(r["attr_values"]),
                             sorted(r["attr_opaque"])) for r in rows}
    written = {}
    for event in events:
        keys, values, opaque = attributes(event)
        written[event["event_id"]] = (keys, values, sorted(opaque))
    assert moved == written
    assert moved["v17"][1][0] == "-0"  # config.temperature -0.0, as the JSON route reads it
