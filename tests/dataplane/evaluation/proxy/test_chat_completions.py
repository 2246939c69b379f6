"""Chat completions through the proxy: LiteLLM to a real local provider, streaming and not,
with the workspace's key, traced as model events that land in ClickHouse."""

from __future__ import annotations

import math
from typing import Any

import httpx2
import openai
import pytest
from _proxy_plane import (
    ProxyPlane,
    Upstream,
    chat,
    chat_body,
    provider_key,
    sse_events,
    store_credential,
    streamed_text,
)

from apiary.dataplane.enrich import PriceTable

EXPECTED_COST = PriceTable.bundled().cost("gpt-4o-mini", "openai", 12, 5)


@pytest.fixture(scope="module")
async def key_a(proxy_plane: ProxyPlane, upstream: Upstream) -> str:
    key = provider_key("ws1")
    await store_credential(proxy_plane, "admin", key, upstream.api_base)
    return key


async def _stored_columns(plane: ProxyPlane, event_id: str) -> int:
    """How many stored events have this id *and* the computed model/usage/cost columns the
    writer derives from config and metadata (filters on the columns themselves)."""
    result = await plane.context.store.export(plane.projects["a"], {"filters": [
        {"field": "event_id", "operator": "is", "value": event_id, "type": "id"},
        {"field": "model", "operator": "is", "value": "gpt-4o-mini", "type": "string"},
        {"field": "provider", "operator": "is", "value": "openai", "type": "string"},
        {"field": "total_tokens", "operator": "is", "value": 17, "type": "number"},
        {"field": "cost", "operator": "greater than", "value": 0, "type": "number"},
    ]})
    return int(result["totalEvents"])


async def test_a_completion_goes_through_litellm_with_the_workspace_key(
        proxy_plane: ProxyPlane, upstream: Upstream, key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(text="ping", temperature=0.2,
                                                      max_tokens=20))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {**body["choices"][0]["message"],
                                             "role": "assistant", "content": "echo: ping"}
    assert body["usage"]["prompt_tokens"] == 12
    assert body["usage"]["completion_tokens"] == 5
    seen = upstream.fake.requests[-1]
    assert seen.authorization == f"Bearer {key_a}"
    # LiteLLM stripped the provider prefix and passed the parameters on; nothing of ours.
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.body["temperature"] == 0.2
    assert seen.body["max_tokens"] == 20
    assert "metadata" not in seen.body


async def test_the_call_is_traced_as_a_model_event_with_usage_and_cost(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(text="trace me", seed=7,
                                                      metadata={"purpose": "test"}),
                          headers={"x-apiary-event-name": "judge-call",
                                   "x-apiary-source": "playground"})
    assert response.status_code == 200, response.text
    event_id = response.headers["x-apiary-event-id"]
    event = await proxy_plane.event(event_id, "a")
    assert event["event_type"] == "model"
    assert event["event_name"] == "judge-call"
    assert event["source"] == "playground"
    assert event["project_id"] == proxy_plane.projects["a"]
    assert event["config"]["provider"] == "openai"
    assert event["config"]["model"] == "gpt-4o-mini"
    assert event["config"]["hyperparameters"] == {"seed": 7}
    assert event["inputs"]["chat_history"][-1] == {"role": "user", "content": "trace me"}
    assert event["outputs"]["content"] == "echo: trace me"
    assert event["error"] is None
    meta = event["metadata"]
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["total_tokens"]) == (
        12, 5, 17)
    assert EXPECTED_COST is not None
    assert EXPECTED_COST > 0
    assert math.isclose(meta["cost"], EXPECTED_COST, rel_tol=1e-9)
    assert meta["purpose"] == "test"
    assert meta["proxy"]["caller"] == proxy_plane.subjects["a"]
    assert event["duration"] > 0
    assert await _stored_columns(proxy_plane, event_id) == 1


async def test_a_stream_relays_chunks_and_is_traced_when_it_ends(
        proxy_plane: ProxyPlane, upstream: Upstream, key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(text="stream this please",
                                                      stream=True))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert streamed_text(events) == "echo: stream this please"
    # The proxy asked the provider for usage (to trace it) but the caller did not: no
    # usage chunk reaches it.
    assert upstream.fake.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all("usage" not in e for e in events if isinstance(e, dict))
    event = await proxy_plane.event(response.headers["x-apiary-event-id"], "a")
    assert event["config"]["stream"] is True
    assert event["outputs"]["content"] == "echo: stream this please"
    assert event["metadata"]["total_tokens"] == 17
    assert math.isclose(event["metadata"]["cost"], EXPECTED_COST or 0, rel_tol=1e-9)
    assert event["metadata"]["time_to_first_token_ms"] >= 0
    assert await _stored_columns(proxy_plane, response.headers["x-apiary-event-id"]) == 1


async def test_a_stream_forwards_usage_when_the_caller_asks(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(
        stream=True, stream_options={"include_usage": True}))
    events = sse_events(response.text)
    usage = [e["usage"] for e in events if isinstance(e, dict) and e.get("usage")]
    assert len(usage) == 1
    assert usage[0]["total_tokens"] == 17


async def test_the_event_joins_the_session_and_parent_the_caller_names(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    headers = {"x-apiary-session-id": "sess-proxy-1", "x-apiary-parent-id": "chain-7"}
    response = await chat(proxy_plane, "a", chat_body(), headers=headers)
    event = await proxy_plane.event(response.headers["x-apiary-event-id"], "a")
    assert (event["session_id"], event["parent_id"]) == ("sess-proxy-1", "chain-7")


async def test_the_openai_sdk_works_against_the_proxy(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    """OpenAI's own client, pointed at the proxy, in both modes."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=proxy_plane.app),
                              base_url="http://dp")
    client = openai.AsyncOpenAI(api_key=proxy_plane.keys["a"], base_url="http://dp/v1",
                                http_client=http, max_retries=0)
    try:
        completion = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "sdk"}])
        assert completion.choices[0].message.content == "echo: sdk"
        assert completion.usage is not None
        assert completion.usage.total_tokens == 17
        stream = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "sdk stream"}],
            stream=True)
        pieces: list[Any] = [chunk.choices[0].delta.content async for chunk in stream
                             if chunk.choices]
        assert "".join(p for p in pieces if p) == "echo: sdk stream"
    finally:
        await client.close()


async def test_parameters_outside_openais_api_are_refused(
        proxy_plane: ProxyPlane, upstream: Upstream, key_a: str) -> None:
    """A caller cannot redirect the workspace's key (or bring its own) through LiteLLM's
    keyword arguments."""
    before = len(upstream.fake.requests)
    for extra in ({"api_base": "http://127.0.0.1:1/v1"}, {"api_key": "sk-mine"},
                  {"base_url": "http://evil"}, {"extra_headers": {"x": "y"}},
                  {"custom_llm_provider": "openai"}):
        body = await proxy_plane.fails(400, "POST", "/v1/chat/completions", "a",
                                       json=chat_body(**extra))
        assert body["errorCode"] == "invalid_request"
        assert next(iter(extra)) in body["message"]
    bad_role = chat_body()
    bad_role["messages"][0]["role"] = "wizard"
    await proxy_plane.fails(400, "POST", "/v1/chat/completions", "a", json=bad_role)
    assert len(upstream.fake.requests) == before


async def test_a_model_without_a_provider_is_a_400_naming_the_field(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    body = await proxy_plane.fails(400, "POST", "/v1/chat/completions", "a",
                                   json=chat_body(model="no-such-model-anywhere"))
    assert body["errorCode"] == "invalid_request"
    assert body["details"]["field"] == "model"


async def test_the_proxy_needs_proxy_use_and_a_project(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    assert (await proxy_plane.fails(403, "POST", "/v1/chat/completions", "user_only",
                                    json=chat_body()))["errorCode"] == "forbidden"
    # A workspace-scoped credential has no project to trace the call into.
    assert (await proxy_plane.fails(403, "POST", "/v1/chat/completions", "ws",
                                    json=chat_body()))["errorCode"] == "forbidden"
    response = await proxy_plane.http.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 401
