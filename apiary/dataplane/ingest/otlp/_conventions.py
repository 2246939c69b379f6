"""Which attribute belongs to which convention, and what it means for the event.

Every attribute key is classified into one of three kinds:

- a **slot**: a key that carries one known fact (``gen_ai.request.model`` is the model).
  Several keys may carry the same fact (``honeyhive.session_id``,
  ``traceloop.association.properties.session_id``, ``session.id``, ...); each has a
  priority, the lowest number wins, and a different value under a losing key is kept as
  an unknown attribute (in ``metadata``) instead of being dropped.
- a **family**: a key under a prefix whose remainder is a path (``honeyhive_inputs.*``,
  ``gen_ai.prompt.N.*``, ``llm.input_messages.N.*``); the remainder is un-flattened.
- **rest**: anything else. It goes to ``metadata`` un-flattened. Keys that only steer
  classification (``openinference.span.kind``, ``traceloop.span.kind``,
  ``gen_ai.operation.name``, ``llm.request.type``, ``input.mime_type``) stay there too:
  they are read, not consumed.

Classification is worked out once per tuple of attribute keys (a :class:`Plan`, cached),
since one instrumentation sends the same keys span after span; applying a plan costs a
few C-level calls instead of Python work per attribute. The cache is bounded (cleared
when full) because key sets with user-chosen parts are unbounded in principle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from apiary.dataplane.ingest.otlp._flatten import tree_builder
from apiary.dataplane.ingest.otlp._model import Attributes
from apiary.event import EventType

SLOT = 0
FAMILY = 1
REST = 2

Classification = tuple[int, str, Any]

# key -> (slot name, priority); lower priority wins.
_SLOTS: dict[str, tuple[str, int]] = {
    # HoneyHive SDK (span processor, @trace, enrich_span) and its Traceloop aliases
    "honeyhive.session_id": ("session", 0),
    "honeyhive_session_id": ("session", 1),
    "traceloop.association.properties.session_id": ("session", 2),
    "session.id": ("session", 3),
    "gen_ai.conversation.id": ("session", 4),
    "honeyhive.source": ("source", 0),
    "honeyhive_source": ("source", 1),
    "traceloop.association.properties.source": ("source", 2),
    "honeyhive.project": ("project", 0),
    "honeyhive_project": ("project", 1),
    "traceloop.association.properties.project": ("project", 2),
    "honeyhive_event_type": ("event_type", 0),
    "honeyhive.event_type": ("event_type", 1),
    "honeyhive_event_name": ("event_name", 0),
    "honeyhive.event_name": ("event_name", 1),
    "traceloop.entity.name": ("event_name", 2),
    "honeyhive_event_id": ("event_id", 0),
    "honeyhive.event_id": ("event_id", 1),
    "honeyhive.parent_id": ("parent_event_id", 0),
    "traceloop.association.properties.parent_id": ("parent_event_id", 1),
    "honeyhive_error": ("error", 0),
    "honeyhive_error_type": ("error_type", 0),
    "honeyhive_duration_ms": ("duration_ms", 0),
    "honeyhive_user_id": ("user_id", 0),
    "traceloop.association.properties.user_id": ("user_id", 1),
    "user.id": ("user_id", 2),
    "honeyhive.session_name": ("session_name", 0),
    "honeyhive_session_name": ("session_name", 1),
    # model call: GenAI semconv, OpenInference, Traceloop
    "gen_ai.request.model": ("model", 0),
    "llm.model_name": ("model", 1),
    "embedding.model_name": ("model", 2),
    "reranker.model_name": ("model", 3),
    "gen_ai.response.model": ("response_model", 0),
    "gen_ai.provider.name": ("provider", 0),
    "gen_ai.system": ("provider", 1),
    "llm.provider": ("provider", 2),
    "llm.system": ("provider", 3),
    "gen_ai.usage.input_tokens": ("prompt_tokens", 0),
    "gen_ai.usage.prompt_tokens": ("prompt_tokens", 1),
    "llm.token_count.prompt": ("prompt_tokens", 2),
    "llm.usage.prompt_tokens": ("prompt_tokens", 3),
    "gen_ai.usage.output_tokens": ("completion_tokens", 0),
    "gen_ai.usage.completion_tokens": ("completion_tokens", 1),
    "llm.token_count.completion": ("completion_tokens", 2),
    "llm.usage.completion_tokens": ("completion_tokens", 3),
    "llm.usage.total_tokens": ("total_tokens", 0),
    "gen_ai.usage.total_tokens": ("total_tokens", 1),
    "llm.token_count.total": ("total_tokens", 2),
    "gen_ai.response.id": ("response_id", 0),
    "gen_ai.response.finish_reasons": ("finish_reasons", 0),
    "gen_ai.input.messages": ("input_messages", 0),
    "gen_ai.output.messages": ("output_messages", 0),
    "gen_ai.system_instructions": ("system_instructions", 0),
    "gen_ai.prompt": ("prompt_json", 0),
    "gen_ai.completion": ("completion_json", 0),
    "llm.invocation_parameters": ("invocation_parameters", 0),
    # tools
    "gen_ai.tool.name": ("tool_name", 0),
    "tool.name": ("tool_name", 1),
    "tool_call.function.name": ("tool_name", 2),
    "gen_ai.tool.description": ("tool_description", 0),
    "tool.description": ("tool_description", 1),
    "gen_ai.tool.type": ("tool_type", 0),
    "tool.parameters": ("tool_parameters", 0),
    "gen_ai.tool.call.id": ("tool_call_id", 0),
    "tool_call.id": ("tool_call_id", 1),
    "gen_ai.tool.call.arguments": ("tool_arguments", 0),
    "tool_call.function.arguments": ("tool_arguments", 1),
    "gen_ai.tool.call.result": ("tool_result", 0),
    # agents, inputs/outputs, tags
    "gen_ai.agent.name": ("agent_name", 0),
    "gen_ai.agent.id": ("agent_id", 0),
    "gen_ai.agent.description": ("agent_description", 0),
    "input.value": ("input_value", 0),
    "output.value": ("output_value", 0),
    "traceloop.entity.input": ("entity_input", 0),
    "traceloop.entity.output": ("entity_output", 0),
    "metadata": ("oi_metadata", 0),
    "tag.tags": ("tags", 0),
    "traceloop.workflow.name": ("workflow_name", 0),
    "reranker.query": ("reranker_query", 0),
    "reranker.top_k": ("reranker_top_k", 0),
}

# (prefix, family); a key equal to the prefix has the remainder "".
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("honeyhive_inputs", "inputs"),
    ("honeyhive_outputs", "outputs"),
    ("honeyhive_metadata", "metadata"),
    ("honeyhive_metrics", "metrics"),
    ("honeyhive_feedback", "feedback"),
    ("honeyhive_config", "config"),
    ("honeyhive_user_properties", "user_properties"),
    ("traceloop.association.properties", "assoc"),
    ("gen_ai.request", "request"),
    ("gen_ai.prompt", "prompt"),
    ("gen_ai.completion", "completion"),
    ("llm.input_messages", "oi_in"),
    ("llm.output_messages", "oi_out"),
    ("llm.tools", "oi_tools"),
    ("retrieval.documents", "documents"),
    ("embedding.embeddings", "embeddings"),
    ("reranker.input_documents", "rerank_in"),
    ("reranker.output_documents", "rerank_out"),
)
FAMILY_PREFIX = {family: prefix for prefix, family in _FAMILIES}

_REST: Classification = (REST, "", None)


def classify(key: str) -> Classification:
    """``(SLOT, name, priority)``, ``(FAMILY, family, remainder)`` or ``(REST, "", None)``."""
    slot = _SLOTS.get(key)
    if slot is not None:
        return (SLOT, slot[0], slot[1])
    for prefix, family in _FAMILIES:
        if key.startswith(prefix):
            n = len(prefix)
            if len(key) == n:
                return (FAMILY, family, "")
            if key[n] == ".":
                return (FAMILY, family, key[n + 1:])
    return _REST


# --- plans --------------------------------------------------------------------------------

# Slots copied to metadata as they are: (slot, metadata key).
AS_IS = (("response_id", "response_id"), ("tool_call_id", "tool_call_id"),
         ("error_type", "error_type"), ("project", "project"),
         ("workflow_name", "workflow_name"), ("tags", "tags"))
TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Message sources, best first: (slot, "") or ("", family).
INPUT_SOURCES = (("input_messages", ""), ("", "oi_in"), ("", "prompt"), ("prompt_json", ""))
OUTPUT_SOURCES = (("output_messages", ""), ("", "oi_out"), ("", "completion"),
                  ("completion_json", ""))
# Input/output slots and families, in the order the mapping applies them.
IO = ("input_value", "output_value", "entity_input", "entity_output", "tool_arguments",
      "tool_result", "reranker_query", "documents", "rerank_in", "rerank_out", "embeddings")

# Sections of the mapping; a plan says which have anything to do, so that a span pays only
# for the conventions it uses.
S_TYPE = 1 << 0
S_IDENT = 1 << 1
S_MODEL = 1 << 2
S_TOOL = 1 << 3
S_MESSAGES = 1 << 4
S_IO = 1 << 5
S_USAGE = 1 << 6
S_AGENT = 1 << 7
S_ERROR = 1 << 8
S_OI_METADATA = 1 << 9
F_CONFIG = 1 << 10
F_INPUTS = 1 << 11
F_OUTPUTS = 1 << 12
F_METADATA = 1 << 13
F_METRICS = 1 << 14
F_FEEDBACK = 1 << 15
F_USER_PROPERTIES = 1 << 16
F_ASSOC = 1 << 17
_SECTION_OF_SLOT = {
    "event_type": S_TYPE,
    **dict.fromkeys(("session", "event_id", "event_name", "source", "parent_event_id",
                     "session_name"), S_IDENT),
    **dict.fromkeys(("model", "response_model", "provider", "invocation_parameters"), S_MODEL),
    **dict.fromkeys(("tool_name", "tool_description", "tool_type", "tool_parameters",
                     "reranker_top_k"), S_TOOL),
    **dict.fromkeys(("input_messages", "output_messages", "system_instructions",
                     "prompt_json", "completion_json"), S_MESSAGES),
    **dict.fromkeys(("input_value", "output_value", "entity_input", "entity_output",
                     "tool_arguments", "tool_result", "reranker_query"), S_IO),
    **dict.fromkeys(("prompt_tokens", "completion_tokens", "total_tokens", "finish_reasons"),
                    S_USAGE),
    **dict.fromkeys(("response_id", "tool_call_id", "error_type", "project", "workflow_name",
                     "tags"), 0),
    **dict.fromkeys(("agent_name", "agent_id", "agent_description"), S_AGENT),
    **dict.fromkeys(("error", "duration_ms", "user_id"), S_ERROR),
    "oi_metadata": S_OI_METADATA,
}
_SECTION_OF_FAMILY = {
    "request": S_MODEL, "oi_tools": S_MODEL,
    "oi_in": S_MESSAGES, "oi_out": S_MESSAGES, "prompt": S_MESSAGES, "completion": S_MESSAGES,
    "documents": S_IO, "rerank_in": S_IO, "rerank_out": S_IO, "embeddings": S_IO,
    "config": F_CONFIG, "inputs": F_INPUTS, "outputs": F_OUTPUTS, "metadata": F_METADATA,
    "metrics": F_METRICS, "feedback": F_FEEDBACK, "user_properties": F_USER_PROPERTIES,
    "assoc": F_ASSOC,
}


def _getter(keys: tuple[str, ...]) -> Callable[[Attributes], tuple[Any, ...]] | None:
    if not keys:
        return None
    # itemgetter of one key returns the bare value; asking twice keeps it a tuple (callers
    # zip it with one name, strict=False, which drops the duplicate).
    return itemgetter(*keys) if len(keys) > 1 else itemgetter(keys[0], keys[0])


class Plan(NamedTuple):
    """How to split one tuple of attribute keys into slots, families and rest.

    Spans from one instrumentation carry the same keys over and over, so this is worked
    out once per key tuple and applied with C-level ``itemgetter``/``zip``/``dict``:

    - ``slot_names``/``slot_keys``/``slot_get``: every present slot key, lowest priority
      first, so that ``dict(zip(slot_names, slot_get(attrs)))`` keeps each slot's winner;
      ``origins`` maps a slot to its winning key;
    - ``losers``: (slot, key) of aliases that lost; ``loser_get`` and ``winner_get`` fetch
      their values and the winners' at once, so equal duplicates cost one comparison;
    - ``as_is``, ``tokens``, ``input_sources``, ``output_sources``, ``io``: the present
      members of those groups, in the order the mapping applies them;
    - ``families``: (family, remainders, getter) per present family;
    - ``rest_keys``/``rest_get``/``rest_build``/``rest_top``: the unknown attributes, and a
      compiled builder of their un-flattened tree (:func:`._flatten.tree_builder`) with its
      top-level keys; no builder while ``provisional`` (see :func:`plan_for`);
    - ``sections``: bits of the mapping sections with anything to do;
      ``model_signal``/``tool_signal``: GenAI/LLM attributes that imply a type.
    """

    slot_names: tuple[str, ...]
    slot_keys: tuple[str, ...]
    slot_get: Callable[[Attributes], tuple[Any, ...]] | None
    origins: dict[str, str]
    losers: tuple[tuple[str, str], ...]
    loser_get: Callable[[Attributes], tuple[Any, ...]] | None
    winner_get: Callable[[Attributes], tuple[Any, ...]] | None
    as_is: tuple[tuple[str, str], ...]
    tokens: tuple[str, ...]
    input_sources: tuple[tuple[str, str], ...]
    output_sources: tuple[tuple[str, str], ...]
    io: tuple[str, ...]
    families: tuple[tuple[str, tuple[str, ...], Callable[[Attributes], tuple[Any, ...]]], ...]
    rest_keys: tuple[str, ...]
    rest_get: Callable[[Attributes], tuple[Any, ...]] | None
    rest_build: Callable[[Sequence[Any]], dict[str, Any]] | None
    rest_top: frozenset[str]
    sections: int
    model_signal: bool
    tool_signal: bool
    provisional: bool


def _build_plan(keys: tuple[str, ...], provisional: bool) -> Plan:
    slots: list[tuple[str, int, str]] = []
    families: dict[str, list[tuple[str, str]]] = {}
    rest: list[str] = []
    for key in keys:
        kind, name, detail = classify(key)
        if kind == SLOT:
            slots.append((name, detail, key))
        elif kind == FAMILY:
            families.setdefault(name, []).append((detail, key))
        else:
            rest.append(key)
    slots.sort(key=lambda s: (s[0], -s[1]))
    origins: dict[str, str] = {}
    losers: list[tuple[str, str]] = []
    for name, _, key in slots:
        if name in origins:
            losers.append((name, origins[name]))
        origins[name] = key
    sections = 0
    for name in origins:
        sections |= _SECTION_OF_SLOT[name]
    for family in families:
        sections |= _SECTION_OF_FAMILY[family]
    slot_keys = tuple(key for _, _, key in slots)
    present = set(origins) | set(families)
    return Plan(
        slot_names=tuple(name for name, _, _ in slots),
        slot_keys=slot_keys,
        slot_get=_getter(slot_keys),
        origins=origins,
        losers=tuple(losers),
        loser_get=_getter(tuple(key for _, key in losers)),
        winner_get=_getter(tuple(origins[name] for name, _ in losers)),
        as_is=tuple((slot, key) for slot, key in AS_IS if slot in present),
        tokens=tuple(slot for slot in TOKENS if slot in present),
        input_sources=tuple(s for s in INPUT_SOURCES if (s[0] or s[1]) in present),
        output_sources=tuple(s for s in OUTPUT_SOURCES if (s[0] or s[1]) in present),
        io=tuple(name for name in IO if name in present),
        families=tuple(
            (family, tuple(sub for sub, _ in members),
             _getter(tuple(key for _, key in members)))  # type: ignore[misc]
            for family, members in families.items()
        ),
        rest_keys=tuple(rest),
        rest_get=_getter(tuple(rest)),
        rest_build=None if provisional else tree_builder(rest),
        rest_top=frozenset(key.split(".", 1)[0] for key in rest),
        sections=sections,
        model_signal=not MODEL_SLOTS.isdisjoint(origins) or not MODEL_FAMILIES.isdisjoint(
            families),
        tool_signal=not TOOL_SLOTS.isdisjoint(origins),
        provisional=provisional,
    )


# Keyed by the key tuple, not set: hashing a tuple is half the cost, and one producer
# sends its keys in one order (a second order merely costs a second plan).
_PLANS: dict[tuple[str, ...], Plan] = {}
_PLANS_MAX_ENTRIES = 2_048
_PLAN_MAX_KEYS = 256


def plan_for(attrs: Attributes) -> Plan:
    """The (cached) plan for the keys of ``attrs``. Bounded: cleared when full.

    A key tuple seen for the first time gets a *provisional* plan, without the compiled
    rest builder: compiling is worth it only for shapes that repeat, and a stream of
    never-repeating key sets must not pay for it span after span.
    """
    keys = tuple(attrs)
    plan = _PLANS.get(keys)
    if plan is None or plan.provisional:
        plan = _build_plan(keys, provisional=plan is None)
        if len(keys) <= _PLAN_MAX_KEYS:
            if len(_PLANS) >= _PLANS_MAX_ENTRIES:
                _PLANS.clear()
            _PLANS[keys] = plan
    return plan


# --- event type -------------------------------------------------------------------------

EVENT_TYPES = frozenset(t.value for t in EventType)
_MODEL, _CHAIN, _TOOL = EventType.MODEL.value, EventType.CHAIN.value, EventType.TOOL.value

OPENINFERENCE_KINDS = {
    "LLM": _MODEL,
    "EMBEDDING": _MODEL,
    "CHAIN": _CHAIN,
    "AGENT": _CHAIN,
    "TOOL": _TOOL,
    "RETRIEVER": _TOOL,
    "RERANKER": _TOOL,
    "GUARDRAIL": _TOOL,
    "EVALUATOR": _TOOL,
    "PROMPT": _TOOL,
}
TRACELOOP_KINDS = {"workflow": _CHAIN, "task": _CHAIN, "agent": _CHAIN, "tool": _TOOL}
GENAI_OPERATIONS = {
    "chat": _MODEL,
    "text_completion": _MODEL,
    "generate_content": _MODEL,
    "embeddings": _MODEL,
    "invoke_agent": _CHAIN,
    "create_agent": _CHAIN,
    "invoke_workflow": _CHAIN,
    "execute_tool": _TOOL,
    "retrieval": _TOOL,
}
LLM_REQUEST_TYPES = {"chat": _MODEL, "completion": _MODEL, "embedding": _MODEL, "rerank": _TOOL}
MODEL_SLOTS = frozenset({
    "model", "response_model", "prompt_tokens", "completion_tokens", "total_tokens",
    "input_messages", "output_messages", "invocation_parameters",
})
MODEL_FAMILIES = frozenset({"request", "prompt", "completion", "oi_in", "oi_out"})
TOOL_SLOTS = frozenset({"tool_name", "tool_call_id", "tool_arguments", "tool_result"})
# OTLP span kinds: CLIENT and PRODUCER call out of the process (a tool, in event terms).
SPAN_KIND_TYPES = {3: _TOOL, 4: _TOOL}


def infer_event_type(
    rest: dict[str, Any], span_kind: int, model_signal: bool, tool_signal: bool
) -> str:
    """The event type when no valid ``honeyhive_event_type`` says it.

    OpenInference span kind > Traceloop span kind > GenAI operation name > GenAI/LLM
    attributes present (model, usage, messages: model; tool call: tool) > Traceloop
    ``llm.request.type`` > OTLP span kind (client/producer: tool) > chain.
    """
    kind = rest.get("openinference.span.kind")
    if type(kind) is str:
        found = OPENINFERENCE_KINDS.get(kind.upper())
        if found:
            return found
    kind = rest.get("traceloop.span.kind")
    if type(kind) is str:
        found = TRACELOOP_KINDS.get(kind.lower())
        if found:
            return found
    kind = rest.get("gen_ai.operation.name")
    if type(kind) is str:
        found = GENAI_OPERATIONS.get(kind.lower())
        if found:
            return found
    if model_signal:
        return _MODEL
    if tool_signal:
        return _TOOL
    kind = rest.get("llm.request.type")
    if type(kind) is str:
        found = LLM_REQUEST_TYPES.get(kind.lower())
        if found:
            return found
    return SPAN_KIND_TYPES.get(span_kind, _CHAIN)


def as_int(value: Any) -> int | None:
    """A token count as ``int``: ints, integral floats and decimal strings; else ``None``."""
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    if kind is str and value.isascii() and value.isdigit():
        return int(value)
    return None
