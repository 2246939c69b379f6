"""Traceloop / OpenLLMetry conventions."""

from __future__ import annotations

import json

import pytest
from _otlp_requests import events_by_name, map_spans, one_event, record, span_with
from opentelemetry.trace import Tracer


@pytest.mark.parametrize(("kind", "expected"), [
    ("workflow", "chain"), ("task", "chain"), ("agent", "chain"), ("tool", "tool"),
    ("unknown", "chain"),
])
def test_span_kinds(kind: str, expected: str) -> None:
    assert one_event(span_with({"traceloop.span.kind": kind}))["event_type"] == expected


def test_openinference_kind_beats_traceloop_kind() -> None:
    event = one_event(span_with({"traceloop.span.kind": "tool",
                                 "openinference.span.kind": "LLM"}))
    assert event["event_type"] == "model"


def test_workflow_entity_and_association_properties() -> None:
    event = one_event(span_with({
        "traceloop.span.kind": "workflow", "traceloop.entity.name": "answer_question",
        "traceloop.workflow.name": "qa",
        "traceloop.entity.input": json.dumps({"args": ["q?"], "kwargs": {"lang": "en"}}),
        "traceloop.entity.output": json.dumps("the answer"),
        "traceloop.association.properties.session_id": "tl-session",
        "traceloop.association.properties.user_id": "u-9",
        "traceloop.association.properties.customer": "acme",
        "traceloop.association.properties.plan.tier": "pro",
    }, "answer_question.workflow"))
    assert event["event_type"] == "chain"
    assert event["event_name"] == "answer_question"
    assert event["session_id"] == "tl-session"
    assert event["inputs"] == {"args": ["q?"], "kwargs": {"lang": "en"}}
    assert event["outputs"] == {"output": "the answer"}
    assert event["user_properties"] == {"user_id": "u-9"}
    assert event["metadata"]["workflow_name"] == "qa"
    assert event["metadata"]["customer"] == "acme"
    assert event["metadata"]["plan"] == {"tier": "pro"}


def test_honeyhive_event_name_beats_entity_name() -> None:
    event = one_event(span_with({"traceloop.entity.name": "entity",
                                 "honeyhive_event_name": "explicit"}))
    assert event["event_name"] == "explicit"
    assert event["metadata"]["traceloop"]["entity"]["name"] == "entity"


def test_llm_span() -> None:
    event = one_event(span_with({
        "llm.request.type": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-3.5-turbo", "gen_ai.response.model": "gpt-3.5-turbo-0125",
        "gen_ai.request.temperature": 0.7, "llm.usage.total_tokens": 30,
        "gen_ai.usage.prompt_tokens": 20, "gen_ai.usage.completion_tokens": 10,
        "llm.is_streaming": False, "llm.headers": "None",
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Tell a joke",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Why did the chicken...",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.request.functions.0.name": "get_weather",
        "gen_ai.request.functions.0.parameters": '{"type": "object"}',
    }, "openai.chat"))
    assert event["event_type"] == "model"
    assert event["config"] == {
        "model": "gpt-3.5-turbo", "provider": "openai", "temperature": 0.7,
        "functions": [{"name": "get_weather", "parameters": '{"type": "object"}'}],
    }
    assert event["inputs"] == {"chat_history": [{"role": "user", "content": "Tell a joke"}]}
    assert event["outputs"] == {"role": "assistant", "content": "Why did the chicken...",
                                "finish_reason": "stop"}
    assert (event["metadata"]["prompt_tokens"], event["metadata"]["completion_tokens"],
            event["metadata"]["total_tokens"]) == (20, 10, 30)
    assert event["metadata"]["response_model"] == "gpt-3.5-turbo-0125"
    assert event["metadata"]["llm"] == {"request": {"type": "chat"}, "is_streaming": False,
                                        "headers": "None"}


def test_llm_request_type_alone_makes_a_model_event() -> None:
    assert one_event(span_with({"llm.request.type": "completion"}))["event_type"] == "model"
    assert one_event(span_with({"llm.request.type": "rerank"}))["event_type"] == "tool"


def test_task_children_of_a_workflow_share_its_session() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("wf", attributes={
                "traceloop.span.kind": "workflow",
                "traceloop.association.properties.session_id": "s-1"}),
            tracer.start_as_current_span("task", attributes={"traceloop.span.kind": "task"}),
        ):
            pass
    events = events_by_name(map_spans(record(build)))
    assert events["task"]["session_id"] == "s-1"
    assert events["task"]["parent_id"] == events["wf"]["event_id"]
    assert events["wf"]["parent_id"] == "s-1"
