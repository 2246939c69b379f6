"""Schema and detail tracking, derived by whoever inserts events (issue 17).

Which field paths the project's JSON columns hold (``event_schemas``) and which event
types and names exist (``project_event_details``) used to be computed by ClickHouse
materialized views on every insert into ``events``, walking each row's JSON: more than
half of ClickHouse's CPU per stored row. Migration 0013 dropped those views; the caller of
:meth:`~apiary.store.EventStore.insert_arrow` (a writer, in its own process) derives the
same rows from the Arrow table it inserts, aggregated per insert, with
:func:`track_fields`, and the store inserts them beside the events.

The rows are those the views inserted, merged per insert instead of per block:

- ``event_schemas``: per (project, event type, event name, path, value type), how many
  values were seen (``occurrences``) and the least and greatest ``start_time`` of their
  events. Paths are ``<column>.<key>[.<key>...]``: nested objects are descended into up
  to 5 levels (a non-empty object at level 5 is reported as ``object``), arrays are not;
  an empty object is an ``object`` value; a column holding ``{}`` contributes nothing.
  Value types are the JSON types: string, number, boolean, array, object, null.
- ``project_event_details``: per (project, event type, event name), the distinct event
  ids (the store folds them into the table's ``uniq`` state through a ``Null`` table and
  a view over a few rows, migration 0013) and the least and greatest ``start_time``.

:func:`track_fields` parses each distinct JSON text of an insert once, and aggregates
per shape (the leaves of a text) rather than per path and event: ``bench/tracking``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from apiary.store._rows import JSON_COLUMNS

#: Levels of nested objects a path descends into (as the dropped view did).
MAX_DEPTH = 5

_TS = pa.timestamp("us", tz="UTC")

#: Arrow schema of the ``event_schemas`` rows of one insert.
SCHEMAS_ARROW_SCHEMA = pa.schema([
    pa.field("project_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_name", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("value_type", pa.string(), nullable=False),
    pa.field("occurrences", pa.uint64(), nullable=False),
    pa.field("first_seen", _TS, nullable=False),
    pa.field("last_seen", _TS, nullable=False),
])

#: Arrow schema of the ``project_event_details_input`` rows of one insert.
DETAILS_ARROW_SCHEMA = pa.schema([
    pa.field("project_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_name", pa.string(), nullable=False),
    pa.field("event_ids", pa.list_(pa.string()), nullable=False),
    pa.field("first_seen", _TS, nullable=False),
    pa.field("last_seen", _TS, nullable=False),
])

_GROUP = ("project_id", "event_type", "event_name")

_VALUE_TYPES: dict[type, str] = {
    str: "string", int: "number", float: "number", bool: "boolean", list: "array",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class FieldTracking:
    """The ``event_schemas`` and ``project_event_details`` rows of one insert of events
    (:data:`SCHEMAS_ARROW_SCHEMA`, :data:`DETAILS_ARROW_SCHEMA`); picklable."""

    schemas: pa.Table
    details: pa.Table


def leaves(obj: dict[str, Any], prefix: str, out: list[tuple[str, str]],
           depth: int = 1) -> None:
    """Append to ``out`` the ``(path, value type)`` of every leaf of ``obj``, paths
    starting with ``prefix`` (module docstring: the dropped view's walk)."""
    types = _VALUE_TYPES
    for key, value in obj.items():
        path = prefix + key
        if type(value) is dict:
            if value and depth < MAX_DEPTH:
                leaves(value, path + ".", out, depth + 1)
            else:
                out.append((path, "object"))
        else:
            out.append((path, types.get(type(value), "number")))


def track_fields(table: pa.Table) -> FieldTracking:
    """The tracking rows of an insert of ``table`` (``events`` rows, as built by
    :func:`~apiary.store.events_to_arrow`). A JSON text that does not parse as an object
    contributes no path (as the view read it: no keys)."""
    if table.num_rows == 0:
        return FieldTracking(SCHEMAS_ARROW_SCHEMA.empty_table(),
                             DETAILS_ARROW_SCHEMA.empty_table())
    keys = table.select(list(_GROUP))
    start = table.column("start_time").cast(_TS)
    details = (keys.append_column("event_id", table.column("event_id"))
               .append_column("start_time", start)
               .group_by(list(_GROUP), use_threads=False)
               .aggregate([("event_id", "distinct"), ("start_time", "min"),
                           ("start_time", "max")]))
    details = pa.table([details.column(name) for name in _GROUP] + [
        details.column("event_id_distinct"), details.column("start_time_min"),
        details.column("start_time_max")], schema=DETAILS_ARROW_SCHEMA)

    # Texts are merged per (project, type, name) group first, in numpy (a config repeated
    # on every span is one entry), then per shape: the (path, value type) leaves of a text,
    # walked once per distinct text and shared by every text of the same shape (metadata
    # whose values differ but whose keys and types do not).
    group_of: dict[tuple[str, str, str], int] = {}
    groups = np.fromiter((group_of.setdefault(key, len(group_of)) for key in zip(
        keys.column(0).to_pylist(), keys.column(1).to_pylist(), keys.column(2).to_pylist(),
        strict=True)), dtype=np.int64, count=table.num_rows)
    times = start.cast(pa.int64()).to_numpy()
    shapes: dict[tuple[tuple[str, str], ...], int] = {}
    per_shape: dict[tuple[int, int], list[int]] = {}
    loads = orjson.loads
    for column in JSON_COLUMNS:
        prefix = column + "."
        encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
        texts = encoded.dictionary
        # '{}' (or any JSON text of 2 characters or less: none has a key) adds nothing.
        useful = pc.greater(pc.binary_length(texts), 2).to_numpy(zero_copy_only=False)
        if not useful.any():
            continue
        index = encoded.indices.to_numpy()
        kept = np.flatnonzero(useful[index])
        combined = groups[kept] * len(texts) + index[kept]
        order = np.argsort(combined, kind="stable")
        combined = combined[order]
        stamps = times[kept][order]
        starts = np.flatnonzero(np.r_[True, combined[1:] != combined[:-1]])
        counts = np.diff(np.r_[starts, len(combined)])
        firsts = np.minimum.reduceat(stamps, starts)
        lasts = np.maximum.reduceat(stamps, starts)
        shape_of: dict[int, int] = {}
        raws = texts.to_pylist()
        for key, count, first, last in zip(combined[starts].tolist(), counts.tolist(),
                                           firsts.tolist(), lasts.tolist(), strict=True):
            group, text = divmod(key, len(texts))
            shape = shape_of.get(text)
            if shape is None:
                walked: list[tuple[str, str]] = []
                try:
                    obj = loads(raws[text])
                except orjson.JSONDecodeError:
                    obj = None
                if type(obj) is dict:
                    leaves(obj, prefix, walked)
                shape = shape_of[text] = shapes.setdefault(tuple(walked), len(shapes))
            merged = per_shape.get((group, shape))
            if merged is None:
                per_shape[(group, shape)] = [count, first, last]
            else:
                merged[0] += count
                if first < merged[1]:
                    merged[1] = first
                if last > merged[2]:
                    merged[2] = last

    # (group, (path, value type)) -> [occurrences, first, last]
    found: dict[tuple[int, tuple[str, str]], list[int]] = {}
    leaves_of = list(shapes)
    for (group, shape), (count, first, last) in per_shape.items():
        for leaf in leaves_of[shape]:
            entry = found.get((group, leaf))
            if entry is None:
                found[(group, leaf)] = [count, first, last]
            else:
                entry[0] += count
                if first < entry[1]:
                    entry[1] = first
                if last > entry[2]:
                    entry[2] = last
    names = list(group_of)
    rows: list[list[Any]] = [[], [], [], [], [], [], [], []]
    for (group, (path, value_type)), (count, first, last) in found.items():
        project, etype, name = names[group]
        rows[0].append(project)
        rows[1].append(etype)
        rows[2].append(name)
        rows[3].append(path)
        rows[4].append(value_type)
        rows[5].append(count)
        rows[6].append(first)
        rows[7].append(last)
    schemas = pa.table(
        [pa.array(values, field.type) for values, field in zip(rows, SCHEMAS_ARROW_SCHEMA,
                                                                strict=True)],
        schema=SCHEMAS_ARROW_SCHEMA)
    return FieldTracking(schemas, details)


__all__ = ["DETAILS_ARROW_SCHEMA", "MAX_DEPTH", "SCHEMAS_ARROW_SCHEMA", "FieldTracking",
           "leaves", "track_fields"]
