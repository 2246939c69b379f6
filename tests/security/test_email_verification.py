"""Email verification links (issue item 2), read from the mail a real local SMTP server
(aiosmtpd) receives (sent by the control plane's mail outbox, running here in a thread):
single use, expiring, tamper-proof, never logged; email changes take effect only once the
new address is proven."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from _outbox import running_outbox
from control._tenants import PASSWORD, auth, error_code, make_tenant, ok
from control.conftest import ISSUER, FakeClock
from fastapi.testclient import TestClient

from apiary.control import ControlPlane

from ._smtp import LocalSmtpServer, text_of

ADA = "ada@corp.example"


@pytest.fixture
def smtp() -> Iterator[LocalSmtpServer]:
    server = LocalSmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings_overrides(smtp: LocalSmtpServer) -> dict[str, object]:
    return {"smtp_url": smtp.url, "smtp_from": "Apiary <noreply@apiary.test>"}


@pytest.fixture(autouse=True)
def outbox(cp: ControlPlane) -> Iterator[None]:
    with running_outbox(cp):
        yield


def _signup(client: TestClient, email: str = ADA) -> str:
    body = ok(client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD}), 201)
    client.cookies.clear()
    return str(body["session_token"])


def _token(link: str) -> str:
    parts = urlsplit(link)
    assert parts.path.endswith("/verify-email")  # the web UI's page, which POSTs the token
    return parse_qs(parts.query)["token"][0]


def _verified(client: TestClient, session: str) -> bool:
    return bool(ok(client.get("/v1/me", headers=auth(session)))["user"]["email_verified"])


def test_verification_link_is_mailed_and_works_once(
    client: TestClient, smtp: LocalSmtpServer
) -> None:
    session = _signup(client)
    link = smtp.link_to(ADA)
    assert smtp.mails_to(ADA)[0]["From"] == "Apiary <noreply@apiary.test>"
    # Opening the link (a GET, as a mail scanner would) only shows a confirm button: the web
    # UI's page (tests/ui/test_account_pages.py) or, without the UI built, the API's own,
    # where the link redirects (tests/control/test_ui_serving.py). That one here:
    assert urlsplit(link).path == urlsplit(ISSUER).path + "/verify-email"
    page = client.get("/v1/auth/email/verify", params={"token": _token(link)})
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert not _verified(client, session)
    ok(client.post("/v1/auth/email/verify", json={"token": _token(link)}))
    assert _verified(client, session)
    replay = client.post("/v1/auth/email/verify", json={"token": _token(link)})
    assert error_code(replay, 410) == "gone"


def test_verification_link_form_post_verifies(client: TestClient, smtp: LocalSmtpServer) -> None:
    session = _signup(client)
    token = _token(smtp.link_to(ADA))
    ok(client.post("/v1/auth/email/verify", content=f"token={token}",
                   headers={"content-type": "application/x-www-form-urlencoded"}))
    assert _verified(client, session)


def test_expired_verification_link_is_refused(
    client: TestClient, smtp: LocalSmtpServer, clock: FakeClock
) -> None:
    session = _signup(client)
    token = _token(smtp.link_to(ADA))
    clock.advance(86_400 + 1)
    assert error_code(client.post("/v1/auth/email/verify", json={"token": token}),
                      410) == "gone"
    assert not _verified(client, session)


def test_tampered_verification_link_is_refused(
    client: TestClient, smtp: LocalSmtpServer
) -> None:
    session = _signup(client)
    token = _token(smtp.link_to(ADA))
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (forged, "apev_" + "x" * 43, "not-a-token"):
        response = client.post("/v1/auth/email/verify", json={"token": bad})
        assert error_code(response, 400) == "invalid_request"
    assert not _verified(client, session)


def test_a_new_link_voids_the_older_one(client: TestClient, smtp: LocalSmtpServer) -> None:
    session = _signup(client)
    first = _token(smtp.link_to(ADA))
    pending = ok(client.post("/v1/me/email/verification", headers=auth(session)), 202)
    assert pending["mailed"] is True
    assert len(smtp.wait_mails_to(ADA, 2)) == 2
    second = _token(smtp.link_to(ADA))
    assert second != first
    assert error_code(client.post("/v1/auth/email/verify", json={"token": first}),
                      400) == "invalid_request"
    ok(client.post("/v1/auth/email/verify", json={"token": second}))
    assert _verified(client, session)


def test_verification_link_is_never_logged(
    client: TestClient, smtp: LocalSmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        _signup(client)
        # Captured until the outbox has sent it: its logs are checked too.
        token = _token(smtp.link_to(ADA))
    # The test's SMTP server ("mail.log", aiosmtpd) stands in for the user's mailbox and
    # logs what it receives at DEBUG; every other record, extras included, is checked.
    records = [r for r in caplog.records if r.name != "mail.log"]
    assert records
    assert not [r for r in records if token in repr(r.__dict__)]


def test_email_change_takes_effect_only_when_the_new_address_is_proven(
    client: TestClient, smtp: LocalSmtpServer
) -> None:
    session = _signup(client)
    ok(client.post("/v1/auth/email/verify", json={"token": _token(smtp.link_to(ADA))}))
    # A stolen session alone cannot move the account: the password is required.
    missing = client.post("/v1/me/email", json={"email": "mallory@evil.example"},
                          headers=auth(session))
    assert error_code(missing, 400) == "invalid_request"
    wrong = client.post("/v1/me/email", json={"email": "mallory@evil.example",
                                              "current_password": "wrong password!!"},
                        headers=auth(session))
    assert error_code(wrong, 401) == "unauthenticated"
    ok(client.post("/v1/me/email", json={"email": "ada.new@corp.example",
                                         "current_password": PASSWORD},
                   headers=auth(session)), 202)
    me = ok(client.get("/v1/me", headers=auth(session)))["user"]
    assert (me["email"], me["email_verified"]) == (ADA, True)  # unchanged until proven
    ok(client.post("/v1/auth/email/verify",
                   json={"token": _token(smtp.link_to("ada.new@corp.example"))}))
    me = ok(client.get("/v1/me", headers=auth(session)))["user"]
    assert (me["email"], me["email_verified"]) == ("ada.new@corp.example", True)


def test_email_change_to_a_verified_account_address_is_refused(
    client: TestClient, smtp: LocalSmtpServer
) -> None:
    tenant = make_tenant(client, "Corp")  # its owner is verified through the mailbox
    session = _signup(client)
    taken = client.post("/v1/me/email", json={"email": "owner-corp@corp.example",
                                              "current_password": PASSWORD},
                        headers=auth(session))
    assert error_code(taken, 409) == "conflict"
    assert tenant.org_id


def test_invitation_is_mailed_to_the_invited_address(
    client: TestClient, smtp: LocalSmtpServer
) -> None:
    tenant = make_tenant(client, "Corp")
    issued = ok(client.post(f"/v1/orgs/{tenant.org_id}/invitations",
                            json={"email": "bob@corp.example", "role": "member"},
                            headers=auth(tenant.owner)), 201)
    mails = smtp.wait_mails_to("bob@corp.example", 1)
    assert len(mails) == 1
    assert issued["token"] in text_of(mails[0])
    assert issued["token"] in text_of(mails[0], "html")
