"""Mapping a whole request: per-resource context, then sessions and parents across spans.

Sessions and parents need the whole request: a child may arrive before its parent, the
session id may sit only on the root, and a span with an explicit event id (or the
session span, whose event id *is* the session id) changes what its children point at.

Session, for an event whose span names none: the nearest ancestor in the request that has
one, else the first session named by any span of the same trace in the request, else
``""`` (the writer links it later).

Parent:

- a span with a parent span in the request: that span's event id (so children of the
  session span point at the session id, and explicit ``honeyhive_event_id`` s are
  honoured);
- a span whose parent is not in the request: the id derived from the parent span id
  (:func:`apiary.dataplane.ingest.otlp._ids.derive_event_id`), which is what that parent's event has
  unless it carried an explicit event id;
- a root span: the explicit ``honeyhive.parent_id`` if any; else the session id, unless
  the event is the session itself; else ``None``.
"""

from __future__ import annotations

from typing import Any

from apiary.dataplane.ingest.otlp._flatten import unflatten
from apiary.dataplane.ingest.otlp._ids import derive_event_id
from apiary.dataplane.ingest.otlp._mapping import map_span
from apiary.dataplane.ingest.otlp._model import MappedSpans, RejectedSpan, ResourceSpansView
from apiary.event import Event

_DEFAULT_SOURCE = "otel"
_SOURCE_KEYS = ("deployment.environment.name", "deployment.environment")


def _resource_source(attributes: dict[str, Any]) -> str:
    for key in _SOURCE_KEYS:
        value = attributes.get(key)
        if type(value) is str and value:
            return value
    return _DEFAULT_SOURCE


def map_views(views: list[ResourceSpansView]) -> MappedSpans:
    """Events for every valid span of a decoded request; the others as rejected."""
    result = MappedSpans()
    events = result.events
    parents: list[str] = []
    explicit_parents: list[str | None] = []
    for rs in views:
        resource_meta = unflatten(rs.attributes) if rs.attributes else None
        default_source = _resource_source(rs.attributes)
        for ss in rs.scope_spans:
            scope_meta: dict[str, Any] = {}
            if ss.name:
                scope_meta["name"] = ss.name
            if ss.version:
                scope_meta["version"] = ss.version
            if ss.attributes:
                scope_meta["attributes"] = unflatten(ss.attributes)
            if ss.schema_url:
                scope_meta["schema_url"] = ss.schema_url
            for span in ss.spans:
                if span.problem is not None:
                    result.rejected.append(
                        RejectedSpan(span.trace_id, span.span_id, span.problem)
                    )
                    continue
                event, explicit_parent = map_span(span, resource_meta, scope_meta,
                                                  default_source)
                events.append(event)
                parents.append(span.parent_span_id)
                explicit_parents.append(explicit_parent)
    link(events, parents, explicit_parents)
    return result


def link(events: list[Event], parents: list[str], explicit_parents: list[str | None]) -> None:
    """Settle ``session_id`` and ``parent_id`` of the events of one request (module doc).

    ``parents[i]`` is the parent span id of ``events[i]`` (``""`` for a root) and
    ``explicit_parents[i]`` the parent event id its span named, if any.
    """
    index = {event["trace_id"] + event["span_id"]: i for i, event in enumerate(events)}
    trace_sessions: dict[str, str] = {}
    missing = False
    for event in events:
        session = event["session_id"]
        if session:
            trace_sessions.setdefault(event["trace_id"], session)
        else:
            missing = True
    if missing:
        for i, event in enumerate(events):
            if not event["session_id"]:
                _inherit_session(i, events, parents, index, trace_sessions)
    for i, event in enumerate(events):
        parent = parents[i]
        if parent:
            found = index.get(event["trace_id"] + parent)
            event["parent_id"] = (events[found]["event_id"] if found is not None
                                  else derive_event_id(event["trace_id"], parent))
        elif explicit_parents[i]:
            event["parent_id"] = explicit_parents[i]
        elif event["session_id"] and event["event_type"] != "session":
            event["parent_id"] = event["session_id"]


def _inherit_session(
    i: int, events: list[Event], parents: list[str], index: dict[str, int],
    trace_sessions: dict[str, str],
) -> None:
    """Give ``events[i]`` and its session-less ancestors the nearest ancestor's session."""
    chain = [i]
    trace_id = events[i]["trace_id"]
    session = ""
    current = i
    while len(chain) <= len(events):
        parent = parents[current]
        found = index.get(trace_id + parent) if parent else None
        if found is None:
            break
        session = events[found]["session_id"]
        if session:
            break
        chain.append(found)
        current = found
    session = session or trace_sessions.get(trace_id, "")
    for j in chain:
        events[j]["session_id"] = session
