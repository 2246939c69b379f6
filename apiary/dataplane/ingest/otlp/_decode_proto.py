"""Decode an OTLP/HTTP protobuf body (``ExportTraceServiceRequest``) into views.

Why this does not simply walk the generated ``trace_pb2`` classes: with the upb backend,
every Python-level access to a sub-message costs a wrapper object, and reading one
attribute (iterate, ``.key``, ``.value``, ``WhichOneof``, the payload) costs about 0.6 µs
on the reference machine, which alone would exceed the per-span budget. So the body is
parsed with *wire-compatible* copies of the OTLP descriptors in which every
``repeated KeyValue attributes`` field is declared ``repeated bytes``: upb still does the
framing and validation in C, and hands back each attribute as its raw ``KeyValue``
encoding. :func:`_parse_kv` decodes the common encodings (a string, int, double or bool
value) straight from those bytes; anything else (arrays, kvlists, bytes, non-canonical
field order, unknown fields) goes through the real ``KeyValue`` class, which stays the
single source of truth for what is valid. Short ``KeyValue`` encodings repeat across spans
(session ids, model names, roles), so their decoded form is cached, keyed by the bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from itertools import compress
from operator import not_
from struct import Struct
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from apiary.dataplane.ingest.otlp._model import (
    Attributes,
    ResourceSpansView,
    ScopeSpansView,
    SpanEventView,
    SpanLinkView,
    SpanView,
)
from apiary.errors import MalformedPayload, PayloadTooLarge

_REQUEST_NAME = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"


def _build_request_class() -> Any:
    """The request class over the attribute-as-bytes copies of the OTLP descriptors."""
    pool = descriptor_pool.DescriptorPool()
    bytes_type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        file_proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file_proto)
        pending = list(file_proto.message_type)
        while pending:
            message = pending.pop()
            pending.extend(message.nested_type)
            for field in message.field:
                if field.name == "attributes" and field.type_name.endswith(".KeyValue"):
                    field.type = bytes_type
                    field.ClearField("type_name")
        pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(_REQUEST_NAME))


_FastRequest = _build_request_class()
_KeyValue = common_pb2.KeyValue
_unpack_double = Struct("<d").unpack_from
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

# Bounded: keys are the raw KeyValue bytes of short attributes (values immutable scalars).
_KV_CACHE: dict[bytes, tuple[str, Any]] = {}
_KV_CACHE_MAX_ENTRIES = 50_000
_KV_CACHE_MAX_BYTES = 192
_CACHEABLE = frozenset({str, int, float, bool, type(None)})


def _varint(raw: bytes, i: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = raw[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def _parse_kv(raw: bytes) -> tuple[str, Any]:
    """Decode one raw ``KeyValue``; fast for canonical scalar encodings, exact otherwise."""
    n = len(raw)
    try:
        if raw[0] == 0x0A and raw[1] < 0x80:
            p = 2 + raw[1]
            if p == n:
                return raw[2:p].decode(), None
            if raw[p] == 0x12:
                vl = raw[p + 1]
                q = p + 2
                if vl >= 0x80:
                    b = raw[q]
                    if b >= 0x80:
                        return _slow_kv(raw)
                    vl = (vl & 0x7F) | (b << 7)
                    q += 1
                if q + vl == n:
                    key = raw[2:p].decode()
                    if vl == 0:
                        return key, None
                    tag = raw[q]
                    if tag == 0x0A:
                        m = raw[q + 1]
                        s = q + 2
                        if m >= 0x80:
                            b = raw[s]
                            if b >= 0x80:
                                return _slow_kv(raw)
                            m = (m & 0x7F) | (b << 7)
                            s += 1
                        if s + m == n:
                            return key, raw[s:].decode()
                    elif tag == 0x18:
                        value, end = _varint(raw, q + 1)
                        if end == n:
                            return key, value - (1 << 64) if value >= 1 << 63 else value
                    elif tag == 0x21:
                        if vl == 9:
                            return key, _unpack_double(raw, q + 1)[0]
                    elif tag == 0x10 and vl == 2 and raw[q + 1] < 2:
                        return key, raw[q + 1] == 1
    except IndexError:
        pass
    return _slow_kv(raw)


def _slow_kv(raw: bytes) -> tuple[str, Any]:
    kv = _KeyValue.FromString(raw)
    return kv.key, any_value(kv.value) if kv.HasField("value") else None


def any_value(value: common_pb2.AnyValue) -> Any:
    """The Python form of a generated ``AnyValue`` (see
    :mod:`apiary.dataplane.ingest.otlp._model`)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "string_value_strindex":
        # A reference into a profiles string table; traces have no such table.
        return value.string_value_strindex
    return None


def _attributes(raws: Sequence[bytes]) -> Attributes:
    """The attributes of one element, from their raw ``KeyValue`` encodings.

    Cache hits are resolved by ``map``, ``filter`` and ``dict`` in C, and only misses run
    Python code, so a missed attribute lands after the hits: attribute order is not
    preserved (it carries no meaning in OTLP; keys are unique).
    """
    cache = _KV_CACHE
    found: list[Any] = list(map(cache.get, raws))
    attrs: Attributes = dict(filter(None, found))
    if len(attrs) != len(found):
        for raw in compress(raws, map(not_, found)):
            kv = _parse_kv(raw)
            attrs[kv[0]] = kv[1]
            if len(raw) <= _KV_CACHE_MAX_BYTES and type(kv[1]) in _CACHEABLE:
                if len(cache) >= _KV_CACHE_MAX_ENTRIES:
                    cache.clear()
                cache[raw] = kv
    return attrs


def _events(events: Sequence[Any]) -> list[SpanEventView]:
    return [
        SpanEventView(
            e.time_unix_nano, e.name, _attributes(e.attributes[:]), e.dropped_attributes_count
        )
        for e in events
    ]


def _links(links: Sequence[Any]) -> list[SpanLinkView]:
    return [
        SpanLinkView(
            link.trace_id.hex(), link.span_id.hex(), link.trace_state,
            _attributes(link.attributes[:]), link.dropped_attributes_count, link.flags,
        )
        for link in links
    ]


def _span(sp: Any) -> SpanView:
    trace_id = sp.trace_id
    span_id = sp.span_id
    parent = sp.parent_span_id
    problem = None
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        problem = f"invalid trace id {trace_id.hex()!r}: must be 16 bytes, not all zero"
    elif len(span_id) != 8 or span_id == _ZERO_SPAN:
        problem = f"invalid span id {span_id.hex()!r}: must be 8 bytes, not all zero"
    elif parent and len(parent) != 8:
        problem = f"invalid parent span id {parent.hex()!r}: must be empty or 8 bytes"
    # An all-zero parent is how some exporters spell "no parent".
    parent_hex = "" if not parent or parent == _ZERO_SPAN else parent.hex()
    if sp.HasField("status"):
        status = sp.status
        code, message = status.code, status.message
    else:
        code, message = 0, ""
    events = sp.events
    links = sp.links
    return SpanView(
        trace_id.hex(), span_id.hex(), parent_hex, sp.name, sp.kind,
        sp.start_time_unix_nano, sp.end_time_unix_nano, _attributes(sp.attributes[:]),
        _events(events) if events else (), _links(links) if links else (),
        code, message, sp.trace_state, sp.flags,
        sp.dropped_attributes_count, sp.dropped_events_count, sp.dropped_links_count,
        problem,
    )


def _describe(body: bytes) -> str:
    """A hint for the common ways a body that is not protobuf ends up here."""
    if body[:2] == b"\x1f\x8b":
        return " (the body is gzip data: send it with Content-Encoding: gzip)"
    stripped = body.lstrip()[:1]
    if stripped in (b"{", b"["):
        return " (the body looks like JSON: send it with Content-Type: application/json)"
    return ""


def decode_protobuf(body: bytes, max_spans: int | None = None) -> list[ResourceSpansView]:
    """Decode a protobuf ``ExportTraceServiceRequest``.

    Raises :class:`MalformedPayload` when the body (or any attribute in it) is not valid
    protobuf for that message, naming the element that failed, and
    :class:`PayloadTooLarge` when it holds more than ``max_spans`` spans.
    """
    try:
        request = _FastRequest.FromString(body)
    except DecodeError as exc:
        raise MalformedPayload(
            f"body is not a valid protobuf ExportTraceServiceRequest ({len(body)} bytes): "
            f"{exc}{_describe(body)}",
            content_type="application/x-protobuf",
        ) from exc
    out: list[ResourceSpansView] = []
    total = 0
    where = "resource_spans"
    try:
        for ri, rs in enumerate(request.resource_spans):
            where = f"resource_spans[{ri}].resource"
            resource = rs.resource
            scopes: list[ScopeSpansView] = []
            for si, ss in enumerate(rs.scope_spans):
                where = f"resource_spans[{ri}].scope_spans[{si}].scope"
                scope = ss.scope
                scope_attrs = _attributes(scope.attributes[:]) if scope.attributes else {}
                spans: list[SpanView] = []
                for pi, sp in enumerate(ss.spans):
                    where = f"resource_spans[{ri}].scope_spans[{si}].spans[{pi}]"
                    spans.append(_span(sp))
                total += len(spans)
                if max_spans is not None and total > max_spans:
                    raise PayloadTooLarge(
                        f"request holds more than {max_spans} spans", limit=max_spans
                    )
                scopes.append(
                    ScopeSpansView(scope.name, scope.version, scope_attrs, ss.schema_url, spans)
                )
            where = f"resource_spans[{ri}].resource"
            res_attrs = _attributes(resource.attributes[:]) if resource.attributes else {}
            out.append(ResourceSpansView(res_attrs, rs.schema_url, scopes))
    except (DecodeError, UnicodeDecodeError) as exc:
        raise MalformedPayload(
            f"{where}: an attribute is not a valid protobuf KeyValue: {exc}",
            content_type="application/x-protobuf", field=where,
        ) from exc
    return out
