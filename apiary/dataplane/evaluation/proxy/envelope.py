"""Envelope encryption of provider keys at rest in dpdb (AES-256-GCM).

Each secret is sealed with a fresh random 32-byte data key; the data key is sealed with the
data plane's envelope key (``APIARY_DP_ENVELOPE_KEY``, never the control plane's: the planes
share no credentials). A row stores the wrapped data key, the sealed secret and the id of the
envelope key (:class:`Sealed`), so that

- rotating the envelope key only re-wraps 32-byte data keys, and a row sealed under another
  key is recognised by ``key_id`` and refused with an error naming both keys;
- both seals carry the row's ``context`` (its id, tenant and provider) as associated data:
  a ciphertext or wrapped key copied into another row does not open.

This mirrors :mod:`apiary.control.envelope` (same cipher, same key format and key-file
behaviour) with a data key per secret added. Nothing here logs; errors never carry key
material.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

_NONCE = 12
_VERSION = "v1:"
KEY_FILE = "dp-envelope.key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed secret as stored: ``key_id`` names the envelope key that wrapped
    ``wrapped_key`` (the data key); ``ciphertext`` is the secret under the data key. Both
    texts are ``v1:`` + url-safe base64 of nonce ‖ ciphertext ‖ tag."""

    key_id: str
    wrapped_key: str
    ciphertext: str


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return _VERSION + _b64(nonce + AESGCM(key).encrypt(nonce, plaintext, aad))


def _open(key: bytes, sealed: str, aad: bytes) -> bytes:
    if not sealed.startswith(_VERSION):
        raise InvalidTag
    raw = _unb64(sealed[len(_VERSION):])
    return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad)


class Envelope:
    """Seals and opens short secrets under one 32-byte envelope key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("the data plane's envelope key must be 32 bytes")
        self._key = key
        # Public and stable: identifies the key without revealing anything usable about it.
        self.key_id = hashlib.sha256(b"apiary-dp-envelope-v1\x00" + key).hexdigest()[:16]

    def seal(self, plaintext: bytes, *, context: str) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        aad = context.encode()
        return Sealed(
            key_id=self.key_id,
            wrapped_key=_seal(self._key, data_key, b"data-key\x00" + aad),
            ciphertext=_seal(data_key, plaintext, aad),
        )

    def open(self, sealed: Sealed, *, context: str) -> bytes:
        """The plaintext; :class:`ConfigurationError` if this key cannot open it."""
        if sealed.key_id != self.key_id:
            raise ConfigurationError(
                "a provider credential was sealed under another envelope key than "
                "APIARY_DP_ENVELOPE_KEY", sealed_key_id=sealed.key_id,
                configured_key_id=self.key_id,
            )
        aad = context.encode()
        try:
            data_key = _open(self._key, sealed.wrapped_key, b"data-key\x00" + aad)
            return _open(data_key, sealed.ciphertext, aad)
        except (InvalidTag, ValueError):
            raise ConfigurationError(
                "a provider credential does not decrypt: it was altered or copied from "
                "another row", context=context,
            ) from None


def envelope_from_settings(settings: ApiarySettings) -> Envelope:
    """The envelope of ``settings``: APIARY_DP_ENVELOPE_KEY, or the data dir's key file.

    The key file (``<data-dir>/dp-envelope.key``, mode 0600, created on first use) only
    serves the embedded SQLite dpdb: with a shared dpdb (``APIARY_DP_DATABASE_URL``) every
    replica on every node must use the same key, so it must be configured.
    """
    if settings.dp_envelope_key is not None:
        try:
            key = base64.urlsafe_b64decode(settings.dp_envelope_key.get_secret_value())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigurationError(
                "APIARY_DP_ENVELOPE_KEY must be url-safe base64 of exactly 32 bytes; make one "
                "with: python -c \"import os,base64;print(base64.urlsafe_b64encode("
                "os.urandom(32)).decode())\""
            )
        return Envelope(key)
    if settings.dp_database_url is not None:
        raise ConfigurationError(
            "APIARY_DP_ENVELOPE_KEY must be set when dpdb is shared (APIARY_DP_DATABASE_URL): "
            "every data-plane replica needs the same key to read provider credentials"
        )
    return Envelope(_key_file(settings.data_dir / KEY_FILE))


def _key_file(path: Path) -> bytes:
    """The key in ``path``, created first if absent. Replicas starting together all get the
    same key: the file appears complete or not at all (written aside, then hard-linked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        aside = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(_b64(os.urandom(32)) + "\n")
                f.flush()
                os.fsync(f.fileno())
            # Another replica may have won the race: its key is then the key.
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        finally:
            aside.unlink(missing_ok=True)
    return _unb64(path.read_text().strip())
