"""The shapes of Apiary's bearer credentials, which both planes recognise.

Two kinds of credential, disjoint by shape:

- **API keys**: ``hh_ingst_<24 alphanumerics>_<64 alphanumerics>`` — the shape the
  HoneyHive SDK accepts for an ingestion key, so one key works for Apiary and for
  unmodified HoneyHive clients. The first part is the key's id (safe to show and log), the
  second its secret, of which only a SHA-256 (:func:`hash_secret`) is ever stored.
  :func:`mint_api_key` makes one; :func:`parse_api_key` splits one into id and secret.
- **Signed tokens**: a JWS in compact form (three base64url segments), at most
  :data:`MAX_TOKEN_BYTES` long (:func:`looks_like_jwt`). Keys contain no dots, so a
  credential is never both.

Only the shapes live here; what a credential grants is each plane's business: the control
plane keeps its keys in cpdb (:mod:`apiary.control.apikeys`), the data plane verifies
tokens and exchanges keys (:mod:`apiary.dataplane.auth`). Both import this module and
neither imports the other.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass

__all__ = [
    "INGEST_KEY_PREFIX",
    "MAX_TOKEN_BYTES",
    "ApiKey",
    "hash_secret",
    "looks_like_jwt",
    "mint_api_key",
    "parse_api_key",
]

INGEST_KEY_PREFIX = "hh_ingst_"
# Tokens are a few hundred bytes; anything near this is not one of ours, and bounding it
# bounds the work an unauthenticated caller can make a verifier do.
MAX_TOKEN_BYTES = 8192

_ALNUM = string.ascii_letters + string.digits
_API_KEY = re.compile(r"^hh_ingst_(?P<id>[A-Za-z0-9]{24})_(?P<secret>[A-Za-z0-9]{64})$")
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A newly minted key. ``value`` is shown once; only ``secret_hash`` is stored."""

    key_id: str
    value: str
    secret_hash: str


def mint_api_key() -> ApiKey:
    """A new random key (``secrets``), with the hash of its secret part."""
    key_id = "".join(secrets.choice(_ALNUM) for _ in range(24))
    secret = "".join(secrets.choice(_ALNUM) for _ in range(64))
    return ApiKey(key_id, f"{INGEST_KEY_PREFIX}{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    """The SHA-256 (hex) stored for a key's secret part."""
    # A fast hash is right for 64 random characters (380 bits): there is nothing to guess.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(credential: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a credential in the API-key shape, else None."""
    match = _API_KEY.match(credential)
    return None if match is None else (match["id"], match["secret"])


def looks_like_jwt(credential: str) -> bool:
    """True for a JWS in compact form: three base64url segments (the last may be empty)."""
    return len(credential) <= MAX_TOKEN_BYTES and _COMPACT_JWS.match(credential) is not None
