"""Decoding: content types, protobuf (fast path vs the real classes), OTLP JSON quirks,
malformed bodies."""

from __future__ import annotations

import base64
import gzip
import json
import math
import random
from typing import Any

import pytest
from _otlp_requests import (
    JSON,
    PROTOBUF,
    proto_to_otlp_json,
    record,
    span_with,
    to_any_value,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.trace import Tracer

from apiary.dataplane.ingest.otlp import decode_traces, map_request, media_type
from apiary.dataplane.ingest.otlp._decode_proto import _KV_CACHE, any_value
from apiary.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
PARENT = "eee19b7ec3c1b173"


# -- content types -------------------------------------------------------------------------

@pytest.mark.parametrize(("content_type", "kind"), [
    ("application/x-protobuf", PROTOBUF),
    ("application/protobuf", PROTOBUF),
    ("Application/X-Protobuf", PROTOBUF),
    ("application/json", JSON),
    ("application/json; charset=utf-8", JSON),
    ("application/json;charset=\"UTF-8\"", JSON),
])
def test_accepted_content_types(content_type: str, kind: str) -> None:
    assert media_type(content_type) == kind


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/grpc", "", "application/xml", "application/json; charset=latin-1",
])
def test_other_content_types_are_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode_traces(b"{}", content_type)
    assert info.value.status == 415
    assert info.value.context["content_type"] == content_type


# -- protobuf ------------------------------------------------------------------------------

def _request(attrs: dict[str, Any], **span_fields: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(TRACE)
    span.span_id = bytes.fromhex(SPAN)
    span.name = "s"
    for key, value in span_fields.items():
        setattr(span, key, value)
    span.attributes.extend(KeyValue(key=k, value=to_any_value(v)) for k, v in attrs.items())
    return request


def test_protobuf_attribute_values_of_every_kind() -> None:
    attrs = {
        "s": "text", "empty": "", "long": "x" * 20_000, "unicode": "héllo ✓ 日本",
        "i": 42, "neg": -7, "big": 2**62, "f": 0.25, "nan": math.nan, "t": True, "fa": False,
        "arr": ["a", 1, 2.5, True], "kv": {"a": 1, "b": {"c": "d"}}, "raw": b"\x00\xffbin",
        "none": None,
    }
    [rs] = decode_traces(_request(attrs).SerializeToString(), PROTOBUF)
    got = rs.scope_spans[0].spans[0].attributes
    expected = {**attrs, "raw": base64.b64encode(b"\x00\xffbin").decode()}
    assert math.isnan(got.pop("nan"))
    expected.pop("nan")
    assert got == expected


def test_fast_attribute_path_agrees_with_the_generated_classes() -> None:
    rng = random.Random(7)
    pool: list[Any] = ["", "a", "ü" * 70, "z" * 200, "q" * 17_000, 0, 1, -1, 127, 128,
                       2**63 - 1, -(2**63), 0.0, -2.5, 1e300, True, False, None, [1, "x"],
                       {"k": [True]}, b"\x01"]
    for round_ in range(300):
        attrs = {f"k{round_}.{i}" + "é" * rng.randint(0, 70): rng.choice(pool)
                 for i in range(rng.randint(1, 8))}
        request = _request(attrs)
        [rs] = decode_traces(request.SerializeToString(), PROTOBUF)
        got = rs.scope_spans[0].spans[0].attributes
        want = {kv.key: any_value(kv.value) if kv.HasField("value") else None
                for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes}
        assert got == want


def test_cached_attributes_decode_the_same_the_second_time() -> None:
    body = _request({"honeyhive.session_id": "abc", "n": 3, "f": 1.5}).SerializeToString()
    first = decode_traces(body, PROTOBUF)[0].scope_spans[0].spans[0].attributes
    assert any(v == ("n", 3) for v in _KV_CACHE.values())
    second = decode_traces(body, PROTOBUF)[0].scope_spans[0].spans[0].attributes
    assert first == second == {"honeyhive.session_id": "abc", "n": 3, "f": 1.5}


def test_protobuf_span_fields() -> None:
    request = _request({}, parent_span_id=bytes.fromhex(PARENT), kind=Span.SPAN_KIND_CLIENT,
                       start_time_unix_nano=1_700_000_000_123_456_789,
                       end_time_unix_nano=1_700_000_000_223_456_789, trace_state="a=b",
                       flags=257, dropped_attributes_count=3)
    span_pb = request.resource_spans[0].scope_spans[0].spans[0]
    span_pb.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    event = span_pb.events.add(time_unix_nano=5, name="e")
    event.attributes.add(key="ek", value=AnyValue(int_value=1))
    link = span_pb.links.add(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(PARENT))
    link.attributes.add(key="lk", value=AnyValue(string_value="v"))
    [rs] = decode_traces(request.SerializeToString(), PROTOBUF)
    span = rs.scope_spans[0].spans[0]
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, SPAN, PARENT)
    assert (span.kind, span.status_code, span.status_message) == (3, 2, "boom")
    assert span.start_time_unix_nano == 1_700_000_000_123_456_789
    assert (span.trace_state, span.flags, span.dropped_attributes_count) == ("a=b", 257, 3)
    assert span.events[0].name == "e"
    assert span.events[0].attributes == {"ek": 1}
    assert span.links[0].span_id == PARENT
    assert span.links[0].attributes == {"lk": "v"}
    assert span.problem is None


@pytest.mark.parametrize(("fields", "reason"), [
    ({"trace_id": b"\x01" * 8}, "invalid trace id"),
    ({"trace_id": bytes(16)}, "invalid trace id"),
    ({"span_id": b""}, "invalid span id"),
    ({"span_id": b"\x01" * 9}, "invalid span id"),
    ({"parent_span_id": b"\x01" * 3}, "invalid parent span id"),
])
def test_protobuf_spans_with_bad_ids_are_rejected_not_fatal(fields: dict[str, bytes],
                                                           reason: str) -> None:
    request = _request({"a": 1}, **fields)
    good = request.resource_spans[0].scope_spans[0].spans.add()
    good.trace_id, good.span_id, good.name = bytes.fromhex(TRACE), bytes.fromhex(PARENT), "ok"
    result = map_request(request.SerializeToString(), PROTOBUF)
    assert [e["event_name"] for e in result.events] == ["ok"]
    assert len(result.rejected) == 1
    assert reason in result.rejected[0].reason


def test_all_zero_parent_means_root() -> None:
    body = _request({}, parent_span_id=bytes(8)).SerializeToString()
    assert decode_traces(body, PROTOBUF)[0].scope_spans[0].spans[0].parent_span_id == ""


def test_truncated_protobuf_is_malformed() -> None:
    body = _request({"k": "v" * 100}).SerializeToString()
    with pytest.raises(MalformedPayload) as info:
        decode_traces(body[:-20], PROTOBUF)
    assert "ExportTraceServiceRequest" in info.value.message
    assert info.value.status == 400


def test_garbage_is_malformed_with_hints() -> None:
    with pytest.raises(MalformedPayload, match="looks like JSON"):
        decode_traces(b'{"resourceSpans": []}', PROTOBUF)
    body = _request({"k": "v"}).SerializeToString()
    with pytest.raises(MalformedPayload, match="gzip"):
        decode_traces(gzip.compress(body), PROTOBUF)


def test_invalid_utf8_in_an_attribute_is_malformed_and_located() -> None:
    body = bytearray(_request({"key": "value-ok"}).SerializeToString())
    at = body.index(b"value-ok")
    body[at:at + 2] = b"\xff\xfe"
    with pytest.raises(MalformedPayload) as info:
        decode_traces(bytes(body), PROTOBUF)
    assert info.value.context["field"] == "resource_spans[0].scope_spans[0].spans[0]"


def test_empty_protobuf_body_is_an_empty_request() -> None:
    assert decode_traces(b"", PROTOBUF) == []
    assert map_request(b"", PROTOBUF).events == []


def test_max_spans_is_enforced_in_both_formats() -> None:
    def build(tracer: Tracer) -> None:
        for i in range(3):
            tracer.start_span(f"s{i}").end()
    spans = record(build)
    from _otlp_requests import otlp_json_body, protobuf_body
    for data, content_type in ((protobuf_body(spans), PROTOBUF), (otlp_json_body(spans), JSON)):
        assert len(map_request(data, content_type, max_spans=3).events) == 3
        with pytest.raises(PayloadTooLarge) as info:
            map_request(data, content_type, max_spans=2)
        assert info.value.status == 413


# -- JSON ----------------------------------------------------------------------------------

def _json_span(**overrides: Any) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": TRACE, "spanId": SPAN, "name": "s",
                            "startTimeUnixNano": "1700000000000000000",
                            "endTimeUnixNano": "1700000000500000000"}
    span.update(overrides)
    return span


def _json_body(*spans: Any, resource: Any = None, extra: Any = None) -> bytes:
    doc: dict[str, Any] = {"resourceSpans": [{
        "resource": resource if resource is not None else {"attributes": []},
        "scopeSpans": [{"scope": {"name": "sc"}, "spans": list(spans)}],
    }]}
    if extra:
        doc.update(extra)
    return json.dumps(doc).encode()


def _json_span_view(span: dict[str, Any]) -> Any:
    return decode_traces(_json_body(span), JSON)[0].scope_spans[0].spans[0]


def test_json_quirks_of_the_honeyhive_sdk_and_the_spec() -> None:
    span = _json_view = _json_span_view(_json_span(
        parentSpanId=None, kind="SPAN_KIND_CLIENT", status={"code": "STATUS_CODE_ERROR",
                                                          "message": "m"},
        attributes=[
            {"key": "i", "value": {"intValue": "12"}},
            {"key": "j", "value": {"intValue": -3}},
            {"key": "d", "value": {"doubleValue": "NaN"}},
            {"key": "e", "value": {"doubleValue": 2}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"},
                                                             {"intValue": "2"}]}}},
            {"key": "kv", "value": {"kvlistValue": {"values": [
                {"key": "inner", "value": {"boolValue": False}}]}}},
            {"key": "raw", "value": {"bytesValue": base64.b64encode(b"\x00hi").decode()}},
            {"key": "unpadded", "value": {"bytesValue": "AGhp"[:3]}},
            {"key": "urlsafe", "value": {"bytesValue": "-_8="}},
            {"key": "min", "value": {"intValue": str(-(2**63))}},
            {"key": "empty", "value": {}},
            {"key": "future", "value": {"someNewValue": 1}},
        ],
    ))
    assert span is _json_view
    assert span.parent_span_id == ""
    assert (span.kind, span.status_code, span.status_message) == (3, 2, "m")
    attrs = dict(span.attributes)
    assert math.isnan(attrs.pop("d"))
    assert attrs == {"i": 12, "j": -3, "e": 2.0, "b": True, "a": ["x", 2],
                     "kv": {"inner": False}, "raw": base64.b64encode(b"\x00hi").decode(),
                     "unpadded": base64.b64encode(b"\x00h").decode(),
                     "urlsafe": base64.b64encode(b"\xfb\xff").decode(), "min": -(2**63),
                     "empty": None, "future": None}
    assert span.start_time_unix_nano == 1_700_000_000_000_000_000


def test_json_snake_case_numeric_enums_and_number_times() -> None:
    span = _json_span_view({
        "trace_id": TRACE.upper(), "span_id": SPAN, "parent_span_id": PARENT, "name": "s",
        "kind": 2, "status": {"code": 1}, "start_time_unix_nano": 1_700_000_000_000_000_000,
        "end_time_unix_nano": 1.7e18, "attributes": [{"key": "k", "value": {
            "string_value": "v"}}], "dropped_attributes_count": "2",
    })
    assert span.trace_id == TRACE
    assert span.parent_span_id == PARENT
    assert (span.kind, span.status_code, span.dropped_attributes_count) == (2, 1, 2)
    assert span.end_time_unix_nano == 1_700_000_000_000_000_000
    assert span.attributes == {"k": "v"}


def test_unknown_json_fields_are_ignored() -> None:
    body = _json_body(_json_span(somethingNew={"x": 1}, attributes=[]),
                      extra={"futureTopLevel": [1, 2]})
    result = map_request(body, JSON)
    assert len(result.events) == 1
    assert not result.rejected


@pytest.mark.parametrize(("span", "reason"), [
    (_json_span(traceId=base64.b64encode(bytes.fromhex(TRACE)).decode()), "not base64"),
    (_json_span(spanId="xyz"), "invalid span id"),
    (_json_span(traceId="0" * 32), "all zero"),
    (_json_span(spanId=""), "invalid span id"),
    (_json_span(parentSpanId="abcd"), "invalid parent span id"),
])
def test_json_spans_with_bad_ids_are_rejected(span: dict[str, Any], reason: str) -> None:
    result = map_request(_json_body(span, _json_span(spanId=PARENT)), JSON)
    assert len(result.events) == 1
    assert len(result.rejected) == 1
    assert reason in result.rejected[0].reason


@pytest.mark.parametrize(("body", "path"), [
    (b'{"resourceSpans": {}}', "resourceSpans"),
    (b'[]', "$"),
    (_json_body(_json_span(startTimeUnixNano="soon")),
     "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano"),
    (_json_body(_json_span(attributes=[{"key": "k", "value": "bare"}])),
     "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value"),
    (_json_body(_json_span(attributes=[{"key": "k", "value": {"intValue": "1.5x"}}])),
     "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue"),
    (_json_body(_json_span(attributes=[{"key": "k", "value": {"intValue": str(2**63)}}])),
     "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue"),
    (_json_body(_json_span(attributes=[{"key": "k", "value": {"bytesValue": "%%%"}}])),
     "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.bytesValue"),
    (_json_body(_json_span(attributes=[{"key": "k", "value": {"arrayValue": {"values": [
        {"boolValue": "yes"}]}}}])),
     "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.arrayValue.values[0]"
     ".boolValue"),
    (_json_body(_json_span(attributes={"k": "v"})),
     "resourceSpans[0].scopeSpans[0].spans[0].attributes"),
    (_json_body(_json_span(traceId=123)), "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
    (_json_body(_json_span(status="ERROR")), "resourceSpans[0].scopeSpans[0].spans[0].status"),
    (_json_body(_json_span(events=[{"name": "e", "timeUnixNano": "x"}])),
     "resourceSpans[0].scopeSpans[0].spans[0].events[0].timeUnixNano"),
    (_json_body(_json_span(), resource={"attributes": [{"key": 5}]}),
     "resourceSpans[0].resource.attributes[0].key"),
    (_json_body("not a span"), "resourceSpans[0].scopeSpans[0].spans[0]"),
])
def test_wrong_json_shapes_name_the_path(body: bytes, path: str) -> None:
    with pytest.raises(MalformedPayload) as info:
        decode_traces(body, JSON)
    assert info.value.message.startswith(f"{path}:")
    assert info.value.context["field"] == path


def test_invalid_json_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match=r"not valid JSON.*line 1"):
        decode_traces(b'{"resourceSpans": [', JSON)
    with pytest.raises(MalformedPayload, match="gzip"):
        decode_traces(gzip.compress(b"{}"), JSON)
    with pytest.raises(MalformedPayload):
        decode_traces(b"", JSON)
    with pytest.raises(MalformedPayload):
        decode_traces(b'{"resourceSpans": []}\xff', JSON)


def test_json_and_protobuf_decode_to_the_same_views() -> None:
    from _otlp_requests import protobuf_body
    spans = record(span_with({"s": "x", "i": 5, "f": 0.5, "b": True, "arr": ["a", "b"]}))
    pb = decode_traces(protobuf_body(spans), PROTOBUF)
    js = decode_traces(proto_to_otlp_json(ExportTraceServiceRequest.FromString(
        protobuf_body(spans))), JSON)
    assert pb == js
