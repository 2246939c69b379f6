"""Online evaluators filter events in Python; the answer must be the export's (ClickHouse).

Every filter below is asked twice over the same events: once through the real store's
``export`` (the SQL compiler, chDB), once through :func:`compile_predicates` on the event
dicts the writer holds. The two sets of matching ids must be identical.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from apiary.errors import InvalidRequest
from apiary.event import Event, new_event
from apiary.store import EventStore, compile_predicate, compile_predicates

T0 = 1_717_000_000_000.0  # 2024-05-29T16:26:40Z in epoch ms


def _events() -> list[Event]:
    def ev(name: str, **fields: Any) -> Event:
        fields.setdefault("session_id", "s-1")
        fields.setdefault("start_time", T0)
        fields.setdefault("end_time", fields["start_time"] + 10)
        fields.setdefault("duration", 10.0)
        return new_event(event_id=f"e-{name}", event_name=name, **fields)

    return [
        ev("chat_completion", event_type="model", source="prod", parent_id="e-root",
           config={"model": "gpt-4o", "provider": "openai"},
           metadata={"tier": "gold", "score": 0.9, "n": 5, "flag": True,
                     "total_tokens": 30, "cost": 0.002, "when": "2024-03-01T00:00:00Z",
                     "nested": {"a": 1}, "list": ["x", "y"]},
           inputs={"question": "Where is Paris?"}, outputs={"answer": {"text": "France"}},
           duration=250.0, end_time=T0 + 250),
        ev("Chat-Summary", event_type="model", source="dev", parent_id="e-root",
           config={"model": "claude-3", "provider": "anthropic"},
           metadata={"tier": "silver", "score": "0.7", "n": 5.0, "flag": "false",
                     "total_tokens": "25", "cost": "0.0005", "when": T0 - 86_400_000,
                     "nested": {"a": 2}, "big": 1e20, "tiny": 1e-7, "obj": {"x": 2.50}},
           error="rate limited", start_time=T0 + 1000, duration=3.0),
        ev("lookup", event_type="tool", parent_id="e-root", children_ids=["c1", "c2"],
           metadata={"tier": None, "score": 0.2, "n": "5", "flag": 1, "cost": "n/a"},
           feedback={"rating": 4}, start_time=T0 - 60_000, duration=0.0),
        ev("root", event_type="chain", parent_id=None, source="",
           metadata={"tier": "Gold-Plus", "ümlaut": "Ärger"}, inputs={"q": "wie gehts"},
           start_time=T0 + 5000, end_time=T0 + 9000, duration=4000.0),
        ev("session", event_type="session", metadata={}, start_time=T0 + 10_000,
           user_properties={"plan": "pro"}),
    ]


FILTERS: list[dict[str, Any]] = [
    {"field": "event_type", "operator": "is", "value": "model"},
    {"field": "event_type", "operator": "is not", "value": "model"},
    {"field": "event_name", "operator": "contains", "value": "ChAt"},
    {"field": "event_name", "operator": "not contains", "value": "chat"},
    {"field": "event_name", "operator": "greater than", "value": "m"},
    {"field": "source", "operator": "exists"},
    {"field": "error", "operator": "exists"},
    {"field": "error", "operator": "not exists"},
    {"field": "parent_id", "operator": "not exists"},
    {"field": "parent_id", "operator": "is", "value": "e-root", "type": "id"},
    {"field": "model", "operator": "is", "value": "gpt-4o"},
    {"field": "provider", "operator": "contains", "value": "OPEN"},
    {"field": "model", "operator": "exists"},
    {"field": "duration", "operator": "greater than", "value": "100"},
    {"field": "duration", "operator": "less than or equal", "value": 10, "type": "number"},
    {"field": "duration", "operator": "exists"},
    {"field": "total_tokens", "operator": ">", "value": 10},
    {"field": "cost", "operator": "greater than", "value": 0.001},
    {"field": "cost", "operator": "exists"},
    {"field": "start_time", "operator": "after", "value": "2024-05-29T16:26:40.500Z"},
    {"field": "start_time", "operator": "before", "value": T0},
    {"field": "end_time", "operator": "greater than or equal", "value": T0 + 250,
     "type": "datetime"},
    {"field": "children_ids", "operator": "contains", "value": "c1"},
    {"field": "children_ids", "operator": "not exists"},
    {"field": "metadata", "operator": "contains", "value": "GOLD"},
    {"field": "metadata", "operator": "exists"},
    {"field": "feedback", "operator": "not exists"},
    {"field": "outputs", "operator": "exists"},
    {"field": "metadata.tier", "operator": "is", "value": "gold"},
    {"field": "metadata.tier", "operator": "is not", "value": "gold"},
    {"field": "metadata.tier", "operator": "is", "value": None},
    {"field": "metadata.tier", "operator": "contains", "value": "old"},
    {"field": "metadata.tier", "operator": "not contains", "value": "old"},
    {"field": "metadata.score", "operator": "greater than", "value": 0.5, "type": "number"},
    {"field": "metadata.score", "operator": "greater than", "value": "0.5"},
    {"field": "metadata.score", "operator": "less than", "value": "0.8", "type": "string"},
    {"field": "metadata.n", "operator": "is", "value": 5, "type": "number"},
    {"field": "metadata.n", "operator": "is", "value": "5"},
    {"field": "metadata.flag", "operator": "is", "value": True, "type": "boolean"},
    {"field": "metadata.flag", "operator": "is", "value": "false", "type": "boolean"},
    {"field": "metadata.flag", "operator": "is not", "value": True, "type": "boolean"},
    {"field": "metadata.when", "operator": "after", "value": "2024-01-01"},
    {"field": "metadata.when", "operator": "before", "value": T0, "type": "datetime"},
    {"field": "metadata.nested.a", "operator": "is", "value": 1, "type": "number"},
    {"field": "metadata.nested", "operator": "contains", "value": "\"a\":2"},
    {"field": "metadata.list", "operator": "contains", "value": "\"x\""},
    {"field": "metadata.big", "operator": "is", "value": "100000000000000000000"},
    {"field": "metadata.tiny", "operator": "contains", "value": "e-7"},
    {"field": "metadata.obj", "operator": "is", "value": "{\"x\":2.5}"},
    {"field": "metadata.missing", "operator": "not exists"},
    {"field": "metadata", "operator": "contains", "value": "ärger"},
    {"field": "inputs.question", "operator": "contains", "value": "PARIS"},
    {"field": "outputs.answer.text", "operator": "exists"},
    {"field": "outputs.answer", "operator": "is", "value": "France"},
    {"field": "user_properties.plan", "operator": "==", "value": "pro"},
    {"field": "feedback.rating", "operator": "gte", "value": 4},
]


@pytest.fixture(scope="module")
def stored(store: EventStore) -> tuple[str, list[Event]]:
    project = f"proj-filters-{uuid.uuid4().hex[:8]}"
    events = _events()
    store.insert_events({"org_id": "o", "workspace_id": "w", "project_id": project}, 1,
                        events)
    return project, events


@pytest.mark.parametrize("raw", FILTERS, ids=lambda f: f"{f['field']} {f['operator']}")
def test_python_filter_agrees_with_clickhouse(store: EventStore,
                                              stored: tuple[str, list[Event]],
                                              raw: dict[str, Any]) -> None:
    project, events = stored
    exported = store.export(project, {"filters": [raw], "limit": 100})["events"]
    in_sql = {e["event_id"] for e in exported}
    predicate = compile_predicate(raw)
    in_python = {e["event_id"] for e in events if predicate(e)}
    assert in_python == in_sql


def test_the_filter_set_is_not_trivial(store: EventStore,
                                       stored: tuple[str, list[Event]]) -> None:
    """Most filters match some but not all events, so agreement means something."""
    _project, events = stored
    partial = 0
    for raw in FILTERS:
        matched = sum(1 for e in events if compile_predicate(raw)(e))
        partial += 0 < matched < len(events)
    assert partial >= len(FILTERS) * 3 // 4


def test_filters_combine_with_and(stored: tuple[str, list[Event]]) -> None:
    _, events = stored
    both = compile_predicates([{"field": "event_type", "operator": "is", "value": "model"},
                               {"field": "metadata.tier", "operator": "is", "value": "gold"}])
    assert [e["event_id"] for e in events if both(e)] == ["e-chat_completion"]
    everything = compile_predicates([])
    assert all(everything(e) for e in events)


@pytest.mark.parametrize("raw", [
    {"field": "metadata;drop", "operator": "is", "value": "x"},
    {"field": "nope", "operator": "is", "value": "x"},
    {"field": "event_type", "operator": "resembles", "value": "x"},
    {"field": "duration", "operator": "contains", "value": "1"},
    {"field": "metadata.x", "operator": "is", "value": [1]},
    "not a filter",
])
def test_invalid_filters_are_rejected_as_the_api_rejects_them(raw: Any) -> None:
    with pytest.raises(InvalidRequest):
        compile_predicate(raw)
