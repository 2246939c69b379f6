"""Throttling of credential checks: per client address, per account, per (account, address).

Brute force is slowed without handing an attacker a way to lock the victim out. Every
check is keyed by the **client address** (:func:`client_address`: the socket peer, or the
``X-Forwarded-For`` entry a configured trusted proxy vouches for) and/or the **account**
(a hash of the normalized email, the same for an email that has no account, so that
throttling does not reveal which accounts exist; or a user id for TOTP).

- **Per address, every credential check** (login, sign-up, password change, TOTP
  enrolment/disable, the SSO second factor): a token bucket of ``cp_auth_ip_per_min`` per
  minute. Session → data-plane token exchanges have their own bucket per address and per
  user (``cp_session_token_per_min``).
- **Per address, wrong passwords across all accounts** (credential stuffing, spraying): a
  bucket of ``cp_auth_ip_max_failures``, refilled at that many per hour; once empty the
  address is refused (429) until a token returns.
- **Per (account, address), wrong passwords**: after ``cp_login_max_failures`` the pair
  backs off exponentially (1 s, 2 s, 4 s, ...) up to ``cp_login_lockout_s``. This is the
  attacker's own penalty box: another address, with the right password, is unaffected.
- **Per account, wrong passwords from everywhere**: after :data:`ACCOUNT_FREE_FAILURES`, a
  wait between attempts that grows slowly and never exceeds
  ``cp_login_account_backoff_max_s`` (seconds: a slowdown, not a lockout). An address that
  logged into the account within :data:`KNOWN_CLIENT_TTL_S` is exempt, so a distributed
  attack cannot keep the owner's usual machine waiting either.
- **Per account, wrong TOTP or recovery codes** (login, SSO, enrolment, disabling):
  ``cp_totp_max_failures`` within ``cp_totp_window_s``, then 429 for the window, doubling
  each time up to :data:`TOTP_MAX_BACKOFF_S`. A 6-digit code cannot be brute forced by
  someone who holds the password or a session.

**Device cookies** keep the owner in when addresses cannot tell people apart (everyone
behind one NAT, or a deployment where every request arrives from the ingress's address):
a successful login sets ``apiary_device``, an authenticated token bound to that account
(:meth:`AuthThrottle.new_device_token`). A later login *to that account* presenting it is
throttled as that device instead of by its address (``device:<id>``), and is exempt from
the account-wide back-off; anything an attacker does from the same address cannot make
it wait. The cookie is useless for any other account.

Refusals are :class:`~apiary.errors.TooManyAttempts` (429 with ``Retry-After``) and are
decided before any password hash is computed, so a refused attempt costs no argon2.

State lives in :mod:`apiary.ratelimit`: Redis when ``redis_url`` is set (shared by every
replica), else in this process. Its drivers are asynchronous and the control plane's
endpoints are not, so each :class:`AuthThrottle` runs them on one private event-loop
thread: that also serializes the in-process driver, which is safe only within one event
loop. Like the data plane's limits, a throttle whose store fails or does not answer in
time admits (fail open, logged): refusing every login because Redis blinked would be the
larger outage, and the bound on concurrent password hashes still holds. The back-off
records are read then written, not atomically: concurrent failures of one pair may be
counted as one, which the buckets (atomic) bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from starlette.requests import Request

from apiary.control._common import normalize_email
from apiary.control.envelope import Envelope
from apiary.errors import ConfigurationError, TooManyAttempts
from apiary.ratelimit import Cache, MemoryCache, MemoryRateLimiter, RateLimiter, open_redis
from apiary.ratelimit import cache as redis_or_memory_cache
from apiary.ratelimit import rate_limiter as redis_or_memory_limiter
from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Wrong passwords on one account, from all addresses together, before the account-wide
#: back-off starts; it then grows by a factor of two every 8 failures from 0.25 s.
ACCOUNT_FREE_FAILURES = 20
#: How long an account's failure count is remembered after its last failure.
ACCOUNT_MEMORY_S = 3600.0
#: How long a successful login makes its address "known" to that account, and how long a
#: device cookie is good for.
KNOWN_CLIENT_TTL_S = 30 * 86_400.0
#: The cookie a successful login sets: the browser's device token for that account.
DEVICE_COOKIE = "apiary_device"
_DEVICE_PREFIX = "device:"
#: The longest TOTP back-off, and how long an account's TOTP escalation is remembered.
TOTP_MAX_BACKOFF_S = 3600.0
TOTP_MEMORY_S = 86_400.0
#: How long a throttle decision may take before the store is treated as failing (open).
_STORE_TIMEOUT_S = 2.0


# --- the client address ------------------------------------------------------------


def _networks(cidrs: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_warned_untrusted = threading.Event()


def client_address(request: Request, trusted_proxies: tuple[str, ...]) -> str:
    """The address a request is throttled by.

    The socket peer, unless the peer is inside one of ``trusted_proxies``
    (``cp_trusted_proxies``): then ``X-Forwarded-For`` is read from the right, skipping
    addresses that are themselves trusted proxies, and the first other address is the
    client (entries to its left were written by the client and prove nothing). An
    unparseable entry stops the walk at the last trusted hop. ``X-Forwarded-For`` from any
    other peer is ignored: anyone can send it.
    """
    peer = request.client.host if request.client else ""
    peer_ip = _parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    forwarded = request.headers.getlist("x-forwarded-for")
    networks = _networks(trusted_proxies)
    if not any(peer_ip in n for n in networks):
        if forwarded and not _warned_untrusted.is_set():
            _warned_untrusted.set()
            log.warning(
                "X-Forwarded-For from %s ignored: it is not in APIARY_CP_TRUSTED_PROXIES, so "
                "clients are throttled by the peer's address; list your reverse proxy there "
                "if it sets the header (logged once)", peer,
            )
        return str(peer_ip)
    client = peer_ip
    hops = [h for value in forwarded for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _parse_ip(hop)
        if hop_ip is None:
            break
        client = hop_ip
        if not any(hop_ip in n for n in networks):
            break
    return str(client)


def address_key(address: str) -> str:
    """The throttling key of an address: IPv6 addresses by their /64 (one subscriber's
    allocation; counting single IPv6 addresses would let anyone rotate through 2^64)."""
    ip = _parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip) if ip is not None else address


def account_key(email: str) -> str:
    """The throttling key of an email, whether or not an account has it (no enumeration;
    hashed so that stores and logs do not hold addresses)."""
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


# --- the event loop the asynchronous stores run on ------------------------------------


class _LoopThread:
    """One daemon thread running an asyncio loop; :meth:`run` waits for a coroutine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="apiary-cp-throttle",
                                          daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise

    def close(self, last: Coroutine[Any, Any, None] | None = None) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            if last is not None:
                last.close()
            return
        if last is not None:
            try:
                asyncio.run_coroutine_threadsafe(last, loop).result(_STORE_TIMEOUT_S)
            except Exception:  # closing: nothing left to protect
                log.debug("closing the throttle store failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_STORE_TIMEOUT_S)
        loop.close()


# --- the throttle --------------------------------------------------------------------


def _too_many(message: str, retry_after: float) -> TooManyAttempts:
    return TooManyAttempts(message, retry_after=round(max(retry_after, 0.001), 3))


class AuthThrottle:
    """The control plane's throttle of credential checks (one per :class:`ControlPlane`).

    ``clock`` (seconds, wall time) dates the back-off records; it is the control plane's
    clock, so tests move it. ``envelope`` seals device tokens. Every check raises
    :class:`TooManyAttempts` or returns.
    """

    def __init__(
        self, settings: ApiarySettings, envelope: Envelope, *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._envelope = envelope
        self._clock = clock
        self._runner = _LoopThread()
        self._redis = open_redis(settings)
        per_min = settings.cp_auth_ip_per_min
        tokens_per_min = settings.cp_session_token_per_min
        max_failures = settings.cp_auth_ip_max_failures
        self._attempts = self._limiter("cp-auth-ip", per_min / 60.0, per_min)
        self._ip_failures = self._limiter("cp-auth-ip-fail", max_failures / 3600.0,
                                          max_failures)
        self._token_exchanges = self._limiter("cp-session-token", tokens_per_min / 60.0,
                                              tokens_per_min)
        self._state: Cache = (
            MemoryCache(clock=clock) if self._redis is None
            else redis_or_memory_cache(self._redis, namespace="cp-auth")
        )

    def _limiter(self, namespace: str, rate_per_s: float, burst: int) -> RateLimiter:
        if self._redis is None:  # in-process: on the control plane's clock, so tests move it
            return MemoryRateLimiter(rate_per_s, burst, clock=self._clock)
        return redis_or_memory_limiter(self._redis, namespace=namespace,
                                       rate_per_s=rate_per_s, burst=burst)

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            self._runner.run(coro, _STORE_TIMEOUT_S)
        except TooManyAttempts:
            raise
        except (FutureTimeout, OSError) as exc:
            log.warning("the login throttle's store did not answer (%s); admitting", exc)

    def close(self) -> None:
        self._runner.close(self._redis.aclose() if self._redis is not None else None)

    # -- records: {"n": failures, "until": refused before this time, ...} as JSON --

    async def _read(self, key: str) -> dict[str, float]:
        raw = await self._state.get(key)
        if raw is None:
            return {}
        try:
            record = json.loads(raw)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    async def _write(self, key: str, record: dict[str, float], ttl_s: float) -> None:
        await self._state.set(key, json.dumps(record).encode(), ttl_s)

    async def _refuse_if_waiting(self, key: str, message: str) -> None:
        until = (await self._read(key)).get("until", 0.0)
        wait = until - self._clock()
        if wait > 0:
            raise _too_many(message, wait)

    # -- device tokens --------------------------------------------------------------

    def new_device_token(self, account: str) -> str:
        """A device token for ``account`` (:func:`account_key`): AES-GCM sealed with the
        envelope key, the account as associated data, valid :data:`KNOWN_CLIENT_TTL_S`."""
        payload = {"d": secrets.token_hex(12), "exp": self._clock() + KNOWN_CLIENT_TTL_S}
        return self._envelope.encrypt(json.dumps(payload).encode(),
                                      context=f"{_DEVICE_PREFIX}{account}")

    def device_client(self, token: str | None, account: str) -> str | None:
        """The throttling identity (``device:<id>``) of a device token that is valid for
        ``account``; None for no token, a forged or expired one, or another account's."""
        if not token or len(token) > 512:
            return None
        try:
            payload = json.loads(self._envelope.decrypt(
                token, context=f"{_DEVICE_PREFIX}{account}"))
            device, expires = str(payload["d"]), float(payload["exp"])
        except (ConfigurationError, ValueError, KeyError, TypeError):
            return None
        return f"{_DEVICE_PREFIX}{device}" if expires > self._clock() else None

    # -- buckets --------------------------------------------------------------------

    def admit_attempt(self, client: str) -> None:
        """Spend one credential check of ``client``'s per-minute budget, or 429."""
        async def go() -> None:
            decision = await self._attempts.hit(address_key(client))
            if not decision.allowed:
                raise _too_many("too many sign-in attempts from this address; wait",
                                decision.retry_after)
        self._run(go())

    def admit_session_exchange(self, client: str, user_id: str) -> None:
        """Spend one session → token exchange of the user's and the address's budget."""
        async def go() -> None:
            for key in (f"user:{user_id}", f"ip:{address_key(client)}"):
                decision = await self._token_exchanges.hit(key)
                if not decision.allowed:
                    raise _too_many("too many token requests; wait", decision.retry_after)
        self._run(go())

    # -- passwords ------------------------------------------------------------------

    def check_password_attempt(self, client: str, account: str) -> None:
        """Refuse (429) a password check of ``account`` (:func:`account_key`) from
        ``client`` while that address, that pair, or the account is backing off."""
        ip = address_key(client)

        async def go() -> None:
            await self._refuse_if_waiting(
                f"ip-block:{ip}", "too many wrong passwords from this address; wait")
            await self._refuse_if_waiting(
                f"pair:{account}:{ip}", "too many wrong passwords for this account from this "
                "address; wait")
            known = (client.startswith(_DEVICE_PREFIX)
                     or await self._state.get(f"known:{account}:{ip}") is not None)
            if not known:
                await self._refuse_if_waiting(
                    f"account:{account}", "too many wrong passwords for this account; wait")
        self._run(go())

    def password_failed(self, client: str, account: str) -> None:
        """Count a wrong password of ``account`` from ``client`` (after the hash)."""
        ip = address_key(client)
        settings = self.settings

        async def go() -> None:
            now = self._clock()
            # The pair: free failures, then 1 s, 2 s, 4 s, ... up to cp_login_lockout_s.
            pair_key = f"pair:{account}:{ip}"
            pair = await self._read(pair_key)
            n = int(pair.get("n", 0)) + 1
            until = 0.0
            if n >= settings.cp_login_max_failures:
                exponent = min(n - settings.cp_login_max_failures, 60)
                until = now + min(float(settings.cp_login_lockout_s), 2.0 ** exponent)
            await self._write(pair_key, {"n": n, "until": until},
                              float(settings.cp_login_lockout_s))
            # The account, from every address: slow growth, capped at a few seconds.
            account_state_key = f"account:{account}"
            record = await self._read(account_state_key)
            n = int(record.get("n", 0)) + 1
            until = 0.0
            if n > ACCOUNT_FREE_FAILURES:
                delay = 0.25 * 2.0 ** ((n - ACCOUNT_FREE_FAILURES) / 8)
                until = now + min(settings.cp_login_account_backoff_max_s, delay)
            await self._write(account_state_key, {"n": n, "until": until}, ACCOUNT_MEMORY_S)
            # The address, across accounts: once its bucket is empty it waits for a token.
            decision = await self._ip_failures.hit(ip)
            if not decision.allowed or decision.remaining == 0:
                wait = (decision.retry_after if not decision.allowed
                        else 1.0 / self._ip_failures.rate_per_s)
                await self._write(f"ip-block:{ip}", {"until": now + wait}, wait)
        self._run(go())

    def password_succeeded(self, client: str, account: str) -> None:
        """The right password (and second factor): the pair starts afresh, and the address
        becomes known to the account. The account's count is kept: the owner logging in
        must not reset the budget of an attacker elsewhere."""
        ip = address_key(client)

        async def go() -> None:
            await self._state.delete(f"pair:{account}:{ip}")
            await self._state.set(f"known:{account}:{ip}", b"1", KNOWN_CLIENT_TTL_S)
        self._run(go())

    # -- TOTP -----------------------------------------------------------------------

    def check_totp_attempt(self, user_id: str) -> None:
        """Refuse (429) a TOTP or recovery code check while the account backs off."""
        self._run(self._refuse_if_waiting(
            f"totp:{user_id}", "too many wrong codes for this account; wait"))

    def totp_failed(self, user_id: str) -> None:
        """Count a wrong TOTP or recovery code: ``cp_totp_max_failures`` within
        ``cp_totp_window_s`` start a back-off of the window, doubling each time."""
        settings = self.settings

        async def go() -> None:
            now = self._clock()
            key = f"totp:{user_id}"
            record = await self._read(key)
            n, since = int(record.get("n", 0)), record.get("since", now)
            level, until = int(record.get("level", 0)), record.get("until", 0.0)
            if now - since > settings.cp_totp_window_s:
                n, since = 0, now
            n += 1
            if n >= settings.cp_totp_max_failures:
                level += 1
                backoff = settings.cp_totp_window_s * 2.0 ** min(level - 1, 30)
                until = now + min(TOTP_MAX_BACKOFF_S, backoff)
                n, since = 0, until
            await self._write(key, {"n": n, "since": since, "level": level, "until": until},
                              TOTP_MEMORY_S)
        self._run(go())

    def totp_succeeded(self, user_id: str) -> None:
        """A right code: the holder of the second factor is present; start afresh."""
        self._run(self._state.delete(f"totp:{user_id}"))
