"""Envelope encryption of provider keys at rest in dpdb (AES-256-GCM).

Each secret is sealed with a fresh random 32-byte data key; the data key is sealed with the
data plane's envelope key (``APIARY_DP_ENVELOPE_KEY``, never the control plane's: the planes
share no credentials). A row stores the wrapped data key, the sealed secret and the id of the
envelope key (:class:`Sealed`), so that

- rotating the envelope key only re-wraps 32-byte data keys, and a row sealed under another
  key is recognised by ``key_id`` and refused with an error naming both keys;
- both seals carry the row's ``context`` (its id, tenant and provider) as associated data:
  a ciphertext or wrapped key copied into another row does not open.

The sealed format and the key's loading are :mod:`apiary.envelope`'s, shared with the
control plane's envelope (:mod:`apiary.control.envelope`); a data key per secret is added here.
Nothing here logs; errors never carry key material.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apiary.envelope import KEY_BYTES, load_key, seal, unseal
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

KEY_FILE = "dp-envelope.key"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed secret as stored: ``key_id`` names the envelope key that wrapped
    ``wrapped_key`` (the data key); ``ciphertext`` is the secret under the data key. Both
    texts are ``v1:`` + url-safe base64 of nonce ‖ ciphertext ‖ tag."""

    key_id: str
    wrapped_key: str
    ciphertext: str


class Envelope:
    """Seals and opens short secrets under one 32-byte envelope key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError("the data plane's envelope key must be 32 bytes")
        self._key = key
        # Public and stable: identifies the key without revealing anything usable about it.
        self.key_id = hashlib.sha256(b"apiary-dp-envelope-v1\x00" + key).hexdigest()[:16]

    def seal(self, plaintext: bytes, *, context: str) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        aad = context.encode()
        return Sealed(
            key_id=self.key_id,
            wrapped_key=seal(self._key, data_key, b"data-key\x00" + aad),
            ciphertext=seal(data_key, plaintext, aad),
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
            data_key = unseal(self._key, sealed.wrapped_key, b"data-key\x00" + aad)
            return unseal(data_key, sealed.ciphertext, aad)
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
    if settings.dp_envelope_key is None and settings.dp_database_url is not None:
        raise ConfigurationError(
            "APIARY_DP_ENVELOPE_KEY must be set when dpdb is shared (APIARY_DP_DATABASE_URL): "
            "every data-plane replica needs the same key to read provider credentials"
        )
    return Envelope(load_key(settings.dp_envelope_key, variable="APIARY_DP_ENVELOPE_KEY",
                             key_file=settings.data_dir / KEY_FILE))
