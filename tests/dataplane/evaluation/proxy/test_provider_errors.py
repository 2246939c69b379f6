"""Provider failures reach the caller as precise statuses with ``{message, errorCode}``
(never 500), without the key even when the provider echoes it, and are traced."""

from __future__ import annotations

import pytest
from _proxy_plane import (
    ProxyPlane,
    Upstream,
    chat,
    chat_body,
    provider_key,
    sse_events,
    store_credential,
)
from _servers import free_port


@pytest.fixture(scope="module")
async def key_a(proxy_plane: ProxyPlane, upstream: Upstream) -> str:
    key = provider_key("errors")
    await store_credential(proxy_plane, "admin", key, upstream.api_base)
    return key


@pytest.mark.parametrize(("upstream_status", "status", "code"), [
    (400, 400, "provider_bad_request"),
    (422, 400, "provider_bad_request"),
    (401, 424, "provider_auth_failed"),
    (403, 424, "provider_auth_failed"),
    (404, 404, "provider_model_not_found"),
    (413, 413, "provider_payload_too_large"),
    (429, 429, "provider_rate_limited"),
    (408, 504, "provider_timeout"),
    (500, 502, "provider_unavailable"),
    (502, 502, "provider_unavailable"),
    (503, 502, "provider_unavailable"),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_provider_statuses_are_mapped(proxy_plane: ProxyPlane, key_a: str,
                                            upstream_status: int, status: int, code: str,
                                            stream: bool) -> None:
    response = await chat(proxy_plane, "a", chat_body(model=f"openai/error-{upstream_status}",
                                                      stream=stream))
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errorCode"] == code
    # The provider's own explanation survives; the key it echoed does not.
    assert f"rejected ({upstream_status})" in body["message"]
    assert key_a not in response.text
    assert "[redacted]" in body["message"]
    if status == 429:
        assert response.headers["retry-after"] == "7"


async def test_a_failed_call_is_traced_with_its_error(proxy_plane: ProxyPlane,
                                                      key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(model="openai/error-500"))
    assert response.status_code == 502
    # No event id header on an error answer: find the event by its error instead.
    await proxy_plane.settled()
    found = await proxy_plane.context.store.export(proxy_plane.projects["a"], {"filters": [
        {"field": "event_type", "operator": "is", "value": "model"},
        {"field": "metadata.error_code", "operator": "is", "value": "provider_unavailable"},
        {"field": "config.model", "operator": "is", "value": "error-500"},
    ]})
    assert found["totalEvents"] >= 1
    event = found["events"][0]
    assert "rejected (500)" in event["error"]
    assert key_a not in str(event)
    assert event["metadata"]["status_code"] == 502


async def test_a_provider_slower_than_the_timeout_is_a_504(proxy_plane: ProxyPlane,
                                                           key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(model="openai/slow-3", timeout=0.5))
    assert response.status_code == 504, response.text
    assert response.json()["errorCode"] == "provider_timeout"


async def test_an_answer_that_is_not_json_is_a_502(proxy_plane: ProxyPlane,
                                                   key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(model="openai/garbage"))
    assert response.status_code == 502, response.text
    assert response.json()["errorCode"] == "provider_unavailable"


async def test_a_stream_broken_midway_ends_with_an_error_event_and_is_traced(
        proxy_plane: ProxyPlane, key_a: str) -> None:
    response = await chat(proxy_plane, "a", chat_body(model="openai/broken-stream",
                                                      stream=True))
    assert response.status_code == 200  # the stream had started
    events = sse_events(response.text)
    assert events[0]["choices"][0]["delta"]["content"] == "echo:"
    assert "[DONE]" not in events
    assert events[-1]["errorCode"] == "provider_unavailable"
    assert events[-1]["error"]["code"] == "provider_unavailable"
    event = await proxy_plane.event(response.headers["x-apiary-event-id"], "a")
    assert event["error"] is not None
    assert event["outputs"]["content"] == "echo:"  # what was relayed before the break
    assert event["metadata"]["error_code"] == "provider_unavailable"


async def test_an_unreachable_provider_is_a_502(proxy_plane: ProxyPlane) -> None:
    # Workspace ws-2 points its key at a port nobody listens on.
    await store_credential(proxy_plane, "b", provider_key("ws2"),
                           f"http://127.0.0.1:{free_port()}/v1")
    response = await chat(proxy_plane, "b", chat_body())
    assert response.status_code == 502, response.text
    assert response.json()["errorCode"] == "provider_unavailable"


async def test_a_provider_without_a_credential_is_a_400(proxy_plane: ProxyPlane,
                                                        key_a: str) -> None:
    body = await proxy_plane.fails(400, "POST", "/v1/chat/completions", "a",
                                   json=chat_body(model="anthropic/claude-3-5-haiku-latest"))
    assert body["errorCode"] == "provider_not_configured"
    assert "anthropic" in body["message"]
