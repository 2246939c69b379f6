"""Export responses: full and partial success, protobuf and JSON, decoded back."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apiary.dataplane.ingest.otlp import RejectedSpan, encode_response, map_request
from apiary.dataplane.ingest.otlp._response import MAX_LISTED
from apiary.errors import UnsupportedMediaType

REJECTED = [
    RejectedSpan("5b8efff798038103d269b633813fc60c", "abcd", "invalid span id 'abcd'"),
    RejectedSpan("", "eee19b7ec3c1b174", "invalid trace id '': missing or all zero"),
]


def test_full_success_is_an_empty_response_in_both_formats() -> None:
    body, content_type = encode_response([], "application/x-protobuf")
    assert content_type == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    body, content_type = encode_response([], "application/json; charset=utf-8")
    assert content_type == "application/json"
    assert json.loads(body) == {}


def test_partial_success_in_protobuf() -> None:
    body, content_type = encode_response(REJECTED, "application/protobuf")
    assert content_type == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 2
    message = response.partial_success.error_message
    assert message.startswith("2 span(s) rejected: ")
    assert "span abcd of trace 5b8efff798038103d269b633813fc60c: invalid span id" in message
    assert "span eee19b7ec3c1b174 of trace (none): invalid trace id" in message


def test_partial_success_in_json_parses_as_the_protobuf_json_mapping() -> None:
    body, content_type = encode_response(REJECTED, "application/json")
    assert content_type == "application/json"
    response = json_format.Parse(body, ExportTraceServiceResponse())
    assert response.partial_success.rejected_spans == 2
    assert "invalid span id 'abcd'" in response.partial_success.error_message
    assert json.loads(body)["partialSuccess"]["rejectedSpans"] == "2"


def test_many_rejections_keep_the_count_and_bound_the_message() -> None:
    many = [RejectedSpan("t", f"{i:016x}", "bad") for i in range(MAX_LISTED + 5)]
    body, _ = encode_response(many, "application/x-protobuf")
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == MAX_LISTED + 5
    assert response.partial_success.error_message.endswith("; and 5 more")
    assert f"{MAX_LISTED - 1:016x}" in response.partial_success.error_message
    assert f"{MAX_LISTED:016x}" not in response.partial_success.error_message


def test_unknown_content_type() -> None:
    with pytest.raises(UnsupportedMediaType):
        encode_response([], "text/plain")


def test_round_trip_from_a_request_with_a_bad_span() -> None:
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "zz", "name": "bad"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "name": "good"},
    ]}]}]}
    result = map_request(json.dumps(doc).encode(), "application/json")
    body, _ = encode_response(result.rejected, "application/json")
    response = json_format.Parse(body, ExportTraceServiceResponse())
    assert response.partial_success.rejected_spans == 1
    assert "span zz of trace 5b8efff798038103d269b633813fc60c" in (
        response.partial_success.error_message)
    assert [e["event_name"] for e in result.events] == ["good"]
