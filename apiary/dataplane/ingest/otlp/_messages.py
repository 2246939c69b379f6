"""Chat messages from the several span conventions, in one shape.

Every convention's messages become OpenAI-style chat messages, the shape HoneyHive model
events carry in ``inputs.chat_history`` and ``outputs``::

    {"role": "assistant", "content": "...", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ], "finish_reason": "stop"}

- ``content`` is a string when the message is one text; otherwise a list of parts, text
  parts as ``{"type": "text", "text": ...}`` and other parts as received.
- tool call ``arguments`` are passed through as received (a JSON string for OpenAI-style
  producers, an object for GenAI ``parts``): re-encoding would change what was recorded.
- keys a convention has beyond these are kept in the message as they are.
"""

from __future__ import annotations

from typing import Any

import orjson

from apiary.dataplane.ingest.otlp._flatten import indexed

Message = dict[str, Any]

# GenAI span events that carry one input message each, and the role each implies.
EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def loads_json(value: Any) -> Any:
    """``value`` decoded when it is a string holding a JSON object or array, else ``None``.

    Only for attributes a convention declares as JSON; the first-character test keeps
    plain text (which may well parse, e.g. ``"42"``) from being decoded.
    """
    if type(value) is str and value and value[0] in "{[":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return None


_NOT_JSON: Any = object()


def loads_json_value(value: Any) -> Any:
    """``value`` decoded as any JSON value, or :data:`NOT_JSON`; for attributes that a
    convention always JSON-encodes (``traceloop.entity.input``/``output``)."""
    if type(value) is str:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    return _NOT_JSON


NOT_JSON = _NOT_JSON


def tool_call(call: Any) -> Any:
    """One tool call in OpenAI shape, from ``{id, name, arguments}`` or already-OpenAI."""
    if type(call) is not dict:
        return call
    function = call.get("function")
    if type(function) is dict:
        if "type" in call:
            return call
        return {"type": "function", **call}
    out: dict[str, Any] = {}
    fn: dict[str, Any] = {}
    for key, value in call.items():
        if key == "name" or key == "arguments":
            fn[key] = value
        elif key != "type":
            out[key] = value
    out["type"] = call.get("type", "function")
    out["function"] = fn
    return out


def _tool_calls(value: Any) -> Any:
    if type(value) is list:
        return [tool_call(c) for c in value]
    if type(value) is dict:
        return [tool_call(c) for c in indexed(value)[0]]
    return value


def from_parts(message: Any) -> Any:
    """A GenAI semconv message (``{role, parts: [...]}``) as a chat message."""
    if type(message) is not dict:
        return message
    parts = message.get("parts")
    if type(parts) is not list:
        return message
    if len(parts) == 1:
        part = parts[0]
        # The common case, one plain text part, without the general loop.
        if (type(part) is dict and len(part) == 2 and part.get("type") == "text"
                and "content" in part):
            out = message.copy()
            del out["parts"]
            out["content"] = part["content"]
            return out
    return _from_parts(message, parts)


def _from_parts(message: dict[str, Any], parts: list[Any]) -> Message:
    out: Message = {}
    for key, value in message.items():
        if key != "parts":
            out[key] = value
    content: list[Any] = []
    calls: list[Any] = []
    texts = 0
    for part in parts:
        kind = part.get("type") if type(part) is dict else None
        if kind == "text":
            content.append({"type": "text", "text": part.get("content")})
            texts += 1
        elif kind == "tool_call":
            calls.append(tool_call({k: v for k, v in part.items() if k != "type"}))
        else:
            content.append(part)
    if calls:
        out["tool_calls"] = calls
    if texts == 1 and len(content) == 1:
        out["content"] = content[0]["text"]
    elif (len(content) == 1 and type(content[0]) is dict
          and content[0].get("type") == "tool_call_response"):
        response = content[0]
        if "id" in response:
            out["tool_call_id"] = response["id"]
        out["content"] = response.get("response", response.get("result"))
    elif content:
        out["content"] = content
    return out


def parts_messages(value: Any) -> list[Any] | None:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages``: a JSON array of messages."""
    messages = loads_json(value) if type(value) is str else value
    if type(messages) is not list:
        return None
    return [from_parts(m) for m in messages]


def system_message(value: Any) -> Message | None:
    """``gen_ai.system_instructions`` (a JSON array of parts, or plain text) as a message."""
    parts = loads_json(value) if type(value) is str else value
    if type(parts) is list:
        message = from_parts({"role": "system", "parts": parts})
        return message if type(message) is dict else None
    if type(value) is str:
        return {"role": "system", "content": value}
    return None


def indexed_messages(tree: Any) -> tuple[list[Any], dict[str, Any]]:
    """``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` (un-flattened) as messages."""
    items, extra = indexed(tree)
    messages = []
    for item in items:
        if type(item) is dict and "tool_calls" in item:
            item = dict(item)
            item["tool_calls"] = _tool_calls(item["tool_calls"])
        messages.append(item)
    return messages, extra


def _oi_content(part: Any) -> Any:
    if type(part) is dict and type(part.get("message_content")) is dict:
        part = part["message_content"]
    if type(part) is not dict:
        return part
    if part.get("type") == "image" and type(part.get("image")) is dict:
        image = part["image"]
        inner = image.get("image") if type(image.get("image")) is dict else image
        rest = {k: v for k, v in part.items() if k not in ("type", "image")}
        return {"type": "image_url", "image_url": inner, **rest}
    return part


def _oi_message(item: Any) -> Any:
    if type(item) is not dict:
        return item
    inner = item.get("message")
    if type(inner) is not dict:
        return item
    out: Message = {}
    for key, value in inner.items():
        if key == "tool_calls":
            calls = indexed(value)[0] if type(value) is dict else value
            out["tool_calls"] = [
                tool_call(c["tool_call"] if type(c) is dict and "tool_call" in c else c)
                for c in (calls if type(calls) is list else [calls])
            ]
        elif key == "contents":
            parts = indexed(value)[0] if type(value) is dict else value
            converted = [_oi_content(p) for p in (parts if type(parts) is list else [parts])]
            if "content" in inner:
                out["contents"] = converted
            else:
                out["content"] = converted
        else:
            out[key] = value
    for key, value in item.items():
        if key != "message":
            out.setdefault(key, value)
    return out


def openinference_messages(tree: Any) -> tuple[list[Any], dict[str, Any]]:
    """``llm.input_messages.N.message.*`` / ``llm.output_messages...`` (un-flattened)."""
    items, extra = indexed(tree)
    return [_oi_message(item) for item in items], extra


def unwrap_indexed(tree: Any, wrapper: str) -> tuple[list[Any], dict[str, Any]]:
    """``x.N.<wrapper>.*`` items (OpenInference documents, embeddings, tools) as a list."""
    items, extra = indexed(tree)
    out = []
    for item in items:
        if type(item) is dict and type(item.get(wrapper)) is dict and len(item) == 1:
            item = item[wrapper]
        out.append(item)
    return out, extra


def from_event(name: str, attributes: dict[str, Any]) -> Message:
    """A message from a ``gen_ai.<role>.message`` span event's (un-flattened) attributes."""
    message: Message = {"role": attributes.get("role", EVENT_ROLES[name])}
    for key, value in attributes.items():
        if key == "tool_calls":
            decoded = loads_json(value)
            message[key] = _tool_calls(decoded if decoded is not None else value)
        elif key == "id" and message["role"] == "tool":
            message["tool_call_id"] = value
        elif key != "role":
            message[key] = value
    return message


def from_choice(attributes: dict[str, Any]) -> Message:
    """A message from a ``gen_ai.choice`` span event's (un-flattened) attributes."""
    inner = attributes.get("message")
    decoded = loads_json(inner)
    if decoded is not None:
        inner = decoded
    message: Message = {"role": "assistant"}
    if type(inner) is dict:
        message.update(inner)
        if "tool_calls" in message:
            message["tool_calls"] = _tool_calls(message["tool_calls"])
    elif inner is not None:
        message["content"] = inner
    for key, value in attributes.items():
        if key != "message":
            message.setdefault(key, value)
    return message
