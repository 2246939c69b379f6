"""Export filters evaluated in Python, on event dicts, with the SQL's meaning.

The filter language (:mod:`apiary.store._filters`) has two compilers, both here in the
store because both must agree with what a stored row holds: to SQL, and (this module) to a
Python predicate. Online evaluators select the events they score with it, and the writer
decides right after an insert, on the events it holds, so a round trip to ClickHouse per
event is out of the question: this module compiles a filter list into a Python predicate
that answers as the SQL condition would on the stored row. Filters are first compiled by
the SQL compiler too, so a filter the API would reject is rejected here with the same
:class:`~apiary.errors.InvalidRequest`.

What the stored row holds, and is therefore compared here: ``model``/``provider`` are
``config.model``/``config.provider`` (strings, else ``''``); token counts and ``cost`` come
from ``metadata`` (numbers or numeric strings, else 0); times are epoch microseconds; a
JSON column's text is its compact JSON (orjson), which ``contains`` searches; a nested
value is its JSON text (strings unescaped). Case-insensitive matching uses Python's
``lower()``, which agrees with ClickHouse's UTF-8 case folding on everything but a few
special scripts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from apiary.store._attributes import float_text as _float_text
from apiary.store._filters import (
    _NUMBER,
    ARRAY_COLUMNS,
    NUMBER_COLUMNS,
    TIME_COLUMNS,
    Params,
    _boolean,
    _number,
    _string,
    compile_filter,
    normalize_operator,
    parse_time,
    split_field,
)
from apiary.store._rows import JSON_COLUMNS, _amount, _count, _micros, _text

Predicate = Callable[[Mapping[str, Any]], bool]

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "greater than": lambda a, b: a > b, "less than": lambda a, b: a < b,
    "greater than or equal": lambda a, b: a >= b, "less than or equal": lambda a, b: a <= b,
    "after": lambda a, b: a > b, "before": lambda a, b: a < b,
    "is": lambda a, b: a == b, "is not": lambda a, b: a != b,
}
# ClickHouse's toFloat64OrNull reads a plain decimal number, also inf/nan.
_CH_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.I)


def _object(event: Mapping[str, Any], column: str) -> dict[str, Any]:
    value = event.get(column)
    return value if isinstance(value, dict) else {}


def _string_value(event: Mapping[str, Any], column: str) -> str:
    if column in ("model", "provider"):
        return _text(_object(event, "config").get(column))
    value = event.get(column)
    return value if isinstance(value, str) else ""


def _number_value(event: Mapping[str, Any], column: str) -> float:
    if column == "duration":
        value = event.get("duration")
        return float(value) if isinstance(value, (int, float)) and not isinstance(
            value, bool) else 0.0
    metadata = _object(event, "metadata")
    if column == "cost":
        return _amount(metadata.get("cost"))
    return _count(metadata.get(column))


def _ch_float(text: str) -> float | None:
    return float(text) if _CH_FLOAT.fullmatch(text) else None


def _ordered(operator: str, left: Any, right: Any) -> bool:
    return _ORDER[operator](left, right)


def _string_column(column: str, operator: str, declared: str, value: Any,
                   name: str) -> Predicate:
    if operator in ("exists", "not exists"):
        present = operator == "exists"
        return lambda e: (_string_value(e, column) != "") == present
    text = _string(value, what=name)
    if operator in ("contains", "not contains"):
        needle, positive = text.lower(), operator == "contains"
        return lambda e: (needle in _string_value(e, column).lower()) == positive
    if operator in ("is", "is not"):
        return lambda e: _ordered(operator, _string_value(e, column), text)
    if declared == "number" or _NUMBER.fullmatch(text):
        bound = _number(value, what=name)

        def numeric(e: Mapping[str, Any]) -> bool:
            number = _ch_float(_string_value(e, column))
            return number is not None and _ordered(operator, number, bound)
        return numeric
    # Byte order of UTF-8 is code point order: Python's string order.
    return lambda e: _ordered(operator, _string_value(e, column), text)


def _number_column(column: str, operator: str, value: Any, name: str) -> Predicate:
    if operator in ("exists", "not exists"):
        present = operator == "exists"
        return lambda e: (_number_value(e, column) != 0) == present
    bound = _number(value, what=name)
    return lambda e: _ordered(operator, _number_value(e, column), bound)


def _time_column(column: str, operator: str, value: Any, name: str) -> Predicate:
    if operator in ("exists", "not exists"):
        present = operator == "exists"
        return lambda e: (_micros(e.get(column)) > 0) == present
    bound = parse_time(value, what=name)
    return lambda e: _ordered(operator, _micros(e.get(column)), bound)


def _array_column(column: str, operator: str, value: Any, name: str) -> Predicate:
    def items(e: Mapping[str, Any]) -> list[Any]:
        found = e.get(column)
        return found if isinstance(found, list) else []
    if operator in ("exists", "not exists"):
        present = operator == "exists"
        return lambda e: bool(items(e)) == present
    text = _string(value, what=name)
    positive = operator in ("is", "contains")
    return lambda e: (text in items(e)) == positive


def _whole_json(column: str, operator: str, value: Any, name: str) -> Predicate:
    if operator in ("exists", "not exists"):
        present = operator == "exists"
        return lambda e: bool(_object(e, column)) == present
    needle, positive = _string(value, what=name).lower(), operator == "contains"

    def search(e: Mapping[str, Any]) -> bool:
        obj = _object(e, column)
        text = orjson.dumps(obj).decode() if obj else "{}"
        return (needle in text.lower()) == positive
    return search


_MISSING = object()


def _at(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _json_text(value: Any) -> str:
    """Compact JSON as ClickHouse's ``JSONExtractRaw`` returns it (numbers re-written)."""
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{orjson.dumps(str(k)).decode()}:{_json_text(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return orjson.dumps(value).decode()


def _as_text(found: Any) -> str:
    """The nested value as the SQL reads it: strings unescaped, else compact JSON."""
    if isinstance(found, str):
        return found
    return _json_text(found)


def _as_time_us(found: Any) -> int | None:
    if isinstance(found, bool):
        return None
    if isinstance(found, (int, float)):
        return int(found * 1000) if math.isfinite(found) else None
    if isinstance(found, str):
        try:
            parsed = datetime.fromisoformat(found.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp() * 1_000_000)
    return None


def _nested(column: str, path: tuple[str, ...], operator: str, declared: str, value: Any,
            name: str) -> Predicate:
    def lookup(e: Mapping[str, Any]) -> Any:
        found = _at(_object(e, column), path)
        return _MISSING if found is None else found  # JSON null reads as absent
    if operator in ("exists", "not exists"):
        present = operator == "exists"
        return lambda e: (lookup(e) is not _MISSING) == present
    negate = operator in ("is not", "not contains")
    positive_op = {"is not": "is", "not contains": "contains"}.get(operator, operator)
    cond: Callable[[Any], bool]
    if positive_op == "contains":
        needle = _string(value, what=name).lower()

        def cond(found: Any) -> bool:
            return needle in _as_text(found).lower()
    elif declared == "boolean" and positive_op == "is":
        wanted = ("true", "1") if _boolean(value, what=name) else ("false", "0")

        def cond(found: Any) -> bool:
            return _as_text(found).lower() in wanted
    elif declared == "datetime" or positive_op in ("after", "before"):
        bound_us = parse_time(value, what=name)

        def cond(found: Any) -> bool:
            when = _as_time_us(found)
            return when is not None and _ordered(positive_op, when, bound_us)
    elif declared == "number" or (
        positive_op in _ORDER and positive_op not in ("is", "is not")
        and _NUMBER.fullmatch(_string(value, what=name))
    ):
        bound = _number(value, what=name)

        def cond(found: Any) -> bool:
            number = _ch_float(_as_text(found))
            return number is not None and _ordered(positive_op, number, bound)
    else:
        text = _string(value, what=name)

        def cond(found: Any) -> bool:
            return _ordered(positive_op, _as_text(found), text)

    def check(e: Mapping[str, Any]) -> bool:
        found = lookup(e)
        matched = found is not _MISSING and cond(found)
        return not matched if negate else matched
    return check


def compile_predicate(raw: Any) -> Predicate:
    """One export filter → a predicate over an event dict (InvalidRequest if invalid)."""
    compile_filter(raw, Params())  # the SQL compiler's validation, errors and all
    name = raw["field"]
    column, path = split_field(name)
    operator = normalize_operator(raw.get("operator"), what=name)
    declared = raw.get("type") or "string"
    value = raw.get("value")
    if value is None and operator in ("is", "is not"):
        operator = "not exists" if operator == "is" else "exists"
    if path:
        return _nested(column, path, operator, declared, value, name)
    if column in JSON_COLUMNS:
        return _whole_json(column, operator, value, name)
    if column in NUMBER_COLUMNS:
        return _number_column(column, operator, value, name)
    if column in TIME_COLUMNS:
        return _time_column(column, operator, value, name)
    if column in ARRAY_COLUMNS:
        return _array_column(column, operator, value, name)
    return _string_column(column, operator, declared, value, name)


def compile_predicates(filters: Sequence[Any]) -> Predicate:
    """All of ``filters`` must hold (an empty list matches every event)."""
    predicates = [compile_predicate(f) for f in filters]
    if not predicates:
        return lambda _e: True
    if len(predicates) == 1:
        return predicates[0]
    return lambda e: all(p(e) for p in predicates)


__all__ = ["Predicate", "compile_predicate", "compile_predicates"]
