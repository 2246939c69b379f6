"""LLM-judge metrics against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

from typing import Any

import pytest
from _openai_server import FakeOpenAI

from apiary.dataplane.evaluation.judge import OpenAIJudgeClient, judge, parse_verdict, render
from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.errors import JudgeRejected, JudgeUnavailable
from apiary.event import Tenant

TENANT: Tenant = {"org_id": "o", "workspace_id": "w-1", "project_id": "p-1"}


def _metric(**overrides: Any) -> MetricSpec:
    spec: MetricSpec = {
        "id": "m-1", "name": "correct", "kind": "llm", "version": 2, "code": None,
        "criteria": "Is {{ outputs.answer }} right for {{inputs.question}}? event={{event_id}}",
        "return_type": "float", "sampling_pct": 100.0, "filters": [],
        "model_params": {"model_name": "gpt-4o", "model_provider": "openai"},
    }
    spec.update(overrides)  # type: ignore[typeddict-item]
    return spec


EVENT = {"event_id": "ev-1", "inputs": {"question": "capital of France?"},
         "outputs": {"answer": "Paris"}, "feedback": {"ground_truth": "Paris"},
         "metadata": {"n": [1, 2]}}


async def test_the_judge_sends_a_chat_completion_and_parses_the_verdict(
        judge: FakeOpenAI) -> None:
    client = OpenAIJudgeClient(judge.url, api_key="sk-test", timeout_s=5)
    try:
        result = await judge_call(client)
    finally:
        await client.aclose()
    assert result.score == 1.0
    assert result.explanation == "France is mentioned"
    (request,) = judge.requests
    body, headers = request["body"], request["headers"]
    assert body["model"] == "openai/gpt-4o"
    assert body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == (
        "Is Paris right for capital of France?? event=ev-1")
    assert '"score"' in body["messages"][0]["content"]
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["x-apiary-project"] == "p-1"
    assert judge.per_event["ev-1"] == 1


async def judge_call(client: OpenAIJudgeClient, **overrides: Any) -> Any:
    return await judge(client, _metric(**overrides), EVENT, TENANT, default_model="x")


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_busy_or_failing_endpoints_are_retryable(judge: FakeOpenAI, status: int) -> None:
    judge.statuses = [status]
    client = OpenAIJudgeClient(judge.url, timeout_s=5)
    with pytest.raises(JudgeUnavailable) as caught:
        await judge_call(client)
    assert caught.value.retryable
    assert (await judge_call(client)).score == 1.0  # the next call goes through
    await client.aclose()


async def test_refusals_and_unreachable_endpoints(judge: FakeOpenAI) -> None:
    judge.statuses = [400]
    client = OpenAIJudgeClient(judge.url, timeout_s=5)
    with pytest.raises(JudgeRejected) as refused:
        await judge_call(client)
    assert not refused.value.retryable
    judge.delay_s = 2.0
    slow = OpenAIJudgeClient(judge.url, timeout_s=0.3)
    with pytest.raises(JudgeUnavailable):
        await judge_call(slow)
    nowhere = OpenAIJudgeClient("http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(JudgeUnavailable):
        await judge_call(nowhere)
    for c in (client, slow, nowhere):
        await c.aclose()


async def test_a_reply_without_a_verdict_is_rejected(judge: FakeOpenAI) -> None:
    judge.reply = lambda _m: "I cannot judge this."
    client = OpenAIJudgeClient(judge.url, timeout_s=5)
    with pytest.raises(JudgeRejected):
        await judge_call(client)
    judge.reply = lambda _m: '{"score": "maybe", "explanation": "unsure"}'
    with pytest.raises(JudgeRejected):
        await judge_call(client, return_type="boolean")
    await client.aclose()


def test_verdicts_by_return_type() -> None:
    assert parse_verdict('{"score": 7, "explanation": "ok"}',
                         _metric(model_params={"scale": {"min": 1, "max": 5}})).score == 5.0
    assert parse_verdict("Rating: [[3.5]]", _metric()).score == 3.5
    assert parse_verdict("[[ Yes ]]", _metric(return_type="boolean")).score is True
    assert parse_verdict('{"score": false}', _metric(return_type="boolean")).score is False
    categorical = _metric(return_type="categorical",
                          model_params={"categories": ["good", "bad"]})
    assert parse_verdict('{"score": "GOOD"}', categorical).score == "good"
    with pytest.raises(JudgeRejected):
        parse_verdict('{"score": "ugly"}', categorical)
    text = parse_verdict('{"score": "needs work", "explanation": "x"}',
                         _metric(return_type="string"))
    assert (text.score, text.explanation) == ("needs work", "x")


def test_prompt_rendering() -> None:
    rendered = render("{{inputs}} | {{ground_truth}} | {{metadata.n}} | {{nope.x}} | {{event_id}}",
                      EVENT)
    assert rendered == '{"question":"capital of France?"} | Paris | [1,2] |  | ev-1'
