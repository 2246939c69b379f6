"""Federated data planes: bootstrap tokens, registration of their public keys, identity
JWTs, and the operator's actions on them (revoke, drain, rotate the key).

Life of a federated data plane (``data_planes.federated``):

1. :func:`create_data_plane` — the operator creates it: an id (``dp-`` + 16 hex), status
   ``pending``, and a one-time bootstrap token (``apiary_dpb_`` + 32 random bytes) shown
   once; only its SHA-256 is stored, with its expiry.
2. :func:`register_data_plane_key` — the data plane presents the token with its ECDSA
   P-256 *public* JWK. The token is used up (``bootstrap_used_at``; a second use is 410),
   the key stored with its RFC 7638 thumbprint, the status becomes ``active``. The
   private key never leaves the data plane.
3. :func:`verify_identity` — from then on it proves who it is with short-lived ES256 JWTs
   signed by that key (``kid`` = the thumbprint, ``iss`` = ``sub`` = its id, ``aud`` = this
   control plane's issuer, at most 5 minutes between ``iat`` and ``exp``). The algorithm
   is pinned and the key is always the registered one, never one the token brings.
4. :func:`revoke_data_plane` — ``revoked`` for good: its identity and token requests are
   refused (401), its stream is closed by the controller, and it no longer serves new
   projects.

An ``apiary up`` node running both planes federates its own data plane the same way, the
record and its token made in-process by :func:`prepare_local_data_plane`.

Everything here runs inside the caller's transaction: when the transaction commits, the
change (and any command row queued for the stream) is durable; nothing is retried.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from apiary.control._common import token_hash
from apiary.control.db import DataPlane, DataPlaneCommand, Project
from apiary.errors import (
    AuthenticationFailed,
    Conflict,
    Gone,
    InvalidRequest,
    MisdirectedRequest,
    NotFound,
)

BOOTSTRAP_PREFIX = "apiary_dpb_"
DEFAULT_BOOTSTRAP_TTL_S = 3600
MAX_BOOTSTRAP_TTL_S = 7 * 24 * 3600
#: The longest lifetime (``exp - iat``) of an identity JWT the control plane accepts.
MAX_IDENTITY_LIFETIME_S = 300
#: Clock skew tolerated on ``exp``/``iat``/``nbf`` of identity JWTs.
IDENTITY_LEEWAY_S = 30
IDENTITY_ALGORITHM = "ES256"
COMMAND_KINDS = ("drain", "rotate_key", "revoke")


def new_data_plane_id() -> str:
    return "dp-" + secrets.token_hex(8)


def _b64url_uint(value: int, length: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK."""
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
                           separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()
                                    ).rstrip(b"=").decode()


def parse_public_jwk(value: object, *, field: str = "public_jwk") -> dict[str, Any]:
    """The canonical form (``kty``, ``crv``, ``x``, ``y``) of an ECDSA P-256 public JWK;
    400 naming ``field`` for anything else: another key type or curve, a private key
    (``d``), coordinates that are not a point of P-256, or garbage."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{field} must be a JWK object", field=field)
    if "d" in value:
        raise InvalidRequest(f"{field} holds a private key: send only the public key "
                             "(the private key never leaves the data plane)", field=field)
    if value.get("kty") != "EC" or value.get("crv") != "P-256":
        raise InvalidRequest(f"{field} must be an ECDSA P-256 public key (kty EC, crv P-256)",
                             field=field)
    x, y = value.get("x"), value.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise InvalidRequest(f"{field} lacks its x and y coordinates", field=field)
    try:
        xb, yb = _b64url_decode(x), _b64url_decode(y)
        if len(xb) != 32 or len(yb) != 32:
            raise ValueError("coordinates of P-256 are 32 bytes")
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP256R1()).public_key()
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"{field} is not a point of P-256: {exc}", field=field) from None
    numbers = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64url_uint(numbers.x, 32),
            "y": _b64url_uint(numbers.y, 32)}


def create_data_plane(
    db: Session, *, name: str, url: str, org_id: str | None, now: datetime,
    bootstrap_ttl_s: int = DEFAULT_BOOTSTRAP_TTL_S,
) -> tuple[DataPlane, str]:
    """A new federated data plane (``pending``) and its bootstrap token, returned once."""
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest("a data plane URL is http:// or https://", field="url")
    if not 60 <= bootstrap_ttl_s <= MAX_BOOTSTRAP_TTL_S:
        raise InvalidRequest(f"bootstrap_ttl_s is 60 to {MAX_BOOTSTRAP_TTL_S} (7 days)",
                             field="bootstrap_ttl_s")
    plane = DataPlane(id=new_data_plane_id(), name=name, url=url.rstrip("/"), org_id=org_id,
                      created_at=now, status="pending", federated=True)
    token = _issue_bootstrap_token(plane, now, bootstrap_ttl_s)
    db.add(plane)
    db.flush()
    return plane, token


def _issue_bootstrap_token(plane: DataPlane, now: datetime, ttl_s: int) -> str:
    """A new one-time bootstrap token for ``plane`` (only its SHA-256 is kept)."""
    token = BOOTSTRAP_PREFIX + secrets.token_urlsafe(32)
    plane.bootstrap_token_hash = token_hash(token)
    plane.bootstrap_expires_at = now + timedelta(seconds=ttl_s)
    plane.bootstrap_used_at = None
    return token


def prepare_local_data_plane(
    db: Session, *, dp_id: str, name: str, url: str, now: datetime,
    bootstrap_ttl_s: int = 600,
) -> tuple[DataPlane, str]:
    """The federated data plane of an ``apiary up`` node that runs both planes, made ready
    for its (re-)registration, and its new one-time bootstrap token.

    ``dp_id`` (the node's ``APIARY_DATA_PLANE_ID``) keeps the id of the legacy audience an
    earlier version registered, so tokens minted for it stay valid: that record becomes
    federated and ``pending`` (a missing one is created). The data plane is marked as
    serving new projects unless another one is, and every project without a data plane is
    assigned to it (their config-log entries, then, are stamped for it). Called only while
    the node has no identity file: a record left ``active`` by a registration whose answer
    was lost is made ``pending`` again (the node registers its kept key anew). A revoked
    one is a :class:`~apiary.errors.Conflict`: revocation is for good. In the caller's
    transaction: durable when it commits.
    """
    plane = db.get(DataPlane, dp_id)
    if plane is None:
        plane = DataPlane(id=dp_id, name=name, url=url.rstrip("/"), org_id=None,
                          created_at=now)
        db.add(plane)
    elif plane.status == "revoked":
        raise Conflict(f"this node's data plane {dp_id} was revoked: revocation is for good; "
                       "start with another APIARY_DATA_PLANE_ID (and another data directory)",
                       data_plane_id=dp_id)
    plane.name, plane.url = name, url.rstrip("/")
    plane.federated, plane.status, plane.connected = True, "pending", False
    token = _issue_bootstrap_token(plane, now, bootstrap_ttl_s)
    if db.scalar(select(DataPlane.id).where(DataPlane.serves_new_projects.is_(True),
                                            DataPlane.id != dp_id).limit(1)) is None:
        plane.serves_new_projects = True
    db.flush()
    unassigned = select(Project).where(Project.data_plane_id.is_(None))
    if plane.org_id is not None:
        unassigned = unassigned.where(Project.org_id == plane.org_id)
    for project in db.scalars(unassigned):
        project.data_plane_id = plane.id
    db.flush()
    return plane, token


def register_data_plane_key(
    db: Session, *, bootstrap_token: str, public_jwk: object, apiary_version: str | None,
    now: datetime,
) -> DataPlane:
    """Use up ``bootstrap_token`` to register the data plane's public key.

    401 for a token the control plane never issued, 410 for one already used or expired
    (each says to create a new one), 400 for a JWK that is not a P-256 public key. The
    row is locked, so two concurrent registrations with one token cannot both succeed.
    """
    if not bootstrap_token.startswith(BOOTSTRAP_PREFIX):
        raise AuthenticationFailed("this is not a data-plane bootstrap token "
                                   "(apiary_dpb_...)")
    plane = db.scalars(select(DataPlane).where(
        DataPlane.bootstrap_token_hash == token_hash(bootstrap_token)).with_for_update()
    ).one_or_none()
    if plane is None:
        raise AuthenticationFailed("unknown bootstrap token")
    if plane.bootstrap_used_at is not None or plane.status != "pending":
        raise Gone("this bootstrap token was already used; create a new one with "
                   "`apiary data-planes create`", data_plane_id=plane.id)
    expires = plane.bootstrap_expires_at
    if expires is None or expires <= now:
        raise Gone("this bootstrap token expired; create a new one with "
                   "`apiary data-planes create`", data_plane_id=plane.id)
    jwk = parse_public_jwk(public_jwk)
    plane.public_jwk = jwk
    plane.key_thumbprint = jwk_thumbprint(jwk)
    plane.bootstrap_used_at = now
    plane.registered_at = now
    plane.status = "active"
    plane.apiary_version = (apiary_version or "")[:64] or None
    db.flush()
    return plane


def _public_key(jwk: dict[str, Any]) -> Any:
    return jwt.PyJWK(dict(jwk), algorithm=IDENTITY_ALGORITHM).key


def verify_identity(db: Session, token: str, *, issuer: str, now: datetime) -> DataPlane:
    """The active federated data plane an identity JWT proves; else
    :class:`~apiary.errors.AuthenticationFailed` naming the failed check.

    ES256 only (``none``, HS256 with the public key as secret, anything else: refused
    before a key is looked at); the key is the one registered for ``iss`` whose
    thumbprint is the header's ``kid`` (the current key, or the previous one during a
    rotation), never a key in the token; ``aud`` = ``issuer``; ``sub`` = ``iss``;
    ``exp``, ``iat`` and ``jti`` required, ``exp - iat`` at most 5 minutes; a ``jti``
    this process already accepted (a replay) is refused (:class:`_SeenIdentities`).
    """
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthenticationFailed("the data plane's identity token is malformed") from None
    if header.get("alg") != IDENTITY_ALGORITHM:
        raise AuthenticationFailed(
            f"a data plane's identity token must be signed with {IDENTITY_ALGORITHM}")
    if "jwk" in header or "jku" in header or "x5c" in header:
        raise AuthenticationFailed("a data plane's identity token must not carry a key")
    dp_id = unverified.get("iss")
    if not isinstance(dp_id, str):
        raise AuthenticationFailed("the identity token lacks its issuer (the data plane's id)")
    plane = db.get(DataPlane, dp_id)
    if plane is None or not plane.federated:
        raise AuthenticationFailed("unknown data plane", data_plane_id=dp_id[:200])
    if plane.status == "revoked":
        raise AuthenticationFailed("this data plane was revoked", data_plane_id=dp_id)
    if plane.status != "active":
        raise AuthenticationFailed("this data plane has not registered its key yet",
                                   data_plane_id=dp_id)
    kid = header.get("kid")
    if plane.public_jwk is not None and kid == plane.key_thumbprint:
        jwk = plane.public_jwk
    elif plane.previous_public_jwk is not None and kid == plane.previous_key_thumbprint:
        jwk = plane.previous_public_jwk
    else:
        raise AuthenticationFailed("the identity token is signed with a key this data plane "
                                   "did not register", data_plane_id=dp_id)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, _public_key(jwk), algorithms=[IDENTITY_ALGORITHM], audience=issuer,
            issuer=dp_id, leeway=IDENTITY_LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed(f"the identity token is not valid: {exc}",
                                   data_plane_id=dp_id) from None
    if claims.get("sub") != dp_id:
        raise AuthenticationFailed("the identity token's sub must be its iss",
                                   data_plane_id=dp_id)
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int | float) or not isinstance(iat, int | float) or (
            exp - iat > MAX_IDENTITY_LIFETIME_S):
        raise AuthenticationFailed(
            f"an identity token lives at most {MAX_IDENTITY_LIFETIME_S} s (exp - iat)",
            data_plane_id=dp_id)
    if iat > now.timestamp() + IDENTITY_LEEWAY_S:
        raise AuthenticationFailed("the identity token was issued in the future",
                                   data_plane_id=dp_id)
    if not _SEEN_IDENTITIES.first_use(dp_id, str(claims["jti"]), float(exp) + IDENTITY_LEEWAY_S,
                                      now.timestamp()):
        raise AuthenticationFailed("this identity token was already used (replayed jti): "
                                   "a data plane mints a fresh one for each stream and "
                                   "exchange", data_plane_id=dp_id)
    return plane


class _SeenIdentities:
    """The ``(data plane, jti)`` of every identity JWT accepted in this process, each
    kept until the token expires (``exp`` + leeway; a token is refused after that
    anyway), so that one is accepted once: a stolen JWT cannot open a second stream or
    a second token exchange. Bounded at ``capacity`` entries (expired ones are dropped
    first, then the oldest); only tokens whose signature verified are recorded, so only
    registered data planes can fill it. Per process: a control plane with several API
    replicas accepts a replay at most once per replica (docs/security.md, "Federation")."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._expiry: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, dp_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record ``jti``; False when it was recorded before and has not expired."""
        key = (dp_id, jti)
        with self._lock:
            seen = self._expiry.get(key)
            if seen is not None and seen > now:
                return False
            if len(self._expiry) >= self.capacity:
                for old in [k for k, at in self._expiry.items() if at <= now]:
                    del self._expiry[old]
                while len(self._expiry) >= self.capacity:
                    del self._expiry[next(iter(self._expiry))]
            self._expiry[key] = expires_at
            return True


_SEEN_IDENTITIES = _SeenIdentities()


def get_data_plane(db: Session, dp_id: str, org_ids: set[str] | None = None) -> DataPlane:
    """A data plane the caller may see (``org_ids`` None: any); 404 otherwise."""
    plane = db.get(DataPlane, dp_id)
    if plane is None or (org_ids is not None and plane.org_id is not None
                         and plane.org_id not in org_ids):
        raise NotFound("data plane not found", data_plane_id=dp_id[:200])
    return plane


def visible_data_planes(db: Session, org_ids: set[str] | None) -> list[DataPlane]:
    """Shared data planes plus those dedicated to ``org_ids`` (None: all of them)."""
    statement = select(DataPlane).order_by(DataPlane.created_at, DataPlane.id)
    if org_ids is not None:
        statement = statement.where(or_(DataPlane.org_id.is_(None),
                                        DataPlane.org_id.in_(org_ids)))
    return list(db.scalars(statement))


def queue_command(db: Session, plane: DataPlane, kind: str, body: dict[str, Any],
                  now: datetime) -> DataPlaneCommand:
    """A command row for the data plane's stream; the controller sends it when the data
    plane is connected (now or at its next connection) and records the result."""
    if kind not in COMMAND_KINDS:
        raise InvalidRequest(f"unknown command {kind}", field="kind")
    if not plane.federated:
        raise Conflict("this data plane is a legacy audience without a stream (created by "
                       "`apiary data-planes register`): it takes no commands",
                       data_plane_id=plane.id)
    command = DataPlaneCommand(id=str(uuid.uuid4()), data_plane_id=plane.id, kind=kind,
                               body=body, created_at=now)
    db.add(command)
    db.flush()
    return command


def revoke_data_plane(db: Session, plane: DataPlane, *, reason: str, now: datetime
                      ) -> DataPlaneCommand | None:
    """Revoke for good: status ``revoked``, the bootstrap token unusable, a ``revoke``
    command queued for its open stream (the controller closes the stream within ~2 s
    even when the data plane does not answer). A legacy data plane is revoked too (its
    token audience is refused) but has no stream."""
    plane.status = "revoked"
    plane.revoked_at = now
    plane.draining = False
    plane.serves_new_projects = False  # new projects are not assigned to a revoked plane
    command = None
    if plane.federated:
        command = queue_command(db, plane, "revoke", {"reason": reason}, now)
    db.flush()
    return command


def rotate_data_plane_key(db: Session, plane: DataPlane, public_jwk: object) -> None:
    """Store ``public_jwk`` (a RotateKey command's result) as the data plane's key; the
    previous key stays accepted until the data plane connects with the new one."""
    jwk = parse_public_jwk(public_jwk)
    thumbprint = jwk_thumbprint(jwk)
    if thumbprint == plane.key_thumbprint:
        return
    plane.previous_public_jwk, plane.previous_key_thumbprint = (plane.public_jwk,
                                                                plane.key_thumbprint)
    plane.public_jwk, plane.key_thumbprint = jwk, thumbprint
    db.flush()


def forget_previous_key(plane: DataPlane, kid: object) -> None:
    """A connection signed with the current key ends a rotation: the old key is dropped."""
    if kid == plane.key_thumbprint and plane.previous_public_jwk is not None:
        plane.previous_public_jwk = None
        plane.previous_key_thumbprint = None




def check_token_audience(db: Session, plane: DataPlane, project_id: str | None) -> None:
    """Whether the control plane may sign a token for data plane ``plane`` about
    ``project_id`` (the token exchange's routing rule):

    - a revoked data plane, or one that never registered its key, gets none (401);
    - a project assigned to another data plane: 421 ``wrong_data_plane`` naming that
      data plane's URL (the caller must send its data there);
    - an unassigned project: served by legacy (key-less) data planes only; a federated
      data plane gets 421 ("not assigned to this data plane").

    A token without a project (a workspace key not narrowed to one) is not routed.
    """
    if plane.status == "revoked":
        raise AuthenticationFailed("this data plane was revoked", data_plane_id=plane.id)
    if plane.status != "active":
        raise AuthenticationFailed("this data plane has not registered its key yet",
                                   data_plane_id=plane.id)
    if project_id is None:
        return
    serving_id = db.scalar(select(Project.data_plane_id).where(Project.id == project_id))
    if serving_id == plane.id:
        return
    if serving_id is not None:
        serving = db.get(DataPlane, serving_id)
        assert serving is not None  # a foreign key
        raise MisdirectedRequest(
            f"project {project_id} is served by data plane {serving.name} at {serving.url}; "
            "send its data there", data_plane_url=serving.url, project_id=project_id,
            data_plane_id=serving.id)
    if plane.federated:
        raise MisdirectedRequest(
            f"project {project_id} is not assigned to this data plane ({plane.name}); "
            "assign it (PUT /v1/projects/{id}/data-plane) or send its data to the data "
            "plane that serves it", project_id=project_id)
