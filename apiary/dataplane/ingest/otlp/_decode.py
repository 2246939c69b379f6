"""Content-type negotiation and the format-independent entry point of decoding."""

from __future__ import annotations

from apiary.dataplane.ingest.otlp._decode_json import decode_json
from apiary.dataplane.ingest.otlp._decode_proto import decode_protobuf
from apiary.dataplane.ingest.otlp._model import ResourceSpansView
from apiary.errors import UnsupportedMediaType

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_MEDIA_TYPES = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}


def media_type(content_type: str) -> str:
    """``PROTOBUF`` or ``JSON`` for an OTLP/HTTP ``Content-Type`` header value.

    Parameters are ignored except a JSON ``charset``, which must be UTF-8 (JSON's only
    encoding on the wire). Anything else raises :class:`UnsupportedMediaType`.
    """
    base, _, params = content_type.partition(";")
    kind = _MEDIA_TYPES.get(base.strip().lower())
    if kind is None:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not supported for OTLP traces: send "
            "application/x-protobuf (or application/protobuf) or application/json",
            content_type=content_type,
        )
    if kind is JSON and params:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
                raise UnsupportedMediaType(
                    f"charset {charset!r} is not supported: OTLP JSON must be UTF-8",
                    content_type=content_type,
                )
    return kind


def decode_traces(
    body: bytes, content_type: str, *, max_spans: int | None = None
) -> list[ResourceSpansView]:
    """Decode an OTLP/HTTP trace export body (already decompressed) into views.

    Raises :class:`UnsupportedMediaType` for a content type other than protobuf or JSON,
    :class:`MalformedPayload` when the body does not decode as that format (the message
    names the element at fault), and :class:`PayloadTooLarge` above ``max_spans`` spans.
    Spans whose ids are unusable are still returned, with ``problem`` set.
    """
    if media_type(content_type) is PROTOBUF:
        return decode_protobuf(body, max_spans)
    return decode_json(body, max_spans)
