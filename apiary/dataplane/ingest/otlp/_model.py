"""The typed intermediate between decoding and mapping, and the mapping's result types.

Both decoders (protobuf and JSON) produce the same views, so the mapping has exactly one
implementation. Views are immutable ``NamedTuple``s: they are made once per span on the
ingest hot path, and a tuple is the cheapest typed record Python can build.

Conventions shared by both decoders:

- ids are lowercase hex strings; ``parent_span_id`` is ``""`` for a root span.
- attribute values are plain Python values: ``str``, ``bool``, ``int``, ``float``,
  ``list`` (``arrayValue``), ``dict`` (``kvlistValue``, keys kept verbatim), ``str`` holding
  standard base64 (``bytesValue``), or ``None`` (an empty ``AnyValue``).
- times are integer nanoseconds since the epoch, as on the wire.
- a span whose ids cannot be used carries the reason in ``problem``; the mapping rejects it
  (OTLP partial success) instead of failing the whole request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from apiary.event import Event

Attributes = dict[str, Any]

# OTLP enum values (opentelemetry/proto/trace/v1/trace.proto).
SPAN_KIND_NAMES: dict[int, str] = {
    0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer",
}
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


class SpanEventView(NamedTuple):
    """One span event (``Span.Event``)."""

    time_unix_nano: int
    name: str
    attributes: Attributes
    dropped_attributes_count: int


class SpanLinkView(NamedTuple):
    """One span link (``Span.Link``); ids as received, lowercase hex."""

    trace_id: str
    span_id: str
    trace_state: str
    attributes: Attributes
    dropped_attributes_count: int
    flags: int


class SpanView(NamedTuple):
    """One span, decoded. ``problem`` is set when the span must be rejected."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Attributes
    events: Sequence[SpanEventView]
    links: Sequence[SpanLinkView]
    status_code: int
    status_message: str
    trace_state: str
    flags: int
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    problem: str | None


class ScopeSpansView(NamedTuple):
    """Spans of one instrumentation scope."""

    name: str
    version: str
    attributes: Attributes
    schema_url: str
    spans: list[SpanView]


class ResourceSpansView(NamedTuple):
    """Spans of one resource, grouped by scope."""

    attributes: Attributes
    schema_url: str
    scope_spans: list[ScopeSpansView]


@dataclass(frozen=True, slots=True)
class RejectedSpan:
    """A span left out of the result, and why (reported back as OTLP partial success)."""

    trace_id: str
    span_id: str
    reason: str


@dataclass(slots=True)
class MappedSpans:
    """What one OTLP request became: events for the accepted spans, the rejected spans."""

    events: list[Event] = field(default_factory=list)
    rejected: list[RejectedSpan] = field(default_factory=list)
