"""General mapping rules: precedence, errors, times, events, links, resource, clashes."""

from __future__ import annotations

from typing import Any

import pytest
from _otlp_requests import FORMATS, events_by_name, map_spans, one_event, record, span_with
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer

from apiary.dataplane.ingest.otlp._flatten import VALUE_KEY


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"honeyhive_event_type": "model", "openinference.span.kind": "TOOL"}, "model"),
    ({"honeyhive.event_type": "tool"}, "tool"),
    ({"honeyhive_event_type": "MODEL"}, "model"),
    ({"honeyhive_event_type": "generic"}, "generic"),
    ({"honeyhive_event_type": "llm", "traceloop.span.kind": "tool"}, "tool"),
    ({"traceloop.span.kind": "task", "gen_ai.request.model": "m"}, "chain"),
    ({"gen_ai.operation.name": "chat", "traceloop.span.kind": "tool"}, "tool"),
    ({}, "chain"),
])
def test_event_type_precedence(attrs: dict[str, Any], expected: str) -> None:
    assert one_event(span_with(attrs))["event_type"] == expected


def test_invalid_explicit_type_is_kept() -> None:
    event = one_event(span_with({"honeyhive_event_type": "llm"}))
    assert event["metadata"]["honeyhive_event_type"] == "llm"


@pytest.mark.parametrize(("kind", "expected"), [
    (SpanKind.CLIENT, "tool"), (SpanKind.PRODUCER, "tool"), (SpanKind.SERVER, "chain"),
    (SpanKind.CONSUMER, "chain"), (SpanKind.INTERNAL, "chain"),
])
def test_span_kind_heuristic(kind: SpanKind, expected: str) -> None:
    event = one_event(lambda tracer: tracer.start_span("s", kind=kind).end())
    assert event["event_type"] == expected
    assert event["metadata"]["span_kind"] == kind.name.lower()


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"honeyhive_event_name": "a", "traceloop.entity.name": "b"}, "a"),
    ({"traceloop.entity.name": "b"}, "b"),
    ({}, "span"),
])
def test_event_name_precedence(attrs: dict[str, Any], expected: str) -> None:
    assert one_event(span_with(attrs))["event_name"] == expected


def test_source_precedence() -> None:
    env = {"service.name": "svc", "deployment.environment.name": "staging"}
    assert one_event(span_with({}), resource=env)["source"] == "staging"
    assert one_event(span_with({"honeyhive.source": "dev"}), resource=env)["source"] == "dev"
    assert one_event(span_with({}))["source"] == "otel"


@pytest.mark.parametrize("fmt", FORMATS)
def test_status_error_message_is_the_error(fmt: str) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("s") as span:
            span.set_status(Status(StatusCode.ERROR, "upstream 503"))
    event = one_event(build, fmt)
    assert event["error"] == "upstream 503"
    assert event["metadata"]["status_code"] == "error"
    assert "status_message" not in event["metadata"]


def test_exception_event_gives_the_error_when_status_has_no_message() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("s", record_exception=False,
                                          set_status_on_exception=False) as span:
            span.record_exception(KeyError("missing"), attributes={"retry": 2})
            span.set_status(Status(StatusCode.ERROR))
    event = one_event(build)
    assert event["error"] == "KeyError: 'missing'"
    [exception] = event["metadata"]["exceptions"]
    assert exception["type"] == "KeyError"
    assert exception["retry"] == 2
    assert exception["time"] > 1.7e12
    assert "events" not in event["metadata"]


def test_handled_exceptions_are_recorded_without_an_error() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("s") as span:
            span.record_exception(ValueError("handled"))
    event = one_event(build)
    assert event["error"] is None
    assert event["metadata"]["exceptions"][0]["message"] == "handled"


def test_error_status_without_any_detail_still_errs() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("s") as span:
            span.set_status(Status(StatusCode.ERROR))
    assert one_event(build)["error"] == "span status ERROR"


def test_honeyhive_error_wins_and_the_status_message_is_kept() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("s", attributes={"honeyhive_error": "mine"}) as span:
            span.set_status(Status(StatusCode.ERROR, "theirs"))
    event = one_event(build)
    assert event["error"] == "mine"
    assert event["metadata"]["status_message"] == "theirs"


def test_ok_status() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("s") as span:
            span.set_status(Status(StatusCode.OK))
    event = one_event(build)
    assert event["error"] is None
    assert event["metadata"]["status_code"] == "ok"


def test_times_are_epoch_milliseconds() -> None:
    def build(tracer: Tracer) -> None:
        tracer.start_span("s", start_time=1_700_000_000_123_456_789).end(
            end_time=1_700_000_000_623_456_789)
    event = one_event(build)
    assert event["start_time"] == pytest.approx(1_700_000_000_123.456789)
    assert event["end_time"] == pytest.approx(1_700_000_000_623.456789)
    assert event["duration"] == pytest.approx(500.0)


def test_explicit_duration_wins_and_a_bad_one_is_kept() -> None:
    assert one_event(span_with({"honeyhive_duration_ms": 12.5}))["duration"] == 12.5
    event = one_event(span_with({"honeyhive_duration_ms": "slow"}))
    assert event["duration"] >= 0.0
    assert event["metadata"]["honeyhive_duration_ms"] == "slow"


def test_other_span_events_and_links_go_to_metadata() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("first") as first:
            context = first.get_span_context()
        with tracer.start_as_current_span(
                "second", links=[Link(context, {"link.kind": "retry"})]) as span:
            span.add_event("cache.miss", {"cache.key": "k1"}, timestamp=1_700_000_000_000_000_000)
    events = events_by_name(map_spans(record(build)))
    second = events["second"]
    assert second["metadata"]["events"] == [
        {"name": "cache.miss", "time": 1_700_000_000_000.0,
         "attributes": {"cache": {"key": "k1"}}},
    ]
    [link] = second["metadata"]["links"]
    assert link["trace_id"] == events["first"]["trace_id"]
    assert link["span_id"] == events["first"]["span_id"]
    assert link["attributes"] == {"link": {"kind": "retry"}}


def test_resource_and_scope_in_metadata() -> None:
    event = one_event(span_with({}), resource={"service.name": "svc", "k8s.pod.name": "p-1"})
    assert event["metadata"]["resource"]["service"]["name"] == "svc"
    assert event["metadata"]["resource"]["k8s"] == {"pod": {"name": "p-1"}}
    assert event["metadata"]["scope"] == {"name": "tests.otlp", "version": "1.2.3"}


def test_unknown_attributes_are_nested_in_metadata() -> None:
    event = one_event(span_with({"http.request.method": "GET", "http.response.status_code": 200,
                                 "retry": 3, "flags": [True, False]}))
    assert event["metadata"]["http"] == {"request": {"method": "GET"},
                                         "response": {"status_code": 200}}
    assert event["metadata"]["retry"] == 3
    assert event["metadata"]["flags"] == [True, False]


def test_unknown_leaf_and_subtree_collide_without_loss() -> None:
    event = one_event(span_with({"db": "postgres", "db.name": "app"}))
    assert event["metadata"]["db"] == {VALUE_KEY: "postgres", "name": "app"}


def test_explicit_metadata_beats_an_unknown_attribute_at_the_same_path() -> None:
    event = one_event(span_with({"honeyhive_metadata.stage": "explicit", "stage": "other"}))
    assert event["metadata"]["stage"] == "explicit"
    assert event["metadata"]["_shadowed"] == {"stage": "other"}


def test_explicit_config_beats_derived_and_keeps_the_loser() -> None:
    event = one_event(span_with({"honeyhive_config.model": "explicit-model",
                                 "gen_ai.request.model": "semconv-model",
                                 "gen_ai.request.temperature": 0.5,
                                 "honeyhive_config.temperature": 0.5}))
    assert event["config"] == {"model": "explicit-model", "temperature": 0.5}
    assert event["metadata"]["gen_ai"]["request"]["model"] == "semconv-model"


def test_alias_keys_with_different_values_keep_both() -> None:
    event = one_event(span_with({"honeyhive.session_id": "A",
                                 "traceloop.association.properties.session_id": "B"}))
    assert event["session_id"] == "A"
    assert event["metadata"]["traceloop"]["association"]["properties"]["session_id"] == "B"


def test_empty_slot_values_do_not_count_but_are_kept() -> None:
    event = one_event(span_with({"honeyhive.session_id": "", "session.id": "real",
                                 "gen_ai.usage.input_tokens": 0}))
    assert event["session_id"] == "real"
    assert event["metadata"]["honeyhive"]["session_id"] == ""
    assert event["metadata"]["prompt_tokens"] == 0


def test_namespace_without_a_key_keeps_its_value() -> None:
    event = one_event(span_with({"honeyhive_outputs": "bare", "honeyhive_outputs.x": 1}))
    assert event["outputs"] == {VALUE_KEY: "bare", "x": 1}


def test_user_properties_and_honeyhive_user_id() -> None:
    event = one_event(span_with({"honeyhive_user_id": "u1",
                                 "honeyhive_user_properties.plan": "pro"}))
    assert event["user_properties"] == {"plan": "pro", "user_id": "u1"}


def test_json_strings_deeper_than_an_input_parameter_stay_strings() -> None:
    event = one_event(span_with({"honeyhive_inputs.a.b": '{"x": 1}',
                                 "honeyhive_inputs.c": "[not json",
                                 "honeyhive_outputs.result": '{"y": 2}'}))
    assert event["inputs"] == {"a": {"b": '{"x": 1}'}, "c": "[not json"}
    assert event["outputs"] == {"result": '{"y": 2}'}


def test_children_ids_are_left_to_the_writer() -> None:
    assert one_event(span_with({}))["children_ids"] == []
