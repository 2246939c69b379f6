"""``GET /v1/events/schema``: which fields the project's events carry.

Read from the rollups the writers keep up to date (``event_schemas``: field paths of the
JSON columns with their value types; ``project_event_details``: event types and names),
so it costs nothing per event. ``dateRange`` keeps the fields seen in that window.
``evaluation_id`` (a run) is answered from that run's events instead, which the rollups
do not separate (up to :data:`RUN_EVENTS_LIMIT` events are read).

The answer has HoneyHive's shape (``fields: [{name, event_type}]``, ``datasets``,
``mappings: {field: [{field_name, event_type}]}``) plus ``details`` (per event name:
value type, occurrences, first and last seen) and ``events`` (per event type and name:
count, first and last seen).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.events.schemas import EventSchemaResponse
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.errors import InvalidRequest
from apiary.store import JSON_COLUMNS, epoch_ms, parse_time
from apiary.web.errors import ErrorResponse

router = APIRouter(tags=["events"])

RUN_EVENTS_LIMIT = 10_000
MAX_DEPTH = 5  # as apiary.store.track_fields: objects deeper than this are one 'object' field
_RELATIVE = re.compile(r"^\s*(\d{1,6})\s*([hdwm])\s*$")
_UNIT_MS = {"h": 3_600_000.0, "d": 86_400_000.0, "w": 604_800_000.0, "m": 2_592_000_000.0}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid dateRange"},
    401: {"model": ErrorResponse, "description": "Missing or unknown credentials"},
    403: {"model": ErrorResponse, "description": "Credentials may not read events"},
    503: {"model": ErrorResponse, "description": "Store unavailable; retry"},
}


def parse_date_range(raw: str | None, *, now: datetime | None = None
                     ) -> tuple[float | None, float | None]:
    """``(from_ms, to_ms)`` of a ``dateRange`` query value: a JSON object with ``$gte`` /
    ``$lte`` (ISO 8601 or epoch ms), or a relative window such as ``7d`` (h, d, w, m)."""
    if raw is None or not raw.strip():
        return None, None
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        end = (now or datetime.now(UTC)).timestamp() * 1000.0
        return end - int(relative.group(1)) * _UNIT_MS[relative.group(2)], None
    try:
        bounds = orjson.loads(raw)
    except orjson.JSONDecodeError:
        bounds = None
    if not isinstance(bounds, dict) or not set(bounds) <= {"$gte", "$lte"}:
        raise InvalidRequest("dateRange must be a JSON object with $gte and/or $lte, or a "
                             "window such as 7d", field="dateRange")
    low, high = bounds.get("$gte"), bounds.get("$lte")
    return (parse_time(low, what="dateRange.$gte") / 1000.0 if low is not None else None,
            parse_time(high, what="dateRange.$lte") / 1000.0 if high is not None else None)


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def field_paths(event: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """``(path, value type)`` of every leaf of an event's JSON columns, as the view walks
    them (non-empty objects descended into, up to :data:`MAX_DEPTH` keys deep)."""
    stack: list[tuple[str, Any, int]] = [
        (column, event.get(column), 0) for column in JSON_COLUMNS]
    while stack:
        path, value, depth = stack.pop()
        if depth == 0 or (isinstance(value, dict) and value and depth < MAX_DEPTH):
            if isinstance(value, dict):
                stack.extend((f"{path}.{k}", v, depth + 1) for k, v in value.items())
            continue
        yield path, _value_type(value)


async def _run_rows(context: DataPlaneContext, project_id: str, run_id: str,
                    low: float | None, high: float | None
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Schema and event-name rows, computed from the events of one run."""
    query: dict[str, Any] = {
        "filters": [{"field": "metadata.run_id", "operator": "is", "value": run_id,
                     "type": "string"}],
        "limit": RUN_EVENTS_LIMIT,
        "projections": ["event_type", "event_name", "start_time", *JSON_COLUMNS],
    }
    bounds = {"$gte": low, "$lte": high}
    if low is not None or high is not None:
        query["dateRange"] = {k: v for k, v in bounds.items() if v is not None}
    result = await context.store.export(project_id, query)
    fields: dict[tuple[str, str, str, str], list[float]] = {}
    names: dict[tuple[str, str], list[float]] = {}
    for event in result["events"]:
        when = float(event.get("start_time") or 0.0)
        kind, name = str(event.get("event_type") or ""), str(event.get("event_name") or "")
        names.setdefault((kind, name), []).append(when)
        for path, value_type in field_paths(event):
            fields.setdefault((kind, name, path, value_type), []).append(when)
    schema = [{"event_type": k[0], "event_name": k[1], "path": k[2], "value_type": k[3],
               "occurrences": len(t), "first_seen": min(t), "last_seen": max(t)}
              for k, t in sorted(fields.items())]
    details = [{"event_type": k[0], "event_name": k[1], "event_count": len(t),
                "first_seen": min(t), "last_seen": max(t)} for k, t in sorted(names.items())]
    return schema, details


def _ms(value: Any) -> float | None:
    if value is None:
        return None
    ms = epoch_ms(value)
    return ms if ms > 0 else None


def _in_window(row: Mapping[str, Any], low: float | None, high: float | None) -> bool:
    first, last = _ms(row.get("first_seen")), _ms(row.get("last_seen"))
    if low is not None and (last is None or last < low):
        return False
    return not (high is not None and (first is None or first > high))


@router.get("/v1/events/schema", response_model=EventSchemaResponse, responses=_ERRORS,
            summary="Fields seen in the project's events, per event type")
async def events_schema(
    request: Request,
    dateRange: Annotated[str | None, Query(
        max_length=512, description='JSON {"$gte": ..., "$lte": ...} or a window like 7d')
    ] = None,
    evaluation_id: Annotated[str | None, Query(
        max_length=256, description="A run id: the fields of that run's events only")
    ] = None,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    low, high = parse_date_range(dateRange)
    project_id = principal.project_id
    if evaluation_id:
        schema, names = await _run_rows(context, project_id, evaluation_id, low, high)
    else:
        schema = [r for r in await context.store.event_schema(project_id)
                  if _in_window(r, low, high)]
        names = [r for r in await context.store.event_details(project_id)
                 if _in_window(r, low, high)]
    details = [{"name": r["path"], "event_type": r["event_type"],
                "event_name": r["event_name"], "value_type": r["value_type"],
                "occurrences": int(r["occurrences"]), "first_seen": _ms(r["first_seen"]),
                "last_seen": _ms(r["last_seen"])} for r in schema]
    pairs = sorted({(d["name"], d["event_type"]) for d in details})
    mappings: dict[str, list[dict[str, str]]] = {}
    for name, event_type in pairs:
        mappings.setdefault(name, []).append({"field_name": name, "event_type": event_type})
    return {
        "fields": [{"name": name, "event_type": event_type} for name, event_type in pairs],
        "datasets": [],
        "mappings": mappings,
        "details": details,
        "events": [{"event_type": r["event_type"], "event_name": r["event_name"],
                    "event_count": int(r["event_count"]), "first_seen": _ms(r["first_seen"]),
                    "last_seen": _ms(r["last_seen"])} for r in names],
    }
