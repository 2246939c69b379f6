"""A control plane for data-plane tests: real ES256 keys, real tokens, a real HTTP app.

:class:`ControlPlane` is a Starlette app serving ``/.well-known/jwks.json`` and
``POST /v1/auth/token`` as the control plane does (the contract of issue 3), with knobs for
tests: keys published, delays, forced answers, counters of requests received.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apiary.dataplane.auth import JWKS_PATH

AUDIENCE = "dp-test"
ORG, WORKSPACE, PROJECT = "org-1", "ws-1", "proj-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """An ES256 key pair with a kid; ``sign`` makes a real token."""

    kid: str = field(default_factory=lambda: f"k-{uuid.uuid4().hex[:8]}")
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def jwk(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        return {**doc, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private, algorithm="ES256",
            headers={"kid": kid or self.kid, "typ": "JWT"},
        )


class ControlPlane:
    """State of the fake control plane; mutated by tests, read by the server thread."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.signer = SigningKey()
            self.published: list[SigningKey] = [self.signer]
            self.jwks_fetches = 0
            self.jwks_delay_s = 0.0
            self.exchanges = 0
            self.exchange_delay_s = 0.0
            self.exchange_status: int | None = None  # force an HTTP status
            self.exchange_body: dict[str, Any] | None = None  # force a 200 body
            self.token_lifetime_s = 300
            self.token_audience: str | None = None  # None: the audience requested
            self.keys: dict[str, dict[str, Any]] = {}

    @property
    def issuer(self) -> str:
        return self.url

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": "user:alice", "iat": now, "nbf": now,
            "exp": now + self.token_lifetime_s, "jti": uuid.uuid4().hex, "org_id": ORG,
            "workspace_id": WORKSPACE, "project_id": PROJECT, "role": "member",
            "permissions": ["events:write", "events:read", "members:manage"],
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not ...}

    def token(self, **overrides: Any) -> str:
        return self.signer.sign(self.claims(**overrides))

    def add_api_key(self, **claims: Any) -> str:
        key = f"hh_ingst_{uuid.uuid4().hex[:24]}_{uuid.uuid4().hex}{uuid.uuid4().hex}"
        self.keys[key] = {"sub": f"key:{key[9:33]}", **claims}
        return key

    def revoke(self, key: str) -> None:
        del self.keys[key]

    async def jwks(self, request: Request) -> Response:
        with self._lock:
            self.jwks_fetches += 1
        if self.jwks_delay_s:
            await asyncio.sleep(self.jwks_delay_s)
        return JSONResponse({"keys": [k.jwk() for k in self.published]})

    async def exchange(self, request: Request) -> Response:
        with self._lock:
            self.exchanges += 1
        if self.exchange_delay_s:
            await asyncio.sleep(self.exchange_delay_s)
        if self.exchange_status is not None:
            return JSONResponse({"message": "forced", "errorCode": "x"}, self.exchange_status)
        if self.exchange_body is not None:
            return JSONResponse(self.exchange_body)
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ")
        if key not in self.keys:
            return JSONResponse({"message": "unknown key", "errorCode": "unauthenticated"}, 401)
        audience = (await request.json())["audience"]
        token = self.token(aud=self.token_audience or audience, **self.keys[key])
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_s}
        )

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(JWKS_PATH, self.jwks),
            Route("/v1/auth/token", self.exchange, methods=["POST"]),
        ])


class FakeClock:
    """A monotonic clock the test moves by hand (for cooldowns; HTTP stays real)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
