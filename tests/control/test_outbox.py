"""The control plane's mail outbox (apiary/control/outbox.py) against a real SMTP server
(aiosmtpd) on a free port, on PostgreSQL and SQLite: invitation and verification mail is
queued with what it announces, arrives once with a text and an HTML part, survives a mail
server that is down for a while, ends ``failed`` on a permanent refusal or past
``notify_max_age_s``, never sits in cpdb in the clear, and is never sent for a transaction
that rolled back; two outboxes never send one mail twice; SES through a local SES server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from _servers import free_port
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from apiary.control import ControlPlane
from apiary.control.authz import ALL_PERMISSIONS, Access, Resource
from apiary.control.db import OutgoingMail
from apiary.control.identity import accounts, verification
from apiary.control.invitations import create_invitation
from apiary.control.outbox import MailOutbox

from ._tenants import PASSWORD, auth, make_tenant, ok
from .conftest import FakeClock


class Inbox:
    """An aiosmtpd handler: keeps each mail, or answers ``reply`` to its DATA; ``delay_s``
    holds each DATA that long (a slow server)."""

    def __init__(self, reply: str | None = None, delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.mails: list[tuple[list[str], Message]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.reply is not None:
            return self.reply
        with self._lock:
            self.mails.append((list(envelope.rcpt_tos),
                               message_from_bytes(envelope.original_content,
                                                  policy=policy.default)))
        return "250 OK"

    def received(self) -> list[tuple[list[str], Message]]:
        with self._lock:
            return list(self.mails)


@contextlib.contextmanager
def smtp_on(port: int, inbox: Inbox) -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def settings_overrides(smtp_port: int) -> dict[str, object]:
    # Nothing listens there until a test starts its server.
    return {"smtp_url": f"smtp://127.0.0.1:{smtp_port}",
            "smtp_from": "Apiary <noreply@apiary.test>"}


def outbox_of(cp: ControlPlane, **kwargs: Any) -> MailOutbox:
    # rng 1.0: each back-off is its bound (base doubled per attempt), known to the test.
    return MailOutbox(cp.settings, cp.database, cp.envelope, clock=lambda: cp.clock(),
                      rng=lambda: 1.0, **kwargs)


def rows(cp: ControlPlane) -> list[OutgoingMail]:
    with cp.transaction() as db:
        return list(db.execute(select(OutgoingMail).order_by(OutgoingMail.created_at))
                    .scalars())


def parts(mail: Message) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in mail.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found[part.get_content_type()] = payload.decode()
    return found


def invite(client: TestClient, email: str = "bob@corp.example") -> tuple[str, dict[str, Any]]:
    tenant = make_tenant(client, "Corp")
    issued = ok(client.post(f"/v1/orgs/{tenant.org_id}/invitations",
                            json={"email": email, "role": "member"},
                            headers=auth(tenant.owner)), 201)
    return tenant.org_id, issued


def test_an_invitation_mail_arrives_once_with_text_and_html(
        client: TestClient, cp: ControlPlane, smtp_port: int) -> None:
    _, issued = invite(client)
    [row] = [r for r in rows(cp) if r.kind == "invitation"]
    assert row.to_address == "bob@corp.example"
    assert row.sent_at is None
    assert row.attempts == 0
    with smtp_on(smtp_port, Inbox()) as inbox:
        outbox = outbox_of(cp)
        assert outbox.send_due() >= 1
        assert outbox.send_due() == 0  # nothing due any more: sent once
        invitations = [(to, m) for to, m in inbox.received() if to == ["bob@corp.example"]]
    assert len(invitations) == 1
    [(_, mail)] = invitations
    assert mail["From"] == "Apiary <noreply@apiary.test>"
    assert mail["Message-ID"] == f"<{row.id}@apiary.control>"
    assert mail.get_content_type() == "multipart/alternative"
    body = parts(mail)
    assert issued["token"] in body["text/plain"]
    assert f"<pre>{issued['token']}</pre>" in body["text/html"]
    [row] = [r for r in rows(cp) if r.id == row.id]
    assert row.sent_at is not None
    assert row.attempts == 1
    assert row.failed_at is None


def test_a_verification_mail_carries_a_link_that_works(
        client: TestClient, cp: ControlPlane, smtp_port: int) -> None:
    body = ok(client.post("/v1/auth/signup", json={"email": "ada@corp.example",
                                                    "password": PASSWORD}), 201)
    client.cookies.clear()
    with smtp_on(smtp_port, Inbox()) as inbox:
        outbox_of(cp).send_due()
    [(to, mail)] = inbox.received()
    assert to == ["ada@corp.example"]
    text_part, html_part = parts(mail)["text/plain"], parts(mail)["text/html"]
    link = next(word for word in text_part.split() if word.startswith("http"))
    assert f'href="{link}"' in html_part
    token = link.split("token=", 1)[1]
    ok(client.post("/v1/auth/email/verify", json={"token": token}))
    me = ok(client.get("/v1/me", headers=auth(body["session_token"])))
    assert me["user"]["email_verified"] is True


def test_a_server_down_for_a_while_gets_the_mail_once_when_it_is_back(
        client: TestClient, cp: ControlPlane, clock: FakeClock, smtp_port: int) -> None:
    invite(client)
    outbox = outbox_of(cp)
    # Down: nothing listens on the port. Each attempt is recorded and put off.
    assert outbox.send_due() >= 1
    [row] = [r for r in rows(cp) if r.kind == "invitation"]
    assert row.sent_at is None
    assert row.failed_at is None
    assert row.attempts == 1
    assert row.last_error is not None
    assert "SMTP unreachable" in row.last_error
    assert row.next_attempt_at == clock.now + cp.settings.notify_retry_base_s * _second()
    assert outbox.send_due() == 0  # not due before its back-off
    clock.advance(1.5)
    assert outbox.send_due() >= 1  # still down: the second back-off doubles
    [row] = [r for r in rows(cp) if r.id == row.id]
    assert row.attempts == 2
    assert row.next_attempt_at == clock.now + 2 * cp.settings.notify_retry_base_s * _second()
    clock.advance(2.5)
    with smtp_on(smtp_port, Inbox()) as inbox:
        outbox.send_due()
        clock.advance(3600)
        outbox.send_due()
        received = [m for to, m in inbox.received() if to == ["bob@corp.example"]]
    assert len(received) == 1
    [row] = [r for r in rows(cp) if r.id == row.id]
    assert row.sent_at is not None
    assert row.attempts == 3


def _second() -> Any:
    from datetime import timedelta

    return timedelta(seconds=1)


def test_a_permanent_refusal_ends_failed_and_is_not_retried(
        client: TestClient, cp: ControlPlane, clock: FakeClock, smtp_port: int) -> None:
    invite(client)
    refusing = Inbox(reply="550 5.7.1 mailbox unavailable")
    with smtp_on(smtp_port, refusing):
        outbox = outbox_of(cp)
        outbox.send_due()
        clock.advance(7200)
        assert outbox.send_due() == 0
    [row] = [r for r in rows(cp) if r.kind == "invitation"]
    assert row.failed_at is not None
    assert row.sent_at is None
    assert row.attempts == 1
    assert row.last_error == "SMTP 550"


def test_a_deferral_is_retried_until_notify_max_age_then_failed(
        client: TestClient, cp: ControlPlane, clock: FakeClock, smtp_port: int) -> None:
    invite(client)
    deferring = Inbox(reply="451 4.3.0 try again later")
    with smtp_on(smtp_port, deferring):
        outbox = outbox_of(cp)
        outbox.send_due()
        [row] = [r for r in rows(cp) if r.kind == "invitation"]
        assert row.failed_at is None
        assert row.last_error == "SMTP 451"
        clock.advance(cp.settings.notify_max_age_s + 1)
        assert outbox.send_due() >= 1
    [row] = [r for r in rows(cp) if r.id == row.id]
    assert row.failed_at is not None
    assert row.sent_at is None
    assert row.attempts == 2
    assert row.last_error is not None
    assert "past notify_max_age_s" in row.last_error


def test_the_stored_mail_holds_no_token_or_link_in_the_clear(
        client: TestClient, cp: ControlPlane, smtp_port: int) -> None:
    """The attacker reads cpdb (a backup, a replica): the invitation token and the
    verification link are not there; a ciphertext moved to another row does not open."""
    _, issued = invite(client)
    ok(client.post("/v1/auth/signup", json={"email": "eve@corp.example",
                                            "password": PASSWORD}), 201)
    client.cookies.clear()
    with cp.database.engine.connect() as connection:
        dump = repr(connection.execute(text("SELECT * FROM outgoing_mail")).all())
    assert "eve@corp.example" in dump  # the recipient is in the clear, on purpose
    assert issued["token"] not in dump
    assert "apinv_" not in dump
    assert "apev_" not in dump
    assert "verify-email" not in dump
    assert "invited" not in dump  # nor the text around them
    # Swap two rows' ciphertexts: neither decrypts (bound to its row), both end failed.
    first, second, third = rows(cp)
    with cp.transaction() as db:
        a, b = db.get(OutgoingMail, first.id), db.get(OutgoingMail, second.id)
        assert a is not None
        assert b is not None
        a.message_ciphertext, b.message_ciphertext = b.message_ciphertext, a.message_ciphertext
    with smtp_on(smtp_port, Inbox()) as inbox:
        outbox_of(cp).send_due()
    for row in rows(cp):
        if row.id == third.id:
            assert row.sent_at is not None
            continue
        assert row.failed_at is not None
        assert row.last_error is not None
        assert "does not decrypt" in row.last_error
    assert [to for to, _ in inbox.received()] == [[third.to_address]]


def _invite_then_fail(cp: ControlPlane, org_id: str) -> None:
    with cp.transaction() as db:
        create_invitation(cp, db, Access("system", ALL_PERMISSIONS),
                          Resource(org_id, None, None), email="ghost@corp.example",
                          role_name="member", invited_by=None)
        raise RuntimeError("the request failed after the invitation was written")


def _sign_up_then_fail(cp: ControlPlane) -> None:
    with cp.transaction() as db:
        user = accounts.create_user(cp, db, email="ghost2@corp.example", password=PASSWORD,
                                    display_name=None)
        link = verification.issue(cp, db, user, email=user.email, purpose="signup")
        verification.queue_mail(cp, db, link)
        raise RuntimeError("the sign-up failed after its link was written")


def test_an_invitation_whose_transaction_rolls_back_sends_nothing(
        client: TestClient, cp: ControlPlane, smtp_port: int) -> None:
    org_id, _ = invite(client, "first@corp.example")
    with smtp_on(smtp_port, Inbox()) as inbox:
        outbox = outbox_of(cp)
        outbox.send_due()
        before = len(inbox.received())
        with pytest.raises(RuntimeError):
            _invite_then_fail(cp, org_id)
        with pytest.raises(RuntimeError):
            _sign_up_then_fail(cp)
        assert outbox.send_due() == 0
        assert len(inbox.received()) == before
    with cp.transaction() as db:
        addresses = set(db.execute(select(OutgoingMail.to_address)).scalars())
    assert "ghost@corp.example" not in addresses
    assert "ghost2@corp.example" not in addresses


def test_two_outboxes_never_send_one_mail_twice(
        client: TestClient, cp: ControlPlane, smtp_port: int) -> None:
    tenant = make_tenant(client, "Many")
    invited = [f"user{i}@many.example" for i in range(6)]
    for email in invited:
        ok(client.post(f"/v1/orgs/{tenant.org_id}/invitations",
                       json={"email": email, "role": "member"}, headers=auth(tenant.owner)),
           201)
    with smtp_on(smtp_port, Inbox(delay_s=0.05)) as inbox:
        outboxes = [outbox_of(cp), outbox_of(cp)]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(outbox: MailOutbox) -> None:
            try:
                barrier.wait(10)
                outbox.send_due()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(o,)) for o in outboxes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        received = inbox.received()
    ids = [m["Message-ID"] for to, m in received if to[0] in invited]
    assert len(ids) == len(invited)
    assert len(set(ids)) == len(invited)
    with cp.transaction() as db:
        pending = db.execute(select(func.count()).select_from(OutgoingMail)
                             .where(OutgoingMail.sent_at.is_(None))).scalar_one()
    assert pending == 0


async def test_the_outbox_loop_sends_what_a_request_queues(
        client: TestClient, cp: ControlPlane, smtp_port: int) -> None:
    import asyncio

    with smtp_on(smtp_port, Inbox()) as inbox:
        task = asyncio.get_running_loop().create_task(outbox_of(cp).run(interval_s=0.05))
        try:
            _, issued = await asyncio.to_thread(invite, client)
            deadline = time.monotonic() + 10
            while not [m for to, m in inbox.received() if to == ["bob@corp.example"]]:
                assert time.monotonic() < deadline, "the loop sent nothing"
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
    [mail] = [m for to, m in inbox.received() if to == ["bob@corp.example"]]
    assert issued["token"] in parts(mail)["text/plain"]


def test_mail_goes_through_ses_when_configured(
        cp: ControlPlane, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "apiary-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "apiary-test-secret")
    ses = boto3.client("ses", region_name="eu-west-1", endpoint_url=s3_endpoint)
    ses.verify_email_identity(EmailAddress="noreply@apiary.test")
    before = ses.get_send_quota()["SentLast24Hours"]
    settings = cp.settings.model_copy(update={
        "cp_ses_region": "eu-west-1", "cp_ses_endpoint_url": s3_endpoint,
        "smtp_from": "noreply@apiary.test"})
    with cp.transaction() as db:
        user = accounts.create_user(cp, db, email="ses@corp.example", password=PASSWORD,
                                    display_name=None)
        verification.queue_mail(cp, db, verification.issue(
            cp, db, user, email=user.email, purpose="signup"))
    outbox = MailOutbox(settings, cp.database, cp.envelope, clock=lambda: cp.clock())
    assert outbox.send_due() >= 1
    assert ses.get_send_quota()["SentLast24Hours"] == before + 1
    [row] = [r for r in rows(cp) if r.to_address == "ses@corp.example"]
    assert row.sent_at is not None
