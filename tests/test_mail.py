"""The mail transport both planes share (apiary/mail.py), against a real SMTP server
(aiosmtpd): the MIME message, and which failures a later attempt may cure."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from _notification_receivers import Mailbox
from _servers import free_port

from apiary.errors import DeliveryFailed, DeliveryRetryable, OutboundUrlRefused
from apiary.mail import Mail, SmtpTransport, mime

MAIL = Mail("Apiary <a@apiary.test>", ("to@corp.example",), "Subject", "plain words",
            "<p>html words</p>", headers=(("Message-ID", "<m1@apiary.test>"),))


class RcptReply(Mailbox):
    """Answers ``reply`` to every RCPT TO."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        return self.reply


@contextlib.contextmanager
def smtp(handler: Any) -> Iterator[str]:
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


def test_the_message_has_a_text_part_and_an_html_alternative() -> None:
    message = mime(MAIL)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Message-ID"] == "<m1@apiary.test>"
    assert message["Date"]
    plain = mime(Mail("a@apiary.test", ("b@corp.example",), "s", "only text"))
    assert plain.get_content_type() == "text/plain"


def test_a_mail_the_server_takes_arrives_with_both_parts() -> None:
    box = Mailbox()
    with smtp(box) as url:
        SmtpTransport(url, timeout=5).send(MAIL)
    [(to, message)] = box.received()
    assert to == ["to@corp.example"]
    assert message.get_body(("plain",)).get_content().strip() == "plain words"  # type: ignore[union-attr]
    assert "html words" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]


@pytest.mark.parametrize(("reply", "retryable"), [("450 4.2.1 busy", True),
                                                  ("550 5.1.1 no such user", False)])
def test_a_refused_recipient_is_retried_only_on_a_4xx(reply: str, retryable: bool) -> None:
    with smtp(RcptReply(reply)) as url, pytest.raises(DeliveryFailed) as failed:
        SmtpTransport(url, timeout=5).send(MAIL, mail_id="m1")
    assert failed.value.retryable is retryable
    assert isinstance(failed.value, DeliveryRetryable) is retryable
    assert failed.value.context["mail_id"] == "m1"


def test_no_server_is_retryable_and_a_bad_url_is_not() -> None:
    with pytest.raises(DeliveryRetryable):
        SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=5).send(MAIL)
    with pytest.raises(DeliveryFailed) as bad:
        SmtpTransport("http://mail.example", timeout=5)
    assert not bad.value.retryable


def test_an_address_the_vetter_refuses_fails_for_good() -> None:
    class Refuse:
        def vetted_addresses(self, host: str, port: int) -> Sequence[str]:
            raise OutboundUrlRefused("internal address", reason="private")

    box = Mailbox()
    with smtp(box) as url, pytest.raises(DeliveryFailed) as refused:
        SmtpTransport(url, timeout=5, addresses=Refuse()).send(MAIL)
    assert not refused.value.retryable
    assert "refused" in refused.value.message
    assert box.received() == []
