"""OpenInference conventions (openinference.span.kind, llm.*, input/output values, ...)."""

from __future__ import annotations

import json

import pytest
from _otlp_requests import one_event, span_with

LLM = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-mini",
    "llm.provider": "openai",
    "llm.system": "openai",
    "llm.invocation_parameters": json.dumps({"temperature": 0.1, "max_tokens": 64}),
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Be helpful.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "Describe:",
    "llm.input_messages.1.message.contents.1.message_content.type": "image",
    "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://i/x.png",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_7",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": "cats"}',
    "llm.token_count.prompt": 20,
    "llm.token_count.completion": 4,
    "llm.token_count.total": 24,
    "llm.tools.0.tool.json_schema": json.dumps({"type": "function",
                                                "function": {"name": "search"}}),
    "input.value": json.dumps({"messages": "..."}),
    "input.mime_type": "application/json",
    "output.value": "raw completion",
    "session.id": "oi-session",
    "user.id": "user-5",
    "metadata": json.dumps({"experiment": "e1", "nested": {"k": 1}}),
    "tag.tags": ["beta", "eu"],
}


def test_llm_span() -> None:
    event = one_event(span_with(LLM, "ChatCompletion"))
    assert event["event_type"] == "model"
    assert event["session_id"] == "oi-session"
    assert event["config"] == {"model": "gpt-4o-mini", "provider": "openai",
                               "temperature": 0.1, "max_tokens": 64,
                               "tools": [{"type": "function", "function": {"name": "search"}}]}
    assert event["inputs"] == {"chat_history": [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": [
            {"type": "text", "text": "Describe:"},
            {"type": "image_url", "image_url": {"url": "https://i/x.png"}}]},
    ]}
    assert event["outputs"] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_7", "type": "function",
         "function": {"name": "search", "arguments": '{"q": "cats"}'}}]}
    metadata = event["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"],
            metadata["total_tokens"]) == (20, 4, 24)
    assert metadata["experiment"] == "e1"
    assert metadata["nested"] == {"k": 1}
    assert metadata["tags"] == ["beta", "eu"]
    assert event["user_properties"] == {"user_id": "user-5"}
    # With structured messages present, the raw input/output values stay in metadata.
    assert metadata["input"] == {"value": LLM["input.value"], "mime_type": "application/json"}
    assert metadata["output"] == {"value": "raw completion"}
    assert metadata["openinference"] == {"span": {"kind": "LLM"}}


def test_chain_span_values() -> None:
    event = one_event(span_with({
        "openinference.span.kind": "CHAIN", "input.value": json.dumps({"question": "q?"}),
        "input.mime_type": "application/json", "output.value": "an answer",
        "output.mime_type": "text/plain",
    }))
    assert event["event_type"] == "chain"
    assert event["inputs"] == {"question": "q?"}
    assert event["outputs"] == {"output": "an answer"}


def test_input_value_is_only_decoded_when_declared_json() -> None:
    event = one_event(span_with({"openinference.span.kind": "CHAIN",
                                 "input.value": '{"looks": "like json"}'}))
    assert event["inputs"] == {"input": '{"looks": "like json"}'}


def test_tool_span() -> None:
    event = one_event(span_with({
        "openinference.span.kind": "TOOL", "tool.name": "search",
        "tool.description": "Web search",
        "tool.parameters": json.dumps({"type": "object", "properties": {"q": {}}}),
        "input.value": json.dumps({"q": "cats"}), "input.mime_type": "application/json",
        "output.value": "3 results",
    }))
    assert event["event_type"] == "tool"
    assert event["config"] == {"tool": {"name": "search", "description": "Web search",
                                        "parameters": {"type": "object",
                                                       "properties": {"q": {}}}}}
    assert event["inputs"] == {"q": "cats"}
    assert event["outputs"] == {"output": "3 results"}


def test_retriever_span() -> None:
    event = one_event(span_with({
        "openinference.span.kind": "RETRIEVER", "input.value": "cats",
        "retrieval.documents.0.document.id": "d1",
        "retrieval.documents.0.document.content": "Cats purr.",
        "retrieval.documents.0.document.score": 0.9,
        "retrieval.documents.0.document.metadata": json.dumps({"source": "wiki"}),
        "retrieval.documents.1.document.id": "d2",
        "retrieval.documents.1.document.content": "Cats nap.",
    }))
    assert event["event_type"] == "tool"
    assert event["inputs"] == {"input": "cats"}
    assert event["outputs"] == {"documents": [
        {"id": "d1", "content": "Cats purr.", "score": 0.9, "metadata": {"source": "wiki"}},
        {"id": "d2", "content": "Cats nap."},
    ]}


def test_embedding_and_reranker_spans() -> None:
    event = one_event(span_with({
        "openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3",
        "embedding.embeddings.0.embedding.text": "hello",
        "embedding.embeddings.0.embedding.vector": [0.1, 0.2],
    }))
    assert event["event_type"] == "model"
    assert event["config"] == {"model": "text-embedding-3"}
    assert event["outputs"] == {"embeddings": [{"text": "hello", "vector": [0.1, 0.2]}]}
    event = one_event(span_with({
        "openinference.span.kind": "RERANKER", "reranker.model_name": "rr-1",
        "reranker.query": "cats", "reranker.top_k": 1,
        "reranker.input_documents.0.document.content": "a",
        "reranker.output_documents.0.document.content": "a",
    }))
    assert event["event_type"] == "tool"
    assert event["config"] == {"model": "rr-1", "top_k": 1}
    assert event["inputs"] == {"query": "cats", "documents": [{"content": "a"}]}
    assert event["outputs"] == {"documents": [{"content": "a"}]}


@pytest.mark.parametrize(("kind", "expected"), [
    ("LLM", "model"), ("EMBEDDING", "model"), ("CHAIN", "chain"), ("AGENT", "chain"),
    ("TOOL", "tool"), ("RETRIEVER", "tool"), ("RERANKER", "tool"), ("GUARDRAIL", "tool"),
    ("EVALUATOR", "tool"), ("PROMPT", "tool"), ("llm", "model"), ("UNKNOWN", "chain"),
])
def test_span_kinds(kind: str, expected: str) -> None:
    assert one_event(span_with({"openinference.span.kind": kind}))["event_type"] == expected


def test_honeyhive_event_type_beats_openinference_kind() -> None:
    event = one_event(span_with({"openinference.span.kind": "CHAIN",
                                 "honeyhive_event_type": "model"}))
    assert event["event_type"] == "model"


def test_provider_and_system_disagreeing_keeps_both() -> None:
    event = one_event(span_with({"llm.provider": "azure", "llm.system": "openai",
                                 "llm.model_name": "gpt-4o"}))
    assert event["config"]["provider"] == "azure"
    assert event["metadata"]["llm"]["system"] == "openai"
