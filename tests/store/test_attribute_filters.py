"""Nested filters answered from the attribute arrays (migration 0011) mean exactly what the
JSON route means: every filter over a corpus of awkward values selects the same events both
ways, paths some row holds as an object, array or long string go the JSON route, and a
table encoded without the arrays gets the same ones on insert."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from factory import BASE_MS, event, tenant

from apiary.errors import InvalidRequest
from apiary.store import EventStore, events_to_arrow
from apiary.store._attributes import ATTRIBUTE_FIELDS
from apiary.store._filters import Params, attribute_path, compile_filter
from apiary.store._queries import plan_export, plan_opaque_paths

LONG = "x" * 300
VALUES: list[Any] = [
    "tenant-7", "Tenant-7", "", " 7 ", "12.5", "1e3", "true", "ÄRGER naïve", 'q"uote\\back\nline',
    0, 7, -5, 2**63 + 5, 0.1, 1e-7, 1e21, 2.5, -0.0, 12.5, True, False, None,
]


def corpus() -> list[Any]:
    events = []
    for i, value in enumerate(VALUES):
        events.append(event(
            event_id=f"v{i:02d}", session_id=f"s{i % 5}", start_time=BASE_MS + i,
            metadata={"v": value, "app": {"tenant": value, "deep": {"er": value}},
                      "x-y": value, "k:1": value, "a b": value, "a.b": value,
                      "n": i if i % 3 else str(i)},
            feedback={"rating": value}, metrics={"score": value},
            user_properties={"plan": value}, config={"temperature": value},
        ))
    # Values the arrays do not hold: they make their path opaque for the whole project.
    events.append(event(event_id="o1", session_id="s9", start_time=BASE_MS + 100,
                        metadata={"obj": {"inner": 1}, "lst": [1, "tenant-7"], "long": LONG,
                                  "v": "tenant-7", "empty": {}}))
    events.append(event(event_id="o2", session_id="s9", start_time=BASE_MS + 101,
                        metadata={"app": {"tenant": "tenant-7"}, "d1": {"d2": {"d3": {"d4": 1}}}},
                        feedback={}, metrics={}))
    return events


PATHS = ["metadata.v", "metadata.app.tenant", "metadata.app.deep.er", "metadata.x-y",
         "metadata.k:1", "metadata.n", "metadata.missing", "feedback.rating", "metrics.score",
         "user_properties.plan", "config.temperature"]
OPAQUE = ["metadata.obj", "metadata.lst", "metadata.long", "metadata.empty", "metadata.app",
          "metadata.d1.d2.d3"]
OPERATORS = ["is", "is not", "contains", "not contains", "exists", "not exists",
             "greater than", "less than", "greater than or equal", "less than or equal"]
PROBES: list[tuple[Any, str]] = [
    ("tenant-7", "string"), ("7", "string"), ("7", "number"), (12.5, "number"),
    ("12.5", "string"), ("true", "boolean"), (False, "boolean"), ("", "string"),
    ("ärger", "string"), ("1e-7", "number"), ("0", "id"), ('"', "string"),
]


@pytest.fixture(scope="module")
def loaded(store: EventStore) -> tuple[EventStore, str]:
    project = "attrs-" + format(abs(hash(tuple(PATHS))) % 10**8, "d")
    store.insert_events(tenant(project), 1, corpus())
    return store, project


def _ids(store: EventStore, project: str, condition: str, params: Params) -> list[str]:
    rows = store.driver.query_rows(
        f"SELECT event_id FROM `{store.database}`.events FINAL "
        "WHERE project_id = {project:String} AND " + condition + " ORDER BY event_id",
        {**params.values, "project": project})
    return [str(r["event_id"]) for r in rows]


def test_every_nested_filter_selects_the_same_events_from_the_arrays(
        loaded: tuple[EventStore, str]) -> None:
    store, project = loaded
    compared = 0
    for path, operator, (value, type_) in itertools.product(PATHS, OPERATORS, PROBES):
        raw = {"field": path, "operator": operator, "value": value, "type": type_}
        assert attribute_path(raw) == path
        try:
            json_params = Params()
            json_sql = compile_filter(raw, json_params).sql
        except InvalidRequest:
            with pytest.raises(InvalidRequest):
                compile_filter(raw, Params(), {path})
            continue
        array_params = Params()
        array_sql = compile_filter(raw, array_params, {path}).sql
        # Text equality reads the pairs' hashes (migration 0014), anything else the arrays.
        if "attr_hashes" in array_sql:
            assert operator in ("is", "is not")
        if operator in ("is", "is not") and type_ == "string":
            assert "attr_hashes" in array_sql
        assert "attr_hashes" in array_sql or "attr_keys" in array_sql
        assert "JSONExtract" not in array_sql
        assert _ids(store, project, array_sql, array_params) == _ids(
            store, project, json_sql, json_params), (raw, array_sql)
        compared += 1
    assert compared > 300


def test_opaque_paths_are_found_and_read_from_the_json(loaded: tuple[EventStore, str]) -> None:
    store, project = loaded
    stmt = plan_opaque_paths(store.database, project, [*OPAQUE, *PATHS])
    found = {str(r["path"]) for r in store.driver.query_rows(stmt.sql, stmt.parameters)}
    # metadata.app is an object in every row; deeper than three keys is not kept.
    assert found == set(OPAQUE)
    for path in OPAQUE:
        request = {"filters": [{"field": path, "operator": "contains", "value": "1"}]}
        assert "JSONExtract" in plan_export(store.database, project, request,
                                            indexed_paths=set(PATHS)).page.sql
    result = store.export(project, {"filters": [
        {"field": "metadata.lst", "operator": "contains", "value": "tenant-7"}]})
    assert [e["event_id"] for e in result["events"]] == ["o1"]
    result = store.export(project, {"filters": [
        {"field": "metadata.app", "operator": "contains", "value": "tenant-7"}]})
    assert [e["event_id"] for e in result["events"]] == ["v00", "v01", "o2"]


def test_export_reads_the_arrays_for_indexed_paths(loaded: tuple[EventStore, str]) -> None:
    store, project = loaded
    request = {"filters": [{"field": "metadata.app.tenant", "operator": "is",
                            "value": "tenant-7"}]}
    plan = plan_export(store.database, project, request, indexed_paths={"metadata.app.tenant"})
    assert "has(attr_hashes" in plan.page.sql
    assert "JSONExtract" not in plan.page.sql
    result = store.export(project, request)
    assert [e["event_id"] for e in result["events"]] == ["v00", "o2"]
    assert result["totalEvents"] == 2


@pytest.mark.parametrize("raw", [
    {"field": "metadata.when", "operator": "after", "value": "2025-01-01"},
    {"field": "metadata.when", "operator": "is", "value": "2025-01-01", "type": "datetime"},
    {"field": "inputs.question", "operator": "is", "value": "x"},
    {"field": "metadata.a.b.c.d", "operator": "is", "value": "x"},
    {"field": "metadata", "operator": "contains", "value": "x"},
    {"field": "event_type", "operator": "is", "value": "model"},
    {"field": 5, "operator": "is"},
    "not a filter",
])
def test_only_attribute_paths_within_the_depth_use_the_arrays(raw: Any) -> None:
    assert attribute_path(raw) is None


def test_a_table_encoded_before_the_arrays_gets_them_on_insert(store: EventStore,
                                                               project: str) -> None:
    events = corpus()
    other = project + "-sql"
    store.insert_arrow(events_to_arrow(tenant(project), 1, events))  # the writer's arrays
    bare = events_to_arrow(tenant(other), 1, events).drop_columns(
        [f.name for f in ATTRIBUTE_FIELDS])
    store.insert_arrow(bare)  # computed by EventStore.insert_arrow

    def arrays(name: str) -> dict[str, tuple[list[str], list[str], list[str]]]:
        rows = store.driver.query_rows(
            f"SELECT event_id, attr_keys, attr_values, attr_opaque FROM `{store.database}`."
            "events WHERE project_id = {p:String}", {"p": name})
        return {r["event_id"]: (list(r["attr_keys"]), list(r["attr_values"]),
                                sorted(r["attr_opaque"])) for r in rows}

    written, computed = arrays(project), arrays(other)
    assert len(written) == len(events)
    assert written == computed
    assert written["v00"][0][:3] == ["config.temperature", "metadata.v", "metadata.app.tenant"]
