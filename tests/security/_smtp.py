"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, for the tests
that read verification links from the mail a user would get."""

from __future__ import annotations

import re
import time
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from apiary._private.ports import spare_port


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class LocalSmtpServer:
    """``url`` is what ``APIARY_SMTP_URL`` would be; :meth:`link_to` waits for a mail to an
    address and returns the first http(s) link in it."""

    def __init__(self) -> None:
        self.port = spare_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.inbox = _Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def mails_to(self, address: str) -> list[Message]:
        return [m for m in self.inbox.messages if m["To"] == address]

    def wait_mails_to(self, address: str, count: int, *, timeout: float = 5.0
                      ) -> list[Message]:
        """The mails to ``address`` once there are ``count`` (mail is sent by the control
        plane's outbox, a moment after the request that queued it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mails = self.mails_to(address)
            if len(mails) >= count:
                return mails
            time.sleep(0.02)
        raise AssertionError(f"{len(self.mails_to(address))} mails to {address}, not {count}")

    def link_to(self, address: str, *, timeout: float = 5.0) -> str:
        """The first http(s) link in the plain text of the latest mail to ``address``."""
        body = text_of(self.wait_mails_to(address, 1, timeout=timeout)[-1])
        found = re.search(r"https?://\S+", body)
        assert found, body
        return found.group(0)


def text_of(message: Message, subtype: str = "plain") -> str:
    """The ``text/<subtype>`` part of a mail (a plain one, or multipart/alternative)."""
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"no text/{subtype} part")
