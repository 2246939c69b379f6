"""Encryption of secrets at rest in cpdb: AES-256-GCM under one envelope key.

Signing keys, TOTP secrets and OIDC client secrets are stored as ``v1:<base64>`` of
nonce ‖ ciphertext ‖ tag. Each ciphertext is bound to what it belongs to through the
associated data (e.g. ``"totp:<user id>"``), so a ciphertext copied into another row does
not decrypt. The version prefix leaves room for re-encryption under a new key. The format
and the key's loading are :mod:`apiary.envelope`'s, shared with the data plane's envelope;
the key is the control plane's own (``APIARY_CP_ENVELOPE_KEY``).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from apiary.envelope import KEY_BYTES, is_sealed, load_key, seal, unseal
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings


class Envelope:
    """Encrypts and decrypts short secrets with one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError("the cpdb envelope key must be 32 bytes")
        self._key = key

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        return seal(self._key, plaintext, context.encode())

    def decrypt(self, ciphertext: str, *, context: str) -> bytes:
        if not is_sealed(ciphertext):
            raise ConfigurationError("a cpdb secret is in an unknown encryption format")
        try:
            return unseal(self._key, ciphertext, context.encode())
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
    return Envelope(load_key(settings.cp_envelope_key, variable="APIARY_CP_ENVELOPE_KEY",
                             key_file=settings.data_dir / "cp-envelope.key"))
