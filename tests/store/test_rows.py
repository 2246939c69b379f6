"""Events → Arrow rows → ClickHouse → API events."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from factory import BASE_MS, event, session_events, tenant

from apiary.event import Event
from apiary.store import (
    API_FIELDS,
    EVENTS_ARROW_SCHEMA,
    ROLLUP_COLUMNS,
    EmbeddedClickHouse,
    EventStore,
    events_to_arrow,
    row_to_event,
)


def test_arrow_schema_matches_the_table(driver: EmbeddedClickHouse,
                                        store: EventStore) -> None:
    rows = driver.query_rows("DESCRIBE TABLE apiary.events")
    # MATERIALIZED columns (attr_hashes) are computed by ClickHouse and never sent.
    rows = [r for r in rows if r["default_type"] != "MATERIALIZED"]
    # inserted_at is filled by ClickHouse; the rollup_* columns default to the event's own
    # figures and are written only with the merged versions of updated events.
    omitted = {"inserted_at", *ROLLUP_COLUMNS}
    table_columns = [r["name"] for r in rows if r["name"] not in omitted]
    assert EVENTS_ARROW_SCHEMA.names == table_columns


def test_columns_hold_the_event_values() -> None:
    ev = event(event_id="e1", session_id="s1", parent_id=None, children_ids=["c1", "c2"],
               event_name="n", source="src", start_time=BASE_MS + 0.123,
               end_time=BASE_MS + 10.5, duration=10.377, error="bad",
               config={"model": "gpt-4o", "provider": "openai"},
               metadata={"prompt_tokens": 10, "completion_tokens": 5.0,
                         "total_tokens": "15", "cost": 0.25},
               trace_id="ab" * 16, span_id="cd" * 8)
    table = events_to_arrow(tenant("p1"), 7, [ev])
    row = table.to_pylist()[0]
    assert row["org_id"] == "org-1"
    assert row["project_id"] == "p1"
    assert row["parent_id"] == ""
    assert row["children_ids"] == ["c1", "c2"]
    assert table.column("start_time").cast(pa.int64()).to_pylist() == [
        round((BASE_MS + 0.123) * 1000)]
    assert row["error"] == "bad"
    assert row["config"] == b'{"model":"gpt-4o","provider":"openai"}'
    assert row["inputs"] == b"{}"
    assert (row["model"], row["provider"]) == ("gpt-4o", "openai")
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (10, 5, 15)
    assert row["cost"] == 0.25
    assert row["version"] == 7


@pytest.mark.parametrize(("bad", "cost"), [
    ("many", 0.0), (None, 0.0), (-5, -5.0), (float("nan"), 0.0), (float("inf"), 0.0),
    ([1], 0.0), ({"a": 1}, 0.0), (1e25, 1e25), (True, 0.0),
])
def test_unusable_counts_and_costs_read_as_zero(bad: object, cost: float) -> None:
    ev = event(event_id="e", config={"model": 42, "provider": None},
               metadata={"prompt_tokens": bad, "completion_tokens": bad,
                         "total_tokens": bad, "cost": bad})
    row = events_to_arrow(tenant(), 1, [ev]).to_pylist()[0]
    assert (row["model"], row["provider"]) == ("", "")
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (0, 0, 0)
    assert row["cost"] == cost


def test_computed_values_override_the_event() -> None:
    evs = [event(event_id="a", metadata={"cost": 1.0}), event(event_id="b")]
    table = events_to_arrow(tenant(), 1, evs, computed=[
        {"cost": 2.5, "model": "m", "total_tokens": 9}, None])
    rows = table.to_pylist()
    assert (rows[0]["cost"], rows[0]["model"], rows[0]["total_tokens"]) == (2.5, "m", 9)
    assert (rows[1]["cost"], rows[1]["model"]) == (0.0, "")
    with pytest.raises(ValueError, match="one entry per event"):
        events_to_arrow(tenant(), 1, evs, computed=[None])


def test_out_of_range_times_read_as_zero() -> None:
    evs = [event(event_id="a", start_time=-5.0, end_time=1e20),
           event(event_id="b", start_time=float("nan"), end_time=float("inf"))]
    table = events_to_arrow(tenant(), 1, evs)
    assert table.column("start_time").cast(pa.int64()).to_pylist() == [0, 0]
    assert table.column("end_time").cast(pa.int64()).to_pylist() == [0, 0]


def test_empty_batch_gives_an_empty_table() -> None:
    table = events_to_arrow(tenant(), 1, [])
    assert table.num_rows == 0
    assert table.schema == EVENTS_ARROW_SCHEMA


def test_round_trip_through_clickhouse(store: EventStore, project: str) -> None:
    events = session_events(random.Random(5), children=2)
    events[2]["error"] = "tool failed"
    events[2]["feedback"] = {"rating": 4, "nested": {"ok": True, "list": [1, "x", None]}}
    events[2]["inputs"] = {"unicode": "żółw 🐢", "quote": "a'b\"c\\d", "big": 2**62}
    store.insert_events(tenant(project), 3, events)
    stored = store.session_events(project, events[0]["session_id"])
    by_id = {e["event_id"]: e for e in stored}
    assert len(by_id) == len(events)
    for original in events:
        got = by_id[original["event_id"]]
        assert set(got) == set(API_FIELDS)
        expected: dict[str, object] = dict(original)
        expected.update(org_id="org-1", workspace_id="ws-1", project_id=project)
        assert got == expected


def test_row_to_event_handles_partial_rows_and_raw_types() -> None:
    out = row_to_event({"event_id": "e", "parent_id": "", "metadata": b'{"a":1}',
                        "inputs": "", "start_time": 1.5e12, "model": "m", "version": 3})
    assert out == {"event_id": "e", "parent_id": None, "metadata": {"a": 1}, "inputs": {},
                   "start_time": 1.5e12, "model": "m"}


def test_serialization_error_propagates() -> None:
    import orjson

    bad: Event = event(event_id="e", inputs={"x": 2**70})
    with pytest.raises(orjson.JSONEncodeError):
        events_to_arrow(tenant(), 1, [bad])


@pytest.mark.parametrize("field", ["config", "inputs", "outputs", "metadata", "metrics",
                                   "feedback", "user_properties"])
@pytest.mark.parametrize("value", ["not an object", 5, ["a"], None])
def test_a_field_that_is_not_an_object_is_refused_from_source_as_compiled(
        field: str, value: object) -> None:
    # The compiled module refused these by the event's declared type while the pure-Python
    # path stored them as JSON strings, so a writer without a C compiler kept a span the
    # compiled one dead-letters (tests/dataplane/writer/test_poison_isolation.py).
    ev = event()
    ev[field] = value  # type: ignore[literal-required]
    with pytest.raises(TypeError):
        events_to_arrow(tenant(), 1, [ev])
