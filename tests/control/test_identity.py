"""Identity: accounts, passwords, sessions, throttling, TOTP and recovery codes."""

from __future__ import annotations

from datetime import datetime

import httpx
import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.db import RecoveryCode, TotpCredential, User, UserSession
from apiary.control.passwords import DEFAULT_HASHER

from ._tenants import PASSWORD, auth, error_code, ok, signup
from .conftest import FakeClock


def login(
    client: TestClient, email: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    response = client.post("/v1/auth/login", json={"email": email, "password": password, **extra})
    client.cookies.clear()
    return response


def test_signup_stores_an_argon2id_hash_and_emails_are_unique_case_insensitively(
    client: TestClient, cp: ControlPlane
) -> None:
    signup(client, "Ada@Example.com")
    with cp.transaction() as db:
        user = db.execute(select(User)).scalar_one()
    assert user.email == "Ada@Example.com"
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    again = client.post("/v1/auth/signup",
                        json={"email": " ada@EXAMPLE.com", "password": PASSWORD})
    assert error_code(again, 409) == "conflict"
    assert error_code(client.post("/v1/auth/signup", json={
        "email": "bob@example.com", "password": "short"}), 400) == "invalid_request"
    assert error_code(client.post("/v1/auth/signup", json={
        "email": "not-an-email", "password": PASSWORD}), 400) == "invalid_request"
    assert error_code(client.post("/v1/auth/signup", json={
        "email": "x@example.com", "password": PASSWORD, "admin": True}), 400) == "invalid_request"


def test_production_hasher_is_memory_hard_argon2id() -> None:
    hashed = DEFAULT_HASHER.hash("a password")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_login_logout_and_session_token_stored_only_as_hash(
    client: TestClient, cp: ControlPlane
) -> None:
    signup(client, "ada@example.com")
    wrong = login(client, "ada@example.com", "wrong password!")
    unknown = login(client, "nobody@example.com")
    # Same status and message: the response does not tell which accounts exist.
    assert error_code(wrong, 401) == error_code(unknown, 401) == "unauthenticated"
    assert wrong.json()["message"] == unknown.json()["message"]

    session = ok(login(client, "ADA@example.com"))
    token = session["session_token"]
    assert token.startswith("aps_")
    assert session["auth_method"] == "password"
    with cp.transaction() as db:
        hashes = [s.token_hash for s in db.scalars(select(UserSession))]
    assert token not in hashes
    assert len(hashes) == 2
    assert ok(client.get("/v1/me", headers=auth(token)))["user"]["email"] == "ada@example.com"
    assert ok(client.get("/v1/me", headers=auth(token)))["user"]["has_password"] is True

    assert client.post("/v1/auth/logout", headers=auth(token)).status_code == 204
    assert error_code(client.get("/v1/me", headers=auth(token)), 401) == "unauthenticated"


def test_login_sets_an_httponly_samesite_cookie_that_authenticates(client: TestClient) -> None:
    signup(client, "ada@example.com")
    response = client.post("/v1/auth/login",
                           json={"email": "ada@example.com", "password": PASSWORD})
    cookie = response.headers["set-cookie"]
    assert "apiary_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert ok(client.get("/v1/me"))["user"]["email"] == "ada@example.com"  # via the cookie
    client.cookies.clear()
    assert client.get("/v1/me").status_code == 401


def test_sessions_expire(client: TestClient, cp: ControlPlane, clock: FakeClock) -> None:
    token = signup(client, "ada@example.com")
    clock.advance(cp.settings.cp_session_ttl_s - 10)
    assert client.get("/v1/me", headers=auth(token)).status_code == 200
    clock.advance(20)
    assert error_code(client.get("/v1/me", headers=auth(token)), 401) == "unauthenticated"


def test_password_change_revokes_other_sessions_and_needs_the_current_password(
    client: TestClient,
) -> None:
    first = signup(client, "ada@example.com")
    second = ok(login(client, "ada@example.com"))["session_token"]
    refused = client.post("/v1/me/password", headers=auth(first),
                          json={"current_password": "not it at all", "new_password": "x" * 12})
    assert error_code(refused, 401) == "unauthenticated"
    changed = ok(client.post("/v1/me/password", headers=auth(first), json={
        "current_password": PASSWORD, "new_password": "a brand new password"}))
    assert changed["revoked_sessions"] == 1
    assert client.get("/v1/me", headers=auth(first)).status_code == 200  # this one stays
    assert client.get("/v1/me", headers=auth(second)).status_code == 401
    assert login(client, "ada@example.com").status_code == 401
    assert login(client, "ada@example.com", "a brand new password").status_code == 200


def test_wrong_passwords_back_off_the_address_not_the_account(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    """Changed with the throttle (issue 11, item 6): failures used to lock the account for
    everyone; now the (account, address) pair that failed backs off, briefly at first."""
    signup(client, "ada@example.com")
    signup(client, "bob@example.com")
    for _ in range(cp.settings.cp_login_max_failures):
        assert login(client, "ada@example.com", "guess guess guess").status_code == 401
    throttled = login(client, "ada@example.com")  # even the right password, from here
    assert error_code(throttled, 429) == "too_many_attempts"
    assert int(throttled.headers["Retry-After"]) > 0
    assert login(client, "bob@example.com").status_code == 200
    elsewhere = TestClient(client.app, client=("198.51.100.1", 1000))
    assert login(elsewhere, "ada@example.com").status_code == 200  # not locked for all
    clock.advance(1.5)  # the first back-off is 1 s
    assert login(client, "ada@example.com").status_code == 200


def _enrol(client: TestClient, token: str, now: datetime) -> tuple[pyotp.TOTP, list[str]]:
    """Enrol with the code of the control plane's clock ``now``: a code of the real time
    could be a step ahead of it, and then the next step's code counted as replayed."""
    enrolment = ok(client.post("/v1/me/totp", headers=auth(token)), 201)
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/Apiary:")
    totp = pyotp.TOTP(enrolment["secret"])
    codes = ok(client.post("/v1/me/totp/verify", headers=auth(token),
                           json={"code": totp.at(now)}))["recovery_codes"]
    return totp, codes


def test_totp_enrolment_and_login_with_real_codes(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    token = signup(client, "ada@example.com")
    enrolment = ok(client.post("/v1/me/totp", headers=auth(token)), 201)
    wrong = client.post("/v1/me/totp/verify", headers=auth(token), json={"code": "000000"})
    assert error_code(wrong, 401) == "unauthenticated"
    # Not enabled until verified: logging in needs no code yet.
    assert login(client, "ada@example.com").status_code == 200
    totp = pyotp.TOTP(enrolment["secret"])
    codes = ok(client.post("/v1/me/totp/verify", headers=auth(token),
                           json={"code": totp.at(clock.now)}))["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    with cp.transaction() as db:
        stored = db.get(TotpCredential, db.execute(select(User.id)).scalar_one())
        assert stored is not None
        assert enrolment["secret"] not in stored.secret_ciphertext
    assert error_code(client.post("/v1/me/totp", headers=auth(token)), 409) == "conflict"

    assert error_code(login(client, "ada@example.com"), 401) == "mfa_required"
    wrong_code = login(client, "ada@example.com", totp_code="123456")
    assert error_code(wrong_code, 401) == "unauthenticated"
    clock.advance(30)
    session = ok(login(client, "ada@example.com", totp_code=totp.at(clock.now)))
    assert session["auth_method"] == "password+totp"
    assert session["user"]["mfa_enabled"]
    # The same code a second time is a replay.
    assert login(client, "ada@example.com", totp_code=totp.at(clock.now)).status_code == 401


def test_recovery_codes_are_hashed_and_single_use(
    client: TestClient, cp: ControlPlane
) -> None:
    token = signup(client, "ada@example.com")
    _, codes = _enrol(client, token, cp.now())
    with cp.transaction() as db:
        hashes = [r.code_hash for r in db.scalars(select(RecoveryCode))]
    assert len(hashes) == 10
    assert not any(c.replace("-", "") in hashes or c in hashes for c in codes)
    session = ok(login(client, "ada@example.com", recovery_code=codes[0].upper()))
    assert session["auth_method"] == "password+recovery_code"
    assert login(client, "ada@example.com", recovery_code=codes[0]).status_code == 401
    assert login(client, "ada@example.com", recovery_code=codes[1]).status_code == 200


def test_totp_disable_needs_a_code(client: TestClient, clock: FakeClock) -> None:
    token = signup(client, "ada@example.com")
    totp, _ = _enrol(client, token, clock.now)
    refused = client.post("/v1/me/totp/disable", headers=auth(token), json={"code": "111111"})
    assert error_code(refused, 401) == "unauthenticated"
    clock.advance(30)
    assert client.post("/v1/me/totp/disable", headers=auth(token),
                       json={"code": totp.at(clock.now)}).status_code == 204
    assert login(client, "ada@example.com").status_code == 200


def test_wrong_totp_codes_are_counted_per_account(client: TestClient, cp: ControlPlane) -> None:
    token = signup(client, "ada@example.com")
    _enrol(client, token, cp.now())
    for _ in range(cp.settings.cp_totp_max_failures):
        login(client, "ada@example.com", totp_code="000000")
    assert error_code(login(client, "ada@example.com", totp_code="000000"), 429) == (
        "too_many_attempts")
