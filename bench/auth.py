"""bench/auth: verified credentials per second on one core, for each way the data plane
authenticates a request.

Usage: bench/auth [--count 100000] [--cpu N] [--json]

Cases (each ``--count`` sequential ``await authenticator.authenticate(credential)``):

- ``api-key local``: :class:`ApiKeyAuthenticator` (format check, SHA-256, constant-time
  compare) — the bootstrap key of ``apiary up``.
- ``api-key via control plane (warm)``: :class:`ControlPlaneKeyAuthenticator` after the
  key's one exchange: the principal comes from the by-hash cache.
- ``jwt full verification (warm JWKS)``: :class:`JwtAuthenticator` with its verified-token
  cache off: every call parses the token, verifies the ES256 signature and checks claims.
- ``jwt repeated token (verified-token cache)``: the same, with the cache on, as an SDK
  re-sending one token for its lifetime sees it.

A local control plane (JWKS and token endpoint, real ES256 keys) is served by uvicorn in a
background thread on 127.0.0.1; it is idle while the loops run. The process is pinned to one
CPU (``--cpu``, default the first it may use) so the figures are single-core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apiary.credentials import mint_api_key
from apiary.dataplane.auth import (
    JWKS_PATH,
    TOKEN_PATH,
    ApiKeyAuthenticator,
    Authenticator,
    ControlPlaneKeyAuthenticator,
    JwksCache,
    JwtAuthenticator,
    Permission,
    Principal,
    StoredKey,
)

AUDIENCE = "dp-bench"


class _ControlPlane:
    """Just enough control plane: a JWKS and a token endpoint that accepts one key."""

    def __init__(self, api_key: str) -> None:
        self.kid = "bench-1"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.api_key = api_key
        self.url = ""

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url, "aud": AUDIENCE, "sub": "key:bench", "iat": now, "nbf": now,
            "exp": now + 900, "jti": uuid.uuid4().hex, "org_id": "org", "workspace_id": "ws",
            "project_id": "proj", "role": "member",
            "permissions": ["events:write", "events:read"],
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    async def jwks(self, _: Request) -> JSONResponse:
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        return JSONResponse({"keys": [{**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}]})

    async def exchange(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"message": "unknown key", "errorCode": "unauthenticated"}, 401)
        return JSONResponse({"access_token": self.token(), "token_type": "Bearer",
                             "expires_in": 900})

    def serve(self) -> uvicorn.Server:
        app = Starlette(routes=[Route(JWKS_PATH, self.jwks),
                                Route(TOKEN_PATH, self.exchange, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return server


async def _measure(
    authenticate: Callable[[str], Awaitable[Principal]], credential: str, count: int
) -> float:
    principal = await authenticate(credential)  # warm-up: fills whatever caches apply
    principal.require(Permission.EVENTS_WRITE)
    start = time.perf_counter()
    for _ in range(count):
        await authenticate(credential)
    return count / (time.perf_counter() - start)


async def run(count: int) -> list[dict[str, Any]]:
    minted = mint_api_key()
    local = ApiKeyAuthenticator([StoredKey(
        minted.key_id, minted.secret_hash,
        Principal("key:bench", "org", "ws", "proj",
                  frozenset({Permission.EVENTS_WRITE, Permission.EVENTS_READ})),
    )])
    cp = _ControlPlane(minted.value)
    server = cp.serve()
    jwks = JwksCache(cp.url + JWKS_PATH)
    full = JwtAuthenticator(jwks, issuer=cp.url, audience=AUDIENCE, cache_max_s=0)
    cached = JwtAuthenticator(jwks, issuer=cp.url, audience=AUDIENCE)
    exchanged = ControlPlaneKeyAuthenticator(cp.url, audience=AUDIENCE, tokens=cached)
    token = cp.token()
    cases: list[tuple[str, Authenticator, str]] = [
        ("api-key local", local, minted.value),
        ("api-key via control plane (warm)", exchanged, minted.value),
        ("jwt full verification (warm JWKS)", full, token),
        ("jwt repeated token (verified-token cache)", cached, token),
    ]
    results = []
    try:
        for name, authenticator, credential in cases:
            per_s = await _measure(authenticator.authenticate, credential, count)
            results.append({"case": name, "count": count, "verified_per_s": round(per_s),
                            "us_per_verification": round(1e6 / per_s, 2)})
        assert exchanged.exchanges == 1, "the warm case must not have exchanged again"
        assert jwks.fetches == 1, "the JWKS must have been fetched once"
    finally:
        await exchanged.aclose()
        await jwks.aclose()
        server.should_exit = True
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000,
                        help="verifications per case (default 100000)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU to pin to (default: the first this process may use)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    results = asyncio.run(run(args.count))
    if args.json:
        print(json.dumps({"cpu": cpu, "results": results}, indent=2))
        return
    print(f"bench/auth: {args.count} verifications per case, pinned to CPU {cpu}")
    width = max(len(r["case"]) for r in results)
    for r in results:
        print(f"  {r['case']:<{width}}  {r['verified_per_s']:>10,}/s"
              f"  {r['us_per_verification']:>8.2f} us each")


if __name__ == "__main__":
    main()
