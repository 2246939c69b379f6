"""Accounts: sign-up, password login with per-account throttling, password change.

Login is careful about four things:

- **Throttling without lockout** (:mod:`apiary.control.throttle`). Wrong passwords are counted per
  (account, client address), per address across accounts and per account, in the rate
  limit store, never on the user row (``failed_logins``/``locked_until`` are no longer
  used). The attacker's own address backs off exponentially; the account as a whole only
  slows by seconds, so its owner, from elsewhere and with the right password, still logs
  in. Refusals (429 with Retry-After) are decided before any hash is computed. Wrong TOTP
  and recovery codes are counted per account by :mod:`.totp` itself.
- **Bounded hashing.** Every argon2 computation (64 MiB) holds a slot of the process-wide
  bound in :mod:`apiary.control.passwords` (503 with Retry-After when none frees).
- **No enumeration.** An unknown email costs one argon2 verification like a wrong
  password, is throttled under the same key scheme, and gets the same message.
- **No database lock during hashing.** The argon2 check (tens of milliseconds, 64 MiB)
  runs between two short transactions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id, normalize_email
from apiary.control.db import User
from apiary.control.identity import totp
from apiary.control.identity.sessions import IssuedSession, create_session, revoke_user_sessions
from apiary.control.passwords import hash_password, verify_password
from apiary.control.service import ControlPlane
from apiary.control.throttle import account_key
from apiary.errors import (
    ApiaryError,
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    MfaRequired,
)

#: The client address of callers that are not on the network (the admin CLI, tests).
LOCAL_CLIENT = "local"

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
    display_name: str | None = None, verified: bool = False,
) -> User:
    """A new user. ``password`` None makes an SSO-only account. Emails are unique
    case-insensitively (409 otherwise). The address starts unverified unless ``verified``
    (the operator's own accounts): see :mod:`apiary.control.identity.verification`."""
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
        email_verified_at=now if verified else None, is_instance_admin=False,
    )
    db.add(user)
    db.flush()
    return user


@dataclass(frozen=True, slots=True)
class _Snapshot:
    user_id: str | None
    password_hash: str | None


def login(
    cp: ControlPlane, *, email: str, password: str, totp_code: str | None = None,
    recovery_code: str | None = None, client: str = LOCAL_CLIENT,
) -> IssuedSession:
    """Check email, password and (when enrolled) a TOTP or recovery code; a new session.

    ``client`` is the caller's address (:func:`.throttle.client_address`). Raises
    :class:`AuthenticationFailed` (wrong credentials), :class:`MfaRequired` (right password,
    TOTP enrolled, no code sent), :class:`~apiary.errors.TooManyAttempts` (this address,
    this account from this address, or the account, is backing off; or too many wrong
    codes) or :class:`~apiary.errors.Overloaded` (no password-hash slot).
    """
    account = account_key(email)
    # Before the hash: a refused attempt costs no argon2 and learns nothing.
    cp.throttle.check_password_attempt(client, account)
    with cp.transaction() as db:
        user = find_user_by_email(db, email)
        snapshot = _Snapshot(user.id if user else None, user.password_hash if user else None)
    password_ok = verify_password(cp.password_hasher, snapshot.password_hash, password)
    if not password_ok or snapshot.user_id is None:
        cp.throttle.password_failed(client, account)
        raise AuthenticationFailed("invalid email or password")

    outcome: IssuedSession | ApiaryError
    with cp.transaction() as db:
        user = db.get(User, snapshot.user_id, with_for_update=True)
        if user is None:
            raise AuthenticationFailed("invalid email or password")
        outcome = _second_step(cp, db, user, password, totp_code, recovery_code)
    if isinstance(outcome, ApiaryError):
        raise outcome  # after commit: a spent recovery code or used TOTP step must persist
    cp.throttle.password_succeeded(client, account)
    return outcome


def _second_step(
    cp: ControlPlane, db: Session, user: User, password: str,
    totp_code: str | None, recovery_code: str | None,
) -> IssuedSession | ApiaryError:
    """After the right password: the account's state and its second factor. Wrong codes
    are counted (and refused once too many) by :mod:`.totp` itself."""
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
            return AuthenticationFailed("the TOTP or recovery code is not valid")
    if user.password_hash and cp.password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(cp.password_hasher, password)
    return create_session(cp, db, user, method)


def change_password(
    cp: ControlPlane, *, user_id: str, current_password: str, new_password: str,
    keep_session_id: str | None, client: str = LOCAL_CLIENT,
) -> int:
    """Replace the password (the current one proves it is the user) and revoke every other
    session of the user; returns how many sessions were revoked.

    A wrong current password counts like a wrong password at login (same keys, same
    back-off: a stolen session is no shortcut to guessing the password), and a refused
    attempt is decided before hashing (:class:`~apiary.errors.TooManyAttempts`)."""
    validate_password(cp, new_password)
    with cp.transaction() as db:
        user = db.get(User, user_id)
        stored = user.password_hash if user else None
        account = account_key(user.email) if user else account_key(user_id)
    cp.throttle.check_password_attempt(client, account)
    if not verify_password(cp.password_hasher, stored, current_password):
        cp.throttle.password_failed(client, account)
        raise AuthenticationFailed("the current password is not right", field="current_password")
    new_hash = hash_password(cp.password_hasher, new_password)
    with cp.transaction() as db:
        user = db.get(User, user_id, with_for_update=True)
        if user is None:
            raise AuthenticationFailed("the account no longer exists")
        user.password_hash = new_hash
        user.updated_at = cp.now()
        return revoke_user_sessions(cp, db, user_id, keep_session_id=keep_session_id)
