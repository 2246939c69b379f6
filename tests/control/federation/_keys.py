"""A data plane's side of the identity, for the control plane's tests: an ECDSA P-256 key
pair, its public JWK, and identity JWTs signed with it (or forged in the ways attackers
forge them)."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from apiary.control.federation import jwk_thumbprint

from .._tenants import auth, ok
from ..conftest import ISSUER


def _b64(value: int, length: int = 32) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


@dataclass
class DataPlaneKey:
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def jwk(self) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y)}

    @property
    def kid(self) -> str:
        return jwk_thumbprint(self.jwk)

    def identity(self, dp_id: str, *, lifetime_s: int = 120, audience: str = ISSUER,
                 kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"iss": dp_id, "sub": dp_id, "aud": audience, "iat": now,
                                "exp": now + lifetime_s, "jti": str(uuid.uuid4()), **claims}
        return jwt.encode(body, self.private, algorithm="ES256",
                          headers={"kid": kid or self.kid})


@dataclass
class Registered:
    id: str
    key: DataPlaneKey
    url: str

    def identity(self, **kwargs: Any) -> str:
        return self.key.identity(self.id, **kwargs)


def create(client: TestClient, admin: str, name: str = "dp", *, url: str = "https://dp.example",
           org_id: str | None = None, ttl_s: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "url": url}
    if org_id is not None:
        body["org_id"] = org_id
    if ttl_s is not None:
        body["bootstrap_ttl_s"] = ttl_s
    return dict(ok(client.post("/v1/data-planes", json=body, headers=auth(admin)), 201))


def register(client: TestClient, token: str, key: DataPlaneKey | None = None) -> Any:
    key = key or DataPlaneKey()
    return client.post("/v1/data-planes/register",
                       json={"bootstrap_token": token, "public_jwk": key.jwk,
                             "apiary_version": "0.1.0"})


def create_and_register(client: TestClient, admin: str, name: str = "dp", *,
                        url: str = "https://dp.example", org_id: str | None = None
                        ) -> Registered:
    created = create(client, admin, name, url=url, org_id=org_id)
    key = DataPlaneKey()
    body = ok(register(client, created["bootstrap_token"], key))
    assert body["data_plane_id"] == created["id"]
    return Registered(created["id"], key, url)


def installation_admin(client: TestClient, email: str = "root@admin.example") -> str:
    """A verified account made an installation admin (as ``apiary up``'s bootstrap admin
    is); its session token."""
    from apiary.control import ControlPlane
    from apiary.control.db import User

    from .._tenants import signup, user_id

    token = signup(client, email)
    cp: ControlPlane = client.app.state.control_plane  # type: ignore[attr-defined]
    with cp.transaction() as db:
        user = db.get(User, user_id(client, token))
        assert user is not None
        user.is_instance_admin = True
    return token
