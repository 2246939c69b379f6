"""Accounts, tenants, members and tokens made through the control plane's API, and the
checks of its answers, shared by the control-plane and attack tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from fastapi.testclient import TestClient

from apiary.control import ControlPlane

from .conftest import DATA_PLANE_ID, ISSUER

PASSWORD = "correct horse battery staple"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"message", "errorCode"}
    return str(body["errorCode"])


def signup(client: TestClient, email: str, password: str = PASSWORD, *,
           verify: bool = True) -> str:
    """A new account's session token (cookies cleared: tests send tokens explicitly).

    With ``verify`` (the default) the address is then verified the way a user without a
    mail server would: the operator's link (:func:`verification_token`) is posted back."""
    body = ok(client.post("/v1/auth/signup", json={"email": email, "password": password}), 201)
    client.cookies.clear()
    if verify:
        verify_email(client, email)
    return str(body["session_token"])


def verification_token(client: TestClient, email: str) -> str:
    """A fresh verification link's token for ``email``, as ``apiary users verify-link``
    prints it (the control plane of ``client``, no SMTP)."""
    from apiary.control.identity import verification

    cp: ControlPlane = client.app.state.control_plane  # type: ignore[attr-defined]
    with cp.transaction() as db:
        link = verification.operator_link(cp, db, email)
    assert link.link.endswith(link.token)
    return link.token


def verify_email(client: TestClient, email: str) -> None:
    ok(client.post("/v1/auth/email/verify", json={"token": verification_token(client, email)}))


def user_id(client: TestClient, token: str) -> str:
    return str(ok(client.get("/v1/me", headers=auth(token)))["user"]["id"])


@dataclass(frozen=True)
class Tenant:
    owner: str  # session token of the org's owner
    org_id: str
    workspace_id: str
    project_id: str


def make_tenant(client: TestClient, name: str) -> Tenant:
    owner = signup(client, f"owner-{name.lower()}@{name.lower()}.example")
    org = ok(client.post("/v1/orgs", json={"name": f"Org {name}"}, headers=auth(owner)), 201)
    workspace = ok(client.post(f"/v1/orgs/{org['id']}/workspaces", json={"name": "main"},
                               headers=auth(owner)), 201)
    project = ok(client.post(f"/v1/workspaces/{workspace['id']}/projects",
                             json={"name": "app"}, headers=auth(owner)), 201)
    return Tenant(owner, org["id"], workspace["id"], project["id"])


def add_member(
    client: TestClient, tenant: Tenant, email: str, role: str, *,
    workspace_id: str | None = None, project_id: str | None = None,
) -> str:
    """Invite ``email`` with ``role`` (at org level unless a node is named), sign them up,
    accept; their session token."""
    body: dict[str, Any] = {"email": email, "role": role}
    if workspace_id:
        body["workspace_id"] = workspace_id
    if project_id:
        body["project_id"] = project_id
    invitation = ok(client.post(f"/v1/orgs/{tenant.org_id}/invitations", json=body,
                                headers=auth(tenant.owner)), 201)
    token = signup(client, email)
    ok(client.post("/v1/invitations/accept", json={"token": invitation["token"]},
                   headers=auth(token)))
    return token


def project_key(client: TestClient, tenant: Tenant, permissions: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": "test key"}
    if permissions is not None:
        body["permissions"] = permissions
    issued = ok(client.post(f"/v1/projects/{tenant.project_id}/keys", json=body,
                            headers=auth(tenant.owner)), 201)
    return str(issued["api_key"])


def exchange(client: TestClient, credential: str, **body: Any) -> Any:
    return client.post("/v1/auth/token", json={"audience": DATA_PLANE_ID, **body},
                       headers=auth(credential))


def verify(client: TestClient, token: str, audience: str = DATA_PLANE_ID) -> dict[str, Any]:
    """Verify a token the way a data plane does: JWKS, ES256 pinned, aud and iss."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: k for k in ok(client.get("/.well-known/jwks.json"))["keys"]}
    key = jwt.PyJWK(keys[kid], algorithm="ES256")
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience,
                                        issuer=ISSUER)
    return claims
