"""HoneyHive-style event filters compiled to ClickHouse conditions with bound parameters.

A filter is ``{"field", "operator", "value", "type"}`` (``POST /v1/events/export``).

Fields
    Top-level columns (``event_id``, ``session_id``, ``parent_id``, ``event_type``,
    ``event_name``, ``source``, ``error``, ``duration``, ``start_time``, ``end_time``,
    ``model``, ``provider``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
    ``cost``, ``trace_id``, ``span_id``, ``children_ids``) or a dotted path into a JSON
    column (``metadata.user_id``, ``inputs.a.b``, ``config.model``, ``feedback.rating``,
    ``metrics.score``; up to :data:`MAX_PATH_DEPTH` keys). A JSON column on its own
    (``metadata``) supports ``contains``/``exists`` on its whole text.

Operators (the SDK names ``is``, ``is not``, ``contains``, ``not contains``,
``greater than``; the rest are the usual companions)
    ``is``, ``is not``, ``contains``, ``not contains`` (case-insensitive substring),
    ``exists``, ``not exists``, ``greater than``, ``less than``, ``greater than or equal``,
    ``less than or equal``, ``after``, ``before`` — plus the aliases in :data:`ALIASES`
    (``=``, ``!=``, ``>``, ``>=``, ...).

Types
    ``string`` (default), ``number``, ``boolean``, ``datetime`` (ISO-8601 string or epoch
    milliseconds), ``id`` (a string compared exactly). A numeric or time column is always
    compared as what it is, whatever the declared type. A nested value is read as the
    declared type: a JSON number or a numeric string both match ``number``; ``true``/``1``
    and ``false``/``0`` match booleans. Ordering operators on a ``string`` with a value that
    reads as a number compare numerically (``metadata.cost greater than "0.01"``).

Missing fields
    ``is``/``contains``/ordering never match a missing (or JSON null) value; ``is not`` and
    ``not contains`` do match it. ``exists`` means present and not null; for columns, ''
    (strings, ``parent_id`` '' is "no parent"), 0 (durations, tokens, cost: unknown) and
    the epoch (times) count as absent.

Safety: field names must match :data:`FIELD_PATTERN`; JSON keys and every value are bound
as ``{pN:Type}`` parameters, never spliced into the SQL. Anything unknown or malformed is
:class:`~apiary.errors.InvalidRequest` naming the filter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apiary.errors import InvalidRequest
from apiary.store._attributes import ATTRIBUTE_COLUMNS, ATTRIBUTE_DEPTH
from apiary.store._rows import JSON_COLUMNS

FIELD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-:@$#]+){0,8}")
MAX_PATH_DEPTH = 8
MAX_VALUE_CHARS = 65_536

STRING_COLUMNS = frozenset({
    "event_id", "session_id", "parent_id", "event_type", "event_name", "source", "model",
    "provider", "trace_id", "span_id", "error",
})
NUMBER_COLUMNS = frozenset({"duration", "prompt_tokens", "completion_tokens", "total_tokens",
                            "cost"})
TIME_COLUMNS = frozenset({"start_time", "end_time"})
ARRAY_COLUMNS = frozenset({"children_ids"})
#: Columns whose value is the same in every version of an event, so a condition on them
#: may be applied before versions are collapsed.
KEY_COLUMNS = frozenset({"event_id", "session_id"})

OPERATORS = frozenset({
    "is", "is not", "contains", "not contains", "exists", "not exists", "greater than",
    "less than", "greater than or equal", "less than or equal", "after", "before",
})
ALIASES = {
    "=": "is", "==": "is", "equals": "is", "eq": "is",
    "!=": "is not", "<>": "is not", "not equals": "is not", "ne": "is not",
    "does not contain": "not contains", "not contain": "not contains",
    "exist": "exists", "not exist": "not exists", "does not exist": "not exists",
    ">": "greater than", "gt": "greater than", "<": "less than", "lt": "less than",
    ">=": "greater than or equal", "gte": "greater than or equal",
    "greater than or equal to": "greater than or equal",
    "<=": "less than or equal", "lte": "less than or equal",
    "less than or equal to": "less than or equal",
    "is after": "after", "is before": "before",
}
TYPES = frozenset({"string", "number", "boolean", "datetime", "id"})
_ORDERING = {"greater than": ">", "less than": "<", "greater than or equal": ">=",
             "less than or equal": "<=", "after": ">", "before": "<"}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


@dataclass
class Params:
    """Bound parameters of one statement; names ``p0``, ``p1``, ... in creation order."""

    values: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return "{" + f"{name}:{ch_type}" + "}"


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """One filter as SQL; ``key_only`` when it only reads version-invariant columns."""

    sql: str
    key_only: bool


def parse_time(value: Any, *, what: str) -> int:
    """An ISO-8601 string or epoch milliseconds (number or numeric string) → epoch µs."""
    if isinstance(value, bool) or value is None:
        raise InvalidRequest(f"{what}: expected an ISO-8601 time or epoch milliseconds",
                             field=what)
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        ms = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRequest(f"{what}: {value[:64]!r} is not an ISO-8601 time",
                                 field=what) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = parsed.timestamp() * 1000.0
    else:
        raise InvalidRequest(f"{what}: expected an ISO-8601 time or epoch milliseconds",
                             field=what)
    if not math.isfinite(ms) or not 0 <= ms <= 253_402_300_799_999:
        raise InvalidRequest(f"{what}: time out of range", field=what)
    return round(ms * 1000.0)


def _number(value: Any, *, what: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        number = float(value)
    else:
        raise InvalidRequest(f"filter on {what}: {str(value)[:64]!r} is not a number",
                             field=what)
    if not math.isfinite(number):
        raise InvalidRequest(f"filter on {what}: the number must be finite", field=what)
    return number


def _boolean(value: Any, *, what: str) -> int:
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise InvalidRequest(f"filter on {what}: {str(value)[:64]!r} is not a boolean",
                         field=what)


def _string(value: Any, *, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise InvalidRequest(f"filter on {what}: value too long", field=what,
                                 limit=MAX_VALUE_CHARS)
        return text
    raise InvalidRequest(f"filter on {what}: expected a string, number or boolean value",
                         field=what)


def normalize_operator(operator: Any, *, what: str) -> str:
    name = operator.strip().lower() if isinstance(operator, str) else None
    name = ALIASES.get(name, name) if name is not None else None
    if name not in OPERATORS:
        raise InvalidRequest(
            f"unknown filter operator {str(operator)[:40]!r} on {what}; supported: "
            + ", ".join(sorted(OPERATORS)), field=what,
        )
    return name


def split_field(name: Any) -> tuple[str, tuple[str, ...]]:
    """``(column, path)`` of a filter/projection field; InvalidRequest if not allowed."""
    if not isinstance(name, str) or not FIELD_PATTERN.fullmatch(name):
        raise InvalidRequest(f"invalid field name {str(name)[:80]!r}", field=str(name)[:80])
    column, *path = name.split(".")
    known = STRING_COLUMNS | NUMBER_COLUMNS | TIME_COLUMNS | ARRAY_COLUMNS | set(JSON_COLUMNS)
    if column not in known:
        raise InvalidRequest(f"unknown field {column!r}", field=name)
    if path and column not in JSON_COLUMNS:
        raise InvalidRequest(f"field {column!r} has no nested keys", field=name)
    if len(path) > MAX_PATH_DEPTH:
        raise InvalidRequest(f"field {name!r} is nested too deeply", field=name)
    return column, tuple(path)


def attribute_path(raw: Any) -> str | None:
    """The ``column.key...`` path a nested filter reads, when the attribute arrays could
    answer it (:mod:`apiary.store._attributes`); None for anything else, malformed
    included (:func:`compile_filter` reports those)."""
    if not isinstance(raw, Mapping):
        return None
    name = raw.get("field")
    if not isinstance(name, str) or not FIELD_PATTERN.fullmatch(name):
        return None
    column, *path = name.split(".")
    if column not in ATTRIBUTE_COLUMNS or not path or len(path) > ATTRIBUTE_DEPTH:
        return None
    operator = raw.get("operator")
    operator = operator.strip().lower() if isinstance(operator, str) else None
    operator = ALIASES.get(operator, operator) if operator is not None else None
    if raw.get("type") == "datetime" or operator in ("after", "before"):
        return None  # a time reads the JSON type of the value, which the arrays do not keep
    return name


def compile_filter(raw: Any, params: Params,
                   indexed_paths: Container[str] | None = None) -> CompiledFilter:
    """One filter dict → a SQL condition over the ``events`` columns.

    A nested filter whose path is in ``indexed_paths`` (paths from :func:`attribute_path`
    that no stored row of the project holds as an opaque value) reads the attribute
    arrays instead of parsing the JSON column: the same answer for every row, without
    reading the JSON text."""
    if not isinstance(raw, Mapping):
        raise InvalidRequest("each filter must be an object with field, operator, value, type")
    name = raw.get("field")
    column, path = split_field(name)
    assert isinstance(name, str)
    operator = normalize_operator(raw.get("operator"), what=name)
    declared = raw.get("type") or "string"
    if declared not in TYPES:
        raise InvalidRequest(f"unknown filter type {str(declared)[:20]!r} on {name}; "
                             "supported: " + ", ".join(sorted(TYPES)), field=name)
    value = raw.get("value")
    if value is None and operator in ("is", "is not"):
        operator = "not exists" if operator == "is" else "exists"
    if isinstance(value, (list, dict)):
        raise InvalidRequest(f"filter on {name}: value must be a scalar", field=name)
    if path and indexed_paths is not None and name in indexed_paths \
            and attribute_path(raw) == name:
        sql = _nested(column, path, operator, declared, value, name, params, indexed=True)
    elif path:
        sql = _nested(column, path, operator, declared, value, name, params)
    elif column in JSON_COLUMNS:
        sql = _whole_json(column, operator, value, name, params)
    elif column in NUMBER_COLUMNS:
        sql = _number_column(column, operator, value, name, params)
    elif column in TIME_COLUMNS:
        sql = _time_column(column, operator, value, name, params)
    elif column in ARRAY_COLUMNS:
        sql = _array_column(column, operator, value, name, params)
    else:
        sql = _string_column(column, operator, declared, value, name, params)
    return CompiledFilter(f"({sql})", key_only=column in KEY_COLUMNS and not path)


def _unsupported(operator: str, name: str, kind: str) -> InvalidRequest:
    return InvalidRequest(f"operator {operator!r} does not apply to {kind} field {name}",
                          field=name)


def _ordered(expr: str, operator: str, bound: str, name: str, kind: str) -> str:
    """Comparisons on an ordered column (numbers, times)."""
    if operator == "is":
        return f"{expr} = {bound}"
    if operator == "is not":
        return f"{expr} != {bound}"
    if operator in _ORDERING:
        return f"{expr} {_ORDERING[operator]} {bound}"
    raise _unsupported(operator, name, kind)


def _number_column(column: str, operator: str, value: Any, name: str,
                   params: Params) -> str:
    if operator in ("contains", "not contains", "after", "before"):
        raise _unsupported(operator, name, "number")
    # Durations, token counts and costs are 0 when unknown: that is "absent".
    if operator == "exists":
        return f"{column} != 0"
    if operator == "not exists":
        return f"{column} = 0"
    bound = params.bind(_number(value, what=name), "Float64")
    return _ordered(column, operator, bound, name, "number")


def _time_column(column: str, operator: str, value: Any, name: str, params: Params) -> str:
    if operator in ("contains", "not contains"):
        raise _unsupported(operator, name, "datetime")
    if operator == "exists":
        return f"toUnixTimestamp64Micro({column}) > 0"
    if operator == "not exists":
        return f"toUnixTimestamp64Micro({column}) = 0"
    micros = params.bind(parse_time(value, what=name), "Int64")
    return _ordered(column, operator, f"fromUnixTimestamp64Micro({micros}, 'UTC')", name,
                    "datetime")


def _string_column(column: str, operator: str, declared: str, value: Any, name: str,
                   params: Params) -> str:
    expr = "ifNull(error, '')" if column == "error" else column
    if operator == "exists":
        return f"{expr} != ''"
    if operator == "not exists":
        return f"{expr} = ''"
    text = _string(value, what=name)
    if operator in ("contains", "not contains"):
        found = f"positionCaseInsensitiveUTF8({expr}, {params.bind(text, 'String')}) > 0"
        return found if operator == "contains" else f"NOT {found}"
    if operator in ("is", "is not"):
        return f"{expr} {'=' if operator == 'is' else '!='} {params.bind(text, 'String')}"
    if operator in ("after", "before"):
        raise _unsupported(operator, name, "string")
    if declared == "number" or _NUMBER.fullmatch(text):
        bound = params.bind(_number(value, what=name), "Float64")
        return f"ifNull(toFloat64OrNull({expr}) {_ORDERING[operator]} {bound}, 0)"
    return f"{expr} {_ORDERING[operator]} {params.bind(text, 'String')}"


def _array_column(column: str, operator: str, value: Any, name: str, params: Params) -> str:
    if operator == "exists":
        return f"notEmpty({column})"
    if operator == "not exists":
        return f"empty({column})"
    if operator in ("is", "contains"):
        return f"has({column}, {params.bind(_string(value, what=name), 'String')})"
    if operator in ("is not", "not contains"):
        return f"NOT has({column}, {params.bind(_string(value, what=name), 'String')})"
    raise _unsupported(operator, name, "array")


def _whole_json(column: str, operator: str, value: Any, name: str, params: Params) -> str:
    if operator == "exists":
        return f"{column} != '{{}}'"
    if operator == "not exists":
        return f"{column} = '{{}}'"
    if operator in ("contains", "not contains"):
        bound = params.bind(_string(value, what=name), "String")
        found = f"positionCaseInsensitiveUTF8({column}, {bound}) > 0"
        return found if operator == "contains" else f"NOT {found}"
    raise InvalidRequest(
        f"operator {operator!r} needs a nested field such as {column}.key", field=name,
    )


def _nested(column: str, path: tuple[str, ...], operator: str, declared: str, value: Any,
            name: str, params: Params, *, indexed: bool = False) -> str:
    bound_path = ""
    if indexed:
        # The attribute arrays hold every scalar at this path (no row holds it opaque):
        # present = a scalar is stored, its text = what the JSON branch would compute.
        bound_path = params.bind(name, "String")
        keys = ""
        present = f"has(attr_keys, {bound_path})"
        text = f"attr_values[indexOf(attr_keys, {bound_path})]"
    else:
        keys = ", ".join(params.bind(key, "String") for key in path)
        raw = f"JSONExtractRaw({column}, {keys})"
        present = f"{raw} NOT IN ('', 'null')"
        # The value as text: strings unescaped, anything else as its raw JSON.
        text = f"if(startsWith({raw}, '\"'), JSONExtractString({raw}), {raw})"
    if operator == "exists":
        return present
    if operator == "not exists":
        return f"NOT ({present})"
    negate = operator in ("is not", "not contains")
    compare = "=" if operator in ("is", "is not") else _ORDERING.get(operator, "")
    if operator in ("contains", "not contains"):
        needle = params.bind(_string(value, what=name), "String")
        cond = f"positionCaseInsensitiveUTF8({text}, {needle}) > 0"
    elif declared == "boolean" and operator in ("is", "is not"):
        truth = _boolean(value, what=name)
        cond = f"lower({text}) IN {('true', '1') if truth else ('false', '0')}"
    elif declared == "datetime" or operator in ("after", "before"):
        # JSON numbers are epoch milliseconds; strings are parsed as dates.
        when = (f"multiIf(JSONType({column}, {keys}) IN ('Int64', 'UInt64', 'Double'), "
                f"fromUnixTimestamp64Micro(toInt64(JSONExtractFloat({column}, {keys}) * 1000),"
                f" 'UTC'), parseDateTime64BestEffortOrNull(JSONExtractString({column}, "
                f"{keys}), 6, 'UTC'))")
        micros = params.bind(parse_time(value, what=name), "Int64")
        cond = f"{when} {compare} fromUnixTimestamp64Micro({micros}, 'UTC')"
    elif declared == "number" or (
        operator in _ORDERING and _NUMBER.fullmatch(_string(value, what=name))
    ):
        bound = params.bind(_number(value, what=name), "Float64")
        cond = f"toFloat64OrNull({text}) {compare} {bound}"
    elif indexed and compare == "=":
        # The pair's hash (migration 0014): 8 bytes a pair to compare, not the strings.
        # A row holds a path once, so the pair is there exactly when the path is present
        # with this text (up to a 64-bit collision within the project).
        bound = params.bind(_string(value, what=name), "String")
        pair = f"has(attr_hashes, xxHash64({bound_path}, {bound}))"
        return f"NOT {pair}" if negate else pair
    else:
        cond = f"{text} {compare} {params.bind(_string(value, what=name), 'String')}"
    # A missing value never satisfies the positive form, always the negated one.
    if negate:
        return f"NOT ifNull({present} AND {cond}, 0)"
    return f"ifNull({present} AND {cond}, 0)"
