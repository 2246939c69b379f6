"""What each convention contributes to an event's object fields.

Each function takes the slot values (``slots``, by slot name), the key each came from
(``origins``), the families, and ``rest`` (the displaced values that end in
``metadata``), and fills the event's trees. A derived value never overwrites what is
there: :func:`put` keeps the loser in ``rest`` under its original attribute key.
"""

from __future__ import annotations

from typing import Any

from apiary.dataplane.ingest.otlp import _messages as msgs
from apiary.dataplane.ingest.otlp._conventions import FAMILY_PREFIX, Plan, as_int
from apiary.dataplane.ingest.otlp._events import DETAILS_EVENT, SpanEvents
from apiary.dataplane.ingest.otlp._flatten import merge_flat, place, unflatten
from apiary.dataplane.ingest.otlp._model import Attributes, SpanView

Tree = dict[str, Any]


def put(tree: Tree, key: str, value: Any, origin: str, rest: Tree) -> None:
    """Derive ``tree[key] = value``; on a clash the value stays in ``rest[origin]``."""
    if key not in tree:
        tree[key] = value
    elif not place(tree, key, value):
        rest[origin] = value


def put_all(tree: Tree, values: Tree, origin: str, raw: Any, rest: Tree) -> None:
    """Derive every key of a decoded object; on any clash keep ``raw`` in ``rest[origin]``."""
    for key, value in values.items():
        if key not in tree:
            tree[key] = value
        elif not place(tree, key, value):
            rest[origin] = raw


def leaves(tree: Tree, prefix: str, out: Tree) -> None:
    """Flatten ``tree`` back into ``out`` as ``{prefix.dotted.path: leaf}``."""
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if type(value) is dict and value:
            leaves(value, path, out)
        else:
            out[path] = value


def family_to_rest(family: str, flat: Tree, rest: Tree) -> None:
    """Put an unused family back into ``rest`` under its original attribute keys."""
    prefix = FAMILY_PREFIX[family]
    for key, value in flat.items():
        rest[f"{prefix}.{key}" if key else prefix] = value


def extra_to_rest(family: str, extra: Tree, rest: Tree) -> None:
    """Put the non-indexed leftovers of an indexed family back into ``rest``."""
    if extra:
        leaves(extra, FAMILY_PREFIX[family], rest)


def json_or_text(value: Any, mime: Any) -> Any:
    """``value`` decoded when its MIME type says JSON (and it is an object or array)."""
    if type(mime) is str and mime.startswith("application/json"):
        decoded = msgs.loads_json(value)
        if decoded is not None:
            return decoded
    return value


def model_config(slots: Tree, origins: dict[str, str], families: dict[str, Tree],
                 rest: Tree, config: Tree, derived: Tree) -> None:
    """``config``: model, provider, ``gen_ai.request.*``, invocation parameters, tools.

    The response model becomes the model when there is no other; when it differs from
    the model it goes to ``derived`` (metadata ``response_model``).
    """
    get = slots.get
    model = get("model")
    if model is not None:
        put(config, "model", model, origins["model"], rest)
    value = get("response_model")
    if value is not None:
        if "model" not in config:
            config["model"] = value
        elif config["model"] != value:
            derived["response_model"] = value
    value = get("provider")
    if value is not None:
        put(config, "provider", value, origins["provider"], rest)
    flat = families.get("request")
    if flat:
        merge_flat(config, flat, rest, "gen_ai.request.")
    value = get("invocation_parameters")
    if value is not None:
        decoded = msgs.loads_json(value)
        if type(decoded) is dict:
            put_all(config, decoded, origins["invocation_parameters"], value, rest)
        else:
            rest[origins["invocation_parameters"]] = value
    flat = families.get("oi_tools")
    if flat:
        tools, extra = msgs.unwrap_indexed(unflatten(flat), "tool")
        schemas = []
        for tool in tools:
            schema = tool.get("json_schema") if type(tool) is dict and len(tool) == 1 else None
            decoded = msgs.loads_json(schema)
            schemas.append(decoded if decoded is not None else tool)
        put(config, "tools", schemas, "llm.tools", rest)
        extra_to_rest("oi_tools", extra, rest)


def tool_config(slots: Tree, origins: dict[str, str], rest: Tree, config: Tree) -> None:
    """``config.tool`` {name, description, type, parameters} and ``config.top_k``."""
    get = slots.get
    tool: Tree = {}
    for slot, field in (("tool_name", "name"), ("tool_description", "description"),
                        ("tool_type", "type"), ("tool_parameters", "parameters")):
        value = get(slot)
        if value is not None:
            if slot == "tool_parameters":
                decoded = msgs.loads_json(value)
                value = decoded if decoded is not None else value
            tool[field] = value
    if tool:
        put(config, "tool", tool, "gen_ai.tool", rest)
    value = get("reranker_top_k")
    if value is not None:
        put(config, "top_k", value, origins["reranker_top_k"], rest)


def pick_messages(
    slots: Tree, origins: dict[str, str], families: dict[str, Tree], rest: Tree,
    sources: tuple[tuple[str, str], ...],
) -> tuple[list[Any] | None, str]:
    """The first present message source, in order; the others stay in ``rest``."""
    chosen: list[Any] | None = None
    origin = ""
    for slot, family in sources:
        if slot:
            value = slots.get(slot)
            if value is None:
                continue
            if chosen is None:
                if slot.endswith("messages"):
                    found = msgs.parts_messages(value)
                else:
                    decoded = msgs.loads_json(value)
                    found = msgs.indexed_messages(decoded)[0] if type(decoded) is list else None
                if found is not None:
                    chosen, origin = found, origins[slot]
                    continue
            rest[origins[slot]] = value
        else:
            flat = families.get(family)
            if flat is None:
                continue
            if chosen is not None:
                family_to_rest(family, flat, rest)
                continue
            tree = unflatten(flat)
            if family.startswith("oi_"):
                chosen, extra = msgs.openinference_messages(tree)
            else:
                chosen, extra = msgs.indexed_messages(tree)
            origin = FAMILY_PREFIX[family]
            extra_to_rest(family, extra, rest)
    return chosen, origin


def apply_io(plan: Plan, slots: Tree, origins: dict[str, str], families: dict[str, Tree],
             rest: Tree, attrs: Attributes, inputs: Tree, outputs: Tree, has_chat: bool,
             has_answers: bool) -> None:
    """Inputs and outputs from values, entities, tool calls, documents and embeddings.

    ``input.value``/``output.value`` are used only where no messages were found (they
    then restate them); a JSON object merges into the tree, anything else lands under
    ``input``/``output`` (tool calls: ``arguments``/``result``).
    """
    for name in plan.io:
        value = slots.get(name)
        if name == "input_value" or name == "output_value":
            if value is None:
                continue
            if has_chat if name == "input_value" else has_answers:
                rest[origins[name]] = value
                continue
            tree, key = (inputs, "input") if name == "input_value" else (outputs, "output")
            mime = attrs.get("input.mime_type" if name == "input_value" else "output.mime_type")
            decoded = json_or_text(value, mime)
            if type(decoded) is dict:
                put_all(tree, decoded, origins[name], value, rest)
            else:
                put(tree, key, decoded, origins[name], rest)
        elif name in _JSON_IO:
            if value is None:
                continue
            tree, key = (inputs, "input") if name in _INPUT_SIDE else (outputs, "output")
            if name.startswith("entity"):
                decoded = msgs.loads_json_value(value)
                if decoded is msgs.NOT_JSON:
                    decoded = None
            else:
                key = "arguments" if name == "tool_arguments" else "result"
                decoded = msgs.loads_json(value)
            if type(decoded) is dict:
                put_all(tree, decoded, origins[name], value, rest)
            else:
                put(tree, key, decoded if decoded is not None else value, origins[name], rest)
        elif name == "reranker_query":
            if value is not None:
                put(inputs, "query", value, origins[name], rest)
        else:
            add_documents(name, families[name], inputs, outputs, rest)


_JSON_IO = frozenset({"entity_input", "entity_output", "tool_arguments", "tool_result"})
_INPUT_SIDE = frozenset({"entity_input", "tool_arguments"})
_DOCUMENTS = {"documents": ("outputs", "documents", "document"),
              "rerank_in": ("inputs", "documents", "document"),
              "rerank_out": ("outputs", "documents", "document"),
              "embeddings": ("outputs", "embeddings", "embedding")}


def add_documents(family: str, flat: Tree, inputs: Tree, outputs: Tree, rest: Tree) -> None:
    side, key, wrapper = _DOCUMENTS[family]
    items, extra = msgs.unwrap_indexed(unflatten(flat), wrapper)
    for item in items:
        meta = item.get("metadata") if type(item) is dict else None
        if type(meta) is str:
            decoded = msgs.loads_json(meta)
            if type(decoded) is dict:
                item["metadata"] = decoded
    put(inputs if side == "inputs" else outputs, key, items, FAMILY_PREFIX[family], rest)
    extra_to_rest(family, extra, rest)


def usage_metadata(plan: Plan, slots: Tree, origins: dict[str, str], rest: Tree,
                   outputs: Tree, derived: Tree) -> None:
    """Token counts (as ints; others stay in ``rest``) and finish reasons.

    A single finish reason agreeing with the output message is its ``finish_reason``;
    several go to ``derived`` (metadata ``finish_reasons``).
    """
    for slot in plan.tokens:
        value = slots.get(slot)
        if value is not None:
            count = as_int(value)
            if count is None:
                rest[origins[slot]] = value
            else:
                derived[slot] = count
    value = slots.get("finish_reasons")
    if value is not None:
        reasons = [value] if type(value) is str else value
        if (type(reasons) is list and len(reasons) == 1
                and outputs.get("finish_reason", reasons[0]) == reasons[0]):
            outputs["finish_reason"] = reasons[0]
        else:
            derived["finish_reasons"] = value


def agent_metadata(slots: Tree, derived: Tree) -> None:
    """``derived["agent"]``: the GenAI agent's name, id and description."""
    agent = {}
    for slot, field in (("agent_name", "name"), ("agent_id", "id"),
                        ("agent_description", "description")):
        value = slots.get(slot)
        if value is not None:
            agent[field] = value
    if agent:
        derived["agent"] = agent


def chat_from_events(events: SpanEvents, span: SpanView, chat: list[Any] | None,
                     answers: list[Any] | None, system: tuple[Any, str] | None,
                     ) -> tuple[list[Any] | None, str, list[Any] | None, str,
                                tuple[Any, str] | None]:
    """Messages carried by span events, for whichever side the attributes left empty."""
    chat_origin = answers_origin = ""
    details = events.details
    if details is not None:
        attrs = span.events[details].attributes
        used: set[str] = set()
        if chat is None and system is None:
            found = attrs.get("gen_ai.system_instructions")
            if found is not None:
                system = (found, DETAILS_EVENT)
                used.add("gen_ai.system_instructions")
        if chat is None:
            chat = msgs.parts_messages(attrs.get("gen_ai.input.messages"))
            if chat is not None:
                chat_origin = DETAILS_EVENT
                used.add("gen_ai.input.messages")
        if answers is None:
            answers = msgs.parts_messages(attrs.get("gen_ai.output.messages"))
            if answers is not None:
                answers_origin = DETAILS_EVENT
                used.add("gen_ai.output.messages")
        if used and used.issuperset(attrs):
            events.taken.add(details)
    if chat is None and events.inputs:
        chat = events.take(events.inputs)
        chat_origin = "events"
    if answers is None and events.outputs:
        answers = events.take(events.outputs)
        answers_origin = "events"
    return chat, chat_origin, answers, answers_origin, system
