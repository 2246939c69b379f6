"""Attacks on the control plane's credential checks: guessing, spraying, lockout, memory
exhaustion through password hashing, TOTP guessing (issue item 6).

Every attack runs against the real control-plane app (on SQLite and on PostgreSQL) with
the attacker and the victim at different client addresses (the test client's socket
peer), and the throttle on the control plane's movable clock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pyotp
import pytest
from argon2 import PasswordHasher
from control._tenants import PASSWORD, auth, error_code, make_tenant, ok, signup
from control.conftest import DATA_PLANE_ID, FAST_HASHER, FakeClock, make_settings
from fastapi.testclient import TestClient
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from apiary.control import ControlPlane
from apiary.control.api import create_control_plane_app
from apiary.control.db import Database
from apiary.control.passwords import HASH_SLOTS
from apiary.control.throttle import DEVICE_COOKIE, address_key, client_address
from apiary.deployments import serve_environment

ATTACKER = ("203.0.113.7", 40000)
VICTIM = ("198.51.100.20", 40001)
ADMIN = "admin@apiary.local"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """A reverse proxy at 10.0.0.0/24 is trusted; nobody else's X-Forwarded-For is."""
    return {"cp_trusted_proxies": "10.0.0.0/24"}


@pytest.fixture
def app(cp: ControlPlane) -> Any:
    return create_control_plane_app(cp)


def at(app: Any, address: tuple[str, int]) -> TestClient:
    """A client of ``app`` whose requests come from ``address`` (the socket peer)."""
    return TestClient(app, client=address, follow_redirects=False)


def login(client: TestClient, email: str, password: str = PASSWORD, **extra: str) -> Any:
    response = client.post("/v1/auth/login", json={"email": email, "password": password, **extra})
    client.cookies.clear()
    return response


def retry_after(response: Any) -> int:
    """The Retry-After of a 429 ``too_many_attempts`` (asserted present and positive)."""
    assert error_code(response, 429) == "too_many_attempts"
    value = int(response.headers["Retry-After"])
    assert value >= 1
    return value


# --- password guessing -----------------------------------------------------------------


def test_password_guessing_from_one_address_gets_429_with_retry_after(
    app: Any, cp: ControlPlane, clock: FakeClock
) -> None:
    signup(at(app, VICTIM), ADMIN)
    attacker = at(app, ATTACKER)
    free = cp.settings.cp_login_max_failures
    for _ in range(free):
        assert error_code(login(attacker, ADMIN, "guess guess guess"), 401) == "unauthenticated"
    assert retry_after(login(attacker, ADMIN, "guess guess guess")) == 1
    # Even the right password is refused to the address that is backing off.
    assert retry_after(login(attacker, ADMIN)) == 1
    # The back-off doubles with each further failure of that (account, address).
    clock.advance(1.1)
    assert login(attacker, ADMIN, "guess guess guess").status_code == 401
    assert retry_after(login(attacker, ADMIN, "guess guess guess")) == 2
    clock.advance(2.1)
    assert login(attacker, ADMIN, "guess guess guess").status_code == 401
    assert retry_after(login(attacker, ADMIN, "guess guess guess")) == 4


def test_attacker_cannot_lock_out_the_admin(app: Any, cp: ControlPlane) -> None:
    signup(at(app, VICTIM), ADMIN)
    attacker = at(app, ATTACKER)
    statuses = [login(attacker, ADMIN, f"guess number {i}").status_code for i in range(60)]
    assert statuses[:cp.settings.cp_login_max_failures] == [401] * cp.settings.cp_login_max_failures
    assert set(statuses[cp.settings.cp_login_max_failures:]) == {429}
    retry_after(login(attacker, ADMIN))  # the attacker is throttled, right password or not
    # The admin, from their own address and with the right password, is not.
    admin = ok(login(at(app, VICTIM), ADMIN))
    assert admin["user"]["email"] == ADMIN


def test_attacker_sharing_the_admins_address_cannot_lock_out_the_admin(
    app: Any, cp: ControlPlane
) -> None:
    """Everyone arrives from one address (one office NAT, or an ingress that hides
    clients): the admin's browser, which logged in before, holds a device cookie for the
    account and is throttled as itself, whatever the attacker does from that address."""
    shared = ("127.0.0.1", 40000)
    admin_browser = at(app, shared)
    signup(admin_browser, ADMIN)
    ok(admin_browser.post("/v1/auth/login", json={"email": ADMIN, "password": PASSWORD}))
    assert DEVICE_COOKIE in admin_browser.cookies
    attacker = at(app, shared)
    signup(attacker, "mallory@evil.example")
    ok(attacker.post("/v1/auth/login", json={"email": "mallory@evil.example",
                                             "password": PASSWORD}))
    # Mallory's own device cookie is for Mallory's account: no help against the admin's.
    statuses = [attacker.post("/v1/auth/login", json={
        "email": ADMIN, "password": f"guess number {i}"}).status_code for i in range(60)]
    assert statuses.count(401) == cp.settings.cp_login_max_failures
    retry_after(attacker.post("/v1/auth/login", json={"email": ADMIN, "password": PASSWORD}))
    forged = at(app, shared)
    forged.cookies.set(DEVICE_COOKIE, "v1:" + "A" * 60)
    retry_after(forged.post("/v1/auth/login", json={"email": ADMIN, "password": PASSWORD}))
    admin = admin_browser.post("/v1/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert ok(admin)["user"]["email"] == ADMIN


def test_distributed_guessing_slows_the_account_by_seconds_only(
    app: Any, cp: ControlPlane, clock: FakeClock
) -> None:
    signup(at(app, VICTIM), ADMIN)
    ok(login(at(app, VICTIM), ADMIN))  # the admin's usual address becomes known
    # A botnet: each address stays under its own limits, together they pass 20 failures.
    for i in range(40):
        bot = at(app, (f"192.0.2.{i + 1}", 40000))
        for _ in range(2):
            response = login(bot, ADMIN, "botnet guess!")
            assert response.status_code in (401, 429)
    fresh = login(at(app, ("192.0.2.200", 40000)), ADMIN)
    wait = retry_after(fresh)
    assert wait <= cp.settings.cp_login_account_backoff_max_s  # seconds, never a lockout
    # The admin's known address is not slowed at all; a new one after the short wait.
    assert ok(login(at(app, VICTIM), ADMIN))["user"]["email"] == ADMIN
    clock.advance(cp.settings.cp_login_account_backoff_max_s + 0.1)
    assert ok(login(at(app, ("192.0.2.201", 40000)), ADMIN))["user"]["email"] == ADMIN


def test_password_spraying_across_accounts_from_one_address_is_throttled(
    app: Any, cp: ControlPlane, clock: FakeClock
) -> None:
    victims = [f"user{i}@corp.example" for i in range(5)]
    for email in victims:
        signup(at(app, VICTIM), email)
    attacker = at(app, ATTACKER)
    budget = cp.settings.cp_auth_ip_max_failures
    # One common password against many accounts, existing or not: each account sees a
    # single failure, the address sees them all.
    targets = [victims[i % len(victims)] if i % 2 else f"ghost{i}@corp.example"
               for i in range(budget)]
    for email in targets:
        assert login(attacker, email, "Summer2026!!").status_code == 401
    wait = retry_after(login(attacker, "another@corp.example", "Summer2026!!"))
    assert wait >= 3600 // budget - 1
    # Others are unaffected, and the address regains one attempt per hour / budget.
    assert login(at(app, VICTIM), victims[0]).status_code == 200
    clock.advance(wait + 0.5)
    assert login(attacker, "ghost-later@corp.example", "Summer2026!!").status_code == 401
    retry_after(login(attacker, "ghost-later2@corp.example", "Summer2026!!"))


def test_signup_flood_from_one_address_is_throttled(app: Any, cp: ControlPlane) -> None:
    attacker = at(app, ATTACKER)
    per_min = cp.settings.cp_auth_ip_per_min
    statuses = [
        attacker.post("/v1/auth/signup", json={"email": f"bot{i}@spam.example",
                                               "password": PASSWORD}).status_code
        for i in range(per_min + 1)
    ]
    assert 429 not in statuses[:per_min]
    assert statuses[per_min] == 429


def test_password_change_with_a_stolen_session_cannot_guess_the_password(
    app: Any, cp: ControlPlane
) -> None:
    session = signup(at(app, VICTIM), ADMIN)
    thief = at(app, ATTACKER)
    for i in range(cp.settings.cp_login_max_failures):
        wrong = thief.post("/v1/me/password", headers=auth(session),
                           json={"current_password": f"guess {i} guess", "new_password": "x" * 12})
        assert error_code(wrong, 401) == "unauthenticated"
    refused = thief.post("/v1/me/password", headers=auth(session),
                         json={"current_password": PASSWORD, "new_password": "x" * 12})
    retry_after(refused)
    assert login(at(app, VICTIM), ADMIN).status_code == 200  # unchanged, and usable


# --- client addresses -------------------------------------------------------------------


def test_forged_x_forwarded_for_does_not_evade_the_per_address_limit(
    app: Any, cp: ControlPlane
) -> None:
    signup(at(app, VICTIM), ADMIN)
    attacker = at(app, ATTACKER)
    statuses = []
    for i in range(cp.settings.cp_login_max_failures + 3):
        response = attacker.post(
            "/v1/auth/login", json={"email": ADMIN, "password": "guess guess guess"},
            headers={"X-Forwarded-For": f"10.9.{i}.1"},  # a new "address" every time
        )
        statuses.append(response.status_code)
    assert statuses[-1] == 429


def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for(
    app: Any, cp: ControlPlane
) -> None:
    signup(at(app, VICTIM), ADMIN)
    proxy = at(app, ("10.0.0.5", 40000))
    # The attacker puts a fake address in front; the proxy appends the real one.
    spoofed = {"X-Forwarded-For": "198.51.100.20, 203.0.113.7"}
    for _ in range(cp.settings.cp_login_max_failures):
        assert proxy.post("/v1/auth/login", headers=spoofed,
                          json={"email": ADMIN, "password": "guess guess guess"}).status_code == 401
    retry_after(proxy.post("/v1/auth/login", headers=spoofed,
                           json={"email": ADMIN, "password": PASSWORD}))
    # The victim, through the same proxy, is another client.
    victim = proxy.post("/v1/auth/login", headers={"X-Forwarded-For": "198.51.100.20"},
                        json={"email": ADMIN, "password": PASSWORD})
    assert ok(victim)["user"]["email"] == ADMIN


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


def test_client_address_believes_x_forwarded_for_only_from_trusted_proxies() -> None:
    trusted = ("127.0.0.1/32", "10.0.0.0/8")
    assert client_address(_request("203.0.113.7", "1.2.3.4"), trusted) == "203.0.113.7"
    assert client_address(_request("127.0.0.1", "1.2.3.4, 203.0.113.7"), trusted) == (
        "203.0.113.7")
    # Proxies in the chain are skipped; what the client wrote to their left is not read.
    assert client_address(_request("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.1.1"),
                          trusted) == "203.0.113.7"
    assert client_address(_request("127.0.0.1", "garbage"), trusted) == "127.0.0.1"
    assert client_address(_request("127.0.0.1"), ()) == "127.0.0.1"
    # IPv6 clients are counted by their /64: rotating addresses inside it does not help.
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"


async def test_serve_ingress_does_not_let_clients_choose_their_address() -> None:
    """`apiary up` puts HAProxy on loopback in front of the replicas' uvicorn, which by
    default believes X-Forwarded-For from 127.0.0.1, and HAProxy passes the client's header
    through: the environment Serve starts with must turn that off."""
    env = serve_environment(haproxy_dir="/tmp/x", stats_port=1, metrics_port=2)
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    middleware = ProxyHeadersMiddleware(app, trusted_hosts=env["FORWARDED_ALLOW_IPS"])
    scope = {"type": "http", "client": ("127.0.0.1", 5000),
             "headers": [(b"x-forwarded-for", b"6.6.6.6")]}
    await middleware(scope, None, None)  # type: ignore[arg-type]
    assert seen == [("127.0.0.1", 5000)]


# --- memory exhaustion through password hashing ----------------------------------------


class CountingHasher(PasswordHasher):
    """Cheap argon2 that takes 0.2 s and records how many run at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls = 0

    def _enter(self) -> None:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self._enter()
        try:
            return super().verify(hash, password)
        finally:
            self._leave()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self._enter()
        try:
            return super().hash(password, salt=salt)
        finally:
            self._leave()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def bounded_cp(cp_url: str, tmp_path: Path, clock: FakeClock,
               hasher: CountingHasher) -> Iterator[ControlPlane]:
    control = ControlPlane(
        make_settings(tmp_path, cp_url, cp_max_concurrent_password_hashes=2,
                      cp_password_hash_wait_s=0.1, cp_auth_ip_per_min=1000),
        Database.open(cp_url), clock=clock, password_hasher=hasher,
    )
    yield control
    control.close()


def test_a_flood_of_concurrent_logins_never_runs_more_than_n_hashes(
    bounded_cp: ControlPlane, hasher: CountingHasher
) -> None:
    app = create_control_plane_app(bounded_cp)
    with at(app, VICTIM) as victim:
        signup(victim, ADMIN)
    HASH_SLOTS.reset_peak()
    hasher.most = 0

    def attempt(i: int) -> Any:
        # Distinct addresses and emails (most of them unknown): no throttle interferes,
        # only the bound on hashes does. Unknown emails cost a hash like known ones.
        with at(app, (f"192.0.2.{i + 1}", 40000)) as client:
            email = ADMIN if i % 4 == 0 else f"nobody{i}@corp.example"
            return login(client, email, "a wrong password")

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(attempt, range(16)))
    statuses = [r.status_code for r in responses]
    assert hasher.most <= 2
    assert HASH_SLOTS.peak <= 2
    assert set(statuses) <= {401, 503}, statuses
    assert 401 in statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, "16 logins of 0.2 s each cannot all find one of 2 slots within 0.1 s"
    for response in busy:
        assert error_code(response, 503) == "overloaded"
        assert int(response.headers["Retry-After"]) >= 1
    assert hasher.calls == 1 + statuses.count(401)  # the refused ones allocated nothing


# --- TOTP guessing -----------------------------------------------------------------------


def _enrol(client: TestClient, session: str, clock: FakeClock) -> pyotp.TOTP:
    enrolment = ok(client.post("/v1/me/totp", headers=auth(session)), 201)
    totp = pyotp.TOTP(enrolment["secret"])
    ok(client.post("/v1/me/totp/verify", headers=auth(session),
                   json={"code": totp.at(clock.now)}))
    clock.advance(30)
    return totp


def _wrong(totp: pyotp.TOTP, clock: FakeClock) -> str:
    """A code that is certainly wrong now (not one of the three accepted steps)."""
    valid = {totp.at(clock.now.timestamp() + d) for d in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in valid)


def test_totp_brute_force_at_login_with_the_password_is_throttled(
    app: Any, cp: ControlPlane, clock: FakeClock
) -> None:
    victim = at(app, VICTIM)
    session = signup(victim, ADMIN)
    totp = _enrol(victim, session, clock)
    limit, window = cp.settings.cp_totp_max_failures, cp.settings.cp_totp_window_s
    # The attacker holds the password and rotates addresses: the count is per account.
    for i in range(limit):
        guess = login(at(app, (f"192.0.2.{i + 1}", 40000)), ADMIN, totp_code=_wrong(totp, clock))
        assert error_code(guess, 401) == "unauthenticated"
    refused = login(at(app, ("192.0.2.99", 40000)), ADMIN, totp_code=totp.at(clock.now))
    assert retry_after(refused) == window  # even the right code waits out the window
    clock.advance(window + 1)
    assert ok(login(victim, ADMIN, totp_code=totp.at(clock.now)))["auth_method"] == (
        "password+totp")


def test_totp_brute_force_with_a_stolen_session_at_disable_is_throttled(
    app: Any, cp: ControlPlane, clock: FakeClock
) -> None:
    victim = at(app, VICTIM)
    session = signup(victim, ADMIN)
    totp = _enrol(victim, session, clock)
    thief = at(app, ATTACKER)
    limit, window = cp.settings.cp_totp_max_failures, cp.settings.cp_totp_window_s
    for _ in range(limit):
        wrong = thief.post("/v1/me/totp/disable", headers=auth(session),
                           json={"code": _wrong(totp, clock)})
        assert error_code(wrong, 401) == "unauthenticated"
    assert retry_after(thief.post("/v1/me/totp/disable", headers=auth(session),
                                  json={"code": "abcd-efgh-ijkm-npqr"})) == window
    # The next round waits twice as long.
    clock.advance(window + 1)
    for _ in range(limit):
        thief.post("/v1/me/totp/disable", headers=auth(session),
                   json={"code": _wrong(totp, clock)})
    assert retry_after(thief.post("/v1/me/totp/disable", headers=auth(session),
                                  json={"code": _wrong(totp, clock)})) == 2 * window
    # The factor is still on: the password alone does not log in.
    assert error_code(login(victim, ADMIN), 401) == "mfa_required"


def test_totp_brute_force_at_enrolment_confirmation_is_throttled(
    app: Any, cp: ControlPlane, clock: FakeClock
) -> None:
    victim = at(app, VICTIM)
    session = signup(victim, ADMIN)
    enrolment = ok(victim.post("/v1/me/totp", headers=auth(session)), 201)
    totp = pyotp.TOTP(enrolment["secret"])
    for _ in range(cp.settings.cp_totp_max_failures):
        wrong = victim.post("/v1/me/totp/verify", headers=auth(session),
                            json={"code": _wrong(totp, clock)})
        assert error_code(wrong, 401) == "unauthenticated"
    retry_after(victim.post("/v1/me/totp/verify", headers=auth(session),
                            json={"code": totp.at(clock.now)}))


# --- token exchange ------------------------------------------------------------------------


def test_session_token_exchange_flood_is_rate_limited(app: Any, cp: ControlPlane) -> None:
    client = at(app, VICTIM)
    tenant = make_tenant(client, "A")
    per_min = cp.settings.cp_session_token_per_min
    body = {"audience": DATA_PLANE_ID, "project_id": tenant.project_id}
    statuses = [client.post("/v1/auth/token", json=body, headers=auth(tenant.owner)).status_code
                for _ in range(per_min)]
    assert set(statuses) == {200}, statuses
    retry_after(client.post("/v1/auth/token", json=body, headers=auth(tenant.owner)))


# --- several replicas ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from _servers import redis_server

    with redis_server() as url:
        yield url


def test_replicas_share_the_throttle_through_redis(
    cp_url: str, tmp_path: Path, clock: FakeClock, redis_url: str
) -> None:
    """With ``redis_url`` set, an attacker gains nothing by spreading guesses over
    replicas: the second replica refuses what the first one counted."""
    settings = make_settings(tmp_path, cp_url, redis_url=redis_url)
    replicas = [ControlPlane(settings, Database.open(cp_url), clock=clock,
                             password_hasher=FAST_HASHER) for _ in range(2)]
    try:
        apps = [create_control_plane_app(r) for r in replicas]
        email = f"admin-{uuid.uuid4().hex[:8]}@apiary.local"  # Redis outlives one test
        signup(at(apps[0], VICTIM), email)
        attacker = (f"203.0.113.{uuid.uuid4().int % 200 + 20}", 40000)
        for i in range(settings.cp_login_max_failures):
            assert login(at(apps[i % 2], attacker), email, "guess guess guess").status_code == 401
        retry_after(login(at(apps[1], attacker), email))
        retry_after(login(at(apps[0], attacker), email))
        assert ok(login(at(apps[1], VICTIM), email))["user"]["email"] == email
    finally:
        for replica in replicas:
            replica.close()
