"""Talking to OpenID Connect providers: discovery, JWKS, code redemption, ID tokens.

One :class:`OidcClient` per :class:`~apiary.control.service.ControlPlane` (``cp.oidc``),
with per-process caches of each provider's discovery document (an hour) and JWKS (refetched
once for an unknown ``kid``). The login flow that uses it (state, nonce, PKCE, the browser
binder) is :mod:`apiary.control.identity.oidc`.

ID tokens are validated as follows (:meth:`OidcClient.validate_id_token`):

- signature with a key from the provider's JWKS;
- ``alg`` pinned: it must be one the provider's metadata announces *and* RS256 or ES256,
  and the key's type must match it (no ``none``, no HMAC with a public key);
- ``iss`` equals the configured issuer (which equals the metadata's), ``aud`` contains
  the client id (and ``azp`` names it when there are several audiences), ``exp``/``iat``
  within 60 s of skew, ``nonce`` equals the stored one.

The issuer and every endpoint discovery names (``authorization_endpoint``,
``token_endpoint``, ``jwks_uri``) must pass the outbound-URL policy (:mod:`apiary.outbound`:
https, no internal address unless allow-listed), checked at each use; the HTTP client is
the policy's, which checks every address again when it connects (DNS rebinding) and never
follows redirects.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from apiary.errors import AuthenticationFailed, OutboundUrlRefused
from apiary.outbound import OutboundPolicy

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
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


class OidcClient:
    """OIDC providers as seen from this process: their metadata and keys, cached."""

    def __init__(self, http: httpx.Client, policy: OutboundPolicy) -> None:
        self._http = http
        self._policy = policy
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._jwks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # --- code redemption ------------------------------------------------------------

    def redeem_code(
        self, metadata: ProviderMetadata, *, client_id: str, secret: str | None, code: str,
        verifier: str, redirect_uri: str,
    ) -> str:
        """The ID token the provider's token endpoint gives for an authorization code
        (PKCE ``verifier``; client authentication as the metadata allows)."""
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": verifier}
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
