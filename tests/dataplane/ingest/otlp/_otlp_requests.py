"""Real OTLP requests for the tests: OpenTelemetry SDK spans through real encoders.

- ``protobuf_body``: the OTLP exporter's own encoder (``encode_spans``).
- ``honeyhive_json_body``: the HoneyHive SDK's JSON exporter (hex ids, null parent ids,
  string ints, enum names).
- ``otlp_json_body``: the protobuf JSON mapping with hex ids, as the OTLP spec (and the
  OpenTelemetry collector) writes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from honeyhive.tracer.processing.otlp_exporter import OTLPJSONExporter
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from apiary.dataplane.ingest.otlp import MappedSpans, map_request
from apiary.event import Event

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "otlp"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
FORMATS = ("protobuf", "otlp-json", "honeyhive-json")


def to_any_value(value: Any) -> AnyValue:
    """``value`` as an OTLP ``AnyValue``, nesting lists and dicts; None is the empty value."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(to_any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=to_any_value(v))
                                       for k, v in value.items())
        return out
    return AnyValue() if value is None else AnyValue(string_value=value)


def record(build: Callable[[Tracer], None], resource: dict[str, Any] | None = None,
           ) -> list[ReadableSpan]:
    """The finished spans of ``build(tracer)`` from a fresh SDK tracer provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "tests"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("tests.otlp", "1.2.3"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def protobuf_body(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()  # type: ignore[no-any-return]


def honeyhive_json_body(spans: list[ReadableSpan]) -> bytes:
    exporter = OTLPJSONExporter("http://127.0.0.1:9/unused")
    try:
        return json.dumps(exporter._spans_to_otlp_json_payload(spans)).encode()
    finally:
        exporter.session.close()


def proto_to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    doc = json_format.MessageToDict(request)
    for span in _spans_in(doc):
        for field in ("traceId", "spanId", "parentSpanId"):
            if field in span:
                span[field] = base64.b64decode(span[field]).hex()
        for link in span.get("links", []):
            for field in ("traceId", "spanId"):
                if field in link:
                    link[field] = base64.b64decode(link[field]).hex()
    return json.dumps(doc).encode()


def otlp_json_body(spans: list[ReadableSpan]) -> bytes:
    return proto_to_otlp_json(encode_spans(spans))


def _spans_in(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            yield from ss.get("spans", [])


def body(spans: list[ReadableSpan], fmt: str) -> tuple[bytes, str]:
    if fmt == "protobuf":
        return protobuf_body(spans), PROTOBUF
    if fmt == "otlp-json":
        return otlp_json_body(spans), JSON
    return honeyhive_json_body(spans), JSON


def map_spans(spans: list[ReadableSpan], fmt: str = "protobuf") -> MappedSpans:
    data, content_type = body(spans, fmt)
    return map_request(data, content_type)


def events_by_name(result: MappedSpans) -> dict[str, Event]:
    return {event["event_name"]: event for event in result.events}


def one_event(build: Callable[[Tracer], None], fmt: str = "protobuf",
              resource: dict[str, Any] | None = None) -> Event:
    """The single event of a request holding the single span ``build`` makes."""
    result = map_spans(record(build, resource), fmt)
    assert not result.rejected
    assert len(result.events) == 1
    return result.events[0]


def span_with(attributes: dict[str, Any], name: str = "span") -> Callable[[Tracer], None]:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(name, attributes=attributes):
            pass
    return build
