"""The attribute arrays of an ``events`` row: nested values filterable without their JSON.

Nested export filters (``metadata.app.tenant is tenant-7``) used to parse the JSON text of
every row. Each row now also holds, for the scalar values of :data:`ATTRIBUTE_COLUMNS` up
to :data:`ATTRIBUTE_DEPTH` keys deep (migration 0011):

- ``attr_keys``: the value's field name, ``metadata.app.tenant``;
- ``attr_values``: the value as the nested filter reads it (strings as they are, numbers
  as ClickHouse writes them back, booleans ``true``/``false``);
- ``attr_opaque``: the field names the arrays do not answer: objects, arrays, strings over
  :data:`MAX_SCALAR_CHARS` characters, objects at the depth limit, and any value of a
  type JSON has no scalar for. A filter on a name some row of the project holds opaque
  reads the JSON text as before (:mod:`apiary.store._filters`).

Null values appear nowhere (the filter reads JSON null as absent), and keys a filter field
cannot name (outside :data:`KEY_PATTERN`) are skipped, with everything under them.

:func:`events_to_arrow` builds them with the rest of the row (the ingestion replica, the
writer), so ClickHouse only stores them: computing them on insert in SQL cost ~10 us a
row. Migration 0011 computes the same arrays in SQL for the rows it moves, with the JSON
functions the filter uses (``tests/store/test_events_layout_migration.py`` checks both
agree); :func:`with_attributes` adds them to a table encoded before it (a message still in
the stream). ``tests/store/test_attribute_filters.py`` checks that the arrays answer
every filter as the JSON does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from apiary.event import Event, Tenant
from apiary.store import _rows
from apiary.store._rows import ComputedFields

#: JSON columns with attribute arrays; ``inputs``/``outputs`` (prompts, completions) are
#: searched with ``contains``, which their JSON text answers as well as a copy would.
ATTRIBUTE_COLUMNS = ("config", "metadata", "metrics", "feedback", "user_properties")
ATTRIBUTE_DEPTH = 3
MAX_SCALAR_CHARS = 256
#: A key a filter field can name (one segment of ``apiary.store._filters.FIELD_PATTERN``).
KEY_PATTERN = re.compile(r"[A-Za-z0-9_\-:@$#]+")

_LIST = pa.list_(pa.string())
ATTRIBUTE_FIELDS = (
    pa.field("attr_keys", _LIST, nullable=False),
    pa.field("attr_values", _LIST, nullable=False),
    pa.field("attr_opaque", _LIST, nullable=False),
)
#: Arrow schema of an ``events`` insert: :data:`apiary.store._rows.EVENTS_ARROW_SCHEMA`
#: and the attribute arrays.
EVENTS_ARROW_SCHEMA = pa.schema([*_rows.EVENTS_ARROW_SCHEMA, *ATTRIBUTE_FIELDS])

_PREFIXES = tuple(f"{column}." for column in ATTRIBUTE_COLUMNS)
_keys_seen: dict[str, bool] = {}


def float_text(x: float) -> str:
    """A double as ClickHouse writes it back: shortest round-trip digits, in decimal
    notation for 1e-6 <= |x| < 1e21 and as ``<digits>e<exp>`` otherwise (JavaScript's
    rules without the ``+``)."""
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    text = repr(x)
    mantissa, _, exponent = text.partition("e")
    if 1e-6 <= abs(x) < 1e21:
        return text if not exponent else format(Decimal(text), "f")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def _nameable(key: str) -> bool:
    known = _keys_seen.get(key)
    if known is None:
        known = KEY_PATTERN.fullmatch(key) is not None
        if len(_keys_seen) < 65_536:  # keys repeat; the cache stays bounded
            _keys_seen[key] = known
    return known


def _walk(prefix: str, obj: dict[str, Any], depth: int, keys: list[str], values: list[str],
          opaque: list[str]) -> None:
    for key, value in obj.items():
        if not _nameable(key):
            continue
        kind = type(value)
        if kind is str:
            if len(value) <= MAX_SCALAR_CHARS:
                keys.append(prefix + key)
                values.append(value)
            else:
                opaque.append(prefix + key)
        elif kind is bool:
            keys.append(prefix + key)
            values.append("true" if value else "false")
        elif kind is int:
            keys.append(prefix + key)
            values.append(str(value))
        elif kind is float:
            if math.isfinite(value):  # NaN and infinities are written as JSON null
                keys.append(prefix + key)
                values.append(float_text(value))
        elif value is None:
            continue
        elif kind is dict and value and depth < ATTRIBUTE_DEPTH:
            opaque.append(prefix + key)
            _walk(f"{prefix}{key}.", value, depth + 1, keys, values, opaque)
        else:  # an object at the depth limit, an array, or no JSON scalar at all
            opaque.append(prefix + key)


def attributes(event: Event) -> tuple[list[str], list[str], list[str]]:
    """``(attr_keys, attr_values, attr_opaque)`` of one event."""
    keys: list[str] = []
    values: list[str] = []
    opaque: list[str] = []
    for column, prefix in zip(ATTRIBUTE_COLUMNS, _PREFIXES, strict=True):
        obj = event.get(column)
        if obj and isinstance(obj, dict):
            _walk(prefix, obj, 1, keys, values, opaque)
    return keys, values, opaque


def events_to_arrow(
    tenant: Tenant,
    version: int,
    events: Sequence[Event],
    computed: Sequence[ComputedFields | None] | None = None,
) -> pa.Table:
    """The ``events`` insert for ``events`` of ``tenant``, all at ``version``: the row of
    :func:`apiary.store._rows.events_to_arrow` (same arguments, same guarantees) and its
    attribute arrays, in :data:`EVENTS_ARROW_SCHEMA`."""
    table = _rows.events_to_arrow(tenant, version, events, computed)
    keys: list[list[str]] = []
    values: list[list[str]] = []
    opaque: list[list[str]] = []
    for event in events:
        k, v, o = attributes(event)
        keys.append(k)
        values.append(v)
        opaque.append(o)
    for field, column in zip(ATTRIBUTE_FIELDS, (keys, values, opaque), strict=True):
        table = table.append_column(field, pa.array(column, _LIST))
    return table


def with_attributes(table: pa.Table) -> pa.Table:
    """``table`` (an ``events`` insert) with the attribute arrays, computed from its JSON
    columns when it has none: a table encoded before migration 0011. Tables that have
    them are returned as they are."""
    if all(name in table.column_names for name in (f.name for f in ATTRIBUTE_FIELDS)):
        return table
    keys: list[list[str]] = []
    values: list[list[str]] = []
    opaque: list[list[str]] = []
    for event in _rows.arrow_to_events(table):
        k, v, o = attributes(event)
        keys.append(k)
        values.append(v)
        opaque.append(o)
    for field, column in zip(ATTRIBUTE_FIELDS, (keys, values, opaque), strict=True):
        if field.name not in table.column_names:
            table = table.append_column(field, pa.array(column, _LIST))
    return table
