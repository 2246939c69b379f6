"""A local OpenAI-compatible provider: ``POST /v1/chat/completions``, served for real by
uvicorn (``tests/_servers.py``'s ``http_server``) and reached by LiteLLM over HTTP exactly as
it would reach OpenAI.

The model name chooses the behaviour:

- anything else: answers ``"echo: <last user message>"`` with :data:`USAGE` (JSON, or
  server-sent chunks with ``stream: true``, plus a usage chunk when
  ``stream_options.include_usage``);
- ``error-<status>``: that HTTP status with an OpenAI error body whose message **echoes the
  Authorization header it received** (as a careless provider might), and ``retry-after: 7``
  on 429;
- ``slow-<seconds>``: answers after that many seconds;
- ``broken-stream``: streams one chunk, then breaks the connection;
- ``garbage``: 200 with a body that is not JSON.

Every request is recorded (:attr:`FakeProvider.requests`): the Authorization header and the
body, so tests can tell which key was used.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


@dataclass
class Seen:
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeProvider:
    requests: list[Seen] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def last(self, model: str) -> Seen:
        return next(s for s in reversed(self.requests) if s.body.get("model") == model)

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        authorization = request.headers.get("authorization")
        self.requests.append(Seen(authorization, body))
        model = str(body.get("model"))
        if model.startswith("error-"):
            status = int(model.split("-", 1)[1])
            headers = {"retry-after": "7"} if status == 429 else {}
            return JSONResponse(
                {"error": {"message": f"rejected ({status}); you sent {authorization}",
                           "type": "invalid_request_error", "code": str(status)}},
                status_code=status, headers=headers)
        if model.startswith("slow-"):
            await asyncio.sleep(float(model.split("-", 1)[1]))
        if model == "garbage":
            return PlainTextResponse("<html>this is not json</html>")
        text = "echo: " + _last_user_text(body.get("messages") or [])
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_chunks(model, text, usage, broken=model == "broken-stream"),
                                     media_type="text/event-stream")
        return JSONResponse({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": USAGE,
        })


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n"


async def _chunks(model: str, text: str, usage: bool, *, broken: bool) -> AsyncIterator[str]:
    words = text.split(" ")
    for index, word in enumerate(words):
        delta: dict[str, Any] = {"content": word if index == 0 else " " + word}
        if index == 0:
            delta["role"] = "assistant"
        yield _chunk(model, delta)
        if broken:
            await asyncio.sleep(0.05)
            raise ConnectionResetError("the fake provider breaks the stream")
        await asyncio.sleep(0.01)
    yield _chunk(model, {}, "stop")
    if usage:
        data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [], "usage": USAGE}
        yield f"data: {json.dumps(data)}\n\n"
    yield "data: [DONE]\n\n"
