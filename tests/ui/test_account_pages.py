"""The account pages in a real browser: sign up and verify the address by the link a real
SMTP server (aiosmtpd) receives, then sign in; enrol TOTP from Settings → Security by
reading the setup key off the page, sign out and sign in with a code, turn it off with a
recovery code, change the password; "Sign in with SSO" through a real OIDC provider
(tests/control/oidc_provider.py), also when the account asks for its TOTP code after SSO.

These pages need what the shared installation (``_browser.installation``) has not: SMTP,
an identity provider on loopback (the operator's outbound allow-list) and an issuer that
is the URL the browser uses (the SSO redirect URI). So this module runs its own: a control
plane serving the built UI at the root of ``http://127.0.0.1:<port>`` with that issuer,
and its own data plane (real NATS, chDB and writer, like the shared one). axe-core and a
screenshot on every page and state.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _browser import CHROMIUM, UI_BUILD, WAIT_MS, Codes, _require_ui_and_browser, axe, shot
from _outbox import running_outbox
from _served_planes import served_data_plane
from _servers import http_server
from control.oidc_provider import LocalOidcProvider
from security._smtp import LocalSmtpServer

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.dataplane.auth import control_plane_authenticator
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import EventStore

DP_ID = "dp-account"
OWNER = "owner@account.test"
SSO_DOMAIN = "sso-corp.test"
STRONG = "a long and unguessable passphrase 7"


@dataclass
class Account:
    cp_url: str
    smtp: LocalSmtpServer
    idp: LocalOidcProvider
    owner_password: str
    project_id: str


@pytest.fixture(scope="module")
def account(nats_server: NatsServer, store: EventStore,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    _require_ui_and_browser()
    smtp = LocalSmtpServer()
    smtp.start()
    idp = LocalOidcProvider()
    idp.start()
    # The issuer must be the URL the browser uses (SSO's redirect URI, the mailed link):
    # serve first, then open the control plane behind the address it got.
    served: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await served["app"](scope, receive, send)

    control_plane: ControlPlane | None = None
    try:
        with http_server(app) as cp_url:
            settings = ApiarySettings(
                data_dir=tmp_path_factory.mktemp("account-cp"), cp_issuer=cp_url,
                data_plane_id=DP_ID, cp_jwks_cache_s=1, smtp_url=smtp.url,
                smtp_from="Apiary <noreply@account.test>", outbound_allowlist=("127.0.0.1",))
            control_plane = ControlPlane.open(settings)
            served["app"] = create_control_plane_app(control_plane, ui_dir=UI_BUILD)
            dp_config = settings.model_copy(update={
                "data_dir": tmp_path_factory.mktemp("account-dp"), "control_plane_url": cp_url,
                "jwt_issuer": cp_url, "cors_origins": (cp_url,), "writer_flush_interval_s": 0.05,
            })
            # The control plane's mail outbox, as its controller actor would run it.
            with running_outbox(control_plane), served_data_plane(
                    nats_server.url, store, dp_config, control_plane_authenticator) as dp_url:
                boot = admin.bootstrap(settings, admin_email=OWNER, data_plane_id=DP_ID,
                                       data_plane_url=dp_url, mint_key=False)
                _configure_sso(cp_url, boot["admin_password"], boot["org_id"], idp)
                yield Account(cp_url, smtp, idp, boot["admin_password"], boot["project"]["id"])
    finally:
        if control_plane is not None:
            control_plane.close()
        idp.stop()
        smtp.stop()


def _configure_sso(cp_url: str, password: str, org_id: str, idp: LocalOidcProvider) -> None:
    """The owner registers the organization's IdP and claims its email domain, which they
    (as the installation's admin) approve: the domain's users are sent to that IdP."""
    with httpx.Client(base_url=cp_url, timeout=30) as http:
        login = http.post("/v1/auth/login", json={"email": OWNER, "password": password})
        assert login.status_code == 200, login.text
        auth = {"authorization": f"Bearer {login.json()['session_token']}"}
        provider = http.post(f"/v1/orgs/{org_id}/sso/oidc", headers=auth, json={
            "name": "Corp IdP", "issuer": idp.issuer, "client_id": idp.client_id,
            "client_secret": idp.client_secret, "default_role": "member"})
        assert provider.status_code == 201, provider.text
        claim = http.post(f"/v1/orgs/{org_id}/domains", headers=auth,
                          json={"domain": SSO_DOMAIN})
        assert claim.status_code == 201, claim.text
        approved = http.post(f"/v1/admin/domains/{claim.json()['id']}/approve", headers=auth)
        assert approved.status_code == 200, approved.text
        http.post("/v1/auth/logout", headers=auth)


@contextmanager
def browser() -> Iterator[Callable[[], Any]]:
    """New pages in fresh browser contexts (each its own cookie jar, like another device);
    console errors about CORS or the Content-Security-Policy fail the test."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    blocked: list[str] = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

        def new_page() -> Any:
            context = chromium.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.on("console", lambda m: m.type == "error" and blocked.append(m.text))
            return page

        yield new_page
        chromium.close()
    assert not [m for m in blocked if "CORS" in m or "Content Security" in m], blocked




def _sign_in_with_password(page: Any, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_up_verify_by_the_mailed_link_then_sign_in(account: Account) -> None:
    from playwright.sync_api import expect

    email = f"newcomer-{uuid.uuid4().hex[:8]}@signup.test"
    with browser() as new_page:
        page = new_page()
        page.goto(f"{account.cp_url}/")
        expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
        expect(page.get_by_role("link", name="Sign in with SSO")).to_be_visible()
        axe(page, "sign-in")
        shot(page, "account-1-sign-in")
        page.get_by_role("link", name="Create an account").click()
        expect(page).to_have_url(f"{account.cp_url}/signup")
        expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
        axe(page, "sign-up")
        shot(page, "account-2-sign-up")

        # A weak password: the API's reason, on the password field.
        page.get_by_label("Name").fill("New Comer")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill("short")
        page.get_by_role("button", name="Create account").click()
        weak = page.get_by_role("alert")
        expect(weak).to_contain_text("The password must have at least")
        expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
        axe(page, "sign-up, weak password")
        shot(page, "account-3-sign-up-weak-password")

        # An address a verified account holds (the API says so: a 409 on sign-up).
        page.get_by_label("Email").fill(OWNER)
        page.get_by_label("Password").fill(STRONG)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "An account with this email already exists")

        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        expect(page.get_by_text(email)).to_be_visible()
        axe(page, "check your inbox")
        shot(page, "account-4-check-inbox")

        # The mail the real SMTP server received links to the UI's page.
        link = account.smtp.link_to(email, timeout=30)
        page_url = rf"{re.escape(account.cp_url)}/verify-email\?token=apev_\S+"
        assert re.fullmatch(page_url, link), link

        # Opening the link changes nothing (mail scanners prefetch links); the button does.
        page.goto(link)
        expect(page.get_by_role("heading", name="Verify your email")).to_be_visible()
        axe(page, "verify email")
        shot(page, "account-5-verify-email")
        page.get_by_role("button", name="Confirm my email address").click()
        expect(page.get_by_role("heading", name="Email verified")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text(email)
        axe(page, "email verified")
        shot(page, "account-6-email-verified")

        # The link works once (opened anywhere else), and a forged one is no link.
        other = new_page()
        other.goto(link)
        other.get_by_role("button", name="Confirm my email address").click()
        expect(other.get_by_role("alert")).to_contain_text("already used")
        shot(other, "account-7-verify-link-used")
        other.goto(f"{account.cp_url}/verify-email?token=apev_forged")
        other.get_by_role("button", name="Confirm my email address").click()
        expect(other.get_by_role("alert")).to_contain_text("not valid")

        # Then sign in (the session sign-up opened, from before the address was proven,
        # ends first): a verified account, with nothing in it yet.
        page.get_by_role("link", name="Sign in").click()
        expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
        _sign_in_with_password(page, email, STRONG)
        expect(page.get_by_role("alert")).to_contain_text("not a member of any project yet")
        me = page.request.get(f"{account.cp_url}/v1/me")
        assert me.ok, me.text()
        assert me.json()["user"]["email_verified"] is True


def test_enrol_totp_on_the_security_tab_then_sign_in_with_a_code(account: Account) -> None:
    from playwright.sync_api import expect

    traces = f"{account.cp_url}/projects/{account.project_id}/traces"
    security = f"{account.cp_url}/projects/{account.project_id}/settings/security"
    with browser() as new_page:
        page = new_page()
        page.goto(security)
        _sign_in_with_password(page, OWNER, account.owner_password)
        card = page.get_by_role("region", name="Two-factor authentication")
        expect(card.get_by_text("Off", exact=True)).to_be_visible()
        axe(page, "security tab")
        shot(page, "account-8-security")

        card.get_by_role("button", name="Set up an authenticator app").click()
        expect(card.get_by_role("img", name="QR code to scan with your authenticator app")
               ).to_be_visible()
        secret = card.get_by_label("setup key").input_value().replace(" ", "")
        assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
        axe(page, "TOTP enrolment")
        shot(page, "account-9-totp-qr")
        codes = Codes(secret)

        card.get_by_label("Code from your authenticator app").fill("000000")
        card.get_by_role("button", name="Turn on").click()
        expect(card.get_by_role("alert")).to_contain_text("That code is not right")
        card.get_by_label("Code from your authenticator app").fill(codes.next())
        card.get_by_role("button", name="Turn on").click()
        recovery = card.get_by_role("list", name="Recovery codes").get_by_role("listitem")
        expect(recovery).to_have_count(10)
        recovery_codes = recovery.all_inner_texts()
        axe(page, "recovery codes")
        shot(page, "account-10-recovery-codes")
        card.get_by_role("button", name="I have saved my recovery codes").click()
        expect(card.get_by_text("On", exact=True)).to_be_visible()
        turn_off = card.get_by_role("button", name="Turn off two-factor authentication")
        expect(turn_off).to_be_visible()
        expect(card.get_by_role("list", name="Recovery codes")).to_have_count(0)  # shown once
        axe(page, "TOTP on")
        shot(page, "account-10b-totp-on")

        # Sign out; signing in now takes the code.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
        page.goto(traces)
        _sign_in_with_password(page, OWNER, account.owner_password)
        page.get_by_label("Authentication code").fill(codes.next())
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(traces)
        expect(page.get_by_role("combobox", name="Project", exact=True)).to_have_value(
            account.project_id)

        # Turn it off with a recovery code, then change the password.
        page.goto(security)
        card = page.get_by_role("region", name="Two-factor authentication")
        card.get_by_label("Authenticator or recovery code").fill(recovery_codes[0])
        card.get_by_role("button", name="Turn off two-factor authentication").click()
        expect(card.get_by_text("Off", exact=True)).to_be_visible()
        expect(card.get_by_role("button", name="Set up an authenticator app")).to_be_visible()

        password = page.get_by_role("region", name="Password")
        password.get_by_label("Current password").fill(account.owner_password)
        password.get_by_label("New password", exact=True).fill(STRONG)
        password.get_by_label("Confirm new password").fill(STRONG + "!")
        expect(password.get_by_text("The two new passwords differ.")).to_be_visible()
        expect(password.get_by_role("button", name="Change password")).to_be_disabled()
        password.get_by_label("Confirm new password").fill(STRONG)
        password.get_by_role("button", name="Change password").click()
        expect(password.get_by_role("status")).to_contain_text("Password changed")
        axe(page, "password changed")
        shot(page, "account-11-password-changed")
        account.owner_password = STRONG


def test_sign_in_with_sso_from_the_button_and_with_the_account_s_code(
        account: Account) -> None:
    from playwright.sync_api import expect

    email = f"sam-{uuid.uuid4().hex[:8]}@{SSO_DOMAIN}"
    account.idp.next_identity = {"sub": f"sam-{uuid.uuid4().hex}", "email": email,
                                 "email_verified": True, "name": "Sam"}
    deep_link = f"{account.cp_url}/projects/{account.project_id}/traces?range=7d"
    with browser() as new_page:
        page = new_page()
        # A callback that cannot sign anyone in (a forged state) lands on the sign-in
        # page with the reason, not on a JSON error.
        page.goto(f"{account.cp_url}/v1/sso/oidc/callback?state=forged&code=x")
        expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("Single sign-on failed")
        axe(page, "SSO failed")
        shot(page, "account-12-sso-failed")

        page.goto(deep_link)
        page.get_by_role("link", name="Sign in with SSO").click()
        expect(page.get_by_label("Work email")).to_be_visible()
        axe(page, "SSO sign-in")
        shot(page, "account-12-sso-email")

        # A domain no organization's provider serves: said so (nothing about accounts).
        page.get_by_label("Work email").fill("someone@elsewhere.test")
        page.get_by_role("button", name="Continue with SSO").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "No single sign-on provider serves elsewhere.test")
        axe(page, "SSO, no provider")
        shot(page, "account-13-sso-no-provider")

        # The organization's domain: off to its IdP, back signed in on the deep link.
        page.get_by_label("Work email").fill(email)
        page.get_by_role("button", name="Continue with SSO").click()
        expect(page).to_have_url(deep_link)
        expect(page.get_by_role("banner")).to_contain_text(email)
        expect(page.get_by_role("combobox", name="Project", exact=True)).to_have_value(
            account.project_id)
        sessions = page.get_by_role("table", name="Sessions")  # from the data plane
        expect(sessions).to_be_visible()
        expect(sessions.get_by_text("Loading…")).to_have_count(0)
        shot(page, "account-14-sso-signed-in")
        page.goto(f"{account.cp_url}/projects/{account.project_id}/settings/security")
        expect(page.get_by_role("region", name="Password")).to_contain_text(
            "signs in with single sign-on only")
        expect(page.get_by_label("Current password")).to_have_count(0)

        # The account enrols TOTP (its own factor, the org does not trust the IdP's MFA) ...
        csrf = {c["name"]: c["value"] for c in page.context.cookies()}["apiary_csrf"]
        enrolment = page.request.post(f"{account.cp_url}/v1/me/totp",
                                      headers={"x-csrf-token": csrf})
        assert enrolment.status == 201, enrolment.text()
        codes = Codes(enrolment.json()["secret"])
        confirmed = page.request.post(f"{account.cp_url}/v1/me/totp/verify",
                                      headers={"x-csrf-token": csrf},
                                      data={"code": codes.next()})
        assert confirmed.ok, confirmed.text()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()

        # ... so after the IdP, the sign-in page asks for the code, then opens the page.
        page.goto(deep_link)
        page.get_by_role("link", name="Sign in with SSO").click()
        page.get_by_label("Work email").fill(email)
        page.get_by_role("button", name="Continue with SSO").click()
        expect(page.get_by_label("Authentication code")).to_be_visible()
        assert "mfa=required" in page.url
        axe(page, "SSO second factor")
        shot(page, "account-15-sso-mfa")
        page.get_by_label("Authentication code").fill(codes.next())
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(deep_link)
        expect(page.get_by_role("banner")).to_contain_text(email)
