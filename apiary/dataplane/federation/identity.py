"""A federated data plane's identity: its ECDSA P-256 key pair, its registration at the
control plane, and the short-lived JWTs it signs with it (docs/architecture.md, "Federation").

Guarantees:

- The private key is generated here and never leaves the data plane: it is written to
  ``<data_dir>/dp-identity.key`` (PEM, mode 0600, replaced atomically), and only the public
  key (a JWK) is sent, once, to ``{control_plane_url}/v1/data-planes/register`` with the
  bootstrap token.
- The key file is written *before* the registration request, and the identity file
  (``dp-identity.json``, 0600) only after the control plane accepted it: a crash in between
  leaves a key that the next start registers again (a used token is then a clear error), and
  never an identity whose key is lost.
- A second start finds ``dp-identity.json`` and reuses it; the bootstrap token is then
  ignored.
- ``dp-identity.json`` also records whether the control plane said its federation endpoint
  serves TLS (``federation_tls`` in the registration answer): such a data plane always
  dials it with TLS.
- Identity JWTs (:meth:`DataPlaneIdentity.mint`): ES256, header ``kid`` = the RFC 7638
  thumbprint of the public JWK, ``iss`` = ``sub`` = the data plane's id, ``aud`` = the
  control plane's issuer, a fresh ``jti``, and a lifetime of at most 5 minutes.
- Key rotation keeps the old key until the control plane confirmed the new one:
  :meth:`DataPlaneIdentity.begin_rotation` writes ``dp-identity.next.key`` and returns its
  public JWK (sent to the control plane); :meth:`DataPlaneIdentity.commit_rotation` makes it
  the key and keeps the old one as ``dp-identity.prev.key`` (atomic renames), which
  :meth:`DataPlaneIdentity.restore_previous` puts back if the control plane refuses the new
  key, and :meth:`DataPlaneIdentity.forget_previous` deletes once a stream opened with the
  new key was accepted (the confirmation). Replicas signing with the identity re-read the
  key file when it changes (:meth:`DataPlaneIdentity.signing_key`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apiary._private.files import private_dir, write_private
from apiary.errors import ConfigurationError, ControlPlaneUnavailable
from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)

IDENTITY_FILE = "dp-identity.json"
KEY_FILE = "dp-identity.key"
NEXT_KEY_FILE = "dp-identity.next.key"
PREVIOUS_KEY_FILE = "dp-identity.prev.key"
REGISTER_PATH = "/v1/data-planes/register"
#: The longest lifetime of an identity JWT the control plane accepts.
MAX_JWT_LIFETIME_S = 300.0
#: The lifetime :meth:`DataPlaneIdentity.mint` gives by default.
DEFAULT_JWT_LIFETIME_S = 120.0


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public half of ``key`` as a JWK (``kty`` EC, ``crv`` P-256, ``x``, ``y``)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    numbers = public.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK."""
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        separators=(",", ":"), sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigurationError(f"{path} does not hold an ECDSA P-256 private key")
    return key


@dataclass
class DataPlaneIdentity:
    """What a registered data plane knows of itself (``dp-identity.json``) and its key.

    Picklable; the private key is read from ``data_dir`` (re-read when the file changes,
    so a rotation done by the controller reaches every process on this host).
    """

    data_plane_id: str
    control_plane_url: str
    issuer: str
    federation_endpoint: str
    name: str
    data_dir: Path
    #: The control plane said at registration that its federation endpoint serves TLS
    #: (from then on this data plane never dials it in plaintext).
    federation_tls: bool = False
    _key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False, compare=False)
    _key_stamp: tuple[int, int] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_key"] = None  # re-read from the data directory where it is unpickled
        state["_key_stamp"] = None
        return state

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def next_key_path(self) -> Path:
        return self.data_dir / NEXT_KEY_FILE

    @property
    def previous_key_path(self) -> Path:
        return self.data_dir / PREVIOUS_KEY_FILE

    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        """The current private key, re-read when ``dp-identity.key`` changed."""
        st = self.key_path.stat()
        stamp = (st.st_mtime_ns, st.st_ino)
        if self._key is None or stamp != self._key_stamp:
            self._key = _load_key(self.key_path)
            self._key_stamp = stamp
        return self._key

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.signing_key())

    def kid(self) -> str:
        return thumbprint(self.public_jwk())

    def mint(self, *, lifetime_s: float = DEFAULT_JWT_LIFETIME_S, now: float | None = None) -> str:
        """An identity JWT (module docstring) valid for ``lifetime_s`` (at most 5 minutes)."""
        if not 0 < lifetime_s <= MAX_JWT_LIFETIME_S:
            raise ValueError(f"lifetime_s must be in (0, {MAX_JWT_LIFETIME_S:g}]")
        key = self.signing_key()
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.data_plane_id,
            "sub": self.data_plane_id,
            "aud": self.issuer,
            "iat": issued,
            "exp": issued + int(lifetime_s),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key, algorithm="ES256",
                          headers={"kid": thumbprint(public_jwk(key))})

    # -- rotation -------------------------------------------------------------------------

    def begin_rotation(self) -> dict[str, str]:
        """Generate the next key pair beside the current one (``dp-identity.next.key``,
        0600, durable when this returns) and return its public JWK. The current key stays
        in use. A pending next key from an unfinished rotation is reused."""
        if self.next_key_path.exists():
            key = _load_key(self.next_key_path)
        else:
            key = generate_key()
            write_private(self.next_key_path, _pem(key))
        return public_jwk(key)

    def commit_rotation(self) -> None:
        """Make the next key the key (atomic renames); the old one is kept as the previous
        key until :meth:`forget_previous` (or put back by :meth:`restore_previous`)."""
        os.replace(self.key_path, self.previous_key_path)
        os.replace(self.next_key_path, self.key_path)
        _fsync_dir(self.data_dir)
        self._key = None
        log.info("data plane key rotated", extra={"data_plane_id": self.data_plane_id})

    @property
    def rotation_unconfirmed(self) -> bool:
        """Whether a rotated key awaits the control plane's confirmation."""
        return self.previous_key_path.exists()

    def restore_previous(self) -> None:
        """Sign with the previous key again (the control plane refused the new one)."""
        if self.previous_key_path.exists():
            os.replace(self.previous_key_path, self.key_path)
            _fsync_dir(self.data_dir)
            self._key = None
            log.warning("the control plane refused the rotated key; using the previous one",
                        extra={"data_plane_id": self.data_plane_id})

    def forget_previous(self) -> None:
        """Delete the previous key: the control plane accepted the new one."""
        self.previous_key_path.unlink(missing_ok=True)

    def abort_rotation(self) -> None:
        """Forget a next key the control plane did not confirm."""
        self.next_key_path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_identity(data_dir: Path) -> DataPlaneIdentity | None:
    """The identity stored in ``data_dir``, or None when this data plane never registered.

    Raises :class:`ConfigurationError` when the identity file exists but is unusable (its
    key missing, or the file not what this module writes).
    """
    path = data_dir / IDENTITY_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        identity = DataPlaneIdentity(
            data_plane_id=str(doc["data_plane_id"]),
            control_plane_url=str(doc["control_plane_url"]),
            issuer=str(doc["issuer"]),
            federation_endpoint=str(doc["federation_endpoint"]),
            name=str(doc.get("name") or ""),
            data_dir=data_dir,
            federation_tls=doc.get("federation_tls", False) is True,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{path} is not a data plane identity ({exc!r}); move it away and register again "
            "with a new bootstrap token (APIARY_BOOTSTRAP_TOKEN)"
        ) from None
    if not identity.key_path.exists():
        raise ConfigurationError(
            f"{path} exists but its private key {identity.key_path} is missing; restore it from "
            "a backup, or revoke this data plane and register again with a new bootstrap token"
        )
    return identity


def write_identity(identity: DataPlaneIdentity) -> None:
    """Write ``dp-identity.json`` (0600, atomically; durable when this returns) in the
    identity's data directory. The key file is not touched."""
    write_private(identity.data_dir / IDENTITY_FILE, json.dumps({
        "data_plane_id": identity.data_plane_id,
        "control_plane_url": identity.control_plane_url,
        "issuer": identity.issuer,
        "federation_endpoint": identity.federation_endpoint,
        "name": identity.name,
        "federation_tls": identity.federation_tls,
    }, indent=2) + "\n")


def ensure_identity(
    settings: ApiarySettings, *, client: httpx.Client | None = None
) -> DataPlaneIdentity:
    """This data plane's identity: the stored one, else a new one registered with
    ``settings.bootstrap_token`` (module docstring). Synchronous (called at start-up).

    Raises :class:`ConfigurationError` when there is neither an identity nor a token, when
    the control plane refuses the token (unknown, used or expired: the message says which
    and how to get a new one), and :class:`ControlPlaneUnavailable` when the control plane
    cannot be reached (retryable: nothing was consumed).
    """
    identity = load_identity(settings.data_dir)
    if identity is not None:
        return identity
    if settings.bootstrap_token is None:
        raise ConfigurationError(
            "this data plane has no federation identity: set APIARY_BOOTSTRAP_TOKEN to a token "
            "from `apiary data-planes create` on the control plane"
        )
    if settings.control_plane_url is None:
        raise ConfigurationError(
            "APIARY_BOOTSTRAP_TOKEN needs APIARY_CONTROL_PLANE_URL: the control plane to "
            "register with"
        )
    private_dir(settings.data_dir)
    key_path = settings.data_dir / KEY_FILE
    # A key left by an interrupted registration is reused: it may be the one registered.
    if key_path.exists():
        key = _load_key(key_path)
    else:
        key = generate_key()
        write_private(key_path, _pem(key))
    base = settings.control_plane_url.rstrip("/")
    url = base + REGISTER_PATH
    body = {"bootstrap_token": settings.bootstrap_token.get_secret_value(),
            "public_jwk": public_jwk(key), "apiary_version": _apiary_version()}
    owned = client is None
    http = client if client is not None else httpx.Client(timeout=10.0)
    try:
        try:
            response = http.post(url, json=body, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ControlPlaneUnavailable(
                "could not reach the control plane to register this data plane",
                url=url, error=str(exc) or type(exc).__name__,
            ) from None
    finally:
        if owned:
            http.close()
    answer = _registration_answer(response, url)
    identity = DataPlaneIdentity(
        data_plane_id=answer["data_plane_id"],
        control_plane_url=base,
        issuer=answer["issuer"],
        federation_endpoint=answer["federation_endpoint"],
        name=answer.get("name", ""),
        data_dir=settings.data_dir,
        federation_tls=answer.get("federation_tls") == "true",
    )
    write_identity(identity)
    log.info("data plane registered at the control plane",
             extra={"data_plane_id": identity.data_plane_id, "control_plane": base})
    return identity


def _apiary_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("apiary")
    except PackageNotFoundError:
        return "0+unknown"


def _cp_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if isinstance(message, str):
            return message
    return ""


def _registration_answer(response: httpx.Response, url: str) -> dict[str, str]:
    said = _cp_message(response)
    status = response.status_code
    if status == 401:
        raise ConfigurationError(
            "the control plane does not know this bootstrap token (APIARY_BOOTSTRAP_TOKEN): "
            "check that it was copied whole and that APIARY_CONTROL_PLANE_URL is the control "
            "plane that issued it, or create a new one with `apiary data-planes create`"
            + (f" (control plane: {said})" if said else ""),
            url=url,
        )
    if status == 410:
        raise ConfigurationError(
            "the bootstrap token (APIARY_BOOTSTRAP_TOKEN) was refused as used or expired: "
            + (said or "a bootstrap token works once, within its lifetime")
            + "; create a new one with `apiary data-planes create`",
            url=url,
        )
    if 400 <= status < 500 and status != 429:
        raise ConfigurationError(
            f"the control plane refused this data plane's registration (HTTP {status})"
            + (f": {said}" if said else ""),
            url=url,
        )
    if status != 200:
        raise ControlPlaneUnavailable(
            f"the control plane's registration endpoint answered HTTP {status}", url=url)
    try:
        doc = response.json()
        answer = {k: str(doc[k]) for k in ("data_plane_id", "issuer", "federation_endpoint")}
        answer["name"] = str(doc.get("name") or "")
        answer["federation_tls"] = "true" if doc.get("federation_tls") is True else "false"
    except (ValueError, KeyError, TypeError):
        raise ControlPlaneUnavailable(
            "the control plane's registration answer lacks data_plane_id, issuer or "
            "federation_endpoint", url=url,
        ) from None
    return answer
