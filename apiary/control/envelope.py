"""Encryption of secrets at rest in cpdb: AES-256-GCM under one envelope key.

Signing keys, TOTP secrets and OIDC client secrets are stored as ``v1:<base64>`` of
nonce ‖ ciphertext ‖ tag. Each ciphertext is bound to what it belongs to through the
associated data (e.g. ``"totp:<user id>"``), so a ciphertext copied into another row does
not decrypt. The version prefix leaves room for re-encryption under a new key.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

_VERSION = "v1:"


class Envelope:
    """Encrypts and decrypts short secrets with one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("the cpdb envelope key must be 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, ciphertext: str, *, context: str) -> bytes:
        if not ciphertext.startswith(_VERSION):
            raise ConfigurationError("a cpdb secret is in an unknown encryption format")
        raw = base64.urlsafe_b64decode(ciphertext[len(_VERSION):])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except InvalidTag:
            raise ConfigurationError(
                "a cpdb secret does not decrypt: APIARY_CP_ENVELOPE_KEY is not the key it was "
                "encrypted with", context=context,
            ) from None


def envelope_from_settings(settings: ApiarySettings) -> Envelope:
    """The envelope of ``settings``: APIARY_CP_ENVELOPE_KEY, or the data dir's key file.

    The key file is created (mode 0600) on first use; losing it makes the encrypted
    secrets unreadable, so it belongs in backups next to cp.sqlite.
    """
    if settings.cp_envelope_key is not None:
        try:
            key = base64.urlsafe_b64decode(settings.cp_envelope_key.get_secret_value())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigurationError(
                "APIARY_CP_ENVELOPE_KEY must be url-safe base64 of exactly 32 bytes; make one "
                "with: python -c \"import os,base64;print(base64.urlsafe_b64encode("
                "os.urandom(32)).decode())\""
            )
        return Envelope(key)
    return Envelope(_key_file(settings.data_dir / "cp-envelope.key"))


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return base64.urlsafe_b64decode(path.read_text().strip())
    key = os.urandom(32)
    with os.fdopen(fd, "w") as f:
        f.write(base64.urlsafe_b64encode(key).decode() + "\n")
    return key
