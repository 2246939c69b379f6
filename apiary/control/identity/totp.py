"""TOTP multi-factor authentication (RFC 6238: SHA-1, 6 digits, 30 s) and recovery codes.

Enrolment is two steps: :func:`begin_enrolment` returns the secret and its ``otpauth://``
URI once (the secret is stored encrypted, unconfirmed); :func:`confirm_enrolment` checks a
first code and returns ten single-use recovery codes, shown once and stored as SHA-256.
A code is accepted within one step of clock skew and never twice: the last accepted step
is remembered, so a code observed in transit cannot be replayed.

**Attempts are counted here**, per account, by every function that checks a code
(:func:`verify_code`, :func:`use_recovery_code`, :func:`confirm_enrolment`,
:func:`disable`), so every caller (password login, the SSO second factor, the account
routes) is covered: ``cp_totp_max_failures`` wrong codes within ``cp_totp_window_s`` make
the next check raise :class:`~apiary.errors.TooManyAttempts` (429) for the window, doubling
at each repetition (:mod:`apiary.control.throttle`). A 6-digit code (three valid at any
time) cannot be guessed by someone who holds the password or a session. A right code
clears the count.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from apiary.control._common import new_id, token_hash
from apiary.control.db import RecoveryCode, TotpCredential, User
from apiary.control.service import ControlPlane
from apiary.errors import AuthenticationFailed, Conflict, NotFound

ISSUER_NAME = "Apiary"
RECOVERY_CODE_COUNT = 10
_STEP_S = 30
# 32 symbols without look-alikes (0/o, 1/l): 16 of them carry 80 bits.
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """Shown once: the base32 secret and the URI authenticator apps scan as a QR code."""

    secret: str
    otpauth_uri: str


def _context(user_id: str) -> str:
    return f"totp:{user_id}"


def is_enrolled(db: Session, user_id: str) -> bool:
    credential = db.get(TotpCredential, user_id)
    return credential is not None and credential.confirmed_at is not None


def begin_enrolment(cp: ControlPlane, db: Session, user: User) -> TotpEnrolment:
    """Start (or restart) enrolment with a fresh secret; refused when already enrolled."""
    credential = db.get(TotpCredential, user.id, with_for_update=True)
    if credential is not None and credential.confirmed_at is not None:
        raise Conflict("TOTP is already enabled; disable it before enrolling again")
    secret = pyotp.random_base32()
    ciphertext = cp.envelope.encrypt(secret.encode(), context=_context(user.id))
    if credential is None:
        db.add(TotpCredential(user_id=user.id, secret_ciphertext=ciphertext, created_at=cp.now()))
    else:
        credential.secret_ciphertext = ciphertext
        credential.created_at = cp.now()
        credential.last_used_step = None
    db.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER_NAME)
    return TotpEnrolment(secret, uri)


def confirm_enrolment(cp: ControlPlane, db: Session, user: User, code: str) -> list[str]:
    """Enable TOTP if ``code`` is right for the pending secret; the new recovery codes."""
    credential = db.get(TotpCredential, user.id, with_for_update=True)
    if credential is None:
        raise NotFound("no TOTP enrolment is pending; start one first")
    if credential.confirmed_at is not None:
        raise Conflict("TOTP is already enabled")
    cp.throttle.check_totp_attempt(user.id)
    if not _counted(cp, user.id, _accept_code(cp, credential, code, cp.now())):
        raise AuthenticationFailed("the TOTP code is not valid")
    credential.confirmed_at = cp.now()
    return replace_recovery_codes(cp, db, user.id)


def disable(cp: ControlPlane, db: Session, user: User, code: str) -> None:
    """Turn TOTP off, proven by a current code (or a recovery code); one attempt counted."""
    if not is_enrolled(db, user.id):
        raise NotFound("TOTP is not enabled")
    cp.throttle.check_totp_attempt(user.id)
    ok = _verify_code(cp, db, user.id, code) or _use_recovery_code(cp, db, user.id, code)
    if not _counted(cp, user.id, ok):
        raise AuthenticationFailed("the code is not valid")
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))


def _counted(cp: ControlPlane, user_id: str, ok: bool) -> bool:
    """Record the outcome of one code check with the throttle; ``ok`` unchanged."""
    if ok:
        cp.throttle.totp_succeeded(user_id)
    else:
        cp.throttle.totp_failed(user_id)
    return ok


def verify_code(cp: ControlPlane, db: Session, user_id: str, code: str) -> bool:
    """Whether ``code`` is a current, unused code of the user's confirmed TOTP secret.

    Counted: raises :class:`~apiary.errors.TooManyAttempts` instead of checking while the
    account has sent too many wrong codes, and a wrong code counts toward that."""
    cp.throttle.check_totp_attempt(user_id)
    return _counted(cp, user_id, _verify_code(cp, db, user_id, code))


def _verify_code(cp: ControlPlane, db: Session, user_id: str, code: str) -> bool:
    credential = db.get(TotpCredential, user_id, with_for_update=True)
    if credential is None or credential.confirmed_at is None:
        return False
    return _accept_code(cp, credential, code, cp.now())


def _accept_code(cp: ControlPlane, credential: TotpCredential, code: str, now: datetime) -> bool:
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return False
    secret = cp.envelope.decrypt(
        credential.secret_ciphertext, context=_context(credential.user_id)
    ).decode()
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // _STEP_S
    for step in (current - 1, current, current + 1):
        if credential.last_used_step is not None and step <= credential.last_used_step:
            continue
        if hmac.compare_digest(totp.at(step * _STEP_S), code):
            credential.last_used_step = step
            return True
    return False


def replace_recovery_codes(cp: ControlPlane, db: Session, user_id: str) -> list[str]:
    """Issue ten new recovery codes (invalidating the old); returned once, stored hashed."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
        db.add(RecoveryCode(
            id=new_id(), user_id=user_id, code_hash=token_hash(raw), created_at=cp.now()
        ))
    db.flush()
    return codes


def use_recovery_code(cp: ControlPlane, db: Session, user_id: str, code: str) -> bool:
    """Spend one recovery code: True once per code, False for unknown or used codes.

    Counted like :func:`verify_code` (the same per-account budget)."""
    cp.throttle.check_totp_attempt(user_id)
    return _counted(cp, user_id, _use_recovery_code(cp, db, user_id, code))


def _use_recovery_code(cp: ControlPlane, db: Session, user_id: str, code: str) -> bool:
    normalized = code.strip().lower().replace("-", "").replace(" ", "")
    if len(normalized) != 16:
        return False
    found = db.execute(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == token_hash(normalized),
            RecoveryCode.used_at.is_(None),
        )
    ).scalar_one_or_none()
    if found is None:
        return False
    # Conditional update: two concurrent logins cannot both spend the same code.
    result = db.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == found, RecoveryCode.used_at.is_(None))
        .values(used_at=cp.now())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remaining_recovery_codes(db: Session, user_id: str) -> int:
    rows = db.execute(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
    ).all()
    return len(rows)
