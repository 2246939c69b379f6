"""OpenTelemetry GenAI semantic conventions (gen_ai.*), current and older forms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _otlp_requests import FORMATS, one_event, span_with
from opentelemetry.trace import Tracer

SYSTEM = [{"type": "text", "content": "You are terse."}]
INPUT = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {"role": "assistant", "parts": [
        {"type": "tool_call", "id": "call_1", "name": "weather",
         "arguments": {"city": "Paris"}}]},
    {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": "call_1", "response": "rainy, 12C"}]},
]
OUTPUT = [{"role": "assistant", "finish_reason": "stop",
           "parts": [{"type": "text", "content": "Rainy, 12C."}]}]
CHAT: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 100,
    "gen_ai.request.top_p": 0.9,
    "gen_ai.request.stop_sequences": ["END"],
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 5,
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.system_instructions": json.dumps(SYSTEM),
    "gen_ai.input.messages": json.dumps(INPUT),
    "gen_ai.output.messages": json.dumps(OUTPUT),
    "server.address": "api.openai.com",
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_chat_span(fmt: str) -> None:
    event = one_event(span_with(CHAT, "chat gpt-4o"), fmt)
    assert event["event_type"] == "model"
    assert event["event_name"] == "chat gpt-4o"
    assert event["config"] == {"model": "gpt-4o", "provider": "openai", "temperature": 0.2,
                               "max_tokens": 100, "top_p": 0.9, "stop_sequences": ["END"]}
    assert event["inputs"] == {"chat_history": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy, 12C"},
    ]}
    assert event["outputs"] == {"role": "assistant", "finish_reason": "stop",
                                "content": "Rainy, 12C."}
    metadata = event["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"]) == (10, 5)
    assert metadata["response_model"] == "gpt-4o-2024-08-06"
    assert metadata["response_id"] == "chatcmpl-1"
    assert metadata["gen_ai"] == {"operation": {"name": "chat"}}
    assert metadata["server"] == {"address": "api.openai.com"}
    assert "total_tokens" not in metadata


def test_older_names_for_usage_and_provider() -> None:
    event = one_event(span_with({
        "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet",
        "gen_ai.response.model": "claude-3-5-sonnet", "gen_ai.usage.prompt_tokens": 7,
        "gen_ai.usage.completion_tokens": 3, "gen_ai.usage.total_tokens": 10,
    }))
    assert event["event_type"] == "model"
    assert event["config"] == {"model": "claude-3-5-sonnet", "provider": "anthropic"}
    assert "response_model" not in event["metadata"]
    assert (event["metadata"]["prompt_tokens"], event["metadata"]["completion_tokens"],
            event["metadata"]["total_tokens"]) == (7, 3, 10)


def test_response_model_alone_is_the_model() -> None:
    event = one_event(span_with({"gen_ai.response.model": "m-1", "gen_ai.operation.name":
                                 "text_completion"}))
    assert event["config"]["model"] == "m-1"
    assert "response_model" not in event["metadata"]


def test_indexed_prompt_and_completion_attributes() -> None:
    event = one_event(span_with({
        "gen_ai.system": "openai", "llm.request.type": "chat",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Hi",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "",
        "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "c1",
        "gen_ai.completion.0.tool_calls.0.name": "lookup",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"q": "x"}',
    }))
    assert event["event_type"] == "model"
    assert event["inputs"]["chat_history"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
    ]
    assert event["outputs"] == {
        "role": "assistant", "content": "", "finish_reason": "tool_calls",
        "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
    }


def test_several_choices_are_all_kept() -> None:
    output = [{"role": "assistant", "parts": [{"type": "text", "content": "A"}]},
              {"role": "assistant", "parts": [{"type": "text", "content": "B"}]}]
    event = one_event(span_with({"gen_ai.operation.name": "chat",
                                 "gen_ai.output.messages": json.dumps(output),
                                 "gen_ai.response.finish_reasons": ["stop", "length"]}))
    assert event["outputs"]["content"] == "A"
    assert [c["content"] for c in event["outputs"]["choices"]] == ["A", "B"]
    assert event["metadata"]["finish_reasons"] == ["stop", "length"]


def test_multimodal_parts_become_a_content_list() -> None:
    message = [{"role": "user", "parts": [
        {"type": "text", "content": "What is this?"},
        {"type": "uri", "modality": "image", "uri": "https://x/img.png"}]}]
    event = one_event(span_with({"gen_ai.operation.name": "chat",
                                 "gen_ai.input.messages": json.dumps(message)}))
    assert event["inputs"]["chat_history"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "uri", "modality": "image", "uri": "https://x/img.png"}]}]


def test_messages_in_span_events() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.system": "openai"}) as span:
            span.add_event("gen_ai.system.message", {"gen_ai.system": "openai",
                                                     "content": "Be kind."})
            span.add_event("gen_ai.user.message", {"content": "Hello"})
            span.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                             "message": json.dumps({"content": "Hi!"})})
            span.add_event("cache.lookup", {"hit": False})
    event = one_event(build)
    assert event["inputs"]["chat_history"] == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"},
    ]
    assert event["outputs"] == {"role": "assistant", "content": "Hi!", "index": 0,
                                "finish_reason": "stop"}
    assert [e["name"] for e in event["metadata"]["events"]] == ["cache.lookup"]
    assert event["metadata"]["events"][0]["attributes"] == {"hit": False}


def test_content_prompt_and_completion_events() -> None:
    prompt = [{"role": "user", "content": "2+2?"}]
    completion = [{"role": "assistant", "content": "4"}]

    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("llm", attributes={
                "gen_ai.request.model": "m"}) as span:
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(prompt)})
            span.add_event("gen_ai.content.completion",
                           {"gen_ai.completion": json.dumps(completion)})
    event = one_event(build)
    assert event["inputs"]["chat_history"] == prompt
    assert event["outputs"] == completion[0]
    assert "events" not in event["metadata"]


def test_message_events_are_kept_when_attributes_already_carry_messages() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes=CHAT) as span:
            span.add_event("gen_ai.user.message", {"content": "other"})
    event = one_event(build)
    assert event["inputs"]["chat_history"][1]["content"] == "Weather in Paris?"
    assert event["metadata"]["events"][0]["name"] == "gen_ai.user.message"
    assert event["metadata"]["events"][0]["attributes"] == {"content": "other"}


def test_inference_details_event() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes={
                "gen_ai.operation.name": "chat"}) as span:
            span.add_event("gen_ai.client.inference.operation.details", {
                "gen_ai.input.messages": json.dumps(INPUT[:1]),
                "gen_ai.output.messages": json.dumps(OUTPUT),
            })
    event = one_event(build)
    assert event["inputs"]["chat_history"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert event["outputs"]["content"] == "Rainy, 12C."
    assert "events" not in event["metadata"]


def test_execute_tool_span() -> None:
    event = one_event(span_with({
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather",
        "gen_ai.tool.description": "Current weather", "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"city": "Paris"}',
        "gen_ai.tool.call.result": "rainy",
    }, "execute_tool weather"))
    assert event["event_type"] == "tool"
    assert event["config"] == {"tool": {"name": "weather", "description": "Current weather",
                                        "type": "function"}}
    assert event["inputs"] == {"city": "Paris"}
    assert event["outputs"] == {"result": "rainy"}
    assert event["metadata"]["tool_call_id"] == "call_1"


def test_tool_arguments_that_are_not_an_object() -> None:
    event = one_event(span_with({"gen_ai.tool.name": "echo",
                                 "gen_ai.tool.call.arguments": "plain words"}))
    assert event["event_type"] == "tool"
    assert event["inputs"] == {"arguments": "plain words"}


def test_agent_span() -> None:
    event = one_event(span_with({"gen_ai.operation.name": "invoke_agent",
                                 "gen_ai.agent.name": "planner", "gen_ai.agent.id": "a1",
                                 "gen_ai.request.model": "gpt-4o"}))
    assert event["event_type"] == "chain"
    assert event["metadata"]["agent"] == {"name": "planner", "id": "a1"}
    assert event["config"]["model"] == "gpt-4o"


def test_conversation_id_is_the_session_unless_another_is_given() -> None:
    event = one_event(span_with({"gen_ai.conversation.id": "conv-9"}))
    assert event["session_id"] == "conv-9"
    assert event["parent_id"] == "conv-9"
    event = one_event(span_with({"gen_ai.conversation.id": "conv-9",
                                 "honeyhive.session_id": "sess-1"}))
    assert event["session_id"] == "sess-1"
    assert event["metadata"]["gen_ai"]["conversation"]["id"] == "conv-9"


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"gen_ai.operation.name": "embeddings"}, "model"),
    ({"gen_ai.operation.name": "retrieval"}, "tool"),
    ({"gen_ai.operation.name": "create_agent"}, "chain"),
    ({"gen_ai.request.model": "m"}, "model"),
    ({"gen_ai.usage.input_tokens": 3}, "model"),
    ({"gen_ai.tool.name": "t"}, "tool"),
    ({"gen_ai.operation.name": "something_new", "gen_ai.request.model": "m"}, "model"),
])
def test_genai_event_types(attrs: dict[str, Any], expected: str) -> None:
    assert one_event(span_with(attrs))["event_type"] == expected


def test_invalid_usage_is_kept_not_counted() -> None:
    event = one_event(span_with({"gen_ai.request.model": "m",
                                 "gen_ai.usage.input_tokens": "many"}))
    assert "prompt_tokens" not in event["metadata"]
    assert event["metadata"]["gen_ai"]["usage"]["input_tokens"] == "many"
