"""Payloads captured from the HoneyHive SDK 1.7.0 (tests/fixtures/otlp/capture_honeyhive.py).

The captured program: a ``pipeline`` chain (root of the session) calling a ``lookup``
tool, a ``generate`` model step that enriches its span, and a ``fails`` tool that raises
(the SDK then also emits a ``fails_error`` span).
"""

from __future__ import annotations

from typing import Any

import pytest
from _otlp_requests import FIXTURES, JSON, PROTOBUF

from apiary.dataplane.ingest.otlp import MappedSpans, decode_traces, derive_event_id, map_request
from apiary.event import Event

SESSION_ID = "4f8e5c6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a"
CAPTURES = {"json": ("honeyhive_sdk.json", JSON), "protobuf": ("honeyhive_sdk.pb", PROTOBUF)}


def _mapped(kind: str) -> MappedSpans:
    name, content_type = CAPTURES[kind]
    return map_request((FIXTURES / name).read_bytes(), content_type)


@pytest.fixture(params=sorted(CAPTURES))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def events(kind: str) -> dict[str, Event]:
    result = _mapped(kind)
    assert not result.rejected
    return {event["event_name"]: event for event in result.events}


def _attribute(kind: str, span_name: str, key: str) -> Any:
    name, content_type = CAPTURES[kind]
    for rs in decode_traces((FIXTURES / name).read_bytes(), content_type):
        for ss in rs.scope_spans:
            for span in ss.spans:
                if span.name == span_name:
                    return span.attributes[key]
    raise AssertionError(f"no span {span_name}")


def test_every_span_becomes_an_event_of_the_right_type(events: dict[str, Event]) -> None:
    assert {name: e["event_type"] for name, e in events.items()} == {
        "pipeline": "chain", "lookup": "tool", "generate": "model", "fails": "tool",
        "fails_error": "tool",
    }


def test_session_and_parents(events: dict[str, Event]) -> None:
    root = events["pipeline"]
    assert all(e["session_id"] == SESSION_ID for e in events.values())
    assert root["parent_id"] == SESSION_ID
    assert root["event_id"] == derive_event_id(root["trace_id"], root["span_id"])
    for name in ("lookup", "generate", "fails", "fails_error"):
        assert events[name]["parent_id"] == root["event_id"]
    assert len({e["event_id"] for e in events.values()}) == 5


def test_source_project_and_scope(events: dict[str, Event]) -> None:
    for event in events.values():
        assert event["source"] == "capture-test"
        assert event["metadata"]["project"] == "capture-project"
        assert event["metadata"]["scope"]["name"].startswith("honeyhive.")
        assert event["metadata"]["resource"]["service"]["name"] == "unknown_service:python"


def test_captured_inputs_are_decoded_back(events: dict[str, Event]) -> None:
    assert events["pipeline"]["inputs"] == {
        "question": "What is the capital of France?",
        "options": {"verbose": True, "depth": 2},
    }
    assert events["lookup"]["inputs"] == {
        "query": "What is the capital of France?", "filters": {"lang": "en", "k": [1, 2]},
        "limit": 3,
    }
    assert events["generate"]["inputs"]["history"] == [
        {"role": "user", "content": "What is the capital of France?"},
    ]


def test_outputs_are_unflattened_with_lists(events: dict[str, Event]) -> None:
    assert events["pipeline"]["outputs"] == {"result": "Paris is the capital."}
    assert events["lookup"]["outputs"] == {
        "result": [{"id": 1, "title": "first"}, {"id": 2, "title": "second"}],
    }
    assert events["generate"]["outputs"] == {
        "result": {"role": "assistant", "content": "Paris is the capital.",
                   "scores": [0.5, 0.25]},
    }


def test_enrichment_namespaces(events: dict[str, Event]) -> None:
    generate = events["generate"]
    assert generate["config"] == {"model": "gpt-4o-mini", "temperature": 0.2,
                                  "stop": ["\n\n", "END"]}
    assert generate["metrics"] == {"latency_score": 0.9, "tokens": 42}
    assert generate["feedback"] == {"rating": 5}
    assert generate["user_properties"] == {"user_id": "u-1", "plan": "pro"}
    assert generate["metadata"]["nested"] == {"a": 1, "b": [True, False]}
    assert generate["metadata"]["tag"] == "x"
    assert events["pipeline"]["metadata"]["stage"] == "main"


def test_errors_and_exceptions(events: dict[str, Event]) -> None:
    fails = events["fails"]
    assert fails["error"] == "ValueError: bad value 7"
    assert fails["metadata"]["status_code"] == "error"
    exceptions = fails["metadata"]["exceptions"]
    assert [x["type"] for x in exceptions] == ["ValueError", "ValueError"]
    assert all("Traceback" in x["stacktrace"] for x in exceptions)
    error_span = events["fails_error"]
    assert error_span["error"] == "bad value 7"
    assert error_span["metadata"]["error_type"] == "ValueError"
    assert error_span["metadata"]["status_message"] == "ValueError: bad value 7"
    assert events["lookup"]["error"] is None


def test_durations_come_from_the_sdk(kind: str, events: dict[str, Event]) -> None:
    for event in events.values():
        assert event["end_time"] > event["start_time"] > 1.7e12
    pipeline = events["pipeline"]
    assert pipeline["duration"] == _attribute(kind, "pipeline", "honeyhive_duration_ms")
    assert pipeline["duration"] != pipeline["end_time"] - pipeline["start_time"]


def _comparable(event: Event) -> dict[str, Any]:
    volatile = {"event_id", "parent_id", "trace_id", "span_id", "start_time", "end_time",
                "duration"}
    out: dict[str, Any] = {k: v for k, v in event.items() if k not in volatile}
    metadata = dict(out["metadata"])
    metadata.pop("resource")
    metadata.pop("scope")
    metadata.pop("exceptions", None)
    out["metadata"] = metadata
    return out


def test_json_and_protobuf_captures_map_alike() -> None:
    by_kind = {kind: sorted((_comparable(e) for e in _mapped(kind).events),
                            key=lambda e: e["event_name"]) for kind in CAPTURES}
    assert by_kind["json"] == by_kind["protobuf"]
