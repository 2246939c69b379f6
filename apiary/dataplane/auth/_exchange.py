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
- Concurrent requests with the same uncached key share one exchange, and at most
  ``max_concurrent_exchanges`` exchanges run at once, so a flood of distinct keys cannot
  turn into a flood on the control plane.
- The cache is bounded (``cache_entries``, least recently used forgotten first).
- A credential shaped like a JWT goes straight to the token verifier; anything that is
  neither a key nor a token is refused without a request.
- The control plane unreachable, answering 5xx/429, or issuing a token this data plane
  cannot verify is :class:`~apiary.errors.ControlPlaneUnavailable` (503, retryable, not
  cached): the caller's key may well be valid.
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

from apiary.dataplane.auth._chain import CredentialShape, credential_shape
from apiary.dataplane.auth._jwt import JWKS_PATH, JwksCache, JwtAuthenticator
from apiary.dataplane.auth._seam import Principal
from apiary.errors import AuthenticationFailed, ConfigurationError, ControlPlaneUnavailable
from apiary.ratelimit import TtlLru
from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/auth/token"


@dataclass(frozen=True, slots=True)
class _Refused:
    message: str


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
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
        self._client = client
        self._owns_client = client is None
        self._cache: TtlLru[bytes, Principal | _Refused] = TtlLru(cache_entries, clock=clock)
        self._inflight: dict[bytes, asyncio.Task[Principal]] = {}
        self._slots: asyncio.Semaphore | None = None
        self.exchanges = 0  # HTTP exchanges made, for metrics and tests

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
        if isinstance(cached, Principal):
            return cached
        if isinstance(cached, _Refused):
            raise AuthenticationFailed(cached.message)
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._exchange(credential, digest))
            self._inflight[digest] = task
            task.add_done_callback(functools.partial(self._settled, digest))
        # Shielded: one waiter giving up must not cancel the exchange the others wait for.
        return await asyncio.shield(task)

    def forget(self, credential: str) -> None:
        """Drop what is remembered about ``credential`` (e.g. on a revocation notice)."""
        self._cache.pop(hashlib.sha256(credential.encode()).digest())

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
            try:
                response = await self._client.post(
                    self.token_url,
                    headers={"Authorization": f"Bearer {credential}"},
                    json={"audience": self.audience},
                    timeout=self.timeout_s,
                    follow_redirects=False,
                )
            except httpx.HTTPError as exc:
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
        if response.status_code != 200:
            raise ControlPlaneUnavailable(
                f"the control plane's token endpoint answered HTTP {response.status_code}",
                url=self.token_url,
            )
        access_token = _access_token(response)
        try:
            verified = await self.tokens.verify(access_token)
        except AuthenticationFailed as exc:
            # The control plane vouched for the key but we cannot check its word: an
            # operator's problem (wrong audience, issuer or keys), not the caller's.
            log.error("the control plane issued a token this data plane rejects: %s", exc)
            raise ControlPlaneUnavailable(
                f"the control plane issued a token this data plane cannot verify: {exc.message}"
            ) from None
        ttl = min(self.cache_max_s, verified.expires_at - self.expiry_margin_s - time.time())
        self._cache.set(digest, verified.principal, ttl)
        return verified.principal


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


def control_plane_authenticator(
    settings: ApiarySettings, *, client: httpx.AsyncClient | None = None
) -> ControlPlaneKeyAuthenticator:
    """The data plane's authenticator for keys and tokens of the configured control plane.

    Raises :class:`ConfigurationError` if ``control_plane_url`` is unset.
    """
    issuer = settings.trusted_issuer
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
        audience=settings.data_plane_id,
        leeway_s=settings.jwt_leeway_s,
        cache_entries=settings.auth_cache_entries,
        cache_max_s=settings.auth_cache_max_s,
    )
    return ControlPlaneKeyAuthenticator(
        settings.control_plane_url,
        audience=settings.data_plane_id,
        tokens=tokens,
        cache_entries=settings.auth_cache_entries,
        cache_max_s=settings.auth_cache_max_s,
        negative_cache_s=settings.auth_negative_cache_s,
        client=client,
    )
