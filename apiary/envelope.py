"""What both planes' encryption of secrets at rest shares: the sealed format and the loading
of an envelope key.

Each plane keeps its own envelope, key and variable; the planes share no credentials
(docs/architecture.md, "Two planes, one seam"):

- :mod:`apiary.control.envelope`: cpdb's secrets (signing keys, TOTP secrets, OIDC client
  secrets) sealed directly under ``APIARY_CP_ENVELOPE_KEY``;
- :mod:`apiary.dataplane.evaluation.proxy.envelope`: provider keys in dpdb, each sealed under a
  data key of its own that is sealed under ``APIARY_DP_ENVELOPE_KEY`` (docs/architecture.md,
  "The LLM proxy").

Guarantees:

- :func:`seal` is AES-256-GCM under a fresh 12-byte nonce, written ``v1:`` + url-safe base64
  of nonce ‖ ciphertext ‖ tag; the associated data binds the ciphertext to what it belongs
  to, so a ciphertext copied elsewhere does not open. The version prefix leaves room for
  re-encryption under a new format.
- :func:`unseal` opens only what :func:`seal` made with the same key and associated data;
  anything else raises :class:`~cryptography.exceptions.InvalidTag` (a foreign prefix too),
  or :class:`ValueError` for text that is not base64. The callers turn both into errors that
  name their variable; nothing here logs, and no error carries key material.
- :func:`load_key` is the configured key (url-safe base64 of exactly 32 bytes, else a
  :class:`~apiary.errors.ConfigurationError` naming the variable and how to make one), or
  the key file: created on first use with mode 0600, written aside and hard-linked into
  place, so that processes starting together all read one complete key. Losing the file
  makes the sealed secrets unreadable: it belongs in backups next to the database.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from apiary.errors import ConfigurationError

#: The prefix of every sealed text this version writes.
VERSION = "v1:"
#: The size of an envelope key, and of a data key: AES-256.
KEY_BYTES = 32
_NONCE = 12


def seal(key: bytes, plaintext: bytes, aad: bytes) -> str:
    """``plaintext`` sealed under ``key``, bound to ``aad``."""
    nonce = os.urandom(_NONCE)
    return VERSION + _b64(nonce + AESGCM(key).encrypt(nonce, plaintext, aad))


def is_sealed(text: str) -> bool:
    """Whether ``text`` is in the sealed format this version reads."""
    return text.startswith(VERSION)


def unseal(key: bytes, sealed: str, aad: bytes) -> bytes:
    """The plaintext of ``sealed``; :class:`InvalidTag` unless sealed under ``key`` with
    ``aad``, :class:`ValueError` if it is not base64."""
    if not is_sealed(sealed):
        raise InvalidTag
    raw = _unb64(sealed[len(VERSION):])
    return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad)


def load_key(configured: SecretStr | None, *, variable: str, key_file: Path) -> bytes:
    """The envelope key: ``configured`` (the setting of ``variable``) if set, else the one in
    ``key_file``, created first if absent."""
    if configured is None:
        return _key_file(key_file)
    try:
        key = base64.urlsafe_b64decode(configured.get_secret_value())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigurationError(
            f"{variable} must be url-safe base64 of exactly 32 bytes; make one "
            "with: python -c \"import os,base64;print(base64.urlsafe_b64encode("
            "os.urandom(32)).decode())\""
        )
    return key


def _key_file(path: Path) -> bytes:
    """The key in ``path``, created first if absent. Processes starting together all get the
    same key: the file appears complete or not at all (written aside, then hard-linked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        aside = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(_b64(os.urandom(KEY_BYTES)) + "\n")
                f.flush()
                os.fsync(f.fileno())
            # Another process may have won the race: its key is then the key.
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        finally:
            aside.unlink(missing_ok=True)
    return _unb64(path.read_text().strip())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


__all__ = ["KEY_BYTES", "VERSION", "is_sealed", "load_key", "seal", "unseal"]
