"""OTLP/HTTP trace ingestion: decode export bodies, map spans to events.

Public surface::

    decode_traces(body, content_type, *, max_spans=None) -> list[ResourceSpansView]
    map_views(views) -> MappedSpans
    map_request(body, content_type, *, max_spans=None) -> MappedSpans     # decode + map
    encode_response(rejected, content_type) -> (body, content_type)
    derive_event_id(trace_id, span_id) -> str

``body`` is the raw, already decompressed request body. Content types:
``application/x-protobuf`` and ``application/protobuf`` (protobuf), ``application/json``
(OTLP JSON, optionally ``; charset=utf-8``). Errors are :mod:`apiary.errors` classes:
``UnsupportedMediaType`` (415) for any other type, ``MalformedPayload`` (400) when the body
does not decode or has the wrong shape (the message names the element or JSON path),
``PayloadTooLarge`` (413) above ``max_spans``. A span whose ids are invalid does not fail
the request: it is rejected (``MappedSpans.rejected``) and reported back through
:func:`encode_response` as OTLP partial success.

Mapping (one event per accepted span; the full rules are in the module docstrings of
``_conventions``, ``_mapping``, ``_linking``, ``_messages`` and ``_flatten``):

============================  ===========================================================
event field                   from (first present wins)
============================  ===========================================================
event_type                    ``honeyhive_event_type`` / ``honeyhive.event_type`` (if a
                              valid type; else kept in metadata) >
                              ``openinference.span.kind`` (LLM, EMBEDDING: model; CHAIN,
                              AGENT: chain; TOOL, RETRIEVER, RERANKER, GUARDRAIL,
                              EVALUATOR, PROMPT: tool) > ``traceloop.span.kind``
                              (workflow, task, agent: chain; tool: tool) >
                              ``gen_ai.operation.name`` > GenAI/LLM attributes present
                              (model, usage, messages: model; tool call: tool) >
                              ``llm.request.type`` > span kind (client, producer: tool) >
                              chain
event_name                    ``honeyhive_event_name`` > ``traceloop.entity.name`` >
                              (session events: ``honeyhive.session_name``) > span name
event_id                      session events: the session id; else
                              ``honeyhive_event_id``; else ``derive_event_id(trace, span)``
session_id                    ``honeyhive.session_id`` > ``honeyhive_session_id`` >
                              ``traceloop.association.properties.session_id`` >
                              ``session.id`` > ``gen_ai.conversation.id`` > nearest
                              ancestor in the request > any span of the trace > ``""``
parent_id                     parent span's event id (in request) or derived id; roots:
                              ``honeyhive.parent_id`` > session id (not for the session
                              event itself) > ``None``
source                        ``honeyhive.source`` > ``honeyhive_source`` > Traceloop
                              association ``source`` > resource
                              ``deployment.environment[.name]`` > ``"otel"``
config                        ``honeyhive_config.*``; ``model`` (``gen_ai.request.model``,
                              ``llm.model_name``, else the response model), ``provider``
                              (``gen_ai.provider.name`` > ``gen_ai.system`` >
                              ``llm.provider`` > ``llm.system``), ``gen_ai.request.*``,
                              ``llm.invocation_parameters`` (JSON), ``tools``
                              (``llm.tools``), ``tool`` {name, description, type,
                              parameters} (``gen_ai.tool.*``, ``tool.*``)
inputs                        ``honeyhive_inputs.*`` (top-level JSON strings decoded);
                              ``chat_history`` (system instructions + messages from
                              ``gen_ai.input.messages`` > ``llm.input_messages`` >
                              ``gen_ai.prompt.N`` > ``gen_ai.prompt`` > GenAI span
                              events); else ``input.value`` (JSON per mime type; an
                              object merges, else ``input``); ``traceloop.entity.input``
                              and tool call arguments likewise (``input``,
                              ``arguments``); reranker query/documents
outputs                       ``honeyhive_outputs.*``; the first output message merged in
                              (role, content, tool_calls, finish_reason), all of them
                              under ``choices`` when several; else ``output.value`` /
                              ``traceloop.entity.output`` / tool result (``output``,
                              ``result``); retrieval documents; embeddings
error                         ``honeyhive_error`` > status message (status ERROR) > last
                              exception event ``"Type: message"`` > ``"span status ERROR"``
duration                      ``honeyhive_duration_ms`` > end - start (ms)
metadata                      ``honeyhive_metadata.*``; ``prompt_tokens``,
                              ``completion_tokens``, ``total_tokens`` (ints),
                              ``response_model`` (if not the model), ``response_id``,
                              ``finish_reasons`` (if several), ``tool_call_id``, ``agent``,
                              ``error_type``, ``status_message``, ``project``,
                              ``session_name``, ``workflow_name``, ``tags``; Traceloop
                              association properties; OpenInference ``metadata``; every
                              unknown attribute un-flattened; ``span_kind``,
                              ``status_code``, ``exceptions``, ``events``, ``links``,
                              ``trace_state``, ``dropped``, ``resource`` (resource
                              attributes), ``scope`` (name, version, attributes)
metrics / feedback /          ``honeyhive_metrics.*`` / ``honeyhive_feedback.*`` /
user_properties               ``honeyhive_user_properties.*`` + ``user_id``
                              (``honeyhive_user_id``, association ``user_id``,
                              ``user.id``)
============================  ===========================================================

Guarantees: every attribute value of an accepted span is somewhere in its event (a
value displaced by a higher-precedence source stays in ``metadata`` under its own key;
an unknown attribute whose path is already taken goes to ``metadata._shadowed``, OTLP
structure that clashes with user metadata to ``metadata._otel``); object fields are
nested (dotted keys un-flattened, dense ``0..n-1`` keys as lists, leaf/subtree
collisions keep the leaf under ``"_value"``); ids are lowercase hex; times are epoch
milliseconds, exact to the microsecond. ``metadata.resource`` and ``metadata.scope`` are
shared between the events of one resource/scope: treat events as read-only or copy them.

Speed (this is the ingest hot path): protobuf bodies are parsed by upb with attributes
left as raw bytes, short attributes are decoded once and cached by their encoding, and
each distinct tuple of attribute keys gets a cached *plan* that splits attributes with
C-level calls and skips every convention the span does not use. Caches are bounded.
``make compile`` compiles the decoding and mapping modules with mypyc (about 1.5x faster;
:mod:`apiary._private.compiled`), so they must stay mypyc-compatible: exact types at
runtime, and no ``int / int`` on nanoseconds (:func:`._times.millis`).
``bench/otlp_mapping.py`` measures µs per span, ``bench/ingest_path.py`` the whole
replica's work per span.
"""

from __future__ import annotations

from apiary.dataplane.ingest.otlp._decode import decode_traces, media_type
from apiary.dataplane.ingest.otlp._ids import derive_event_id
from apiary.dataplane.ingest.otlp._linking import map_views
from apiary.dataplane.ingest.otlp._model import (
    MappedSpans,
    RejectedSpan,
    ResourceSpansView,
    ScopeSpansView,
    SpanEventView,
    SpanLinkView,
    SpanView,
)
from apiary.dataplane.ingest.otlp._response import encode_response

__all__ = [
    "MappedSpans",
    "RejectedSpan",
    "ResourceSpansView",
    "ScopeSpansView",
    "SpanEventView",
    "SpanLinkView",
    "SpanView",
    "decode_traces",
    "derive_event_id",
    "encode_response",
    "map_request",
    "map_views",
    "media_type",
]


def map_request(body: bytes, content_type: str, *, max_spans: int | None = None) -> MappedSpans:
    """Decode an OTLP/HTTP trace body and map its spans to events (see the module doc).

    Raises what :func:`decode_traces` raises; never fails for the content of a span.
    """
    return map_views(decode_traces(body, content_type, max_spans=max_spans))
