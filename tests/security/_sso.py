"""What the SSO attack tests share: an attacker's (or an org's) real OIDC provider on
127.0.0.1, the operator's allow-list that admits it, and a bootstrap-like instance admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from control._tenants import auth, ok, signup, user_id
from control.oidc_provider import LocalOidcProvider
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.db import User

ADMIN_EMAIL = "admin@apiary.local"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The providers serve plain http on loopback: the operator allow-lists it, as a
    # development install would. Everything else stays refused.
    return {"outbound_allowlist": ["127.0.0.1"]}


@pytest.fixture
def idp() -> Iterator[LocalOidcProvider]:
    provider = LocalOidcProvider()
    provider.start()
    yield provider
    provider.stop()


def make_admin(client: TestClient, cp: ControlPlane) -> tuple[str, str]:
    """The instance admin, as the bootstrap makes it (verified, instance admin, owner of an
    org): (session token, org id)."""
    session = signup(client, ADMIN_EMAIL)
    org = ok(client.post("/v1/orgs", json={"name": "Default"}, headers=auth(session)), 201)
    with cp.transaction() as db:
        admin = db.get(User, user_id(client, session))
        assert admin is not None
        admin.is_instance_admin = True
    return session, str(org["id"])


def register_provider(client: TestClient, session: str, org_id: str,
                      idp: LocalOidcProvider) -> str:
    body = {"name": "IdP", "issuer": idp.issuer, "client_id": idp.client_id,
            "client_secret": idp.client_secret, "default_role": "member"}
    created = ok(client.post(f"/v1/orgs/{org_id}/sso/oidc", json=body,
                             headers=auth(session)), 201)
    return str(created["id"])
