"""Decode an OTLP/HTTP JSON body into views, walking the JSON directly.

The OTLP JSON encoding is the protobuf JSON mapping with two deviations that
``json_format`` does not implement: trace and span ids are **hex** (not base64), and enum
fields may be integers. So the document is parsed with orjson and walked here into the same
views the protobuf decoder makes. Accepted spellings, beyond the spec's own:

- keys in lowerCamelCase (``traceId``) or as the proto field names (``trace_id``);
- enums as integers or names (``SPAN_KIND_CLIENT``, ``STATUS_CODE_ERROR``; the bare
  ``CLIENT`` too); unknown names read as 0 (unspecified), for forward compatibility;
- 64-bit integers (``intValue``, times, counters) as JSON numbers or decimal strings;
  ``doubleValue`` also as ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` or a numeric string;
- ``null`` wherever a field may be absent (the HoneyHive SDK sends
  ``"parentSpanId": null`` on roots).

Unknown fields are ignored. A structure of the wrong shape (``resourceSpans`` not a list,
a time that is not a number, an attribute value that is not an object) raises
:class:`MalformedPayload` naming the JSON path. An id that is a string but not a valid
hex id of the right length does not fail the request: the span carries a ``problem`` and
is rejected (partial success).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import orjson

from apiary.dataplane.ingest.otlp._model import (
    Attributes,
    ResourceSpansView,
    ScopeSpansView,
    SpanEventView,
    SpanLinkView,
    SpanView,
)
from apiary.errors import MalformedPayload, PayloadTooLarge

_CONTENT_TYPE = "application/json"

_SPAN_KINDS: dict[str, int] = {}
for _number, _name in enumerate(
    ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
):
    _SPAN_KINDS[f"SPAN_KIND_{_name}"] = _number
    _SPAN_KINDS[_name] = _number
    _SPAN_KINDS[_name.lower()] = _number
_STATUS_CODES: dict[str, int] = {}
for _number, _name in enumerate(("UNSET", "OK", "ERROR")):
    _STATUS_CODES[f"STATUS_CODE_{_name}"] = _number
    _STATUS_CODES[_name] = _number
    _STATUS_CODES[_name.lower()] = _number
_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _Shape(Exception):
    """A wrong shape below some element; ``where`` is the path relative to it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _fail(path: str, message: str) -> NoReturn:
    raise MalformedPayload(f"{path}: {message}", content_type=_CONTENT_TYPE, field=path)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _uint(value: Any, where: str) -> int:
    """A non-negative 64-bit integer given as a JSON number or a decimal string."""
    kind = type(value)
    if kind is int:
        if value >= 0:
            return int(value)
    elif kind is str:
        if value.isascii() and value.isdigit():
            return int(value)
    elif kind is float:
        if value.is_integer() and value >= 0:
            return int(value)
    elif value is None:
        return 0
    raise _Shape(where, f"expected a non-negative integer, got {_show(value)}")


def _enum(value: Any, names: dict[str, int], where: str) -> int:
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is str:
        return names.get(value, 0)
    if value is None:
        return 0
    raise _Shape(where, f"expected an enum name or number, got {_show(value)}")


def _string(value: Any, where: str) -> str:
    if type(value) is str:
        return str(value)
    if value is None:
        return ""
    raise _Shape(where, f"expected a string, got {_show(value)}")


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _int_value(value: Any) -> int:
    kind = type(value)
    number = None
    if kind is int:
        number = int(value)
    elif kind is str:
        digits = value[1:] if value[:1] == "-" else value
        if digits.isascii() and digits.isdigit():
            number = int(value)
    elif kind is float and value.is_integer():
        number = int(value)
    # int64 on the wire; a larger number could not be stored (or re-encoded) later.
    if number is not None and _INT64_MIN <= number <= _INT64_MAX:
        return number
    raise _Shape("intValue", f"expected a 64-bit integer, got {_show(value)}")


def _double_value(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:
        special = _SPECIAL_DOUBLES.get(value)
        if special is not None:
            return special
        try:
            return float(value)
        except ValueError:
            pass
    raise _Shape("doubleValue", f"expected a number, got {_show(value)}")


def _bool_value(value: Any) -> bool:
    if type(value) is bool:
        return bool(value)
    raise _Shape("boolValue", f"expected true or false, got {_show(value)}")


def _string_value(value: Any) -> str:
    return _string(value, "stringValue")


def _bytes_value(value: Any) -> str:
    if type(value) is str:
        try:
            standard = value.replace("-", "+").replace("_", "/")
            raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            return base64.b64encode(raw).decode("ascii")
    raise _Shape("bytesValue", f"expected base64, got {_show(value)}")


def _values_of(value: Any, kind: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not dict:
        raise _Shape(kind, f"expected an object, got {_show(value)}")
    values = value.get("values")
    if values is None:
        return []
    if type(values) is not list:
        raise _Shape(f"{kind}.values", f"expected a list, got {_show(values)}")
    return values


def _array_value(value: Any) -> list[Any]:
    out = []
    for i, item in enumerate(_values_of(value, "arrayValue")):
        try:
            out.append(_any(item))
        except _Shape as exc:
            raise _Shape(f"arrayValue.values[{i}]{_dot(exc.where)}", exc.message) from None
    return out


def _kvlist_value(value: Any) -> dict[str, Any]:
    try:
        return _attributes(_values_of(value, "kvlistValue"))
    except _Shape as exc:
        where = exc.where
        if not where.startswith("kvlistValue"):
            where = f"kvlistValue.values{where}"
        raise _Shape(where, exc.message) from None


_VALUE_KINDS: dict[str, Callable[[Any], Any]] = {
    "stringValue": _string_value,
    "intValue": _int_value,
    "doubleValue": _double_value,
    "boolValue": _bool_value,
    "arrayValue": _array_value,
    "kvlistValue": _kvlist_value,
    "bytesValue": _bytes_value,
}
for _camel, _convert in list(_VALUE_KINDS.items()):
    _VALUE_KINDS["".join("_" + c.lower() if c.isupper() else c for c in _camel)] = _convert


def _dot(where: str) -> str:
    return f".{where}" if where and not where.startswith("[") else where


def _any(value: Any) -> Any:
    """An ``AnyValue`` object; an empty or unknown-kind one reads as ``None``."""
    if value is None:
        return None
    if type(value) is not dict:
        raise _Shape("", f"expected an AnyValue object, got {_show(value)}")
    for name, payload in value.items():
        convert = _VALUE_KINDS.get(name)
        if convert is not None:
            return convert(payload)
    return None


def _attributes(items: Any) -> Attributes:
    """A ``KeyValue`` list; raises ``_Shape`` with a ``[i]...`` relative path."""
    if items is None:
        return {}
    if type(items) is not list:
        raise _Shape("", f"expected a list of key/value objects, got {_show(items)}")
    attrs: Attributes = {}
    for i, kv in enumerate(items):
        if type(kv) is not dict:
            raise _Shape(f"[{i}]", f"expected a key/value object, got {_show(kv)}")
        key = kv.get("key")
        if type(key) is not str:
            if key is not None:
                raise _Shape(f"[{i}].key", f"expected a string, got {_show(key)}")
            key = ""
        value = kv.get("value")
        if type(value) is dict:
            text = value.get("stringValue")
            if type(text) is str:
                attrs[key] = text
                continue
        try:
            attrs[key] = _any(value)
        except _Shape as exc:
            raise _Shape(f"[{i}].value{_dot(exc.where)}", exc.message) from None
    return attrs


def _hex_id(value: Any, size: int, what: str, where: str) -> tuple[str, str | None]:
    """``(lowercase hex, problem)``; a non-string id is a shape error, not a problem."""
    if value is None or value == "":
        return "", None
    if type(value) is not str:
        raise _Shape(where, f"expected a hex string, got {_show(value)}")
    if len(value) == size * 2:
        try:
            bytes.fromhex(value)
        except ValueError:
            pass
        else:
            return value.lower(), None
    hint = " (OTLP JSON ids are hex, not base64)" if len(value) in (12, 24) else ""
    return value, f"invalid {what} {_show(value)}: must be {size * 2} hex characters{hint}"


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        _fail(path, f"expected an object, got {_show(value)}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        _fail(path, f"expected a list, got {_show(value)}")
    return value


def _attrs_at(obj: dict[str, Any], path: str) -> Attributes:
    try:
        return _attributes(obj.get("attributes"))
    except _Shape as exc:
        _fail(f"{path}.attributes{exc.where}", exc.message)


def _events(value: Any, path: str) -> Sequence[SpanEventView]:
    items = _list(value, path)
    if not items:
        return ()
    out = []
    for i, raw in enumerate(items):
        here = f"{path}[{i}]"
        event = _obj(raw, here)
        try:
            out.append(SpanEventView(
                _uint(_get(event, "timeUnixNano", "time_unix_nano"), "timeUnixNano"),
                _string(event.get("name"), "name"),
                _attrs_at(event, here),
                _uint(_get(event, "droppedAttributesCount", "dropped_attributes_count"),
                      "droppedAttributesCount"),
            ))
        except _Shape as exc:
            _fail(f"{here}{_dot(exc.where)}", exc.message)
    return out


def _links(value: Any, path: str) -> Sequence[SpanLinkView]:
    items = _list(value, path)
    if not items:
        return ()
    out = []
    for i, raw in enumerate(items):
        here = f"{path}[{i}]"
        link = _obj(raw, here)
        try:
            out.append(SpanLinkView(
                _string(_get(link, "traceId", "trace_id"), "traceId").lower(),
                _string(_get(link, "spanId", "span_id"), "spanId").lower(),
                _string(_get(link, "traceState", "trace_state"), "traceState"),
                _attrs_at(link, here),
                _uint(_get(link, "droppedAttributesCount", "dropped_attributes_count"),
                      "droppedAttributesCount"),
                _uint(link.get("flags"), "flags"),
            ))
        except _Shape as exc:
            _fail(f"{here}{_dot(exc.where)}", exc.message)
    return out


def _span(raw: Any, path: str) -> SpanView:
    span = _obj(raw, path)
    try:
        trace_id, problem = _hex_id(
            _get(span, "traceId", "trace_id"), 16, "trace id", "traceId"
        )
        span_id, span_problem = _hex_id(_get(span, "spanId", "span_id"), 8, "span id", "spanId")
        parent, parent_problem = _hex_id(
            _get(span, "parentSpanId", "parent_span_id"), 8, "parent span id", "parentSpanId"
        )
        if problem is None:
            if not trace_id.strip("0"):
                problem = f"invalid trace id {trace_id!r}: missing or all zero"
            else:
                problem = span_problem or parent_problem
                if problem is None and not span_id.strip("0"):
                    problem = f"invalid span id {span_id!r}: missing or all zero"
        if parent and not parent.strip("0"):
            parent = ""
        status = span.get("status")
        if status is None:
            status_code, status_message = 0, ""
        elif type(status) is dict:
            status_code = _enum(status.get("code"), _STATUS_CODES, "status.code")
            status_message = _string(status.get("message"), "status.message")
        else:
            raise _Shape("status", f"expected an object, got {_show(status)}")
        return SpanView(
            trace_id, span_id, parent,
            _string(span.get("name"), "name"),
            _enum(span.get("kind"), _SPAN_KINDS, "kind"),
            _uint(_get(span, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
            _uint(_get(span, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
            _attrs_at(span, path),
            _events(span.get("events"), f"{path}.events"),
            _links(span.get("links"), f"{path}.links"),
            status_code, status_message,
            _string(_get(span, "traceState", "trace_state"), "traceState"),
            _uint(span.get("flags"), "flags"),
            _uint(_get(span, "droppedAttributesCount", "dropped_attributes_count"),
                  "droppedAttributesCount"),
            _uint(_get(span, "droppedEventsCount", "dropped_events_count"),
                  "droppedEventsCount"),
            _uint(_get(span, "droppedLinksCount", "dropped_links_count"), "droppedLinksCount"),
            problem,
        )
    except _Shape as exc:
        _fail(f"{path}{_dot(exc.where)}", exc.message)


def _hint(body: bytes) -> str:
    if body[:2] == b"\x1f\x8b":
        return " (the body is gzip data: send it with Content-Encoding: gzip)"
    return ""


def decode_json(body: bytes, max_spans: int | None = None) -> list[ResourceSpansView]:
    """Decode an OTLP JSON ``ExportTraceServiceRequest`` (see the module docstring).

    Raises :class:`MalformedPayload` for invalid JSON or a wrong shape (naming the JSON
    path) and :class:`PayloadTooLarge` when it holds more than ``max_spans`` spans.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(
            f"body is not valid JSON: {exc}{_hint(body)}", content_type=_CONTENT_TYPE
        ) from exc
    if type(doc) is not dict:
        _fail("$", f"expected a JSON object (ExportTraceServiceRequest), got {_show(doc)}")
    out: list[ResourceSpansView] = []
    total = 0
    for ri, raw_rs in enumerate(_list(_get(doc, "resourceSpans", "resource_spans"),
                                      "resourceSpans")):
        rs_path = f"resourceSpans[{ri}]"
        rs = _obj(raw_rs, rs_path)
        resource = _obj(rs.get("resource"), f"{rs_path}.resource")
        res_attrs = _attrs_at(resource, f"{rs_path}.resource")
        scopes: list[ScopeSpansView] = []
        for si, raw_ss in enumerate(_list(_get(rs, "scopeSpans", "scope_spans"),
                                          f"{rs_path}.scopeSpans")):
            ss_path = f"{rs_path}.scopeSpans[{si}]"
            ss = _obj(raw_ss, ss_path)
            scope = _obj(ss.get("scope"), f"{ss_path}.scope")
            try:
                scope_name = _string(scope.get("name"), "name")
                scope_version = _string(scope.get("version"), "version")
                schema_url = _string(_get(ss, "schemaUrl", "schema_url"), "schemaUrl")
            except _Shape as exc:
                _fail(f"{ss_path}.scope.{exc.where}", exc.message)
            scope_attrs = _attrs_at(scope, f"{ss_path}.scope")
            raw_spans = _list(ss.get("spans"), f"{ss_path}.spans")
            total += len(raw_spans)
            if max_spans is not None and total > max_spans:
                raise PayloadTooLarge(
                    f"request holds more than {max_spans} spans", limit=max_spans
                )
            spans = [_span(raw, f"{ss_path}.spans[{pi}]") for pi, raw in enumerate(raw_spans)]
            scopes.append(ScopeSpansView(scope_name, scope_version, scope_attrs, schema_url,
                                         spans))
        try:
            rs_schema = _string(_get(rs, "schemaUrl", "schema_url"), "schemaUrl")
        except _Shape as exc:
            _fail(f"{rs_path}.{exc.where}", exc.message)
        out.append(ResourceSpansView(res_attrs, rs_schema, scopes))
    return out
