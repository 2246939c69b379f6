"""Login sessions: opaque random tokens, stored only as SHA-256, with an absolute expiry.

A token (``aps_`` + 43 url-safe characters, 256 bits) is returned once at login; the
database keeps its hash. A session stops working when it expires, is revoked (logout,
password change) or its user is disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from apiary.control._common import new_id, new_token, token_hash
from apiary.control.db import User, UserSession
from apiary.control.service import ControlPlane
from apiary.errors import AuthenticationFailed

SESSION_PREFIX = "aps_"


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session. ``token`` is shown once; only its hash is stored."""

    token: str
    session: UserSession
    user: User


def create_session(cp: ControlPlane, db: Session, user: User, auth_method: str) -> IssuedSession:
    now = cp.now()
    token = new_token(SESSION_PREFIX)
    session = UserSession(
        id=new_id(), user_id=user.id, token_hash=token_hash(token), auth_method=auth_method,
        created_at=now, expires_at=now + timedelta(seconds=cp.settings.cp_session_ttl_s),
    )
    db.add(session)
    db.flush()
    return IssuedSession(token, session, user)


def resolve_session(cp: ControlPlane, db: Session, token: str) -> tuple[UserSession, User]:
    """The live session of ``token`` and its user, or :class:`AuthenticationFailed`."""
    if not token.startswith(SESSION_PREFIX):
        raise AuthenticationFailed("not a session token")
    row = db.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        raise AuthenticationFailed("the session is not valid; log in again")
    session, user = row
    if session.revoked_at is not None or session.expires_at <= cp.now() or user.disabled:
        raise AuthenticationFailed("the session has ended; log in again")
    return session, user


def revoke_session(cp: ControlPlane, db: Session, session_id: str) -> None:
    db.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=cp.now())
    )


def revoke_user_sessions(
    cp: ControlPlane, db: Session, user_id: str, *, keep_session_id: str | None = None
) -> int:
    """Revoke every live session of a user except ``keep_session_id``; how many."""
    statement = update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        statement = statement.where(UserSession.id != keep_session_id)
    result = db.execute(statement.values(revoked_at=cp.now()))
    return int(result.rowcount)  # type: ignore[attr-defined]
