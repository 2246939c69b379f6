"""A real HTTP server on 127.0.0.1 that records every request it receives: the attacker's
endpoint of the outbound-URL tests (it must receive nothing), or a provider that answers
like OpenAI's chat completions.

Served by uvicorn through ``tests/_servers.py``'s ``http_server``; ``redirect_to`` makes it
answer every request with a 302 to that URL instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from _servers import http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Received:
    method: str
    path: str
    authorization: str | None
    body: bytes


@dataclass
class RecordingServer:
    url: str = ""
    redirect_to: str | None = None
    received: list[Received] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def authorizations(self) -> list[str | None]:
        return [r.authorization for r in self.received]

    async def _any(self, request: Request) -> Response:
        self.received.append(Received(request.method, request.url.path,
                                      request.headers.get("authorization"),
                                      await request.body()))
        if self.redirect_to is not None:
            return RedirectResponse(self.redirect_to, status_code=302)
        if request.url.path.endswith("/chat/completions"):
            return JSONResponse({
                "id": "chatcmpl-recorded", "object": "chat.completion",
                "created": int(time.time()), "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "recorded"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            })
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._any,
                                       methods=["GET", "POST", "PUT", "DELETE"])])


@contextmanager
def recording_server(redirect_to: str | None = None) -> Iterator[RecordingServer]:
    server = RecordingServer(redirect_to=redirect_to)
    with http_server(server.app()) as url:
        server.url = url
        yield server
