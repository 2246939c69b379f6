"""A local OpenAI-compatible chat-completions server, playing the LLM judge's provider.

A real HTTP server (uvicorn on 127.0.0.1, :func:`tests._servers.http_server`), reached by
the judge client exactly as the LLM proxy or a provider would be. Knobs: ``delay_s`` per
call, ``statuses`` (HTTP statuses to answer the next calls with, then 200), ``reply``
(messages → assistant text). It records every request, and counts calls per event id
found in the prompt as ``event=<id>``, so tests can tell how often each event was judged.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

EVENT_MARK = re.compile(r"event=([A-Za-z0-9_.:-]+)")


def default_reply(messages: list[dict[str, Any]]) -> str:
    """Score 1 when the prompt mentions France, else 0, with an explanation."""
    prompt = messages[-1]["content"]
    score = 1 if "France" in prompt else 0
    said = "mentioned" if score else "not mentioned"
    return f'Here you go: {{"score": {score}, "explanation": "France is {said}"}}'


class FakeOpenAI:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.url = ""
        self.delay_s = 0.0
        self.statuses: list[int] = []
        self.reply: Callable[[list[dict[str, Any]]], str] = default_reply
        self.requests: list[dict[str, Any]] = []
        self.per_event: Counter[str] = Counter()

    def reset(self) -> None:
        with self._lock:
            self.delay_s = 0.0
            self.statuses = []
            self.reply = default_reply
            self.requests = []
            self.per_event = Counter()

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        headers = dict(request.headers)
        with self._lock:
            self.requests.append({"body": body, "headers": headers})
            status = self.statuses.pop(0) if self.statuses else 200
            delay = self.delay_s
        if delay:
            await asyncio.sleep(delay)
        if status != 200:
            return JSONResponse({"error": {"message": f"forced {status}"}}, status_code=status)
        messages = body["messages"]
        with self._lock:
            for match in EVENT_MARK.finditer(messages[-1]["content"]):
                self.per_event[match.group(1)] += 1
        content = self.reply(messages)
        return JSONResponse({
            "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions,
                                       methods=["POST"])])


@contextmanager
def openai_server() -> Iterator[FakeOpenAI]:
    """The fake server, running; ``.url`` is its base URL (``.../v1``)."""
    from _servers import http_server

    fake = FakeOpenAI()
    with http_server(fake.app()) as url:
        fake.url = f"{url}/v1"
        yield fake
