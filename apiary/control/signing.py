"""The token signer's ES256 keys, their rotation, and the JWKS that publishes them.

Key states and the timeline of a rotation (``cache`` = ``cp_jwks_cache_s``, ``ttl`` =
``cp_token_ttl_s``)::

    rotate() at t0      new key: state next, not_before = t0 + cache   published, not signing
    first sign ≥ nb     next → active (signs from now on);             published
                        old active → retired, retire_after = now + ttl + margin
    after retire_after  old key leaves the JWKS

So a data plane that cached the JWKS just before ``rotate()`` has the new key by the time
it signs anything, and a token signed by the old key verifies until it expires.
``margin`` (300 s) covers the largest clock-skew leeway a data plane may be configured with.

The first key is created active on first use (no data plane can have cached anything yet).
Private keys are stored encrypted (:mod:`apiary.control.envelope`); ``kid`` is the key's
RFC 7638 JWK thumbprint. Promotion is a conditional UPDATE, so concurrent replicas agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from apiary.control.db import SigningKey
from apiary.control.envelope import Envelope
from apiary.errors import Conflict
from apiary.settings import ApiarySettings

ALGORITHM = "ES256"
RETIRE_MARGIN = timedelta(seconds=300)
_ORDER = {"active": 0, "next": 1, "retired": 2}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The JWK (with ``kid`` = RFC 7638 thumbprint, ``alg``, ``use``) of a P-256 key."""
    numbers = public_key.public_numbers()
    core = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big"))}
    canonical = json.dumps(core, separators=(",", ":"), sort_keys=True).encode()
    return {**core, "kid": _b64(hashlib.sha256(canonical).digest()), "alg": ALGORITHM,
            "use": "sig"}


class SigningKeys:
    """The signing keys in cpdb, with decrypted private keys cached per process."""

    def __init__(
        self, settings: ApiarySettings, envelope: Envelope, clock: Callable[[], datetime]
    ) -> None:
        """``envelope`` seals the private keys; ``clock`` (the control plane's, so tests move
        it) dates states; ``settings`` gives ``cp_token_ttl_s`` and ``cp_jwks_cache_s``."""
        self._settings = settings
        self._envelope = envelope
        self._now = clock
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._lock = threading.Lock()

    def _new_key(self, db: Session, *, state: str, not_before: datetime) -> SigningKey:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = public_jwk(private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        now = self._now()
        key = SigningKey(
            kid=jwk["kid"], algorithm=ALGORITHM,
            private_key_ciphertext=self._envelope.encrypt(pem, context=f"signing:{jwk['kid']}"),
            public_jwk=jwk, state=state, created_at=now, not_before=not_before,
            activated_at=now if state == "active" else None,
        )
        db.add(key)
        db.flush()
        return key

    def _live(self, db: Session) -> tuple[list[SigningKey], list[SigningKey]]:
        rows = db.scalars(select(SigningKey).where(SigningKey.state.in_(("next", "active"))))
        keys = list(rows)
        active = sorted((k for k in keys if k.state == "active"),
                        key=lambda k: k.activated_at or k.created_at, reverse=True)
        return active, [k for k in keys if k.state == "next"]

    def current(self, db: Session) -> SigningKey:
        """The key to sign with now: promotes a due next key, creates the first key."""
        now = self._now()
        active, pending = self._live(db)
        due = [k for k in pending if k.not_before <= now]
        if due:
            return self._promote(db, due[0], now)
        if active:
            return active[0]
        return self._new_key(db, state="active", not_before=now)

    def _promote(self, db: Session, key: SigningKey, now: datetime) -> SigningKey:
        promoted = db.execute(
            update(SigningKey).where(SigningKey.kid == key.kid, SigningKey.state == "next")
            .values(state="active", activated_at=now)
        )
        if promoted.rowcount:  # type: ignore[attr-defined]
            retire_after = now + timedelta(seconds=self._settings.cp_token_ttl_s) + RETIRE_MARGIN
            db.execute(
                update(SigningKey).where(SigningKey.state == "active", SigningKey.kid != key.kid)
                .values(state="retired", retire_after=retire_after)
            )
        db.expire_all()
        active, _ = self._live(db)
        return active[0]

    def private_key(self, key: SigningKey) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            cached = self._private.get(key.kid)
        if cached is not None:
            return cached
        pem = self._envelope.decrypt(key.private_key_ciphertext, context=f"signing:{key.kid}")
        private = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        with self._lock:
            self._private[key.kid] = private
        return private

    def rotate(self, db: Session) -> SigningKey:
        """Create the next key: published now, signing from ``now + cp_jwks_cache_s``.

        Raises :class:`Conflict` while an earlier rotation is still pending.
        """
        now = self._now()
        active, pending = self._live(db)
        if pending:
            raise Conflict(
                f"a rotation is pending: key {pending[0].kid} starts signing at "
                f"{pending[0].not_before.isoformat()}"
            )
        if not active:
            self._new_key(db, state="active", not_before=now)
        not_before = now + timedelta(seconds=self._settings.cp_jwks_cache_s)
        return self._new_key(db, state="next", not_before=not_before)

    def published(self, db: Session) -> list[SigningKey]:
        """Keys in the JWKS: next, active, and retired ones until ``retire_after``."""
        now = self._now()
        keys = [k for k in db.scalars(select(SigningKey))
                if k.state != "retired" or (k.retire_after is not None and k.retire_after > now)]
        return sorted(keys, key=lambda k: (_ORDER[k.state], k.created_at))

    def jwks(self, db: Session) -> dict[str, list[dict[str, Any]]]:
        """The JSON Web Key Set document (public keys only)."""
        return {"keys": [dict(k.public_jwk) for k in self.published(db)]}

    def describe(self, db: Session) -> list[dict[str, Any]]:
        """Every key's state and times, for operators (no key material)."""
        published = {k.kid for k in self.published(db)}
        return [
            {"kid": k.kid, "state": k.state, "published": k.kid in published,
             "created_at": k.created_at.isoformat(), "not_before": k.not_before.isoformat(),
             "activated_at": k.activated_at.isoformat() if k.activated_at else None,
             "retire_after": k.retire_after.isoformat() if k.retire_after else None}
            for k in sorted(db.scalars(select(SigningKey)), key=lambda k: k.created_at)
        ]
