"""API keys verified through the control plane, without its database.

The data plane holds no API-key hashes of the control plane. It exchanges a key at the
control plane's token endpoint (``POST {cp}/v1/auth/token``, ``{"audience": <dp id>}``) for
a short-lived ES256 token, and verifies that token like any other
(:class:`~apiary.dataplane.auth.JwtAuthenticator`): the control plane's answer is never trusted for
what it says, only for what its signature proves.

Guarantees of :class:`ControlPlaneKeyAuthenticator`:

- The principal of a key is remembered, by the key's SHA-256 (never the key), until
  ``expiry_margin_s`` before its token expires and at most ``cache_max_s``: a key revoked
  at the control plane stops working on this data plane within ``cache_max_s``.
- A key the control plane refused (401/403) is refused again without asking it for
  ``negative_cache_s``, which blunts a client retrying a bad key in a loop.
- **Stale use while the control plane is away** (``stale_max_s`` > 0; a federated data plane,
  ``APIARY_AUTH_STALE_MAX_S``): a key past ``cache_max_s`` is verified again; if that exchange
  fails with :class:`~apiary.errors.ControlPlaneUnavailable` (unreachable, 5xx, 429, a token
  it cannot verify) and this replica verified the key within the last ``stale_max_s`` and
  has not since been told it is refused or revoked (a 401/403/421 answer replaces the entry;
  a pushed revocation, :meth:`forget_digest` / :meth:`forget_all`, deletes it), its principal
  is served again: nobody can revoke a key through a control plane that is down. For
  ``stale_retry_s`` after such a failure, stale principals are served without asking (a
  control plane that hangs does not add ``timeout_s`` to every request); after that the
  next request verifies again. Each stale use counts in ``apiary_auth_stale_uses_total`` and
  is logged at most once a minute per key, by the key's SHA-256 prefix (never the key). A
  key this replica never verified, or verified longer than ``stale_max_s`` ago, gets the 503.
- Concurrent requests with the same uncached key share one exchange, and at most
  ``max_concurrent_exchanges`` exchanges run at once, so a flood of distinct keys cannot
  turn into a flood on the control plane.
- The cache is bounded (``cache_entries``, least recently used forgotten first).
- A credential shaped like a JWT goes straight to the token verifier; anything that is
  neither a key nor a token is refused without a request.
- The control plane unreachable, answering 5xx/429, or issuing a token this data plane
  cannot verify is :class:`~apiary.errors.ControlPlaneUnavailable` (503, retryable, not
  cached): the caller's key may well be valid.
- A federated data plane (``identity`` given: a callable minting its identity JWT,
  :mod:`apiary.dataplane.federation.identity`) proves who it is with the header
  ``Apiary-Data-Plane: <identity JWT>`` on every exchange; the audience is then its
  registered id. A key whose project another data plane serves gets the control plane's
  421 passed through as :class:`~apiary.errors.MisdirectedRequest` (its message and the
  right ``data_plane_url``), remembered no longer than ``negative_cache_s``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from apiary._private import metrics
from apiary.dataplane.auth._chain import CredentialShape, credential_shape
from apiary.dataplane.auth._jwt import JWKS_PATH, JwksCache, JwtAuthenticator
from apiary.dataplane.auth._seam import Principal
from apiary.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ControlPlaneUnavailable,
    MisdirectedRequest,
)
from apiary.ratelimit import TtlLru
from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/auth/token"
#: The header carrying a federated data plane's identity JWT on a token exchange.
IDENTITY_HEADER = "Apiary-Data-Plane"


#: How often a key served stale is logged (once per key per this many seconds).
STALE_LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    fresh_until: float  # on the authenticator's clock: verify again from then on
    verified_at: float


@dataclass(frozen=True, slots=True)
class _Refused:
    message: str
    data_plane_url: str | None = None  # a 421: the data plane serving the key's project

    def error(self) -> AuthenticationFailed | MisdirectedRequest:
        if self.data_plane_url is not None:
            return MisdirectedRequest(self.message, data_plane_url=self.data_plane_url)
        return AuthenticationFailed(self.message)


class ControlPlaneKeyAuthenticator:
    """Authenticates API keys by exchanging them at the control plane (module docstring).

    Picklable (for Ray): a copy starts with empty caches and its own HTTP client.
    """

    def __init__(
        self,
        control_plane_url: str,
        *,
        audience: str,
        tokens: JwtAuthenticator,
        cache_entries: int = 20_000,
        cache_max_s: float = 60.0,
        negative_cache_s: float = 5.0,
        expiry_margin_s: float = 10.0,
        max_concurrent_exchanges: int = 16,
        timeout_s: float = 5.0,
        identity: Callable[[], str] | None = None,
        stale_max_s: float = 0.0,
        stale_retry_s: float = 1.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if 0 < stale_max_s < cache_max_s:
            raise ConfigurationError(
                "stale_max_s must be 0 (off) or at least cache_max_s",
                stale_max_s=stale_max_s, cache_max_s=cache_max_s)
        self.control_plane_url = control_plane_url.rstrip("/")
        self.token_url = self.control_plane_url + TOKEN_PATH
        self.audience = audience
        self.tokens = tokens
        self.cache_entries = cache_entries
        self.cache_max_s = cache_max_s
        self.negative_cache_s = negative_cache_s
        self.expiry_margin_s = expiry_margin_s
        self.max_concurrent_exchanges = max_concurrent_exchanges
        self.timeout_s = timeout_s
        self.identity = identity
        self.stale_max_s = stale_max_s
        self.stale_retry_s = stale_retry_s
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._cache: TtlLru[bytes, _Verified | _Refused] = TtlLru(cache_entries, clock=clock)
        self._stale_logged: TtlLru[bytes, bool] = TtlLru(cache_entries, clock=clock)
        self._unreachable_until = float("-inf")
        self._inflight: dict[bytes, asyncio.Task[Principal]] = {}
        self._slots: asyncio.Semaphore | None = None
        self.exchanges = 0  # HTTP exchanges made, for metrics and tests
        self.stale_uses = 0  # principals served stale, for tests

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            functools.partial(
                ControlPlaneKeyAuthenticator,
                self.control_plane_url,
                audience=self.audience,
                tokens=self.tokens,
                cache_entries=self.cache_entries,
                cache_max_s=self.cache_max_s,
                negative_cache_s=self.negative_cache_s,
                expiry_margin_s=self.expiry_margin_s,
                max_concurrent_exchanges=self.max_concurrent_exchanges,
                timeout_s=self.timeout_s,
                identity=self.identity,
                stale_max_s=self.stale_max_s,
                stale_retry_s=self.stale_retry_s,
            ),
            (),
        )

    async def authenticate(self, credential: str) -> Principal:
        shape = credential_shape(credential)
        if shape is CredentialShape.JWT:
            return await self.tokens.authenticate(credential)
        if shape is not CredentialShape.API_KEY:
            raise AuthenticationFailed("the credential is neither an API key nor a signed token")
        digest = hashlib.sha256(credential.encode()).digest()
        cached = self._cache.get(digest)
        if isinstance(cached, _Verified):
            if cached.fresh_until > self._clock():
                return cached.principal
            if self._clock() < self._unreachable_until:
                return self._stale(digest, cached)  # the control plane just failed: no retry yet
        elif isinstance(cached, _Refused):
            raise cached.error()
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._exchange(credential, digest))
            self._inflight[digest] = task
            task.add_done_callback(functools.partial(self._settled, digest))
        try:
            # Shielded: one waiter giving up must not cancel the exchange the others wait for.
            return await asyncio.shield(task)
        except ControlPlaneUnavailable:
            # Read again: a refusal or a pushed revocation meanwhile replaced or deleted it.
            current = self._cache.get(digest)
            if isinstance(current, _Verified):
                return self._stale(digest, current)
            raise

    def _stale(self, digest: bytes, entry: _Verified) -> Principal:
        """Serve ``entry`` past the cache cap (the control plane is unavailable)."""
        self.stale_uses += 1
        metrics.inc(metrics.AUTH_STALE_USES)
        if self._stale_logged.get(digest) is None:
            self._stale_logged.set(digest, True, STALE_LOG_EVERY_S)
            log.warning(
                "control plane unavailable: serving an API key verified earlier", extra={
                    "key_sha256_prefix": digest.hex()[:12],
                    "verified_s_ago": round(self._clock() - entry.verified_at, 1),
                    "stale_max_s": self.stale_max_s})
        return entry.principal

    def forget(self, credential: str) -> None:
        """Drop what is remembered about ``credential`` (e.g. on a revocation notice)."""
        self._cache.pop(hashlib.sha256(credential.encode()).digest())

    def forget_digest(self, key_sha256: bytes) -> bool:
        """Drop what is remembered about the key whose SHA-256 is ``key_sha256`` (a
        revocation pushed by the control plane); whether anything was remembered."""
        return self._cache.pop(key_sha256) is not None

    def forget_all(self) -> None:
        """Drop every remembered key (a revocation that names no key hash)."""
        self._cache.clear()

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    def _settled(self, digest: bytes, task: asyncio.Task[Principal]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not logged twice

    async def _exchange(self, credential: str, digest: bytes) -> Principal:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent_exchanges)
        if self._client is None:
            self._client = httpx.AsyncClient()
        async with self._slots:
            self.exchanges += 1
            headers = {"Authorization": f"Bearer {credential}"}
            if self.identity is not None:
                headers[IDENTITY_HEADER] = self.identity()
            try:
                response = await self._client.post(
                    self.token_url,
                    headers=headers,
                    json={"audience": self.audience},
                    timeout=self.timeout_s,
                    follow_redirects=False,
                )
            except httpx.HTTPError as exc:
                self._unavailable()
                raise ControlPlaneUnavailable(
                    "could not reach the control plane to verify the API key",
                    url=self.token_url,
                    error=str(exc) or type(exc).__name__,
                ) from None
        if response.status_code in (401, 403):
            message = (
                "the API key is not valid (unknown or revoked)"
                if response.status_code == 401
                else "the API key may not be used on this data plane"
            )
            self._cache.set(digest, _Refused(message), self.negative_cache_s)
            raise AuthenticationFailed(message)
        if response.status_code == 421:
            refused = _misdirected(response)
            self._cache.set(digest, refused, self.negative_cache_s)
            raise refused.error()
        if response.status_code != 200:
            self._unavailable()
            raise ControlPlaneUnavailable(
                f"the control plane's token endpoint answered HTTP {response.status_code}",
                url=self.token_url,
            )
        try:
            access_token = _access_token(response)
        except ControlPlaneUnavailable:
            self._unavailable()
            raise
        try:
            verified = await self.tokens.verify(access_token)
        except AuthenticationFailed as exc:
            # The control plane vouched for the key but we cannot check its word: an
            # operator's problem (wrong audience, issuer or keys), not the caller's.
            log.error("the control plane issued a token this data plane rejects: %s", exc)
            self._unavailable()
            raise ControlPlaneUnavailable(
                f"the control plane issued a token this data plane cannot verify: {exc.message}"
            ) from None
        ttl = min(self.cache_max_s, verified.expires_at - self.expiry_margin_s - time.time())
        now = self._clock()
        self._unreachable_until = float("-inf")
        self._cache.set(digest, _Verified(verified.principal, now + ttl, now),
                        self.stale_max_s if self.stale_max_s > 0 else ttl)
        return verified.principal

    def _unavailable(self) -> None:
        self._unreachable_until = self._clock() + self.stale_retry_s


def _access_token(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ControlPlaneUnavailable(
            "the control plane's token endpoint answered without an access_token"
        )
    return token


def _misdirected(response: httpx.Response) -> _Refused:
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    details = body.get("details")
    url = body.get("data_plane_url") or (
        details.get("data_plane_url") if isinstance(details, dict) else None)
    message = body.get("message")
    if not isinstance(message, str) or not message:
        message = "the API key's project is served by another data plane"
    return _Refused(message, url if isinstance(url, str) else "")


def control_plane_authenticator(
    settings: ApiarySettings,
    *,
    client: httpx.AsyncClient | None = None,
    data_plane_id: str | None = None,
    identity: Callable[[], str] | None = None,
    issuer: str | None = None,
) -> ControlPlaneKeyAuthenticator:
    """The data plane's authenticator for keys and tokens of the configured control plane.

    A federated data plane passes its registered ``data_plane_id`` (the audience of every
    token it accepts and requests, instead of ``settings.data_plane_id``) and ``identity``,
    which mints its identity JWT for each exchange, and the control plane's ``issuer`` as
    registration named it (``settings.jwt_issuer`` still wins when set); only a federated
    data plane serves keys stale while its control plane is away (``auth_stale_max_s``).

    Raises :class:`ConfigurationError` if ``control_plane_url`` is unset.
    """
    audience = data_plane_id or settings.data_plane_id
    issuer = settings.jwt_issuer or issuer or settings.trusted_issuer
    if settings.control_plane_url is None or issuer is None:
        raise ConfigurationError(
            "no control plane configured: set APIARY_CONTROL_PLANE_URL to the control plane's "
            "base URL"
        )
    jwks = JwksCache(
        settings.control_plane_url + JWKS_PATH,
        max_age_s=settings.jwks_max_age_s,
        refetch_cooldown_s=settings.jwks_refetch_cooldown_s,
        client=client,
    )
    tokens = JwtAuthenticator(
        jwks,
        issuer=issuer,
        audience=audience,
        leeway_s=settings.jwt_leeway_s,
        cache_entries=settings.auth_cache_entries,
        cache_max_s=settings.auth_cache_max_s,
    )
    return ControlPlaneKeyAuthenticator(
        settings.control_plane_url,
        audience=audience,
        tokens=tokens,
        cache_entries=settings.auth_cache_entries,
        cache_max_s=settings.auth_cache_max_s,
        negative_cache_s=settings.auth_negative_cache_s,
        identity=identity,
        stale_max_s=settings.auth_stale_max_s if identity is not None else 0.0,
        client=client,
    )
