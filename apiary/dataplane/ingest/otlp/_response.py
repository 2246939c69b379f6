"""The OTLP/HTTP export response, with partial success for rejected spans."""

from __future__ import annotations

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apiary.dataplane.ingest.otlp._decode import PROTOBUF, media_type
from apiary.dataplane.ingest.otlp._model import RejectedSpan

# Bounds the error message when a request rejects many spans; the count stays exact.
MAX_LISTED = 20


def error_message(rejected: list[RejectedSpan]) -> str:
    """One line naming each rejected span (the first :data:`MAX_LISTED`) and why."""
    if not rejected:
        return ""
    listed = "; ".join(
        f"span {r.span_id or '(none)'} of trace {r.trace_id or '(none)'}: {r.reason}"
        for r in rejected[:MAX_LISTED]
    )
    more = len(rejected) - MAX_LISTED
    suffix = f"; and {more} more" if more > 0 else ""
    return f"{len(rejected)} span(s) rejected: {listed}{suffix}"


def encode_response(rejected: list[RejectedSpan], content_type: str) -> tuple[bytes, str]:
    """``(body, content type)`` of the ``ExportTraceServiceResponse`` for a request.

    Encoded as the request was (protobuf or JSON; raises ``UnsupportedMediaType`` for
    anything else). With rejected spans, ``partial_success`` carries their count and an
    error message naming each; without, the response is empty (full success), as OTLP
    requires.
    """
    kind = media_type(content_type)
    message = error_message(rejected)
    if kind is PROTOBUF:
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = len(rejected)
            response.partial_success.error_message = message
        return response.SerializeToString(), PROTOBUF
    body: dict[str, object] = {}
    if rejected:
        # int64 is a string in the protobuf JSON mapping.
        body["partialSuccess"] = {"rejectedSpans": str(len(rejected)), "errorMessage": message}
    return orjson.dumps(body), "application/json"
