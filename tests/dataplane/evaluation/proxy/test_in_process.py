"""The proxy in-process, as the evaluators' LLM judge uses it: the scored event's tenant
picks the key and receives the trace; failures are the judge's retry/reject errors. And a
stream whose caller goes away is still traced."""

from __future__ import annotations

import pytest
from _proxy_plane import ProxyPlane, Upstream, provider_key, store_credential

from apiary.dataplane.evaluation.proxy.request import ChatCompletionRequest
from apiary.dataplane.evaluation.proxy.routes import proxy_of
from apiary.dataplane.evaluation.proxy.runtime import (
    JUDGE_SOURCE,
    ProxyJudgeClient,
    open_chat_proxy,
)
from apiary.dataplane.evaluation.proxy.service import Caller, CompletionStream
from apiary.errors import JudgeRejected, JudgeUnavailable
from apiary.event import Tenant

MESSAGES = [{"role": "system", "content": "judge"}, {"role": "user", "content": "is 2+2 4?"}]


def _tenant(plane: ProxyPlane, project: str = "a", workspace: str = "ws-1") -> Tenant:
    return {"org_id": "org-1", "workspace_id": workspace,
            "project_id": plane.projects[project]}


@pytest.fixture
def judge(proxy_plane: ProxyPlane) -> ProxyJudgeClient:
    proxy = open_chat_proxy(proxy_plane.context.settings, proxy_plane.context.publisher,
                            database=lambda: proxy_plane.context.dpdb)
    return ProxyJudgeClient(proxy)


async def test_a_judge_call_uses_the_tenants_key_and_is_traced_into_its_project(
        proxy_plane: ProxyPlane, upstream: Upstream, judge: ProxyJudgeClient) -> None:
    key = provider_key("judge")
    await store_credential(proxy_plane, "admin", key, upstream.api_base)
    text = await judge.complete(model="openai/gpt-4o-mini", messages=MESSAGES,
                                tenant=_tenant(proxy_plane), temperature=0.0)
    assert text == "echo: is 2+2 4?"
    seen = upstream.fake.last("gpt-4o-mini")
    assert seen.authorization == f"Bearer {key}"
    assert seen.body["temperature"] == 0.0
    await judge.aclose()
    await proxy_plane.settled()
    found = await proxy_plane.context.store.export(proxy_plane.projects["a"], {"filters": [
        {"field": "source", "operator": "is", "value": JUDGE_SOURCE}]})
    assert found["totalEvents"] == 1
    event = found["events"][0]
    assert (event["event_type"], event["event_name"]) == ("model", "llm_judge")
    assert event["metadata"]["total_tokens"] == 17
    assert event["metadata"]["proxy"]["caller"] == "service:evaluator"


async def test_judge_failures_are_retryable_or_not(proxy_plane: ProxyPlane,
                                                   upstream: Upstream,
                                                   judge: ProxyJudgeClient) -> None:
    await store_credential(proxy_plane, "admin", provider_key("judge2"), upstream.api_base)
    tenant = _tenant(proxy_plane)
    with pytest.raises(JudgeUnavailable, match="rate limiting"):
        await judge.complete(model="openai/error-429", messages=MESSAGES, tenant=tenant)
    with pytest.raises(JudgeUnavailable):
        await judge.complete(model="openai/error-503", messages=MESSAGES, tenant=tenant)
    with pytest.raises(JudgeRejected, match="refused the workspace's credential"):
        await judge.complete(model="openai/error-401", messages=MESSAGES, tenant=tenant)
    # Workspace ws-2 has no key in this module: never another workspace's.
    with pytest.raises(JudgeRejected, match="no credential"):
        await judge.complete(model="openai/gpt-4o-mini", messages=MESSAGES,
                             tenant=_tenant(proxy_plane, "b", "ws-2"))
    await judge.aclose()


async def test_a_stream_abandoned_by_its_caller_is_traced_as_such(
        proxy_plane: ProxyPlane, upstream: Upstream) -> None:
    await store_credential(proxy_plane, "admin", provider_key("gone"), upstream.api_base)
    proxy = proxy_of(proxy_plane.context)
    answer = await proxy.complete(
        Caller(_tenant(proxy_plane), "key:test"),
        ChatCompletionRequest(model="openai/gpt-4o-mini", stream=True,
                              messages=[{"role": "user", "content": "a b c d e f g h"}]))
    assert isinstance(answer, CompletionStream)
    events = answer.events
    first = await anext(events)
    assert b"echo:" in first
    await events.aclose()  # what the server does when the client goes away
    assert await proxy.sink.drain(20)
    event = await proxy_plane.event(answer.event_id, "a")
    assert event["metadata"]["error_code"] == "client_disconnected"
    assert event["outputs"]["content"] == "echo:"
    assert event["metadata"]["total_tokens"] > 0  # usage estimated from what was relayed
