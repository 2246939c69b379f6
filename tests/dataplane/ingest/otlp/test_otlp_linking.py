"""Sessions and parents across the spans of one request; derived event ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

from _otlp_requests import JSON, events_by_name, map_spans, record
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, Tracer

from apiary.dataplane.ingest.otlp import derive_event_id, map_request

TRACE = "5b8efff798038103d269b633813fc60c"


def test_derived_event_ids_are_stable_uuids() -> None:
    event_id = derive_event_id(TRACE, "eee19b7ec3c1b174")
    parsed = uuid.UUID(event_id)
    assert str(parsed) == event_id
    assert parsed.version == 8
    assert parsed.variant == uuid.RFC_4122
    assert event_id == derive_event_id(TRACE, "eee19b7ec3c1b174")
    assert event_id != derive_event_id(TRACE, "eee19b7ec3c1b175")
    assert event_id != derive_event_id(TRACE[:-1] + "d", "eee19b7ec3c1b174")
    # Pinned: stored parent links depend on this never changing.
    assert event_id == "cab1fec9-9bb1-8ce3-9041-ce6375b64811"


def test_session_span_is_the_session_and_its_children_point_at_it() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("session", attributes={
                "honeyhive_event_type": "session", "honeyhive.session_id": "S"}),
            tracer.start_as_current_span("step", attributes={"honeyhive.session_id": "S"}),
            tracer.start_as_current_span("leaf"),
        ):
            pass
    events = events_by_name(map_spans(record(build)))
    session, step, leaf = events["session"], events["step"], events["leaf"]
    assert session["event_type"] == "session"
    assert session["event_id"] == "S"
    assert session["session_id"] == "S"
    assert session["parent_id"] is None
    assert step["parent_id"] == "S"
    assert leaf["parent_id"] == step["event_id"]
    assert leaf["session_id"] == "S"


def test_session_span_without_a_session_id_names_its_own() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("root", attributes={
                "honeyhive_event_type": "session", "honeyhive.session_name": "my session"}),
            tracer.start_as_current_span("child"),
        ):
            pass
    result = map_spans(record(build))
    [root] = [e for e in result.events if e["event_type"] == "session"]
    assert root["event_name"] == "my session"
    assert root["session_id"] == root["event_id"] == derive_event_id(root["trace_id"],
                                                                     root["span_id"])
    [child] = [e for e in result.events if e["event_name"] == "child"]
    assert child["session_id"] == root["session_id"]
    assert child["parent_id"] == root["event_id"]


def test_root_with_a_session_belongs_to_it_and_descendants_inherit() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("root", attributes={"honeyhive.session_id": "S2"}),
            tracer.start_as_current_span("a"),
            tracer.start_as_current_span("b"),
        ):
            pass
    spans = record(build)
    # Children finish first, so they come before the root in the request.
    assert [s.name for s in spans] == ["b", "a", "root"]
    events = events_by_name(map_spans(spans))
    assert events["root"]["parent_id"] == "S2"
    assert events["a"]["session_id"] == events["b"]["session_id"] == "S2"
    assert events["a"]["parent_id"] == events["root"]["event_id"]
    assert events["b"]["parent_id"] == events["a"]["event_id"]


def _remote_parent(trace_id: int, span_id: int) -> Any:
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))))


def test_remote_parent_gets_the_derived_id_and_the_trace_session() -> None:
    parent_ctx = _remote_parent(int(TRACE, 16), 0x1111111111111111)

    def build(tracer: Tracer) -> None:
        tracer.start_span("orphan", context=parent_ctx).end()
        tracer.start_span("sibling", context=parent_ctx,
                          attributes={"honeyhive.session_id": "S3"}).end()
    events = events_by_name(map_spans(record(build)))
    assert events["orphan"]["parent_id"] == derive_event_id(TRACE, "1111111111111111")
    assert events["orphan"]["session_id"] == "S3"


def test_sessions_do_not_leak_across_traces() -> None:
    def build(tracer: Tracer) -> None:
        tracer.start_span("one", attributes={"honeyhive.session_id": "S4"}).end()
        tracer.start_span("two").end()
    events = events_by_name(map_spans(record(build)))
    assert events["one"]["session_id"] == "S4"
    assert events["two"]["session_id"] == ""
    assert events["two"]["parent_id"] is None


def test_explicit_event_ids_are_used_by_children() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("parent", attributes={"honeyhive_event_id": "E-1"}),
            tracer.start_as_current_span("child"),
        ):
            pass
    events = events_by_name(map_spans(record(build)))
    assert events["parent"]["event_id"] == "E-1"
    assert events["child"]["parent_id"] == "E-1"


def test_explicit_parent_id_applies_to_roots_only() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("root", attributes={
                "honeyhive.parent_id": "P-1", "honeyhive.session_id": "S5"}),
            tracer.start_as_current_span("child", attributes={"honeyhive.parent_id": "P-1"}),
        ):
            pass
    events = events_by_name(map_spans(record(build)))
    assert events["root"]["parent_id"] == "P-1"
    assert events["child"]["parent_id"] == events["root"]["event_id"]
    assert events["child"]["metadata"]["honeyhive"]["parent_id"] == "P-1"


def test_parent_cycles_terminate() -> None:
    a, b = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    spans = [{"traceId": TRACE, "spanId": a, "parentSpanId": b, "name": "a"},
             {"traceId": TRACE, "spanId": b, "parentSpanId": a, "name": "b"}]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    events = events_by_name(map_request(body, JSON))
    assert events["a"]["session_id"] == events["b"]["session_id"] == ""
    assert events["a"]["parent_id"] == events["b"]["event_id"]
