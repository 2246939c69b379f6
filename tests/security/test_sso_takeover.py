"""Account takeover through SSO (issue item 1), against a real control plane and the
attacker's own OIDC provider (a real HTTP server signing its own tokens).

The attacker signs up, creates an organization, registers a provider they run and makes it
assert someone else's email -- the instance admin's, or a member's of another org. Each
attack is refused with a precise 4xx and no session cookie."""

from __future__ import annotations

import pyotp
from control._tenants import (
    PASSWORD,
    add_member,
    auth,
    error_code,
    make_tenant,
    ok,
    signup,
    user_id,
)
from control.conftest import FakeClock
from control.oidc_provider import LocalOidcProvider
from control.test_oidc import callback_path, sso_login
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.db import Membership, UserIdentity

from ._sso import ADMIN_EMAIL, idp, make_admin, register_provider, settings_overrides

__all__ = ["idp", "settings_overrides"]  # fixtures


def _attacker(client: TestClient, idp: LocalOidcProvider) -> tuple[str, str, str]:
    session = signup(client, "mallory@evil.example")
    org = ok(client.post("/v1/orgs", json={"name": "Evil"}, headers=auth(session)), 201)
    return session, org["id"], register_provider(client, session, org["id"], idp)


def _links_and_memberships(cp: ControlPlane, uid: str) -> tuple[int, set[str]]:
    with cp.transaction() as db:
        links = len(db.execute(select(UserIdentity.id).where(UserIdentity.user_id == uid)).all())
        orgs = {m.org_id for m in db.scalars(select(Membership).where(Membership.user_id == uid))}
    return links, orgs


def test_sso_assertion_of_admin_email_does_not_log_in_as_admin(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider
) -> None:
    admin_session, admin_org = make_admin(client, cp)
    admin_id = user_id(client, admin_session)
    _, _evil_org, provider_id = _attacker(client, idp)
    idp.next_identity = {"sub": "mallory", "email": ADMIN_EMAIL, "email_verified": True}
    response = sso_login(client, provider_id)
    assert error_code(response, 409) == "conflict"
    assert "link it from your account settings" in response.json()["message"]
    assert "apiary_session=" not in response.headers.get("set-cookie", "")
    assert not client.cookies.get("apiary_session")
    assert _links_and_memberships(cp, admin_id) == (0, {admin_org})


def test_attacker_domain_claim_without_instance_approval_links_nothing(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider
) -> None:
    admin_session, admin_org = make_admin(client, cp)
    mallory, evil_org, provider_id = _attacker(client, idp)
    ok(client.post(f"/v1/orgs/{evil_org}/domains", json={"domain": "apiary.local"},
                   headers=auth(mallory)), 201)
    idp.next_identity = {"sub": "mallory", "email": ADMIN_EMAIL, "email_verified": True}
    assert error_code(sso_login(client, provider_id), 409) == "conflict"
    # The attacker cannot approve their own claim: only an instance admin can.
    claim = ok(client.get(f"/v1/orgs/{evil_org}/domains", headers=auth(mallory)))[0]
    assert error_code(client.post(f"/v1/admin/domains/{claim['id']}/approve",
                                  headers=auth(mallory)), 403) == "forbidden"
    assert _links_and_memberships(cp, user_id(client, admin_session)) == (0, {admin_org})


def test_approved_domain_never_links_across_organizations(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider
) -> None:
    # Even an approval given by mistake only trusts the IdP for its own org's members: the
    # victim belongs to another organization and is not linked.
    admin_session, _ = make_admin(client, cp)
    victim_tenant = make_tenant(client, "Corp")
    victim = add_member(client, victim_tenant, "victim@corp.example", "admin")
    mallory, evil_org, provider_id = _attacker(client, idp)
    claim = ok(client.post(f"/v1/orgs/{evil_org}/domains", json={"domain": "corp.example"},
                           headers=auth(mallory)), 201)
    ok(client.post(f"/v1/admin/domains/{claim['id']}/approve", headers=auth(admin_session)))
    idp.next_identity = {"sub": "x", "email": "victim@corp.example", "email_verified": True}
    response = sso_login(client, provider_id)
    assert error_code(response, 409) == "conflict"
    assert "apiary_session=" not in response.headers.get("set-cookie", "")
    assert _links_and_memberships(cp, user_id(client, victim)) == (0, {victim_tenant.org_id})


def _enrolled_sso_user(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider, clock: FakeClock
) -> tuple[pyotp.TOTP, str, str]:
    """A verified member with TOTP whose IdP identity is linked; (totp, session, provider)."""
    tenant = make_tenant(client, "Corp")
    provider_id = register_provider(client, tenant.owner, tenant.org_id, idp)
    session = add_member(client, tenant, "alice@corp.example", "member")
    secret = ok(client.post("/v1/me/totp", headers=auth(session)), 201)["secret"]
    totp = pyotp.TOTP(secret)
    ok(client.post("/v1/me/totp/verify", headers=auth(session),
                   json={"code": totp.at(clock.now)}))
    from control.test_oidc import link_via_browser

    assert link_via_browser(client, provider_id, session).status_code == 303
    client.cookies.clear()
    return totp, session, tenant.org_id


def test_sso_login_does_not_skip_the_accounts_totp(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider, clock: FakeClock
) -> None:
    totp, session, _ = _enrolled_sso_user(client, cp, idp, clock)
    provider_id = ok(client.get("/v1/me/identities", headers=auth(session)))[0]["provider_id"]
    response = client.get(callback_path(client, provider_id, "/traces"))
    assert response.status_code == 303
    assert response.headers["location"] == "/traces?mfa=required"
    assert "apiary_session=" not in response.headers.get("set-cookie", "")
    assert "apiary_sso_mfa=" in response.headers["set-cookie"]
    assert "httponly" in response.headers["set-cookie"].lower()
    assert error_code(client.get("/v1/me"), 401) == "unauthenticated"
    wrong = client.post("/v1/auth/sso/mfa", json={"totp_code": "000000"})
    assert error_code(wrong, 401) == "unauthenticated"
    clock.advance(30)
    done = ok(client.post("/v1/auth/sso/mfa", json={"totp_code": totp.at(clock.now)}))
    assert done["auth_method"] == "oidc+totp"
    assert ok(client.get("/v1/me"))["user"]["email"] == "alice@corp.example"
    # The ticket is single use.
    clock.advance(30)
    again = client.post("/v1/auth/sso/mfa", json={"totp_code": totp.at(clock.now)})
    assert error_code(again, 401) == "unauthenticated"


def test_idp_asserted_mfa_counts_only_when_the_org_trusts_it(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider, clock: FakeClock
) -> None:
    _, session, org_id = _enrolled_sso_user(client, cp, idp, clock)
    provider_id = ok(client.get("/v1/me/identities", headers=auth(session)))[0]["provider_id"]
    idp.next_identity = {**idp.next_identity, "amr": ["pwd", "mfa"]}
    first = client.get(callback_path(client, provider_id, "/"))
    assert first.headers["location"] == "/?mfa=required"  # the org does not trust its IdP
    client.cookies.clear()
    owner = make_owner_session(client, org_id, cp)
    ok(client.put(f"/v1/orgs/{org_id}/sso/settings", json={"trust_idp_mfa": True},
                  headers=auth(owner)))
    idp.next_identity = {**idp.next_identity, "amr": ["pwd"]}  # no second factor asserted
    assert client.get(callback_path(client, provider_id, "/")).headers["location"] == (
        "/?mfa=required")
    client.cookies.clear()
    idp.next_identity = {**idp.next_identity, "amr": ["pwd", "otp"]}
    trusted = client.get(callback_path(client, provider_id, "/"))
    assert trusted.headers["location"] == "/"
    assert "apiary_session=" in trusted.headers["set-cookie"]


def make_owner_session(client: TestClient, org_id: str, cp: ControlPlane) -> str:
    """The org owner's fresh session (logs in again: management wants a recent login)."""
    response = ok(client.post("/v1/auth/login", json={
        "email": "owner-corp@corp.example", "password": "correct horse battery staple"}))
    client.cookies.clear()
    return str(response["session_token"])


def test_stolen_old_session_cannot_link_the_attackers_identity(
    client: TestClient, cp: ControlPlane, idp: LocalOidcProvider, clock: FakeClock
) -> None:
    # A session thief would link an identity of their own to keep a way in after the
    # victim changes the password: linking needs a recent login.
    victim = signup(client, "victim@corp.example")
    _, _, provider_id = _attacker(client, idp)
    clock.advance(cp.settings.cp_recent_auth_s + 1)
    started = client.post(f"/v1/me/identities/oidc/{provider_id}/link/start",
                          headers=auth(victim))
    assert error_code(started, 401) == "reauthentication_required"
    changed = client.post("/v1/me/email", json={"email": "mallory@evil.example",
                                                "current_password": PASSWORD},
                          headers=auth(victim))
    assert error_code(changed, 401) == "reauthentication_required"
    assert ok(client.get("/v1/me/identities", headers=auth(victim))) == []
