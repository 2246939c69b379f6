"""Accounts: sign-up, password login with per-account throttling, password change.

Login is careful about three things:

- **Throttling per account.** Failed attempts (wrong password, wrong TOTP or recovery
  code) are counted on the user row; ``cp_login_max_failures`` within
  ``cp_login_lockout_s`` lock the account for ``cp_login_lockout_s`` (429 with
  Retry-After), even for the right password. Failures are committed even though the
  request fails.
- **No enumeration.** An unknown email costs one argon2 verification like a wrong
  password, and gets the same message.
- **No database lock during hashing.** The argon2 check (tens of milliseconds, 64 MiB)
  runs between two short transactions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id, normalize_email
from apiary.control.db import User
from apiary.control.identity import totp
from apiary.control.identity.sessions import IssuedSession, create_session, revoke_user_sessions
from apiary.control.passwords import hash_password, verify_password
from apiary.control.service import ControlPlane
from apiary.errors import (
    ApiaryError,
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    MfaRequired,
    TooManyAttempts,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps hashing cost predictable


def validate_email(email: str) -> str:
    email = email.strip()
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidRequest("not a valid email address", field="email")
    return email


def validate_password(cp: ControlPlane, password: str) -> None:
    minimum = cp.settings.cp_password_min_length
    if len(password) < minimum:
        raise InvalidRequest(f"the password must have at least {minimum} characters",
                             field="password")
    if len(password) > _MAX_PASSWORD:
        raise InvalidRequest("the password is too long", field="password")


def find_user_by_email(db: Session, email: str) -> User | None:
    return db.execute(
        select(User).where(User.email_normalized == normalize_email(email))
    ).scalar_one_or_none()


def create_user(
    cp: ControlPlane, db: Session, *, email: str, password: str | None,
    display_name: str | None = None,
) -> User:
    """A new user. ``password`` None makes an SSO-only account. Emails are unique
    case-insensitively (409 otherwise)."""
    email = validate_email(email)
    if password is not None:
        validate_password(cp, password)
    if find_user_by_email(db, email) is not None:
        raise Conflict("an account with this email already exists", field="email")
    now = cp.now()
    user = User(
        id=new_id(), email=email, email_normalized=normalize_email(email),
        display_name=display_name,
        password_hash=hash_password(cp.password_hasher, password) if password else None,
        disabled=False, failed_logins=0, created_at=now, updated_at=now,
    )
    db.add(user)
    db.flush()
    return user


@dataclass(frozen=True, slots=True)
class _Snapshot:
    user_id: str | None
    password_hash: str | None
    locked_until: datetime | None


def login(
    cp: ControlPlane, *, email: str, password: str, totp_code: str | None = None,
    recovery_code: str | None = None,
) -> IssuedSession:
    """Check email, password and (when enrolled) a TOTP or recovery code; a new session.

    Raises :class:`AuthenticationFailed` (wrong credentials), :class:`MfaRequired` (right
    password, TOTP enrolled, no code sent) or :class:`TooManyAttempts` (account locked).
    """
    with cp.transaction() as db:
        user = find_user_by_email(db, email)
        snapshot = _Snapshot(
            user.id if user else None, user.password_hash if user else None,
            user.locked_until if user else None,
        )
    _raise_if_locked(cp, snapshot.locked_until)
    password_ok = verify_password(cp.password_hasher, snapshot.password_hash, password)
    if snapshot.user_id is None:
        raise AuthenticationFailed("invalid email or password")

    outcome: IssuedSession | ApiaryError
    with cp.transaction() as db:
        user = db.get(User, snapshot.user_id, with_for_update=True)
        if user is None:
            raise AuthenticationFailed("invalid email or password")
        _raise_if_locked(cp, user.locked_until)
        outcome = _second_step(cp, db, user, password_ok, password, totp_code, recovery_code)
    if isinstance(outcome, ApiaryError):
        raise outcome  # after commit: the failure count must persist
    return outcome


def _second_step(
    cp: ControlPlane, db: Session, user: User, password_ok: bool, password: str,
    totp_code: str | None, recovery_code: str | None,
) -> IssuedSession | ApiaryError:
    if not password_ok:
        _record_failure(cp, user)
        return AuthenticationFailed("invalid email or password")
    if user.disabled:
        return AuthenticationFailed("this account is disabled")
    method = "password"
    if totp.is_enrolled(db, user.id):
        if totp_code:
            ok, method = totp.verify_code(cp, db, user.id, totp_code), "password+totp"
        elif recovery_code:
            ok = totp.use_recovery_code(cp, db, user.id, recovery_code)
            method = "password+recovery_code"
        else:
            return MfaRequired("this account requires a TOTP code (or a recovery code)")
        if not ok:
            _record_failure(cp, user)
            return AuthenticationFailed("the TOTP or recovery code is not valid")
    user.failed_logins = 0
    user.last_failed_login_at = None
    if user.password_hash and cp.password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(cp.password_hasher, password)
    return create_session(cp, db, user, method)


def _raise_if_locked(cp: ControlPlane, locked_until: datetime | None) -> None:
    now = cp.now()
    if locked_until is not None and locked_until > now:
        raise TooManyAttempts(
            "too many failed logins for this account; try again later",
            retry_after=max(1.0, (locked_until - now).total_seconds()),
        )


def _record_failure(cp: ControlPlane, user: User) -> None:
    now = cp.now()
    window = timedelta(seconds=cp.settings.cp_login_lockout_s)
    if user.last_failed_login_at is None or now - user.last_failed_login_at > window:
        user.failed_logins = 0
    user.failed_logins += 1
    user.last_failed_login_at = now
    if user.failed_logins >= cp.settings.cp_login_max_failures:
        user.locked_until = now + window
        user.failed_logins = 0


def change_password(
    cp: ControlPlane, *, user_id: str, current_password: str, new_password: str,
    keep_session_id: str | None,
) -> int:
    """Replace the password (the current one proves it is the user) and revoke every other
    session of the user; returns how many sessions were revoked."""
    validate_password(cp, new_password)
    with cp.transaction() as db:
        user = db.get(User, user_id)
        stored = user.password_hash if user else None
    if not verify_password(cp.password_hasher, stored, current_password):
        raise AuthenticationFailed("the current password is not right", field="current_password")
    new_hash = hash_password(cp.password_hasher, new_password)
    with cp.transaction() as db:
        user = db.get(User, user_id, with_for_update=True)
        if user is None:
            raise AuthenticationFailed("the account no longer exists")
        user.password_hash = new_hash
        user.updated_at = cp.now()
        return revoke_user_sessions(cp, db, user_id, keep_session_id=keep_session_id)
