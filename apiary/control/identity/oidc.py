"""OpenID Connect login: authorization-code flow with PKCE (S256), state and nonce.

:meth:`OidcLogin.begin` stores a single-use login state (hashed ``state``, ``nonce``,
PKCE verifier, the hash of the browser's binder; 10 minutes) and returns the provider's
authorization URL. :meth:`OidcLogin.complete` consumes the state (even if what follows
fails), refuses it unless the callback comes from the browser that started the login (its
HttpOnly, SameSite=Lax binder cookie hashes to the stored one: otherwise an attacker could
make a victim's browser finish the attacker's login, *login CSRF*), redeems the code at the
token endpoint with the verifier and the client's credentials, and validates the ID token:

- signature with a key from the provider's JWKS (refetched once for an unknown ``kid``);
- ``alg`` pinned: it must be one the provider's metadata announces *and* RS256 or ES256,
  and the key's type must match it (no ``none``, no HMAC with a public key);
- ``iss`` equals the configured issuer (which equals the metadata's), ``aud`` contains
  the client id (and ``azp`` names it when there are several audiences), ``exp``/``iat``
  within 60 s of skew, ``nonce`` equals the stored one.

The issuer and every endpoint discovery names (``authorization_endpoint``,
``token_endpoint``, ``jwks_uri``) must pass the outbound-URL policy (:mod:`apiary.outbound`:
https, no internal address unless allow-listed), checked at each use; the HTTP client is
the policy's, which checks every address again when it connects (DNS rebinding) and never
follows redirects. Network calls happen outside database transactions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
from sqlalchemy import delete, select

from apiary.control._common import token_hash
from apiary.control.db import OidcProvider, SsoLoginState
from apiary.control.identity.sso import SsoOutcome, VerifiedIdentity, client_secret, safe_return_to
from apiary.control.service import ControlPlane
from apiary.errors import AuthenticationFailed, NotFound, OutboundUrlRefused
from apiary.outbound import OutboundPolicy

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
STATE_TTL = timedelta(minutes=10)
LEEWAY_S = 60
_METADATA_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    auth_methods: tuple[str, ...]


class OidcLogin:
    """The OIDC implementation of :class:`~apiary.control.identity.sso.SsoProtocol`,
    with per-process caches of provider metadata and JWKS."""

    def __init__(self, http: httpx.Client, policy: OutboundPolicy) -> None:
        self._http = http
        self._policy = policy
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._jwks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def redirect_uri(cp: ControlPlane) -> str:
        return f"{cp.issuer}/v1/sso/oidc/callback"

    # --- step 1 ---------------------------------------------------------------------

    def begin(self, cp: ControlPlane, provider_id: str, *, return_to: str, binder: str,
              link_user_id: str | None = None) -> str:
        with cp.transaction() as db:
            provider = db.get(OidcProvider, provider_id)
            if provider is None or not provider.enabled:
                raise NotFound("SSO provider not found")
            issuer, client_id, scopes, org_id = (provider.issuer, provider.client_id,
                                                 provider.scopes, provider.org_id)
        metadata = self.metadata(issuer)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        now = cp.now()
        with cp.transaction() as db:
            db.execute(delete(SsoLoginState).where(SsoLoginState.expires_at <= now))
            db.add(SsoLoginState(
                state_hash=token_hash(state), provider_id=provider_id, org_id=org_id,
                nonce=nonce, code_verifier=verifier, return_to=safe_return_to(return_to),
                created_at=now, expires_at=now + STATE_TTL, binder_hash=token_hash(binder),
                link_user_id=link_user_id,
            ))
        query = urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri":
            self.redirect_uri(cp), "scope": scopes, "state": state, "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256",
        })
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}"

    # --- step 2 ---------------------------------------------------------------------

    def complete(self, cp: ControlPlane, params: Mapping[str, str], *,
                 binder: str | None) -> SsoOutcome:
        if "error" in params:
            raise AuthenticationFailed(f"the identity provider refused: {params['error']}")
        state, code = params.get("state"), params.get("code")
        if not state or not code:
            raise AuthenticationFailed("the SSO callback lacks state or code")
        with cp.transaction() as db:  # consume the state first: single use, even on failure
            pending = db.get(SsoLoginState, token_hash(state))
            if pending is None:
                raise AuthenticationFailed("unknown or already used SSO login state")
            db.delete(pending)
            provider = db.get(OidcProvider, pending.provider_id)
            live = (pending.expires_at > cp.now() and provider is not None
                    and provider.enabled)
            if live and provider is not None:
                secret = client_secret(cp, provider)
                issuer, client_id = provider.issuer, provider.client_id
            nonce, verifier = pending.nonce, pending.code_verifier
            org_id, provider_id, return_to = pending.org_id, pending.provider_id, pending.return_to
            binder_hash, link_user_id = pending.binder_hash, pending.link_user_id
        # Raised after the transaction, so that the state's deletion is committed.
        if binder is None:
            raise AuthenticationFailed(
                "this SSO login was not started in this browser (its binder cookie is "
                "missing); start the login again from this browser")
        if binder_hash is None or not hmac.compare_digest(binder_hash, token_hash(binder)):
            raise AuthenticationFailed(
                "this SSO login was started in another browser (its binder cookie does not "
                "match); start the login again from this browser")
        if not live:
            raise AuthenticationFailed("the SSO login took too long; start again")
        metadata = self.metadata(issuer)
        id_token = self._redeem(cp, metadata, client_id, secret, code, verifier)
        claims = self.validate_id_token(id_token, metadata=metadata, client_id=client_id,
                                        nonce=nonce, now=cp.now().timestamp())
        amr = claims.get("amr")
        identity = VerifiedIdentity(
            subject=str(claims["sub"]), email=claims.get("email"),
            email_verified=claims.get("email_verified") is True, name=claims.get("name"),
            amr=tuple(str(a) for a in amr) if isinstance(amr, list) else (),
        )
        return SsoOutcome(org_id, provider_id, identity, return_to, link_user_id)

    def _redeem(
        self, cp: ControlPlane, metadata: ProviderMetadata, client_id: str, secret: str | None,
        code: str, verifier: str,
    ) -> str:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri(cp), "code_verifier": verifier}
        headers = {"Accept": "application/json"}
        if secret is None:
            form["client_id"] = client_id
        elif "client_secret_basic" in metadata.auth_methods:
            # RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=client_id, client_secret=secret)
        url = self._policy.check_url(metadata.token_endpoint, field="token_endpoint")
        try:
            response = self._http.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            _raise_refusal(exc)
            raise AuthenticationFailed(f"the identity provider is unreachable: {exc}") from None
        if response.status_code != 200:
            raise AuthenticationFailed(
                f"the identity provider refused the code ({response.status_code})"
            )
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationFailed("the identity provider returned no ID token")
        return id_token

    # --- ID token -------------------------------------------------------------------

    def validate_id_token(
        self, id_token: str, *, metadata: ProviderMetadata, client_id: str, nonce: str,
        now: float,
    ) -> dict[str, Any]:
        """The claims of a valid ID token, or :class:`AuthenticationFailed`."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("the ID token is malformed") from None
        alg = header.get("alg")
        allowed = [a for a in metadata.algorithms if a in SUPPORTED_ALGORITHMS]
        if alg not in allowed:
            raise AuthenticationFailed(f"the ID token's algorithm {alg!r} is not accepted")
        key = self._key(metadata.jwks_uri, header.get("kid"), alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key, algorithms=[alg], audience=client_id, issuer=metadata.issuer,
                leeway=LEEWAY_S, options={"require": ["exp", "iat", "sub", "aud", "iss"],
                                          "verify_iat": False, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"the ID token is not valid: {exc}") from None
        # Times are checked against the injected clock, not the wall clock.
        if claims["exp"] + LEEWAY_S < now or claims["iat"] - LEEWAY_S > now:
            raise AuthenticationFailed("the ID token is expired or not yet valid")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != client_id:
            raise AuthenticationFailed("the ID token's azp does not name this client")
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise AuthenticationFailed("the ID token's nonce does not match this login")
        return claims

    def _key(self, jwks_uri: str, kid: str | None, alg: str) -> Any:
        for refresh in (False, True):
            jwks = self._fetch_jwks(jwks_uri, refresh=refresh)
            for candidate in jwks.get("keys", []):
                if kid is None or candidate.get("kid") == kid:
                    try:
                        return jwt.PyJWK(candidate, algorithm=alg).key
                    except jwt.PyJWTError:
                        raise AuthenticationFailed(
                            "the provider's key does not fit the token's algorithm"
                        ) from None
        raise AuthenticationFailed("the ID token's signing key is not in the provider's JWKS")

    def _fetch_jwks(self, uri: str, *, refresh: bool) -> dict[str, Any]:
        with self._lock:
            cached = self._jwks.get(uri)
        if cached is not None and not refresh:
            return cached
        document = self._get_json(self._policy.check_url(uri, field="jwks_uri"))
        with self._lock:
            self._jwks[uri] = document
        return document

    # --- discovery ------------------------------------------------------------------

    def metadata(self, issuer: str) -> ProviderMetadata:
        """The issuer's discovery document, cached for an hour; the issuer and every
        endpoint it names pass the outbound-URL policy (400 ``outbound_url_refused``)."""
        self._policy.check_url(issuer, field="issuer")  # at each use, cached or not
        with self._lock:
            cached = self._metadata.get(issuer)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        document = self._get_json(f"{issuer}/.well-known/openid-configuration")
        if document.get("issuer") != issuer:  # OIDC Discovery §4.3
            raise AuthenticationFailed("the provider's metadata names another issuer")
        try:
            metadata = ProviderMetadata(
                issuer=issuer,
                authorization_endpoint=document["authorization_endpoint"],
                token_endpoint=document["token_endpoint"],
                jwks_uri=document["jwks_uri"],
                algorithms=tuple(document.get("id_token_signing_alg_values_supported", ["RS256"])),
                auth_methods=tuple(document.get("token_endpoint_auth_methods_supported",
                                                ["client_secret_basic"])),
            )
        except KeyError as exc:
            raise AuthenticationFailed(f"the provider's metadata lacks {exc}") from None
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = getattr(metadata, name)
            if not isinstance(value, str):
                raise AuthenticationFailed(f"the provider's metadata has no valid {name}")
            self._policy.check_url(value, field=name)
        with self._lock:
            self._metadata[issuer] = (time.monotonic() + _METADATA_TTL_S, metadata)
        return metadata

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            _raise_refusal(exc)
            raise AuthenticationFailed(f"the identity provider is unreachable: {exc}") from None
        if not isinstance(document, dict):
            raise AuthenticationFailed("the identity provider answered nonsense")
        return document


def _raise_refusal(exc: BaseException) -> None:
    """Re-raise the policy's refusal (400) when it is what failed a connection (an address
    the name resolved to at connect time is internal), rather than calling it unreachable."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OutboundUrlRefused):
            raise seen from None
        seen = seen.__cause__ or seen.__context__


def pending_logins(cp: ControlPlane) -> int:
    """SSO logins started and not yet completed or expired (for tests and metrics)."""
    with cp.transaction() as db:
        return len(db.execute(select(SsoLoginState.state_hash)).all())
