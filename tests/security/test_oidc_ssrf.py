"""SSRF through OIDC (issue item 5): an org owner registers an issuer (or a discovery
document) that points at the control plane's own network. Issuers and every endpoint
discovery names follow the outbound-URL policy: refused when the provider is created and
again at each use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from control._tenants import auth, error_code, make_tenant, ok
from control.oidc_provider import LocalOidcProvider
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.db import OidcProvider

INTERNAL_ISSUERS = [
    "http://127.0.0.1:9",  # loopback, and plain http
    "https://127.0.0.1",
    "https://localhost",
    "https://10.1.2.3",
    "https://192.168.0.10",
    "https://169.254.169.254",  # cloud metadata
    "https://[::1]",
    "https://[::ffff:127.0.0.1]",  # IPv4-mapped loopback
    "https://0.0.0.0",
]


@pytest.fixture
def idp() -> Iterator[LocalOidcProvider]:
    provider = LocalOidcProvider()
    provider.start()
    yield provider
    provider.stop()


def _create(client: TestClient, owner: str, org_id: str, issuer: str) -> object:
    return client.post(f"/v1/orgs/{org_id}/sso/oidc", headers=auth(owner), json={
        "name": "IdP", "issuer": issuer, "client_id": "c", "client_secret": "s"})


def test_oidc_issuer_pointing_inside_is_refused_when_registered(client: TestClient) -> None:
    tenant = make_tenant(client, "Evil")
    accepted = []
    for issuer in INTERNAL_ISSUERS:
        response = _create(client, tenant.owner, tenant.org_id, issuer)
        if getattr(response, "status_code", None) != 400:
            accepted.append(issuer)
            continue
        body = response.json()  # type: ignore[attr-defined]
        assert body["errorCode"] == "outbound_url_refused", body
        assert body["details"]["field"] == "issuer"
    assert accepted == []


def test_oidc_issuer_pointing_inside_is_refused_again_at_use(
    client: TestClient, cp: ControlPlane
) -> None:
    # A provider stored before the policy existed (or under a wider allow-list).
    tenant = make_tenant(client, "Evil")
    created = ok(client.get(f"/v1/orgs/{tenant.org_id}/roles", headers=auth(tenant.owner)))
    member_role = next(r["id"] for r in created if r["name"] == "member")
    with cp.transaction() as db:
        db.add(OidcProvider(id="legacy", org_id=tenant.org_id, name="old",
                            issuer="http://169.254.169.254/latest", client_id="c",
                            client_secret_ciphertext=None, scopes="openid",
                            default_role_id=member_role, enabled=True, created_at=cp.now()))
    response = client.get("/v1/sso/oidc/legacy/start")
    assert error_code(response, 400) == "outbound_url_refused"


class TestDiscoveryEndpoints:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        # The issuer itself is allow-listed (a development IdP on loopback); nothing else.
        return {"outbound_allowlist": ["127.0.0.1"]}

    @pytest.mark.parametrize(("field", "url"), [
        ("token_endpoint", "https://169.254.169.254/latest/meta-data/"),
        ("jwks_uri", "http://10.0.0.5/jwks"),
        ("authorization_endpoint", "https://[::1]/authorize"),
    ])
    def test_oidc_discovery_naming_internal_endpoints_is_refused(
        self, client: TestClient, idp: LocalOidcProvider, field: str, url: str
    ) -> None:
        tenant = make_tenant(client, "Evil")
        response = _create(client, tenant.owner, tenant.org_id, idp.issuer)
        provider_id = response.json()["id"]  # type: ignore[attr-defined]
        idp.discovery_overrides = {field: url}
        started = client.get(f"/v1/sso/oidc/{provider_id}/start")
        assert error_code(started, 400) == "outbound_url_refused"
        assert started.json()["details"]["field"] == field
