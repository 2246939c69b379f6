"""Real receivers for the notification tests: one uvicorn server standing in for Slack and
for webhook receivers (each a path), and an SMTP server (``aiosmtpd``).

A webhook receiver checks ``X-Apiary-Signature`` the way ``docs/alerts.md`` tells receivers
to, with its own code (not Apiary's), and answers 401 when it does not verify. Each
receiver can be scripted: answer some statuses first (``script``, with ``Retry-After``),
be down (503) until a moment (``down_until``), or hold requests until released (``gate``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from _servers import free_port, http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def receiver_verifies(secret: bytes, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """The receiver's check, as docs/alerts.md shows it."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def delivery(self) -> str:
        return self.headers.get("x-apiary-delivery", "")


@dataclass
class Receiver:
    """One endpoint. ``secret``: verify signatures with it (a webhook); None: accept any
    (Slack). ``script``: (status, Retry-After or None) answered first, in order."""

    secret: bytes | None = None
    script: list[tuple[int, str | None]] = field(default_factory=list)
    gate: threading.Event | None = None
    #: Answer 503 until this time (unix seconds), then as scripted.
    down_until: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


class Receivers:
    """The endpoints of one HTTP server, by name: ``url(name)``."""

    def __init__(self) -> None:
        self.base = ""
        self._by_name: dict[str, Receiver] = {}

    def add(self, name: str, receiver: Receiver) -> str:
        self._by_name[name] = receiver
        return self.url(name)

    def url(self, name: str) -> str:
        return f"{self.base}/hook/{name}"

    async def _handle(self, request: Request) -> Response:
        receiver = self._by_name.get(request.path_params["name"])
        if receiver is None:
            return Response(status_code=404)
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        receiver.arrived.set()
        if receiver.gate is not None:
            import anyio.to_thread

            await anyio.to_thread.run_sync(receiver.gate.wait, 30)
        with receiver.lock:
            if time.time() < receiver.down_until:
                status, retry_after = 503, None
            elif receiver.script:
                status, retry_after = receiver.script.pop(0)
            else:
                status, retry_after = 200, None
            if status == 200 and receiver.secret is not None and not receiver_verifies(
                    receiver.secret, body, headers.get("x-apiary-signature", "")):
                status = 401
            receiver.requests.append(Received(time.time(), headers, body, status))
        extra = {"Retry-After": retry_after} if retry_after else {}
        return JSONResponse({"status": status}, status_code=status, headers=extra)


@contextlib.contextmanager
def receivers() -> Iterator[Receivers]:
    """A uvicorn server for the receivers, for the test module."""
    hub = Receivers()
    app = Starlette(routes=[Route("/hook/{name}", hub._handle, methods=["POST"])])
    with http_server(app) as base:
        hub.base = base
        yield hub


# --- SMTP ------------------------------------------------------------------------------


class Mailbox:
    """What the SMTP server received: one parsed message per DATA."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos),
                                  message_from_bytes(envelope.original_content,
                                                     policy=policy.default)))
        return "250 OK"

    def received(self) -> list[tuple[list[str], Message]]:
        with self._lock:
            return list(self.messages)


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[str, Mailbox]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1: ``smtp://127.0.0.1:<port>`` and its
    mailbox."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", mailbox
    finally:
        controller.stop()
