"""Schema migrations and the materialized views behind the rollup tables."""

from __future__ import annotations

import pytest
from factory import BASE_MS, event, session_events, tenant

from apiary.errors import StoreRejected
from apiary.store import EmbeddedClickHouse, EventStore, apply_migrations, load_migrations
from apiary.store._migrations import split_statements

TABLES = {"events", "session_aggregates", "session_aggregates_mv", "event_schemas",
          "project_event_details", "project_event_details_input",
          "project_event_details_input_mv", "schema_migrations"}


def _tables(driver: EmbeddedClickHouse, database: str) -> set[str]:
    rows = driver.query_rows("SELECT name FROM system.tables WHERE database = {db:String}",
                             {"db": database})
    return {r["name"] for r in rows}


def test_migrations_are_ordered_and_substitute_the_database() -> None:
    migrations = load_migrations("somedb")
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].name == "events"
    text = "\n".join(s for m in migrations for s in m.statements)
    assert "{db}" not in text
    assert "`somedb`.events" in text


def test_split_statements_ignores_comments_and_splits_at_line_end() -> None:
    sql = "-- a comment; with a semicolon;\nCREATE X (a String DEFAULT ';');\n\nSELECT 1;\n"
    assert split_statements(sql) == ["CREATE X (a String DEFAULT ';')", "SELECT 1"]


def test_apply_twice_is_a_no_op(fresh_store: EventStore) -> None:
    driver, database = fresh_store.driver, fresh_store.database
    assert isinstance(driver, EmbeddedClickHouse)
    assert _tables(driver, database) >= TABLES
    # Migration 0013: the inserting process tracks schemas; no view walks the JSON.
    assert not _tables(driver, database) & {"event_schemas_mv", "project_event_details_mv"}
    ledger = driver.query_rows(f"SELECT count() AS n FROM `{database}`.schema_migrations")
    assert apply_migrations(driver, database) == []
    assert apply_migrations(driver, database) == []
    again = driver.query_rows(f"SELECT count() AS n FROM `{database}`.schema_migrations")
    assert again == ledger
    assert ledger[0]["n"] == len(load_migrations(database))


def test_first_apply_reports_every_migration(driver: EmbeddedClickHouse) -> None:
    database = "t_first_apply"
    try:
        applied = apply_migrations(driver, database)
        assert applied == [f"{m.version}_{m.name}" for m in load_migrations(database)]
    finally:
        driver.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_a_changed_applied_migration_is_refused(fresh_store: EventStore) -> None:
    db = fresh_store.database
    fresh_store.driver.command(
        f"INSERT INTO `{db}`.schema_migrations (version, name, checksum, applied_at) "
        "VALUES ('0001', 'events', 'tampered', now64(3) + 1)"
    )
    with pytest.raises(StoreRejected, match="applied migration was changed") as info:
        apply_migrations(fresh_store.driver, db)
    assert info.value.context["migration"] == "0001_events"


def test_materialized_views_fill_the_rollups(fresh_store: EventStore) -> None:
    import random

    events = session_events(random.Random(1), children=4)
    sid = events[0]["session_id"]
    events[3]["error"] = "boom"
    fresh_store.insert_events(tenant(), 1, events)

    listed = fresh_store.list_sessions("proj-a")
    assert listed["totalSessions"] == 1
    session = listed["sessions"][0]
    model_events = [e for e in events if e["event_type"] == "model"]
    assert session["session_id"] == sid
    assert session["session_name"] == "chat-session"
    assert session["source"] == "production"
    assert session["user_properties"] == {"user": "user-1", "plan": "pro"}
    assert session["event_count"] == len(events)
    assert session["error_count"] == 1
    assert session["model_call_count"] == len(model_events)
    assert session["start_time"] == BASE_MS
    assert session["end_time"] == max(e["end_time"] for e in events)
    assert session["duration"] == session["end_time"] - BASE_MS
    assert session["prompt_tokens"] == sum(e["metadata"]["prompt_tokens"] for e in model_events)
    assert session["total_tokens"] == sum(e["metadata"]["total_tokens"] for e in model_events)
    assert session["cost"] == pytest.approx(sum(e["metadata"]["cost"] for e in model_events))

    details = {(d["event_type"], d["event_name"]): d["event_count"]
               for d in fresh_store.event_details("proj-a")}
    assert details == {("session", "chat-session"): 1, ("chain", "answer"): 1,
                       ("model", "openai.chat"): 2, ("tool", "search_docs"): 2}

    schema = {(r["event_name"], r["path"]): r for r in fresh_store.event_schema("proj-a")}
    assert schema[("openai.chat", "config.model")]["value_type"] == "string"
    assert schema[("openai.chat", "config.temperature")]["value_type"] == "number"
    assert schema[("openai.chat", "metadata.request.region")]["value_type"] == "string"
    assert schema[("openai.chat", "inputs.chat_history")]["value_type"] == "array"
    assert schema[("openai.chat", "metadata.prompt_tokens")]["occurrences"] == 2
    assert schema[("chat-session", "metadata.app.version")]["value_type"] == "string"
    only_model = fresh_store.event_schema("proj-a", event_type="model",
                                          event_name="openai.chat")
    assert only_model
    assert {r["event_name"] for r in only_model} == {"openai.chat"}


def test_schema_rollup_reports_json_types_and_depth_limit(fresh_store: EventStore) -> None:
    fresh_store.insert_events(tenant(), 1, [event(
        event_id="e1", session_id="s1", event_name="shapes",
        inputs={"s": "x", "n": 1.5, "i": -3, "t": True, "z": None, "a": [1, {"x": 1}],
                "empty": {}, "deep": {"l2": {"l3": {"l4": {"l5": {"l6": 1}}}}}},
    )])
    types = {r["path"]: r["value_type"] for r in fresh_store.event_schema("proj-a")}
    assert types == {
        "inputs.s": "string", "inputs.n": "number", "inputs.i": "number",
        "inputs.t": "boolean", "inputs.z": "null", "inputs.a": "array",
        "inputs.empty": "object", "inputs.deep.l2.l3.l4.l5": "object",
    }


def test_duplicated_insert_reads_once_and_counts_once(fresh_store: EventStore) -> None:
    import random

    db = fresh_store.database
    # Merges would collapse the duplicates behind the test's back.
    fresh_store.driver.command(f"SYSTEM STOP MERGES `{db}`.events")
    events = session_events(random.Random(2), children=4)
    sid = events[0]["session_id"]
    # Two inserts the store cannot tell apart by token (a redelivery in another batch):
    # an identical block without a token, or with the same one, would not be stored again.
    fresh_store.insert_events(tenant(), 1, events, dedup_token="first")
    fresh_store.insert_events(tenant(), 1, events, dedup_token="second")

    assert fresh_store.count_duplicate_rows("proj-a") == len(events)
    assert fresh_store.count_events("proj-a") == len(events)
    for method in ("final", "limit_by"):
        reader = EventStore(fresh_store.driver, database=db, dedup_method=method)
        exported = reader.export("proj-a", {"limit": 100})
        assert exported["totalEvents"] == len(events)
        assert sorted(e["event_id"] for e in exported["events"]) == sorted(
            e["event_id"] for e in events)
        assert len(reader.session_events("proj-a", sid)) == len(events)

    session = fresh_store.list_sessions("proj-a")["sessions"][0]
    assert session["event_count"] == len(events)
    assert session["model_call_count"] == 2
    details = {d["event_name"]: d["event_count"] for d in fresh_store.event_details("proj-a")}
    assert details["openai.chat"] == 2
    # The rollups' plain sums count the duplicate twice; the session list reads the page's
    # cost and token sums over the newest version of each event instead, so they are exact.
    model_cost = sum(e["metadata"]["cost"] for e in events if e["event_type"] == "model")
    assert session["cost"] == pytest.approx(model_cost)


def test_a_newer_version_replaces_the_old_one_in_reads(fresh_store: EventStore) -> None:
    first = event(event_id="e1", session_id="s1", event_name="v", metadata={"step": 1})
    second = dict(first, metadata={"step": 2}, event_name="v2")
    fresh_store.insert_events(tenant(), 1, [first])
    fresh_store.insert_events(tenant(), 2, [second])  # type: ignore[list-item]
    fresh_store.insert_events(tenant(), 1, [first])  # a late redelivery of the old version
    for method in ("final", "limit_by"):
        reader = EventStore(fresh_store.driver, database=fresh_store.database,
                            dedup_method=method)
        got = reader.export("proj-a", {})["events"]
        assert [(e["event_name"], e["metadata"]) for e in got] == [("v2", {"step": 2})]
        # Filters see the newest version only: the old one no longer matches.
        old = reader.export("proj-a", {"filters": [
            {"field": "metadata.step", "operator": "is", "value": 1, "type": "number"}]})
        assert old["totalEvents"] == 0
    assert fresh_store.existing_versions("proj-a", ["e1"]) == {"e1": 2}
