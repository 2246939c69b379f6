"""A small but real OpenID Connect provider for tests, served over HTTP on a free port.

It does what a provider must: discovery, an authorization endpoint (which logs in
whichever identity the test put in :attr:`LocalOidcProvider.next_identity`), a token
endpoint that authenticates the client (``client_secret_basic`` or ``client_secret_post``),
checks the redirect URI and the PKCE S256 verifier and issues single-use codes, and ID
tokens signed with a real RS256 or ES256 key published at its JWKS. Knobs let a test make
it misbehave (wrong nonce, another signing algorithm, discovery naming other endpoints) to
prove the client notices; an attacker's provider is one of these, asserting any identity.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from apiary._private.ports import spare_port


class LocalOidcProvider:
    def __init__(self, *, algorithm: str = "RS256", client_id: str = "apiary-cp",
                 client_secret: str = "provider-secret") -> None:
        self.port = spare_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id = client_id
        self.client_secret = client_secret
        self.algorithm = algorithm
        self.announced_algorithms = [algorithm]
        self.next_identity: dict[str, Any] = {
            "sub": "alice-at-idp", "email": "alice@corp.example", "email_verified": True,
            "name": "Alice",
        }
        self.wrong_nonce = False
        # Replaces fields of the discovery document (e.g. a token_endpoint pointing inside).
        self.discovery_overrides: dict[str, str] = {}
        self.token_requests: list[dict[str, str]] = []
        self._codes: dict[str, dict[str, Any]] = {}
        self._keys = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
                      "ES256": ec.generate_private_key(ec.SECP256R1())}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- keys -----------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        keys = []
        for alg, private in self._keys.items():
            if alg == "RS256":
                jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)  # type: ignore[arg-type]
            else:
                jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)  # type: ignore[arg-type]
            keys.append({**jwk, "kid": f"key-{alg}", "alg": alg, "use": "sig"})
        return {"keys": keys}

    def sign(self, claims: dict[str, Any], algorithm: str | None = None) -> str:
        alg = algorithm or self.algorithm
        return jwt.encode(claims, self._keys[alg], algorithm=alg,  # type: ignore[arg-type]
                          headers={"kid": f"key-{alg}"})

    # --- the HTTP application -------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": self.announced_algorithms,
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                **self.discovery_overrides,
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return self.jwks()

        @app.get("/authorize")
        def authorize(request: Request) -> Any:
            q = request.query_params
            problems = [
                q.get("response_type") != "code" and "response_type",
                q.get("client_id") != self.client_id and "client_id",
                "openid" not in q.get("scope", "").split() and "scope",
                q.get("code_challenge_method") != "S256" and "code_challenge_method",
                not q.get("code_challenge") and "code_challenge",
                not q.get("state") and "state",
                not q.get("nonce") and "nonce",
            ]
            bad = [p for p in problems if p]
            if bad:
                return JSONResponse({"error": "invalid_request", "fields": bad}, 400)
            code = secrets.token_urlsafe(24)
            self._codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"],
                                 "redirect_uri": q["redirect_uri"],
                                 "identity": dict(self.next_identity)}
            query = urlencode({"code": code, "state": q["state"]})
            return RedirectResponse(f"{q['redirect_uri']}?{query}", 302)

        @app.post("/token")
        async def token(request: Request) -> Any:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            authorization = request.headers.get("authorization")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            self.token_requests.append({"auth": "basic" if authorization else "post"})
            if authorization and authorization.startswith("Basic "):
                pair = base64.b64decode(authorization[6:]).decode()
                client_id, _, client_secret = (unquote(p) for p in pair.partition(":"))
            if client_id != self.client_id or client_secret != self.client_secret:
                return JSONResponse({"error": "invalid_client"}, 401)
            grant = self._codes.pop(form.get("code", ""), None)  # single use
            if form.get("grant_type") != "authorization_code" or grant is None:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if form.get("redirect_uri") != grant["redirect_uri"]:
                return JSONResponse({"error": "invalid_grant", "why": "redirect_uri"}, 400)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
                return JSONResponse({"error": "invalid_grant", "why": "pkce"}, 400)
            now = int(time.time())
            claims = {**grant["identity"], "iss": self.issuer, "aud": self.client_id,
                      "iat": now, "exp": now + 300,
                      "nonce": "not-the-nonce" if self.wrong_nonce else grant["nonce"]}
            return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                    "expires_in": 300, "id_token": self.sign(claims)}

        return app

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test OIDC provider did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
