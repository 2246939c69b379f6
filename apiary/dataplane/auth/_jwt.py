"""Verifying the control plane's signed tokens on the data plane.

The data plane trusts the control plane only through these tokens (docs/architecture.md,
"Two planes, one seam"): ES256 JWS in compact form, signed with a key whose public half
the control plane publishes at ``/.well-known/jwks.json``.

Guarantees of :class:`JwtAuthenticator`:

- The algorithm is pinned to ES256. The token's ``alg`` header is only compared against it,
  never used to choose how to verify: ``none``, HS256 (an HMAC "signed" with the public key)
  and every other algorithm are refused before any key is looked up.
- The signature is checked against the key named by ``kid``, and only keys from the JWKS
  (P-256 public keys, never a private one) are used. An all-zero signature fails like any
  other wrong signature (OpenSSL rejects r = 0 or s = 0).
- ``iss`` must equal the trusted issuer and ``aud`` this data plane's id (exactly, a single
  string); ``exp``, ``nbf`` and ``iat`` are checked with a small leeway; ``exp``, ``nbf``,
  ``iat``, ``iss``, ``aud`` and ``sub`` are required.
- Every refusal is an :class:`~apiary.errors.AuthenticationFailed` whose message says which
  check failed; a control plane that cannot be reached is a
  :class:`~apiary.errors.ControlPlaneUnavailable` (503, retryable), never a 401.

:class:`JwksCache` fetches the key set over HTTP, keeps it ``max_age_s``, fetches it again
when a token names a ``kid`` it does not hold (at most once per ``refetch_cooldown_s``, so
forged kids cannot make the data plane hammer the control plane), and makes concurrent
callers share one fetch. If a refresh fails it keeps serving the keys it has: tokens stay
short-lived, and the control plane being down must not take ingestion down with it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from apiary.credentials import looks_like_jwt
from apiary.dataplane.auth._seam import Permission, Principal
from apiary.errors import AuthenticationFailed, ControlPlaneUnavailable
from apiary.ratelimit import TtlLru

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
JWKS_PATH = "/.well-known/jwks.json"
_JWKS_MAX_BYTES = 256 * 1024
_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "sub"]
_KNOWN_PERMISSIONS = {p.value: p for p in Permission}


class JwksCache:
    """The control plane's public signing keys, by ``kid``, fetched over HTTP and cached.

    ``key(kid)`` returns a key while the set is younger than ``max_age_s``; an older set is
    fetched again first. An unknown kid causes a fetch unless another unknown kid caused one
    in the last ``refetch_cooldown_s``. All fetches are single-flight: any number of
    concurrent callers cause one HTTP request, and all of them wait for its result. A failed
    fetch keeps the previous keys and is not retried within the cooldown; a kid not held
    while the latest fetch failed gives :class:`ControlPlaneUnavailable`.

    Picklable (for Ray): a copy starts with an empty cache and its own HTTP client.
    """

    def __init__(
        self,
        url: str,
        *,
        max_age_s: float = 300.0,
        refetch_cooldown_s: float = 30.0,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.max_age_s = max_age_s
        self.refetch_cooldown_s = refetch_cooldown_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._client = client
        self._owns_client = client is None
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._refetched_at: float | None = None  # last fetch caused by an unknown kid
        self._failed_at: float | None = None  # last failed fetch, cleared by a success
        self._last_error = ""
        self._inflight: asyncio.Future[None] | None = None
        self.fetches = 0  # HTTP requests made, for metrics and tests

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            functools.partial(
                JwksCache,
                self.url,
                max_age_s=self.max_age_s,
                refetch_cooldown_s=self.refetch_cooldown_s,
                timeout_s=self.timeout_s,
            ),
            (),
        )

    @property
    def kids(self) -> frozenset[str]:
        """The key ids currently held."""
        return frozenset(self._keys)

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey:
        """The public key ``kid``, fetching the set if it is stale or lacks ``kid``.

        Raises :class:`AuthenticationFailed` if the control plane does not publish ``kid``
        (after a refetch, or within the cooldown of the last one), and
        :class:`ControlPlaneUnavailable` if ``kid`` is not held and the latest fetch failed.
        """
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self.max_age_s
        if stale:
            # A stale set is refreshed, but a failing control plane is not retried on every
            # request: after a failure, wait out the cooldown and use the keys we have.
            if self._failed_at is None or now - self._failed_at >= self.refetch_cooldown_s:
                await self._fetch_shared()
        elif kid not in self._keys:
            if self._inflight is not None:
                await self._fetch_shared()  # a fetch under way may bring it: wait for it
            elif self._refetched_at is None or now - self._refetched_at >= self.refetch_cooldown_s:
                # Only refetches for unknown kids count against the cooldown: a key rotated
                # in just after a scheduled fetch is still found at once.
                self._refetched_at = now
                await self._fetch_shared()
        found = self._keys.get(kid)
        if found is not None:
            return found
        if self._failed_at is not None:
            # The latest fetch failed: we cannot tell an unknown kid from a new one.
            raise ControlPlaneUnavailable(
                "cannot verify the token: the control plane's JWKS could not be fetched",
                url=self.url,
                error=self._last_error,
            )
        raise AuthenticationFailed(
            "the token's signing key (kid) is not one the control plane publishes",
            kid=kid[:64],
        )

    async def refresh(self) -> None:
        """Fetch the key set now (joining a fetch already under way)."""
        await self._fetch_shared()

    async def aclose(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def _fetch_shared(self) -> None:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
        # Shielded: a caller that gives up (client disconnect) must not cancel the fetch
        # every other waiter depends on.
        await asyncio.shield(self._inflight)

    async def _fetch(self) -> None:
        try:
            self.fetches += 1
            try:
                keys = parse_jwks(await self._get())
            except (httpx.HTTPError, ValueError) as exc:
                self._failed_at = self._clock()
                self._last_error = str(exc) or type(exc).__name__
                log.warning(
                    "could not fetch the control plane's JWKS from %s: %s; keeping %d key(s)",
                    self.url, self._last_error, len(self._keys),
                )
                return
            self._keys = keys
            self._fetched_at = self._clock()
            self._failed_at = None
        finally:
            self._inflight = None

    async def _get(self) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient()
        async with self._client.stream(
            "GET", self.url, timeout=self.timeout_s, follow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise ValueError(f"the JWKS endpoint answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _JWKS_MAX_BYTES:
                    raise ValueError(f"the JWKS is larger than {_JWKS_MAX_BYTES} bytes")
            return bytes(body)


def parse_jwks(body: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """The usable ES256 public keys of a JWKS document, by kid.

    Raises ValueError if the document is not a JWKS at all. Keys that are not P-256 ES256
    signing keys, have no kid, or carry a private part are skipped (logged), so a control
    plane publishing an extra kind of key does not stop verification with the others.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the JWKS is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("the JWKS has no 'keys' list")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in doc["keys"]:
        problem = _unusable(jwk)
        if problem is not None:
            log.warning("skipping a key of the control plane's JWKS: %s", problem)
            continue
        try:
            key = ECAlgorithm.from_jwk(jwk)
        except jwt.InvalidKeyError as exc:
            log.warning("skipping key %r of the control plane's JWKS: %s", jwk["kid"], exc)
            continue
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            log.warning("skipping key %r of the control plane's JWKS: not P-256", jwk["kid"])
            continue
        keys[jwk["kid"]] = key
    return keys


def _unusable(jwk: object) -> str | None:
    if not isinstance(jwk, dict):
        return "not an object"
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        return "no kid"
    if "d" in jwk:
        # A private key published by mistake is never used (nor is its public half trusted).
        return f"key {kid!r} includes a private part"
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        return f"key {kid!r} is not an EC P-256 key"
    if jwk.get("alg", ALGORITHM) != ALGORITHM:
        return f"key {kid!r} is for {jwk.get('alg')!r}, not {ALGORITHM}"
    if jwk.get("use", "sig") != "sig":
        return f"key {kid!r} is not a signing key"
    return None


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims were checked."""

    principal: Principal
    expires_at: float  # the ``exp`` claim, Unix seconds
    token_id: str | None  # the ``jti`` claim


class JwtAuthenticator:
    """Verifies the control plane's ES256 tokens into principals (see the module docstring).

    A token already verified is remembered (by its SHA-256) until it expires, at most
    ``cache_max_s``: an SDK sends the same token for minutes, and an ECDSA verification
    costs more than handling the request it guards. Only the exact bytes verified earlier
    hit this cache, so it cannot accept anything a full verification would not.
    """

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 30.0,
        cache_entries: int = 20_000,
        cache_max_s: float = 300.0,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("JwtAuthenticator needs a non-empty issuer and audience")
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.cache_entries = cache_entries
        self.cache_max_s = cache_max_s
        self._verified: TtlLru[bytes, VerifiedToken] = TtlLru(cache_entries)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            functools.partial(
                JwtAuthenticator,
                self.jwks,
                issuer=self.issuer,
                audience=self.audience,
                leeway_s=self.leeway_s,
                cache_entries=self.cache_entries,
                cache_max_s=self.cache_max_s,
            ),
            (),
        )

    async def authenticate(self, credential: str) -> Principal:
        return (await self.verify(credential)).principal

    async def verify(self, token: str) -> VerifiedToken:
        """Check ``token`` completely, or raise :class:`AuthenticationFailed` saying why."""
        if not looks_like_jwt(token):
            raise AuthenticationFailed(
                "the bearer token is malformed: expected a signed JWT "
                "(three base64url segments separated by dots)"
            )
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            return cached
        header = _header(token)
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise AuthenticationFailed(
                f"the token's algorithm {str(alg)[:20]!r} is not accepted: tokens must be "
                f"signed with {ALGORITHM}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("the token names no signing key (kid)")
        key = await self.jwks.key(kid)
        claims = self._decode(token, key)
        verified = VerifiedToken(
            principal=_principal(claims),
            expires_at=float(claims["exp"]),
            token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        )
        self._verified.set(
            digest, verified, min(self.cache_max_s, verified.expires_at - time.time())
        )
        return verified

    def _decode(self, token: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],  # pinned: the header's alg was only compared to this
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed(
                "the token is not valid yet (nbf or iat lies in the future)"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed(
                "the token was issued for another data plane (aud does not name this one)"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed(
                "the token was not issued by the control plane this data plane trusts (iss)"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(
                f"the token lacks the required claim {exc.claim!r}"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("the token's signature is not valid") from None
        except jwt.DecodeError:
            raise AuthenticationFailed(
                "the bearer token is malformed: a segment is not valid base64url or JSON"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"the token is not valid: {exc}") from None
        return claims


def _header(token: str) -> dict[str, Any]:
    """The token's JOSE header, decoded only to be checked (never trusted to choose a key
    type or algorithm). Cheaper than ``jwt.get_unverified_header``, which decodes every
    segment; ``jwt.decode`` validates the whole token again afterwards."""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        header = None
    if not isinstance(header, dict):
        raise AuthenticationFailed(
            "the bearer token is malformed: its header is not base64url-encoded JSON"
        )
    return header


def _principal(claims: Mapping[str, Any]) -> Principal:
    """Map verified claims to a principal; unknown permission strings grant nothing."""

    def text(name: str) -> str:
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            raise AuthenticationFailed(f"the token's claim {name!r} must be a non-empty string")
        return value

    project_id = claims.get("project_id")
    if project_id is not None and (not isinstance(project_id, str) or not project_id):
        raise AuthenticationFailed("the token's claim 'project_id' must be a string or null")
    role = claims.get("role")
    if role is not None and not isinstance(role, str):
        raise AuthenticationFailed("the token's claim 'role' must be a string")
    return Principal(
        subject=text("sub"),
        org_id=text("org_id"),
        workspace_id=text("workspace_id"),
        project_id=project_id or "",
        permissions=_permissions(claims, "permissions"),
        role=role,
        workspace_permissions=_permissions(claims, "workspace_permissions"),
    )


def _permissions(claims: Mapping[str, Any], name: str) -> frozenset[Permission]:
    """The known permissions of a list-of-strings claim (absent: none). Strings this data
    plane does not know grant nothing: the control plane may add permissions first."""
    granted = claims.get(name, [])
    if not isinstance(granted, list) or not all(isinstance(p, str) for p in granted):
        raise AuthenticationFailed(f"the token's claim {name!r} must be a list of strings")
    return frozenset(_KNOWN_PERMISSIONS[p] for p in granted if p in _KNOWN_PERMISSIONS)
