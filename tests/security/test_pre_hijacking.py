"""Pre-hijacking (issue item 2): an attacker signs up with the victim's address before the
victim does and never verifies it. The unverified account owns nothing, nothing links to
it, and when the victim arrives (through their organization's IdP) the attacker's account
and password are gone."""

from __future__ import annotations

from control._tenants import (
    PASSWORD,
    add_member,
    auth,
    error_code,
    exchange,
    make_tenant,
    ok,
    signup,
    user_id,
)
from control.oidc_provider import LocalOidcProvider
from control.test_oidc import sso_login
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.db import User

from ._sso import idp, register_provider, settings_overrides

__all__ = ["idp", "settings_overrides"]  # fixtures

VICTIM = "victim@corp.example"


def test_pre_hijacked_account_is_not_linked_when_the_victim_logs_in_by_sso(
    client: TestClient, idp: LocalOidcProvider
) -> None:
    attacker = signup(client, VICTIM, "attackers password 123", verify=False)
    attacker_id = user_id(client, attacker)
    corp = make_tenant(client, "Corp")
    provider_id = register_provider(client, corp.owner, corp.org_id, idp)
    idp.next_identity = {"sub": "victim-at-corp", "email": VICTIM, "email_verified": True}
    response = sso_login(client, provider_id)
    assert response.status_code == 303, response.text
    me = ok(client.get("/v1/me"))
    client.cookies.clear()
    assert me["user"]["id"] != attacker_id
    assert [m["org_id"] for m in me["memberships"]] == [corp.org_id]
    # The attacker's password still opens only the attacker's empty account.
    login = ok(client.post("/v1/auth/login", json={"email": VICTIM,
                                                   "password": "attackers password 123"}))
    client.cookies.clear()
    assert login["user"]["id"] == attacker_id
    assert ok(client.get("/v1/me", headers=auth(login["session_token"])))["memberships"] == []
    assert error_code(exchange(client, login["session_token"], project_id=corp.project_id),
                      403) == "email_not_verified"


def test_pre_hijacked_account_is_deleted_when_the_orgs_trusted_idp_vouches_for_the_victim(
    client: TestClient, idp: LocalOidcProvider, cp: ControlPlane
) -> None:
    attacker = signup(client, VICTIM, "attackers password 123", verify=False)
    corp = make_tenant(client, "Corp")
    provider_id = register_provider(client, corp.owner, corp.org_id, idp)
    claim = ok(client.post(f"/v1/orgs/{corp.org_id}/domains", json={"domain": "corp.example"},
                           headers=auth(corp.owner)), 201)
    with cp.transaction() as db:
        owner = db.get(User, user_id(client, corp.owner))
        assert owner is not None
        owner.is_instance_admin = True
    ok(client.post(f"/v1/admin/domains/{claim['id']}/approve", headers=auth(corp.owner)))
    idp.next_identity = {"sub": "victim-at-corp", "email": VICTIM, "email_verified": True}
    assert sso_login(client, provider_id).status_code == 303
    me = ok(client.get("/v1/me"))
    client.cookies.clear()
    assert (me["user"]["email"], me["user"]["email_verified"]) == (VICTIM, True)
    # The attacker's password and session are gone with their account.
    login = client.post("/v1/auth/login", json={"email": VICTIM,
                                                "password": "attackers password 123"})
    assert error_code(login, 401) == "unauthenticated"
    assert error_code(client.get("/v1/me", headers=auth(attacker)), 401) == "unauthenticated"


def test_attackers_idp_cannot_squat_an_address_against_the_real_owner(
    client: TestClient, idp: LocalOidcProvider
) -> None:
    # The attacker's org IdP asserts the victim's address first: that SSO-only account
    # reserves nothing, so the victim still signs up and verifies their own account.
    evil = make_tenant(client, "Evil")
    provider_id = register_provider(client, evil.owner, evil.org_id, idp)
    idp.next_identity = {"sub": "fake-victim", "email": VICTIM, "email_verified": True}
    assert sso_login(client, provider_id).status_code == 303
    client.cookies.clear()
    real = signup(client, VICTIM)  # verified through the mailbox
    me = ok(client.get("/v1/me", headers=auth(real)))
    assert (me["user"]["email_verified"], me["memberships"]) == (True, [])


def test_unverified_account_owns_nothing(client: TestClient) -> None:
    session = signup(client, VICTIM, verify=False)
    assert ok(client.get("/v1/me", headers=auth(session)))["user"]["email_verified"] is False
    created = client.post("/v1/orgs", json={"name": "Squat"}, headers=auth(session))
    assert error_code(created, 403) == "email_not_verified"
    corp = make_tenant(client, "Corp")
    assert error_code(exchange(client, session, project_id=corp.project_id),
                      403) == "email_not_verified"


def test_pre_hijacker_cannot_verify_the_address_with_their_own_invitation(
    client: TestClient
) -> None:
    # The attacker owns an org, invites the victim's address and accepts as the victim: the
    # invitation's token is known to its sender, so it proves nothing.
    evil = make_tenant(client, "Evil")
    invitation = ok(client.post(f"/v1/orgs/{evil.org_id}/invitations",
                                json={"email": VICTIM, "role": "member"},
                                headers=auth(evil.owner)), 201)
    squat = signup(client, VICTIM, verify=False)
    accepted = client.post("/v1/invitations/accept", json={"token": invitation["token"]},
                           headers=auth(squat))
    assert error_code(accepted, 403) == "email_not_verified"
    assert ok(client.get("/v1/me", headers=auth(squat)))["memberships"] == []


def test_the_real_owner_signing_up_replaces_an_unverified_squatter(
    client: TestClient
) -> None:
    squat = signup(client, VICTIM, "attackers password 123", verify=False)
    real = signup(client, VICTIM, PASSWORD)  # verified through the mailbox
    assert user_id(client, real) != ""
    assert error_code(client.get("/v1/me", headers=auth(squat)), 401) == "unauthenticated"
    # Once verified, the address is held: a later sign-up is refused.
    again = client.post("/v1/auth/signup", json={"email": VICTIM, "password": PASSWORD})
    assert error_code(again, 409) == "conflict"


def test_verified_member_keeps_the_address_against_an_sso_assertion(
    client: TestClient, idp: LocalOidcProvider
) -> None:
    corp = make_tenant(client, "Corp")
    member = add_member(client, corp, VICTIM, "member")
    provider_id = register_provider(client, corp.owner, corp.org_id, idp)
    idp.next_identity = {"sub": "someone", "email": VICTIM, "email_verified": True}
    assert error_code(sso_login(client, provider_id), 409) == "conflict"
    assert ok(client.get("/v1/me/identities", headers=auth(member))) == []
