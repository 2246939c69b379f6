"""The proxy tests' plane (:class:`ProxyPlane`, a ``tests/_dataplane.py`` plane with its
upstream fake providers) and what tests do with it: storing a credential, calling the
proxy, reading server-sent events."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from _dataplane import Plane
from _fake_llm_provider import FakeProvider


async def store_credential(plane: Plane, who: str, api_key: str, api_base: str,
                           provider: str = "openai") -> dict[str, Any]:
    """Create (or replace) the credential of ``who``'s workspace for ``provider``."""
    listed = await plane.ok("GET", "/v1/proxy/credentials", who)
    for credential in listed["credentials"]:
        if credential["provider"] == provider:
            await plane.ok("DELETE", f"/v1/proxy/credentials/{credential['id']}", who)
    created: dict[str, Any] = await plane.ok(
        "POST", "/v1/proxy/credentials", who, status=201,
        json={"provider": provider, "api_key": api_key, "api_base": api_base})
    return created


def chat_body(model: str = "openai/gpt-4o-mini", text: str = "hello", **extra: Any
              ) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": text}], **extra}


async def chat(plane: Plane, who: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return await plane.call("POST", "/v1/chat/completions", who, json=body, **kwargs)


def sse_events(text: str) -> list[Any]:
    """The ``data:`` payloads of a server-sent event stream (``[DONE]`` kept as a string)."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events
                   if isinstance(e, dict) and e.get("choices"))


@dataclass
class Upstream:
    fake: FakeProvider
    url: str

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"


def provider_key(label: str) -> str:
    """A realistic-looking secret, different every time."""
    return f"sk-{label}-{secrets.token_urlsafe(30)}"


@dataclass
class ProxyPlane(Plane):
    projects: dict[str, str]
