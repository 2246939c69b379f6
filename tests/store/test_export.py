"""POST /v1/events/export: filters, projections, paging, date ranges, isolation, safety."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from factory import BASE_MS, event, tenant

from apiary.errors import InvalidRequest
from apiary.store import MAX_EXPORT_LIMIT, EventStore, plan_export

HOUR_MS = 3_600_000.0


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def dataset() -> list[Any]:
    return [
        event(event_id="e1", session_id="s1", parent_id="s1", event_type="model",
              event_name="openai.chat", source="prod", start_time=BASE_MS,
              end_time=BASE_MS + 100, duration=100.0,
              config={"model": "gpt-4o", "provider": "openai", "temperature": 0.2},
              inputs={"a": {"b": "hello World"}},
              metadata={"user_id": "alice", "cost": 0.02, "flag": True, "num_str": "12.5",
                        "nested": {"level": {"deep": "yes"}}, "when": "2025-06-15T15:10:00Z",
                        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
              feedback={"rating": 5}, metrics={"score": 0.9}, trace_id="t1"),
        event(event_id="e2", session_id="s2", event_type="tool", event_name="search",
              source="dev", start_time=BASE_MS + 1000, end_time=BASE_MS + 1250,
              duration=250.0, error="timeout", children_ids=["e3"],
              inputs={"a": {"b": "bye"}},
              metadata={"user_id": "bob", "cost": 0.005, "flag": False,
                        "when": BASE_MS + HOUR_MS},
              feedback={"rating": 2}, metrics={"score": 0.4}),
        event(event_id="e3", session_id="s1", parent_id="e2", event_type="chain",
              event_name="answer", source="prod", start_time=BASE_MS + 2000,
              end_time=BASE_MS + 2050, duration=50.0, metadata={"user_id": "carol"},
              metrics={"score": "0.7"}),
        event(event_id="s1", session_id="s1", event_type="session", event_name="sess",
              source="prod", start_time=BASE_MS - 10, end_time=BASE_MS + 3000,
              duration=3010.0, user_properties={"plan": "pro"}),
    ]


ALL = {"e1", "e2", "e3", "s1"}


@pytest.fixture(scope="module")
def loaded(store: EventStore) -> tuple[EventStore, str, str]:
    """The dataset in project A; project B holds look-alikes that must never leak."""
    project_a, project_b = f"A-{uuid.uuid4().hex[:8]}", f"B-{uuid.uuid4().hex[:8]}"
    store.insert_events(tenant(project_a), 1, dataset())
    store.insert_events(tenant(project_b), 1, [
        event(event_id="e1", session_id="s1", event_type="model", event_name="openai.chat",
              metadata={"user_id": "zed", "cost": 9.0}),
        event(event_id="b2", session_id="s9", event_type="tool", event_name="search",
              metadata={"user_id": "alice"}),
    ])
    return store, project_a, project_b


CASES: list[tuple[str, str, Any, str | None, set[str]]] = [
    # top-level strings
    ("event_type", "is", "model", "string", {"e1"}),
    ("event_type", "is not", "model", "string", {"e2", "e3", "s1"}),
    ("event_name", "contains", "SEAR", "string", {"e2"}),
    ("event_name", "not contains", "a", "string", {"s1"}),
    ("event_name", "greater than", "search", "string", {"s1"}),
    ("event_name", "less than", "answer", "string", set()),
    ("source", "is", "prod", None, {"e1", "e3", "s1"}),
    ("error", "exists", None, "string", {"e2"}),
    ("error", "not exists", None, "string", {"e1", "e3", "s1"}),
    ("error", "is", "timeout", "string", {"e2"}),
    ("error", "is not", "timeout", "string", {"e1", "e3", "s1"}),
    ("error", "is", None, "string", {"e1", "e3", "s1"}),
    ("parent_id", "exists", None, "string", {"e1", "e3"}),
    ("parent_id", "not exists", None, "string", {"e2", "s1"}),
    ("parent_id", "is", "e2", "id", {"e3"}),
    ("event_id", "is", "e1", "id", {"e1"}),
    ("event_id", "is not", "e1", "id", {"e2", "e3", "s1"}),
    ("session_id", "is", "s2", "string", {"e2"}),
    ("session_id", "contains", "1", "string", {"e1", "e3", "s1"}),
    ("model", "is", "gpt-4o", "string", {"e1"}),
    ("provider", "exists", None, "string", {"e1"}),
    ("trace_id", "is", "t1", "string", {"e1"}),
    ("span_id", "not exists", None, "string", ALL),
    # top-level numbers (the column's type wins over the declared one)
    ("duration", "greater than", 99, "number", {"e1", "e2", "s1"}),
    ("duration", "greater than", "99", "string", {"e1", "e2", "s1"}),
    ("duration", "less than", 100, "number", {"e3"}),
    ("duration", "greater than or equal", 100, "number", {"e1", "e2", "s1"}),
    ("duration", "less than or equal", "100", "number", {"e1", "e3"}),
    ("duration", "is", 250, "number", {"e2"}),
    ("duration", "is not", 250.0, "number", {"e1", "e3", "s1"}),
    ("cost", "greater than", 0.01, "number", {"e1"}),
    ("cost", "exists", None, "number", {"e1", "e2"}),
    ("total_tokens", "is", 15, "number", {"e1"}),
    ("prompt_tokens", "exists", None, "number", {"e1"}),
    ("completion_tokens", "not exists", None, "number", {"e2", "e3", "s1"}),
    # top-level times: ISO strings or epoch ms
    ("start_time", "after", iso(BASE_MS + 500), "datetime", {"e2", "e3"}),
    ("start_time", "before", BASE_MS, "datetime", {"s1"}),
    ("start_time", "greater than", str(int(BASE_MS)), "datetime", {"e2", "e3"}),
    ("start_time", "is", iso(BASE_MS), "datetime", {"e1"}),
    ("start_time", "is not", BASE_MS, "datetime", {"e2", "e3", "s1"}),
    ("end_time", "less than or equal", BASE_MS + 100, "datetime", {"e1"}),
    ("end_time", "greater than or equal", iso(BASE_MS + 2050), "datetime", {"e3", "s1"}),
    ("start_time", "exists", None, "datetime", ALL),
    # arrays
    ("children_ids", "contains", "e3", "string", {"e2"}),
    ("children_ids", "not contains", "e3", "string", {"e1", "e3", "s1"}),
    ("children_ids", "exists", None, "string", {"e2"}),
    ("children_ids", "not exists", None, "string", {"e1", "e3", "s1"}),
    # nested strings
    ("metadata.user_id", "is", "alice", "string", {"e1"}),
    ("metadata.user_id", "is not", "alice", "string", {"e2", "e3", "s1"}),
    ("metadata.user_id", "contains", "AR", "string", {"e3"}),
    ("metadata.user_id", "not contains", "a", "string", {"e2", "s1"}),
    ("metadata.user_id", "exists", None, "string", {"e1", "e2", "e3"}),
    ("metadata.user_id", "not exists", None, "string", {"s1"}),
    ("metadata.user_id", "greater than", "bob", "string", {"e3"}),
    ("metadata.user_id", "less than", "bob", "string", {"e1"}),
    ("metadata.nested.level.deep", "is", "yes", "string", {"e1"}),
    ("inputs.a.b", "contains", "world", "string", {"e1"}),
    ("inputs.a.b", "is", "bye", "string", {"e2"}),
    ("config.model", "is", "gpt-4o", "string", {"e1"}),
    ("user_properties.plan", "is", "pro", "string", {"s1"}),
    ("metadata.cost", "is", "0.02", "string", {"e1"}),
    # nested numbers: JSON numbers and numeric strings alike
    ("metadata.cost", "greater than", "0.01", "number", {"e1"}),
    ("metadata.cost", "greater than", "0.01", "string", {"e1"}),
    ("metadata.cost", "less than", 0.01, "number", {"e2"}),
    ("metadata.cost", "greater than or equal", 0.005, "number", {"e1", "e2"}),
    ("metadata.cost", "less than or equal", 0.005, "number", {"e2"}),
    ("metadata.cost", "is", 0.02, "number", {"e1"}),
    ("metadata.cost", "is not", 0.02, "number", {"e2", "e3", "s1"}),
    ("metadata.num_str", "is", 12.5, "number", {"e1"}),
    ("metrics.score", "greater than", 0.5, "number", {"e1", "e3"}),
    ("feedback.rating", "greater than", 3, "number", {"e1"}),
    ("feedback.rating", "less than", "3", "number", {"e2"}),
    ("feedback.rating", "exists", None, "number", {"e1", "e2"}),
    # nested booleans
    ("metadata.flag", "is", True, "boolean", {"e1"}),
    ("metadata.flag", "is", "false", "boolean", {"e2"}),
    ("metadata.flag", "is not", True, "boolean", {"e2", "e3", "s1"}),
    # nested datetimes: ISO strings and epoch-ms numbers in the data
    ("metadata.when", "after", "2025-06-15T15:09:00Z", "datetime", {"e1", "e2"}),
    ("metadata.when", "before", "2025-06-15T16:00:00+00:00", "datetime", {"e1"}),
    ("metadata.when", "is", "2025-06-15T15:10:00Z", "datetime", {"e1"}),
    ("metadata.when", "greater than", BASE_MS + HOUR_MS - 1, "datetime", {"e2"}),
    # whole JSON columns
    ("metadata", "contains", "ALICE", "string", {"e1"}),
    ("metadata", "not contains", "alice", "string", {"e2", "e3", "s1"}),
    ("metadata", "exists", None, "string", {"e1", "e2", "e3"}),
    ("feedback", "not exists", None, "string", {"e3", "s1"}),
    # operator aliases and spelling
    ("metadata.user_id", "=", "alice", "string", {"e1"}),
    ("metadata.user_id", "!=", "alice", "string", {"e2", "e3", "s1"}),
    ("duration", ">=", 250, "number", {"e2", "s1"}),
    ("duration", "<", 100, "number", {"e3"}),
    ("event_type", "  IS ", "tool", "string", {"e2"}),
]


@pytest.mark.parametrize("method", ["final", "limit_by"])
@pytest.mark.parametrize(("field", "operator", "value", "type_", "expected"), CASES,
                         ids=[f"{c[0]} {c[1]} {c[2]!r} {c[3]}" for c in CASES])
def test_filter(loaded: tuple[EventStore, str, str], method: str, field: str, operator: str,
                value: Any, type_: str | None, expected: set[str]) -> None:
    store, project_a, _ = loaded
    reader = EventStore(store.driver, dedup_method=method)  # type: ignore[arg-type]
    filt: dict[str, Any] = {"field": field, "operator": operator, "value": value}
    if type_ is not None:
        filt["type"] = type_
    result = reader.export(project_a, {"filters": [filt]})
    assert {e["event_id"] for e in result["events"]} == expected
    assert result["totalEvents"] == len(expected) == result["count"]


def test_filters_combine_with_and(loaded: tuple[EventStore, str, str]) -> None:
    store, project_a, _ = loaded
    result = store.export(project_a, {"filters": [
        {"field": "source", "operator": "is", "value": "prod", "type": "string"},
        {"field": "duration", "operator": "less than", "value": 1000, "type": "number"},
        {"field": "session_id", "operator": "is", "value": "s1", "type": "string"},
    ]})
    assert [e["event_id"] for e in result["events"]] == ["e1", "e3"]


def test_events_come_in_start_time_order_with_full_shape(
    loaded: tuple[EventStore, str, str],
) -> None:
    store, project_a, _ = loaded
    result = store.export(project_a, {})
    assert [e["event_id"] for e in result["events"]] == ["s1", "e1", "e2", "e3"]
    e1 = result["events"][1]
    assert e1["project_id"] == project_a
    assert e1["org_id"] == "org-1"
    assert e1["metadata"]["nested"] == {"level": {"deep": "yes"}}
    assert e1["start_time"] == BASE_MS
    assert e1["parent_id"] == "s1"
    assert result["events"][0]["parent_id"] is None


def test_response_validates_against_the_sdk_model(loaded: tuple[EventStore, str, str]) -> None:
    from honeyhive._generated.models import ExportEventsResponse

    store, project_a, _ = loaded
    result = store.export(project_a, {"limit": 2})
    parsed = ExportEventsResponse(**result)
    assert parsed.count == 4
    assert [e.event_id for e in parsed.events] == ["s1", "e1"]
    assert parsed.events[1].metadata == result["events"][1]["metadata"]


def test_tenant_isolation(loaded: tuple[EventStore, str, str]) -> None:
    store, project_a, project_b = loaded
    a = store.export(project_a, {"limit": 100})
    b = store.export(project_b, {"limit": 100})
    assert {e["project_id"] for e in a["events"]} == {project_a}
    assert {e["project_id"] for e in b["events"]} == {project_b}
    assert {e["event_id"] for e in b["events"]} == {"e1", "b2"}
    zed = {"field": "metadata.user_id", "operator": "is", "value": "zed"}
    assert store.export(project_a, {"filters": [zed]})["totalEvents"] == 0
    same_id = store.export(project_a, {"filters": [
        {"field": "event_id", "operator": "is", "value": "e1"}]})["events"]
    assert [e["metadata"]["user_id"] for e in same_id] == ["alice"]
    assert store.export("no-such-project", {})["totalEvents"] == 0
    with pytest.raises(InvalidRequest, match="project_id"):
        store.export("", {})
    for stmt in (plan_export("apiary", project_a, {}).page,
                 plan_export("apiary", project_a, {}).total):
        assert "project_id = {p0:String}" in stmt.sql
        assert stmt.parameters["p0"] == project_a


def test_projections(loaded: tuple[EventStore, str, str]) -> None:
    store, project_a, _ = loaded
    result = store.export(project_a, {
        "filters": [{"field": "event_type", "operator": "is", "value": "model"}],
        "projections": ["event_name", "metadata.user_id", "metadata.nested.level.deep",
                        "cost", "start_time", "inputs.missing"],
    })
    assert result["events"] == [{
        "event_id": "e1", "event_name": "openai.chat", "cost": 0.02, "start_time": BASE_MS,
        "metadata": {"user_id": "alice", "nested": {"level": {"deep": "yes"}}},
    }]
    whole = store.export(project_a, {"projections": ["metadata", "metadata.user_id"],
                                     "filters": [{"field": "event_id", "operator": "is",
                                                  "value": "e3"}]})
    assert whole["events"] == [{"event_id": "e3", "metadata": {"user_id": "carol"}}]
    with pytest.raises(InvalidRequest, match="unknown field"):
        store.export(project_a, {"projections": ["nope"]})
    with pytest.raises(InvalidRequest, match="projections"):
        store.export(project_a, {"projections": "event_name"})


def test_paging_and_total(store: EventStore, project: str) -> None:
    events = [event(event_id=f"p{i:02d}", session_id="s", start_time=BASE_MS + i * 1000)
              for i in range(25)]
    store.insert_events(tenant(project), 1, events)
    pages = [store.export(project, {"limit": 10, "page": page}) for page in (1, 2, 3, 4)]
    assert [len(p["events"]) for p in pages] == [10, 10, 5, 0]
    assert [p["totalEvents"] for p in pages] == [25, 25, 25, 25]
    ids = [e["event_id"] for p in pages for e in p["events"]]
    assert ids == [f"p{i:02d}" for i in range(25)]
    default = store.export(project, {})
    assert len(default["events"]) == 25
    plan = plan_export("apiary", project, {"limit": 50_000, "page": 3})
    assert plan.limit == MAX_EXPORT_LIMIT
    assert plan.page.parameters["offset"] == 2 * MAX_EXPORT_LIMIT
    for bad in ({"limit": 0}, {"limit": -1}, {"page": 0}, {"page": "x"}, {"limit": True},
                {"limit": 1.5}):
        with pytest.raises(InvalidRequest):
            store.export(project, bad)


def test_date_range(loaded: tuple[EventStore, str, str]) -> None:
    store, project_a, _ = loaded

    def ids(date_range: dict[str, Any]) -> list[str]:
        return [e["event_id"] for e in
                store.export(project_a, {"dateRange": date_range})["events"]]

    assert ids({"$gte": iso(BASE_MS), "$lte": iso(BASE_MS + 1000)}) == ["e1", "e2"]
    assert ids({"$gte": BASE_MS + 1}) == ["e2", "e3"]
    assert ids({"$lte": str(int(BASE_MS - 10))}) == ["s1"]
    assert ids({"$gt": BASE_MS - 10, "$lt": BASE_MS + 2000}) == ["e1", "e2"]
    assert ids({"$gte": "2025-06-15"}) == ["s1", "e1", "e2", "e3"]
    assert ids({"$gte": "2025-06-15T15:06:41"}) == ["e2", "e3"]  # naive means UTC
    for bad in ({"$from": 1}, {"$gte": "yesterday"}, {"$gte": True}, {"$lte": -5},
                "2025-06-15"):
        with pytest.raises(InvalidRequest):
            store.export(project_a, {"dateRange": bad})


@pytest.mark.parametrize(("filt", "message"), [
    ({"field": "nope", "operator": "is", "value": "x"}, "unknown field 'nope'"),
    ({"field": "event_type", "operator": "like", "value": "x"}, "unknown filter operator"),
    ({"field": "event_type", "operator": None, "value": "x"}, "unknown filter operator"),
    ({"field": "event_type", "operator": "is", "value": "x", "type": "uuid"},
     "unknown filter type"),
    ({"field": "event_name.x", "operator": "is", "value": "x"}, "no nested keys"),
    ({"field": "metadata.a.b.c.d.e.f.g.h.i", "operator": "exists"}, "invalid field name"),
    ({"field": "event_type", "operator": "is", "value": ["a"]}, "scalar"),
    ({"field": "duration", "operator": "contains", "value": "1"}, "does not apply"),
    ({"field": "duration", "operator": "after", "value": 1}, "does not apply"),
    ({"field": "duration", "operator": "is", "value": "ten"}, "not a number"),
    ({"field": "duration", "operator": "is", "value": "nan"}, "not a number"),
    ({"field": "start_time", "operator": "contains", "value": "2025"}, "does not apply"),
    ({"field": "start_time", "operator": "after", "value": "soon"}, "ISO-8601"),
    ({"field": "event_name", "operator": "after", "value": "x"}, "does not apply"),
    ({"field": "children_ids", "operator": "greater than", "value": "x"}, "does not apply"),
    ({"field": "metadata", "operator": "is", "value": "x"}, "nested field"),
    ({"field": "metadata.flag", "operator": "is", "value": "maybe", "type": "boolean"},
     "not a boolean"),
    ({"field": "metadata.when", "operator": "after", "value": "later"}, "ISO-8601"),
    ({"field": "", "operator": "is", "value": "x"}, "invalid field name"),
    ({"operator": "is", "value": "x"}, "invalid field name"),
], ids=lambda v: str(v)[:60] if isinstance(v, dict) else "")
def test_bad_filters_are_invalid_requests(loaded: tuple[EventStore, str, str],
                                          filt: dict[str, Any], message: str) -> None:
    store, project_a, _ = loaded
    with pytest.raises(InvalidRequest, match=message) as info:
        store.export(project_a, {"filters": [filt]})
    assert info.value.status == 400


def test_malformed_requests(loaded: tuple[EventStore, str, str]) -> None:
    store, project_a, _ = loaded
    for bad in ({"filters": {"field": "x"}}, {"filters": ["event_type"]}):
        with pytest.raises(InvalidRequest):
            store.export(project_a, bad)
    with pytest.raises(InvalidRequest):
        store.export(project_a, [])  # type: ignore[arg-type]


@pytest.mark.parametrize("field", [
    "event_name' OR 1=1 --", "event_name) OR (1=1", "metadata.user_id') OR ('1'='1",
    "event_name;DROP TABLE apiary.events", "metadata.`x`", "metadata.a b", "metadata.{p0:String}",
    "event_name\n", "1=1",
])
def test_injection_in_field_names_is_refused(loaded: tuple[EventStore, str, str],
                                             field: str) -> None:
    store, project_a, _ = loaded
    with pytest.raises(InvalidRequest):
        store.export(project_a, {"filters": [{"field": field, "operator": "is",
                                              "value": "x"}]})
    with pytest.raises(InvalidRequest):
        store.export(project_a, {"projections": [field]})


NASTY = [
    "alice' OR '1'='1", "x'); DROP TABLE apiary.events; --", "\\' OR 1=1 --", "{p0:String}",
    "a\tb\nc\\", "%(p0)s", "' UNION SELECT * FROM system.tables --", "\x00zero",
]


@pytest.mark.parametrize("value", NASTY)
def test_injection_in_values_is_inert(store: EventStore, project: str, value: str) -> None:
    store.insert_events(tenant(project), 1, [
        event(event_id="plain", session_id="s", event_name="plain",
              metadata={"user_id": "alice"}),
        event(event_id="nasty", session_id="s", event_name=value, metadata={"user_id": value}),
    ])
    for field in ("event_name", "metadata.user_id"):
        exact = store.export(project, {"filters": [
            {"field": field, "operator": "is", "value": value, "type": "string"}]})
        assert [e["event_id"] for e in exact["events"]] == ["nasty"]
        assert exact["events"][0]["event_name"] == value
        contains = store.export(project, {"filters": [
            {"field": field, "operator": "contains", "value": value}]})
        assert [e["event_id"] for e in contains["events"]] == ["nasty"]
    assert store.count_events(project) == 2
    tables = store.driver.query_rows("SELECT name FROM system.tables WHERE database = 'apiary'")
    assert "events" in {t["name"] for t in tables}
