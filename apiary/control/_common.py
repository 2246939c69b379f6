"""Small shared pieces: the clock, ids, random tokens and their hashes.

The clock is injectable (:data:`Clock`) so that expiry, rotation and throttling can be
tested without sleeping. Opaque tokens (sessions, invitations, SSO states) are random,
shown once, and stored only as SHA-256: they carry 256 bits, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh primary key: a random UUID as text (the form data planes store tenants in)."""
    return str(uuid.uuid4())


def new_token(prefix: str) -> str:
    """A random bearer token with a recognisable prefix, e.g. ``aps_...`` for sessions."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored for an opaque token: the hex SHA-256 of all of it."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding spaces."""
    return email.strip().lower()
