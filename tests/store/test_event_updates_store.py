"""The event_updates log and the rollup columns of migration 0005, on chDB."""

from __future__ import annotations

import pyarrow as pa
import pytest
from factory import event, tenant

from apiary.event import EventPatch
from apiary.store import ROLLUP_COLUMNS, EventStore, events_to_arrow


def test_patches_read_back_in_order_and_once(fresh_store: EventStore) -> None:
    patches: list[EventPatch] = [
        {"event_id": "e1", "version": 20, "metadata": {"k": 2}, "outputs": {"o": 1}},
        {"event_id": "e1", "version": 10, "metadata": {"k": 1}, "duration": 5.0},
        {"event_id": "e2", "version": 15, "children_ids": ["c"]},
    ]
    fresh_store.insert_patches(tenant(), patches)
    fresh_store.insert_patches(tenant(), patches[:1])  # a redelivery
    found = fresh_store.event_patches("proj-a", ["e1", "e2", "e3"])
    assert [p["version"] for p in found["e1"]] == [10, 20]
    assert found["e1"][1] == patches[0]
    assert found["e2"] == [patches[2]]
    assert "e3" not in found
    assert fresh_store.event_patches("proj-b", ["e1"]) == {}  # scoped to the project
    assert set(fresh_store.recently_patched(hours=1)) == {("proj-a", "e1"), ("proj-a", "e2")}


def test_latest_events_give_the_newest_version_with_derived_columns(
    fresh_store: EventStore,
) -> None:
    first = event(event_id="e1", session_id="s1", event_type="model",
                  metadata={"cost": 0.5, "prompt_tokens": 3})
    fresh_store.insert_events(tenant(), 1, [first])
    fresh_store.insert_events(tenant(), 7, [{**first, "metadata": {"cost": 0.25}}])
    [row] = fresh_store.latest_events("proj-a", ["e1", "missing"])
    assert (row["version"], row["cost"], row["prompt_tokens"]) == (7, 0.25, 0)
    assert row["metadata"] == {"cost": 0.25}


def test_rollup_columns_carry_deltas_into_session_sums(fresh_store: EventStore) -> None:
    model = event(event_id="m1", session_id="s1", event_type="model",
                  metadata={"cost": 0.5, "prompt_tokens": 10, "completion_tokens": 5,
                            "total_tokens": 15})
    fresh_store.insert_events(tenant(), 1, [model])  # first version: its own figures
    merged = event(**{**model, "metadata": {**model["metadata"], "cost": 0.75,
                                            "prompt_tokens": 4}})
    table = events_to_arrow(tenant(), 2, [merged])
    deltas = {"rollup_cost": pa.array([0.25]), "rollup_prompt_tokens": pa.array([-6]),
              "rollup_completion_tokens": pa.array([0]), "rollup_total_tokens": pa.array([0])}
    for column in ROLLUP_COLUMNS:
        table = table.append_column(column, deltas[column])
    fresh_store.insert_arrow(table)
    [session] = fresh_store.list_sessions("proj-a")["sessions"]
    assert session["cost"] == pytest.approx(0.75)
    assert (session["prompt_tokens"], session["total_tokens"]) == (4, 15)
    assert session["event_count"] == 1
