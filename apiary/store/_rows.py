"""Events ⇄ rows of the ``events`` table.

:func:`events_to_arrow` is on the ingest hot path (tens of thousands of events a second
per writer): it walks the events once, appending to one Python list per column, and lets
pyarrow convert each list in C. Object fields are serialized with orjson as they are
(keys unsorted); times become DateTime64(6) microsecond timestamps.

:func:`row_to_event` is the inverse for the read APIs: it gives the HoneyHive event
shape (every :class:`~apiary.event.Event` field plus the tenancy ids), with the JSON
columns parsed back into objects, times as epoch milliseconds and ``''`` parent ids as
``None``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, cast

import orjson
import pyarrow as pa

from apiary.event import Event, Tenant

_TS = pa.timestamp("us", tz="UTC")

#: Arrow schema of an ``events`` insert: every column of the table except ``inserted_at``
#: (filled by ClickHouse), in table order. JSON text columns are ``binary`` (ClickHouse
#: stores both as String) so orjson's UTF-8 bytes go in without a decode/re-validate.
EVENTS_ARROW_SCHEMA = pa.schema([
    pa.field("org_id", pa.string(), nullable=False),
    pa.field("workspace_id", pa.string(), nullable=False),
    pa.field("project_id", pa.string(), nullable=False),
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("parent_id", pa.string(), nullable=False),
    pa.field("children_ids", pa.list_(pa.string()), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_name", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("start_time", _TS, nullable=False),
    pa.field("end_time", _TS, nullable=False),
    pa.field("duration", pa.float64(), nullable=False),
    pa.field("error", pa.string(), nullable=True),
    pa.field("config", pa.binary(), nullable=False),
    pa.field("inputs", pa.binary(), nullable=False),
    pa.field("outputs", pa.binary(), nullable=False),
    pa.field("metadata", pa.binary(), nullable=False),
    pa.field("metrics", pa.binary(), nullable=False),
    pa.field("feedback", pa.binary(), nullable=False),
    pa.field("user_properties", pa.binary(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("provider", pa.string(), nullable=False),
    pa.field("prompt_tokens", pa.uint64(), nullable=False),
    pa.field("completion_tokens", pa.uint64(), nullable=False),
    pa.field("total_tokens", pa.uint64(), nullable=False),
    pa.field("cost", pa.float64(), nullable=False),
    pa.field("trace_id", pa.string(), nullable=False),
    pa.field("span_id", pa.string(), nullable=False),
    pa.field("version", pa.uint64(), nullable=False),
])

#: Columns whose text is a JSON object.
JSON_COLUMNS = ("config", "inputs", "outputs", "metadata", "metrics", "feedback",
                "user_properties")
#: The ids every API event carries besides the Event fields.
TENANT_COLUMNS = ("org_id", "workspace_id", "project_id")
#: Columns derived from the event by the writer (not Event fields).
COMPUTED_COLUMNS = ("model", "provider", "prompt_tokens", "completion_tokens",
                    "total_tokens", "cost")

_EMPTY = b"{}"
_MAX_U64 = 2**64 - 1
_MAX_US = 253402300799_999999  # 9999-12-31T23:59:59.999999, DateTime64(6)'s upper bound
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ComputedFields(TypedDict, total=False):
    """Values for the derived columns that override what the event itself says."""

    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


def _count(value: Any) -> int:
    """A token count from whatever the metadata holds; anything unusable is 0."""
    if type(value) is int:
        return value if 0 <= value <= _MAX_U64 else 0
    if type(value) is float:
        return int(value) if 0 <= value < 1.8e19 else 0  # NaN fails both comparisons
    if isinstance(value, str):
        try:
            return _count(float(value))
        except ValueError:
            return 0
    return 0


def _amount(value: Any) -> float:
    """A cost from whatever the metadata holds; non-numeric or non-finite is 0.0."""
    if type(value) is float:
        return value if math.isfinite(value) else 0.0
    if type(value) is int:
        return float(value)
    if isinstance(value, str):
        try:
            return _amount(float(value))
        except ValueError:
            return 0.0
    return 0.0


def _micros(ms: Any) -> int:
    """Epoch milliseconds (float) → epoch microseconds, clamped to DateTime64(6)."""
    try:
        us = int(ms * 1000.0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return us if 0 <= us <= _MAX_US else 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any, field: str) -> dict[str, Any]:
    """``value`` if it is a JSON object. The compiled module refuses anything else with a
    TypeError (the event's declared type); from source it must refuse the same, or one span
    the compiled writer dead-letters would be stored as a string by a writer without it."""
    if type(value) is not dict:
        raise TypeError(f"event field {field!r} is {type(value).__name__}, not an object")
    return value


def events_to_arrow(
    tenant: Tenant,
    version: int,
    events: Sequence[Event],
    computed: Sequence[ComputedFields | None] | None = None,
) -> pa.Table:
    """The ``events`` insert for ``events`` of ``tenant``, all at ``version``.

    ``model``/``provider`` come from ``config.model``/``config.provider`` and the token
    counts and ``cost`` from ``metadata`` (the writer's enrichment fills them); values of
    the wrong type read as ``''``/0. ``computed[i]``, when given, overrides those derived
    values for ``events[i]``. Times outside DateTime64(6)'s range read as 0. Raises
    ``orjson.JSONEncodeError`` for an object field that JSON cannot represent (e.g. an
    integer beyond 64 bits).
    """
    n = len(events)
    if computed is not None and len(computed) != n:
        raise ValueError("computed must have one entry per event")
    dumps = orjson.dumps
    session_id: list[str] = []
    event_id: list[str] = []
    parent_id: list[str] = []
    children: list[list[str]] = []
    event_type: list[str] = []
    event_name: list[str] = []
    source: list[str] = []
    start: list[int] = []
    end: list[int] = []
    duration: list[float] = []
    error: list[str | None] = []
    objects: list[list[bytes]] = [[], [], [], [], [], [], []]
    config_col, inputs_col, outputs_col, metadata_col, metrics_col, feedback_col, \
        user_col = objects
    model: list[str] = []
    provider: list[str] = []
    prompt: list[int] = []
    completion: list[int] = []
    total: list[int] = []
    cost: list[float] = []
    trace_id: list[str] = []
    span_id: list[str] = []

    # Bound appends: this loop runs ~20,000 times a second per writer.
    session_id_add = session_id.append
    event_id_add = event_id.append
    parent_id_add = parent_id.append
    children_add = children.append
    event_type_add = event_type.append
    event_name_add = event_name.append
    source_add = source.append
    start_add = start.append
    end_add = end.append
    duration_add = duration.append
    error_add = error.append
    config_col_add = config_col.append
    inputs_col_add = inputs_col.append
    outputs_col_add = outputs_col.append
    metadata_col_add = metadata_col.append
    metrics_col_add = metrics_col.append
    feedback_col_add = feedback_col.append
    user_col_add = user_col.append
    model_add = model.append
    provider_add = provider.append
    prompt_add = prompt.append
    completion_add = completion.append
    total_add = total.append
    cost_add = cost.append
    trace_id_add = trace_id.append
    span_id_add = span_id.append
    for i, ev in enumerate(events):
        session_id_add(ev["session_id"] or "")
        event_id_add(ev["event_id"])
        parent_id_add(ev["parent_id"] or "")
        children_add(ev["children_ids"] or [])
        event_type_add(ev["event_type"])
        event_name_add(ev["event_name"] or "")
        source_add(ev["source"] or "")
        start_add(_micros(ev["start_time"]))
        end_add(_micros(ev["end_time"]))
        d = ev["duration"]
        duration_add(float(d) if type(d) in (float, int) else 0.0)
        err = ev["error"]
        error_add(None if err is None else str(err))
        config = _object(ev["config"], "config")
        metadata = _object(ev["metadata"], "metadata")
        config_col_add(dumps(config) if config else _EMPTY)
        inputs = _object(ev["inputs"], "inputs")
        inputs_col_add(dumps(inputs) if inputs else _EMPTY)
        outputs = _object(ev["outputs"], "outputs")
        outputs_col_add(dumps(outputs) if outputs else _EMPTY)
        metadata_col_add(dumps(metadata) if metadata else _EMPTY)
        metrics = _object(ev["metrics"], "metrics")
        metrics_col_add(dumps(metrics) if metrics else _EMPTY)
        feedback = _object(ev["feedback"], "feedback")
        feedback_col_add(dumps(feedback) if feedback else _EMPTY)
        user = _object(ev["user_properties"], "user_properties")
        user_col_add(dumps(user) if user else _EMPTY)
        if config:
            model_add(_text(config.get("model")))
            provider_add(_text(config.get("provider")))
        else:
            model_add("")
            provider_add("")
        if metadata:
            prompt_add(_count(metadata.get("prompt_tokens")))
            completion_add(_count(metadata.get("completion_tokens")))
            total_add(_count(metadata.get("total_tokens")))
            cost_add(_amount(metadata.get("cost")))
        else:
            prompt_add(0)
            completion_add(0)
            total_add(0)
            cost_add(0.0)
        trace_id_add(ev["trace_id"] or "")
        span_id_add(ev["span_id"] or "")
        if computed is not None:
            override = computed[i]
            if override:
                _apply_override(override, i, model, provider, prompt, completion, total,
                                cost)

    def repeat(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), n)

    columns = [
        repeat(tenant["org_id"]), repeat(tenant["workspace_id"]),
        repeat(tenant["project_id"]),
        pa.array(session_id, pa.string()), pa.array(event_id, pa.string()),
        pa.array(parent_id, pa.string()), pa.array(children, pa.list_(pa.string())),
        pa.array(event_type, pa.string()), pa.array(event_name, pa.string()),
        pa.array(source, pa.string()),
        pa.array(start, _TS), pa.array(end, _TS),
        pa.array(duration, pa.float64()), pa.array(error, pa.string()),
        *(pa.array(col, pa.binary()) for col in objects),
        pa.array(model, pa.string()), pa.array(provider, pa.string()),
        pa.array(prompt, pa.uint64()), pa.array(completion, pa.uint64()),
        pa.array(total, pa.uint64()), pa.array(cost, pa.float64()),
        pa.array(trace_id, pa.string()), pa.array(span_id, pa.string()),
        pa.array([version] * n, pa.uint64()),
    ]
    return pa.Table.from_arrays(columns, schema=EVENTS_ARROW_SCHEMA)


def arrow_to_events(table: pa.Table) -> list[Event]:
    """The Event dicts of rows built by :func:`events_to_arrow` (its inverse for the Event
    fields; the tenant, version and derived columns are left out)."""
    columns = {
        name: table.column(name).to_pylist()
        for name in ("session_id", "event_id", "parent_id", "children_ids", "event_type",
                     "event_name", "source", "duration", "error", "trace_id", "span_id",
                     *JSON_COLUMNS)
    }
    starts = table.column("start_time").cast(pa.int64()).to_pylist()
    ends = table.column("end_time").cast(pa.int64()).to_pylist()
    loads = orjson.loads
    events: list[Event] = []
    for i in range(table.num_rows):
        event: dict[str, Any] = {name: values[i] for name, values in columns.items()}
        for name in JSON_COLUMNS:
            event[name] = loads(event[name]) if event[name] else {}
        event["parent_id"] = event["parent_id"] or None
        event["children_ids"] = list(event["children_ids"] or [])
        event["start_time"] = starts[i] / 1000.0
        event["end_time"] = ends[i] / 1000.0
        events.append(cast(Event, event))
    return events


def _apply_override(override: ComputedFields, i: int, model: list[str],
                    provider: list[str], prompt: list[int], completion: list[int],
                    total: list[int], cost: list[float]) -> None:
    if "model" in override:
        model[i] = _text(override["model"])
    if "provider" in override:
        provider[i] = _text(override["provider"])
    if "prompt_tokens" in override:
        prompt[i] = _count(override["prompt_tokens"])
    if "completion_tokens" in override:
        completion[i] = _count(override["completion_tokens"])
    if "total_tokens" in override:
        total[i] = _count(override["total_tokens"])
    if "cost" in override:
        cost[i] = _amount(override["cost"])


def epoch_ms(value: Any) -> float:
    """A DateTime64 value as read back (naive-UTC or aware datetime) → epoch ms."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = moment - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return micros / 1000.0
    if isinstance(value, (int, float)):
        return float(value)
    return 0.0


def _json_object(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        if value in ("{}", b"{}", ""):
            return {}
        return orjson.loads(value)
    return value if value is not None else {}


#: The API event's fields, in the order the API returns them.
API_FIELDS = (
    "event_id", "session_id", "parent_id", "children_ids", "event_type", "event_name",
    "source", "org_id", "workspace_id", "project_id", "config", "inputs", "outputs",
    "error", "start_time", "end_time", "duration", "metadata", "metrics", "feedback",
    "user_properties", "trace_id", "span_id",
)
_TIME_FIELDS = frozenset({"start_time", "end_time"})
_JSON_FIELDS = frozenset(JSON_COLUMNS)


def row_to_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API shape of an ``events`` row (or of the columns of it that were selected).

    Only the columns present in ``row`` appear in the result: a full row gives every
    Event field plus ``org_id``/``workspace_id``/``project_id``; derived columns
    (``model``, ``cost``, ...) are passed through when selected. JSON columns are parsed,
    times are epoch milliseconds (float, microsecond precision), ``parent_id`` ``''``
    is ``None``.
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _JSON_FIELDS:
            out[key] = _json_object(value)
        elif key in _TIME_FIELDS:
            out[key] = epoch_ms(value)
        elif key == "parent_id":
            out[key] = value or None
        elif key == "children_ids":
            out[key] = list(value) if value is not None else []
        elif key == "inserted_at" or key == "version":
            continue
        else:
            out[key] = value
    return out


#: Columns whose values identify the rows of an ``events`` insert for its token.
_TOKEN_COLUMNS = ("project_id", "event_id", "version")


def insert_dedup_token(message_ids: Sequence[str], table: pa.Table) -> str:
    """The ``insert_deduplication_token`` of an insert of ``table`` (``events`` rows).

    Derived from the ids of the messages whose rows the insert carries, in order (a split
    batch's slice has its own list, hence its own token), and from the rows' project,
    event id and version: repeating the same insert gives the same token, and two inserts
    that could store different events never share one (also when a stream that was
    recreated reuses sequence numbers).
    """
    digest = hashlib.blake2b(digest_size=20, person=b"apiary-insert-v1")
    for message_id in message_ids:
        digest.update(message_id.encode())
        digest.update(b"\x00")
    digest.update(b"\x01")
    columns = [c for c in _TOKEN_COLUMNS if c in table.column_names]
    sink = pa.BufferOutputStream()
    identity = table.select(columns)
    with pa.ipc.new_stream(sink, identity.schema) as writer:
        writer.write_table(identity)
    digest.update(memoryview(sink.getvalue()))
    return digest.hexdigest()
