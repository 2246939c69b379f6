"""No attribute value disappears: every value of a big mixed request is in its event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from _otlp_requests import FIXTURES, JSON, PROTOBUF, proto_to_otlp_json, to_any_value
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from apiary.dataplane.ingest.otlp import decode_traces, map_request

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")

# Attributes whose string values a convention declares to be JSON: they may be stored
# decoded (and normalized), so their decoded leaves are what must be found.
JSON_KEYS = {
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments", "llm.invocation_parameters", "metadata", "tool.parameters",
    "honeyhive_inputs.options", "traceloop.entity.input", "traceloop.entity.output",
    "retrieval.documents.0.document.metadata", "llm.tools.0.tool.json_schema",
    "input.value", "gen_ai.prompt",
}

MIXED: dict[str, Any] = {
    # HoneyHive SDK, including aliases that agree and one that does not
    "honeyhive.session_id": "sess-1",
    "traceloop.association.properties.session_id": "sess-1",
    "honeyhive_session_id": "sess-other",
    "honeyhive.source": "prod", "honeyhive.project": "proj",
    "honeyhive_event_type": "model", "honeyhive_event_name": "answer",
    "honeyhive_inputs.question": "why?", "honeyhive_inputs.options": '{"k": [1, 2]}',
    "honeyhive_outputs.result.0": "r0", "honeyhive_outputs.result.1": "r1",
    "honeyhive_metadata.stage": "s1", "honeyhive_metadata.stage.sub": "s2",
    "honeyhive_metrics.score": 0.75, "honeyhive_feedback.thumbs": True,
    "honeyhive_config.model": "explicit-model", "honeyhive_user_properties.tier": "gold",
    "honeyhive_duration_ms": 12.25, "honeyhive_error": "bad thing",
    "honeyhive_error_type": "RuntimeError",
    # GenAI semconv (the request model clashes with the explicit one)
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024",
    "gen_ai.request.temperature": 0.3, "gen_ai.request.stop_sequences": ["END", "STOP"],
    "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 22,
    "gen_ai.response.id": "resp-77", "gen_ai.response.finish_reasons": ["length"],
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "sys prompt"}]),
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
        {"type": "text", "content": "user says hi"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "length",
                                           "parts": [{"type": "text", "content": "reply"}]}]),
    "gen_ai.conversation.id": "conv-3", "gen_ai.agent.name": "agent-x",
    "gen_ai.tool.call.arguments": '{"arg": "v"}', "gen_ai.tool.name": "tool-y",
    # older indexed messages present as well: a lower-priority source, kept as is
    "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "indexed prompt",
    "gen_ai.prompt": json.dumps([{"role": "user", "content": "json prompt"}]),
    # OpenInference
    "openinference.span.kind": "LLM", "llm.model_name": "oi-model",
    "llm.provider": "azure", "llm.system": "openai",
    "llm.invocation_parameters": json.dumps({"temperature": 0.9, "seed": 5}),
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "oi message",
    "llm.token_count.prompt": 99, "llm.token_count.total": 120,
    "input.value": json.dumps({"raw": "request"}), "input.mime_type": "application/json",
    "output.value": "raw output", "session.id": "oi-session", "user.id": "oi-user",
    "metadata": json.dumps({"oi_key": "oi_value", "stage": "oi-stage"}),
    "tag.tags": ["t1", "t2"], "tool.name": "oi-tool",
    "tool.parameters": json.dumps({"type": "object"}),
    "retrieval.documents.0.document.content": "doc text",
    "retrieval.documents.0.document.metadata": json.dumps({"src": "wiki"}),
    "llm.tools.0.tool.json_schema": json.dumps({"name": "fn-schema"}),
    # Traceloop
    "traceloop.span.kind": "task", "traceloop.entity.name": "entity-n",
    "traceloop.entity.input": json.dumps({"args": ["a1"]}),
    "traceloop.entity.output": json.dumps("tl out"),
    "traceloop.workflow.name": "wf", "traceloop.association.properties.customer": "acme",
    "llm.request.type": "chat", "llm.usage.total_tokens": 33,
    # unknown, colliding, odd values
    "http.method": "POST", "http": "leaf-value", "a.0": "x", "a.2": "z",
    "empty": "", "nothing": None, "kv": {"inner": {"deep": 1}, "0": "zero"},
    "blob": b"\x00\x01", "mixed.list": [1, "two", 3.5, False],
    "stage": "unknown-stage",
}


def _kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=to_any_value(v)) for k, v in attrs.items()]


def mixed_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(_kvs({"service.name": "svc", "service": "svc-leaf",
                                        "deployment.environment.name": "qa"}))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "mixed", "9"
    ss.scope.attributes.extend(_kvs({"scope.attr": "sa"}))
    span = ss.spans.add(trace_id=TRACE, span_id=bytes.fromhex("1111111111111111"),
                        name="mixed", kind=Span.SPAN_KIND_CLIENT,
                        start_time_unix_nano=1_700_000_000_000_000_000,
                        end_time_unix_nano=1_700_000_000_100_000_000)
    span.attributes.extend(_kvs(MIXED))
    span.status.code, span.status.message = 2, "status text"
    event = span.events.add(time_unix_nano=1_700_000_000_050_000_000, name="exception")
    event.attributes.extend(_kvs({"exception.type": "RuntimeError", "exception.message": "m1",
                                  "exception.stacktrace": "trace...", "extra.info": "e1"}))
    event = span.events.add(time_unix_nano=1_700_000_000_060_000_000, name="custom")
    event.attributes.extend(_kvs({"custom.a": 1, "custom": "c"}))
    event = span.events.add(time_unix_nano=1_700_000_000_070_000_000, name="gen_ai.user.message")
    event.attributes.extend(_kvs({"content": "event message"}))
    link = span.links.add(trace_id=TRACE, span_id=bytes.fromhex("2222222222222222"))
    link.attributes.extend(_kvs({"link.attr": "la"}))
    child = ss.spans.add(trace_id=TRACE, span_id=bytes.fromhex("3333333333333333"),
                         parent_span_id=bytes.fromhex("1111111111111111"), name="child")
    child.attributes.extend(_kvs({"gen_ai.operation.name": "execute_tool",
                                  "gen_ai.tool.call.result": "tool result",
                                  "traceloop.association.properties.user_id": "tl-user",
                                  "gen_ai.prompt.0.role": "user", "gen_ai.prompt.3.role": "x"}))
    return request


def _nodes(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, key)
    else:
        yield key, value


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _findable(value: Any, nodes: list[Any]) -> bool:
    if any(_same(value, node) for node in nodes):
        return True
    if isinstance(value, dict | list):
        return all(_findable(leaf, nodes) for _, leaf in _leaves(value))
    return False


def _missing(attrs: dict[str, Any], nodes: list[Any]) -> list[str]:
    missing = []
    for key, value in attrs.items():
        ok = _findable(value, nodes)
        if not ok and key in JSON_KEYS and isinstance(value, str):
            decoded = json.loads(value)
            ok = all(_findable(leaf, nodes) for k, leaf in _leaves(decoded) if k != "type")
        if not ok:
            missing.append(key)
    return missing


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_every_attribute_value_is_in_its_event(fmt: str) -> None:
    data = mixed_request().SerializeToString()
    content_type = PROTOBUF
    if fmt == "json":
        data, content_type = proto_to_otlp_json(mixed_request()), JSON
    [rs] = decode_traces(data, content_type)
    result = map_request(data, content_type)
    assert not result.rejected
    assert len(result.events) == 2
    for span, event in zip(rs.scope_spans[0].spans, result.events, strict=True):
        nodes = list(_nodes(dict(event)))
        assert _missing(span.attributes, nodes) == []
        assert _missing(rs.attributes, nodes) == []
        assert _missing(rs.scope_spans[0].attributes, nodes) == []
        for span_event in span.events:
            assert _missing(span_event.attributes, nodes) == []
        for link in span.links:
            assert _missing(link.attributes, nodes) == []


def test_times_are_exact_to_the_microsecond() -> None:
    result = map_request(mixed_request().SerializeToString(), PROTOBUF)
    assert result.events[0]["start_time"] == 1_700_000_000_000.0
    assert result.events[0]["metadata"]["exceptions"][0]["time"] == 1_700_000_000_050.0


def test_the_mixed_span_maps_sensibly() -> None:
    result = map_request(mixed_request().SerializeToString(), PROTOBUF)
    event, child = result.events
    assert event["event_type"] == "model"
    assert event["event_name"] == "answer"
    assert event["session_id"] == "sess-1"
    assert event["source"] == "prod"
    assert event["config"]["model"] == "explicit-model"
    assert event["error"] == "bad thing"
    assert event["duration"] == 12.25
    assert event["inputs"]["chat_history"][0] == {"role": "system", "content": "sys prompt"}
    assert event["outputs"]["content"] == "reply"
    assert child["event_type"] == "tool"
    assert child["parent_id"] == event["event_id"]
    assert child["session_id"] == "sess-1"
    assert child["user_properties"] == {"user_id": "tl-user"}


def test_the_honeyhive_captures_lose_nothing() -> None:
    for name, content_type in (("honeyhive_sdk.json", JSON), ("honeyhive_sdk.pb", PROTOBUF)):
        data = (FIXTURES / name).read_bytes()
        result = map_request(data, content_type)
        events = iter(result.events)
        for rs in decode_traces(data, content_type):
            for ss in rs.scope_spans:
                for span in ss.spans:
                    nodes = list(_nodes(dict(next(events))))
                    attrs = {k: v for k, v in span.attributes.items()
                             if k not in ("honeyhive_inputs.filters", "honeyhive_inputs.options",
                                          "honeyhive_inputs.history")}
                    assert _missing(attrs, nodes) == [], span.name
