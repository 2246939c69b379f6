"""Mapping one span to one event (request-level linking is in :mod:`._linking`).

The rules, in the order they are applied (the package docstring has the table):

1. attributes are split by the plan for their key set (:mod:`._conventions`) into
   slots, families and rest;
2. event type, ids, session, name and source come from slots, with fallbacks;
3. each object field starts from its explicit HoneyHive namespace (``honeyhive_config.*``
   into ``config``, ...), then receives what the conventions derive (model, provider and
   request parameters into ``config``; messages into ``inputs.chat_history`` and
   ``outputs``; usage into ``metadata``; ...). A derived value never overwrites an
   explicit one: on a clash it stays in ``metadata`` under its original attribute key;
4. ``metadata`` then receives the unknown attributes (un-flattened), and last the OTLP
   structure: span kind, status, exceptions, other span events, links, resource, scope.
   Should an unknown attribute clash with a value already at its path, it is kept under
   ``metadata["_shadowed"]`` (un-flattened, by its own key).

Nothing in the span is dropped: every attribute value ends up in some field.
"""

from __future__ import annotations

from typing import Any

from apiary.dataplane.ingest.otlp import _messages as msgs
from apiary.dataplane.ingest.otlp._conventions import (
    EVENT_TYPES,
    F_ASSOC,
    F_CONFIG,
    F_FEEDBACK,
    F_INPUTS,
    F_METADATA,
    F_METRICS,
    F_OUTPUTS,
    F_USER_PROPERTIES,
    S_AGENT,
    S_ERROR,
    S_IDENT,
    S_IO,
    S_MESSAGES,
    S_MODEL,
    S_OI_METADATA,
    S_TOOL,
    S_TYPE,
    S_USAGE,
    Plan,
    infer_event_type,
    plan_for,
)
from apiary.dataplane.ingest.otlp._events import SpanEvents, event_entry, link_entry
from apiary.dataplane.ingest.otlp._flatten import VALUE_KEY, merge_flat, place, unflatten
from apiary.dataplane.ingest.otlp._ids import derive_event_id
from apiary.dataplane.ingest.otlp._model import (
    SPAN_KIND_NAMES,
    STATUS_ERROR,
    STATUS_UNSET,
    Attributes,
    SpanView,
)
from apiary.dataplane.ingest.otlp._sections import (
    Tree,
    agent_metadata,
    apply_io,
    chat_from_events,
    model_config,
    pick_messages,
    put,
    put_all,
    tool_config,
    usage_metadata,
)
from apiary.dataplane.ingest.otlp._times import millis
from apiary.event import Event

_STATUS_NAMES = {1: "ok", 2: "error"}
_SESSION = "session"
# Where a derived metadata value came from, when its key is not its slot's name.
_FIXED_ORIGINS = {"agent": "gen_ai.agent", "status_message": "otel.status.message"}


def _text(value: Any) -> str:
    return value if type(value) is str else str(value)


def _explicit(flat: Tree | None, decode_params: bool = False) -> Tree:
    """An explicit HoneyHive namespace (``honeyhive_inputs.*``, ...) un-flattened.

    ``decode_params``: the SDK's input capture JSON-encodes dict and list arguments into
    ``honeyhive_inputs.<param>``, so a top-level value that is a JSON object or array
    string is decoded back. Deeper values are left alone: there a JSON-looking string is
    as likely to be the user's own text.
    """
    if not flat:
        return {}
    root = flat.pop("", None) if "" in flat else None
    if decode_params:
        for key, value in flat.items():
            if type(value) is str and value[:1] in ("{", "[") and "." not in key:
                decoded = msgs.loads_json(value)
                if decoded is not None:
                    flat[key] = decoded
    tree = unflatten(flat)
    if root is not None:
        merge_flat(tree, root if type(root) is dict else {VALUE_KEY: root})
    return tree


def _apply(plan: Plan, attrs: Attributes, rest: Tree) -> tuple[Tree, dict[str, str]]:
    """Slot values by name, and the attribute key each came from."""
    values = plan.slot_get(attrs) if plan.slot_get is not None else ()
    if all(values):
        slots = dict(zip(plan.slot_names, values, strict=False))
        if plan.loser_get is not None and plan.winner_get is not None and (
                plan.loser_get(attrs) != plan.winner_get(attrs)):
            for name, key in plan.losers:
                value = attrs[key]
                if value != slots[name]:
                    rest[key] = value
        return slots, plan.origins
    # Some value is empty (or falsy, like a zero count): sort it out key by key.
    slots = {}
    origins: dict[str, str] = {}
    for name, key in zip(plan.slot_names, plan.slot_keys, strict=True):
        value = attrs[key]
        if value is None or value == "":
            rest[key] = value
            continue
        if name in slots and slots[name] != value:
            rest[origins[name]] = slots[name]
        slots[name] = value
        origins[name] = key
    return slots, origins


def _add_structure(metadata: Tree, otel: Tree) -> None:
    """Add the OTLP structure last (it holds shared objects); clashes go to ``_otel``."""
    clashes: Tree = {}
    for key, value in otel.items():
        if key not in metadata:
            metadata[key] = value
        elif not place(metadata, key, value):
            clashes[key] = value
    if clashes:
        key = "_otel"
        while key in metadata:
            key = "_" + key
        metadata[key] = clashes


def map_span(
    span: SpanView,
    resource_meta: Tree | None,
    scope_meta: Tree,
    default_source: str,
) -> tuple[Event, str | None]:
    """The event for one (valid) span, and the explicit parent event id it names, if any.

    ``parent_id`` is left as ``None`` and ``session_id`` may be ``""``: both are settled
    for the whole request by :func:`apiary.dataplane.ingest.otlp._linking.link`. ``resource_meta``
    and ``scope_meta`` are shared by the events of one resource/scope: read-only.
    """
    attrs = span.attributes
    plan = plan_for(attrs)
    # Values displaced by a higher-precedence source; they join the unknown attributes.
    rest: Tree = {}
    slots, origins = _apply(plan, attrs, rest) if plan.slot_get else ({}, plan.origins)
    families: dict[str, Tree] = {
        family: dict(zip(subkeys, getter(attrs), strict=False))
        for family, subkeys, getter in plan.families
    }
    sections = plan.sections
    get = slots.get

    # -- type, ids, session, name, source --------------------------------------------
    event_type = None
    if sections & S_TYPE:
        value = get("event_type")
        if type(value) is str and value.lower() in EVENT_TYPES:
            event_type = value.lower()
        elif value is not None:
            rest[origins["event_type"]] = value
    if event_type is None:
        event_type = infer_event_type(attrs, span.kind, plan.model_signal, plan.tool_signal)
    session_id = event_id = ""
    event_name = span.name
    source = default_source
    explicit_parent = session_name = None
    if sections & S_IDENT:
        value = get("session")
        if value is not None:
            session_id = _text(value)
        value = get("event_id")
        if value is not None:
            event_id = _text(value)
        session_name = get("session_name")
        value = get("event_name")
        if value is not None:
            event_name = _text(value)
        elif event_type == _SESSION and session_name is not None:
            event_name = _text(session_name)
            session_name = None
        value = get("source")
        if value is not None:
            source = _text(value)
        value = get("parent_event_id")
        if value is not None:
            if span.parent_span_id:
                # Only roots take an explicit parent; a child's span parent is exact.
                rest[origins["parent_event_id"]] = value
            else:
                explicit_parent = _text(value)
    if event_type == _SESSION:
        if session_id:
            if event_id and event_id != session_id:
                rest[origins["event_id"]] = slots["event_id"]
            event_id = session_id
        else:
            session_id = event_id = event_id or derive_event_id(span.trace_id, span.span_id)
    elif not event_id:
        event_id = derive_event_id(span.trace_id, span.span_id)

    # -- config, inputs, outputs ----------------------------------------------------------
    derived: Tree = {}
    config = _explicit(families["config"]) if sections & F_CONFIG else {}
    if sections & S_MODEL:
        model_config(slots, origins, families, rest, config, derived)
    if sections & S_TOOL:
        tool_config(slots, origins, rest, config)
    inputs = _explicit(families["inputs"], decode_params=True) if sections & F_INPUTS else {}
    outputs = _explicit(families["outputs"]) if sections & F_OUTPUTS else {}
    chat = answers = None
    chat_origin = answers_origin = ""
    system: tuple[Any, str] | None = None
    if sections & S_MESSAGES:
        if plan.input_sources:
            chat, chat_origin = pick_messages(slots, origins, families, rest, plan.input_sources)
        if plan.output_sources:
            answers, answers_origin = pick_messages(slots, origins, families, rest,
                                                plan.output_sources)
        value = get("system_instructions")
        if value is not None:
            system = (value, origins["system_instructions"])
    events = None
    if span.events:
        events = SpanEvents(span, get("provider"))
        if chat is None or answers is None:
            chat, ev_chat, answers, ev_answers, system = chat_from_events(
                events, span, chat, answers, system)
            chat_origin = chat_origin or ev_chat
            answers_origin = answers_origin or ev_answers
    if system is not None:
        message = msgs.system_message(system[0])
        if message is None:
            rest[system[1]] = system[0]
        else:
            chat = [message, *(chat or ())]
            chat_origin = chat_origin or system[1]
    if chat is not None:
        put(inputs, "chat_history", chat, chat_origin, rest)
    if answers is not None:
        if answers:
            first = answers[0]
            if type(first) is dict:
                put_all(outputs, first, answers_origin, answers, rest)
            else:
                put(outputs, "content", first, answers_origin, rest)
            if len(answers) > 1:
                put(outputs, "choices", answers, answers_origin, rest)
        else:
            rest[answers_origin] = answers
    if sections & S_IO:
        apply_io(plan, slots, origins, families, rest, attrs, inputs, outputs, chat is not None,
            answers is not None)

    # -- derived metadata, error, duration, user properties ------------------------------
    error = None
    user_properties = (_explicit(families["user_properties"])
                       if sections & F_USER_PROPERTIES else {})
    duration = None
    if sections & S_USAGE:
        usage_metadata(plan, slots, origins, rest, outputs, derived)
    for slot, key in plan.as_is:
        value = get(slot)
        if value is not None:
            derived[key] = value
    if sections & S_AGENT:
        agent_metadata(slots, derived)
    if sections & S_ERROR:
        value = get("error")
        if value is not None:
            error = _text(value)
        value = get("user_id")
        if value is not None:
            put(user_properties, "user_id", value, origins["user_id"], rest)
        value = get("duration_ms")
        if value is not None:
            if type(value) is int or type(value) is float:
                duration = float(value)
            else:
                rest[origins["duration_ms"]] = value
    if session_name is not None:
        derived["session_name"] = session_name
    status_message = span.status_message
    if span.status_code == STATUS_ERROR and error is None:
        if status_message:
            error = status_message
        elif events is not None and events.exceptions:
            last = events.exceptions[-1]
            kind, text = last.get("type"), last.get("message")
            error = f"{kind}: {text}" if kind and text else _text(text or kind or "exception")
        else:
            error = "span status ERROR"
    if status_message and status_message != error:
        derived["status_message"] = status_message
    start = millis(span.start_time_unix_nano)
    end = millis(span.end_time_unix_nano)
    if duration is None:
        duration = end - start if end > start else 0.0

    # -- metadata -------------------------------------------------------------------------
    otel: Tree = {}
    metadata = _explicit(families["metadata"]) if sections & F_METADATA else {}
    if derived:
        if not metadata:
            metadata = derived
        elif metadata.keys().isdisjoint(derived):
            metadata.update(derived)
        else:
            for key, value in derived.items():
                put(metadata, key, value, origins.get(key) or _FIXED_ORIGINS.get(key, key),
                     rest)
    if sections & F_ASSOC:
        merge_flat(metadata, families["assoc"], rest, "traceloop.association.properties.")
    if sections & S_OI_METADATA and (value := get("oi_metadata")) is not None:
        decoded = msgs.loads_json(value)
        if type(decoded) is dict:
            put_all(metadata, decoded, origins["oi_metadata"], value, rest)
        else:
            rest[origins["oi_metadata"]] = value
    shadowed: Tree = {}
    if plan.rest_get is not None:
        values = plan.rest_get(attrs)
        build = plan.rest_build
        if build is not None and not metadata:
            metadata = build(values)
        elif build is not None and metadata.keys().isdisjoint(plan.rest_top):
            metadata.update(build(values))
        else:
            merge_flat(metadata, dict(zip(plan.rest_keys, values, strict=False)), shadowed)
    if rest:
        merge_flat(metadata, rest, shadowed)
    if shadowed:
        key = "_shadowed"
        while key in metadata:
            key = "_" + key
        metadata[key] = unflatten(shadowed)
    kind = span.kind
    if kind:
        otel["span_kind"] = SPAN_KIND_NAMES.get(kind) or str(kind)
    status_code = span.status_code
    if status_code != STATUS_UNSET:
        otel["status_code"] = _STATUS_NAMES.get(status_code) or str(status_code)
    if events is not None:
        if events.exceptions:
            otel["exceptions"] = events.exceptions
        taken = events.taken
        entries = [event_entry(ev) for i, ev in enumerate(span.events) if i not in taken]
        if entries:
            otel["events"] = entries
    if span.links:
        otel["links"] = [link_entry(link) for link in span.links]
    if span.trace_state:
        otel["trace_state"] = span.trace_state
    if span.dropped_attributes_count or span.dropped_events_count or span.dropped_links_count:
        otel["dropped"] = {"attributes": span.dropped_attributes_count,
                           "events": span.dropped_events_count,
                           "links": span.dropped_links_count}
    if resource_meta:
        otel["resource"] = resource_meta
    if scope_meta:
        otel["scope"] = scope_meta
    if metadata.keys().isdisjoint(otel):
        metadata.update(otel)
    else:
        _add_structure(metadata, otel)

    event: Event = {
        "event_id": event_id,
        "session_id": session_id,
        "parent_id": None,
        "children_ids": [],
        "event_type": event_type,
        "event_name": event_name,
        "source": source,
        "config": config,
        "inputs": inputs,
        "outputs": outputs,
        "error": error,
        "start_time": start,
        "end_time": end,
        "duration": duration,
        "metadata": metadata,
        "metrics": _explicit(families["metrics"]) if sections & F_METRICS else {},
        "feedback": _explicit(families["feedback"]) if sections & F_FEEDBACK else {},
        "user_properties": user_properties,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
    }
    return event, explicit_parent
