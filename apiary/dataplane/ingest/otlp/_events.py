"""Span events and links: exceptions, GenAI message events, and the rest as metadata."""

from __future__ import annotations

from typing import Any

from apiary.dataplane.ingest.otlp import _messages as msgs
from apiary.dataplane.ingest.otlp._flatten import unflatten
from apiary.dataplane.ingest.otlp._model import SpanEventView, SpanLinkView, SpanView
from apiary.dataplane.ingest.otlp._times import millis

DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_PROMPT_EVENT = "gen_ai.content.prompt"
_COMPLETION_EVENT = "gen_ai.content.completion"
_CHOICE_EVENT = "gen_ai.choice"
_EXCEPTION_PREFIX = "exception."


class SpanEvents:
    """The span's events sorted into exceptions, message candidates and the others.

    - ``exception`` events become ``exceptions`` entries (``exception.`` stripped from
      their attribute keys, plus ``time``); they are always taken.
    - ``gen_ai.{system,user,assistant,tool}.message`` and ``gen_ai.content.prompt`` are
      input message candidates, ``gen_ai.choice`` and ``gen_ai.content.completion``
      output ones, ``gen_ai.client.inference.operation.details`` a holder of both; the
      mapping takes them only when the span's attributes carry no messages.

    ``taken`` holds the indices of events whose content went into an event field; every
    other event is listed in ``metadata.events``.
    """

    __slots__ = ("details", "exceptions", "inputs", "outputs", "provider", "taken")

    def __init__(self, span: SpanView, provider: Any) -> None:
        self.exceptions: list[dict[str, Any]] = []
        self.inputs: list[tuple[int, Any]] = []
        self.outputs: list[tuple[int, Any]] = []
        self.details: int | None = None
        self.taken: set[int] = set()
        self.provider = provider
        for i, event in enumerate(span.events):
            name = event.name
            attrs = event.attributes
            if name == "exception":
                self.exceptions.append(_exception(event))
                self.taken.add(i)
            elif name in msgs.EVENT_ROLES:
                self.inputs.append((i, msgs.from_event(name, self._own(attrs))))
            elif name == _CHOICE_EVENT:
                self.outputs.append((i, msgs.from_choice(self._own(attrs))))
            elif name == _PROMPT_EVENT and len(attrs) == 1 and "gen_ai.prompt" in attrs:
                _json_messages(i, attrs["gen_ai.prompt"], self.inputs)
            elif (name == _COMPLETION_EVENT and len(attrs) == 1
                  and "gen_ai.completion" in attrs):
                _json_messages(i, attrs["gen_ai.completion"], self.outputs)
            elif name == DETAILS_EVENT and self.details is None:
                self.details = i

    def _own(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Event attributes for a message, less a ``gen_ai.system`` repeating the span's."""
        if attrs.get("gen_ai.system", self) == self.provider:
            attrs = {k: v for k, v in attrs.items() if k != "gen_ai.system"}
        return unflatten(attrs)

    def take(self, found: list[tuple[int, Any]]) -> list[Any]:
        """The messages of ``found``, marking their events as taken."""
        self.taken.update(i for i, _ in found)
        return [message for _, message in found]


def _json_messages(i: int, value: Any, into: list[tuple[int, Any]]) -> None:
    decoded = msgs.loads_json(value)
    if type(decoded) is list:
        for message in msgs.indexed_messages(decoded)[0]:
            into.append((i, message))


def _exception(event: SpanEventView) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, value in event.attributes.items():
        entry[key[10:] if key.startswith(_EXCEPTION_PREFIX) else key] = value
    entry["time"] = millis(event.time_unix_nano)
    if event.dropped_attributes_count:
        entry["dropped_attributes_count"] = event.dropped_attributes_count
    return unflatten(entry)


def event_entry(event: SpanEventView) -> dict[str, Any]:
    """A span event for ``metadata.events``: name, time (epoch ms), attributes."""
    entry: dict[str, Any] = {"name": event.name, "time": millis(event.time_unix_nano)}
    if event.attributes:
        entry["attributes"] = unflatten(event.attributes)
    if event.dropped_attributes_count:
        entry["dropped_attributes_count"] = event.dropped_attributes_count
    return entry


def link_entry(link: SpanLinkView) -> dict[str, Any]:
    """A span link for ``metadata.links``: ids, and what else it carries."""
    entry: dict[str, Any] = {"trace_id": link.trace_id, "span_id": link.span_id}
    if link.trace_state:
        entry["trace_state"] = link.trace_state
    if link.attributes:
        entry["attributes"] = unflatten(link.attributes)
    if link.flags:
        entry["flags"] = link.flags
    if link.dropped_attributes_count:
        entry["dropped_attributes_count"] = link.dropped_attributes_count
    return entry
