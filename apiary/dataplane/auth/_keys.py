"""API keys: random secrets with a recognisable prefix, stored only as hashes.

:class:`ApiKeyAuthenticator` checks keys against hashes it was given (the bootstrap
project key of ``apiary up``). Only a SHA-256 of the secret part is kept, compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from apiary.dataplane.auth._seam import Principal
from apiary.errors import AuthenticationFailed

_ALNUM = string.ascii_letters + string.digits
# hh_ingst_<24 alphanumerics>_<64 characters>: the shape the HoneyHive SDK accepts for an
# ingestion key, so one key works for Apiary and for unmodified HoneyHive clients.
INGEST_KEY_PREFIX = "hh_ingst_"
_KEY_RE = re.compile(r"^hh_ingst_(?P<id>[A-Za-z0-9]{24})_(?P<secret>[A-Za-z0-9]{64})$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A newly minted key. ``value`` is shown once; only ``secret_hash`` is stored."""

    key_id: str
    value: str
    secret_hash: str


def mint_api_key() -> ApiKey:
    key_id = "".join(secrets.choice(_ALNUM) for _ in range(24))
    secret = "".join(secrets.choice(_ALNUM) for _ in range(64))
    return ApiKey(key_id, f"{INGEST_KEY_PREFIX}{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    # A fast hash is right for 64 random characters (380 bits): there is nothing to guess.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str
    secret_hash: str
    principal: Principal


class ApiKeyAuthenticator:
    """Verifies API keys against stored hashes, in constant time per key."""

    def __init__(self, keys: list[StoredKey]) -> None:
        self._keys = {k.key_id: k for k in keys}

    async def authenticate(self, credential: str) -> Principal:
        match = _KEY_RE.match(credential)
        if match is None:
            raise AuthenticationFailed("the API key is not in a recognised format")
        stored = self._keys.get(match["id"])
        # Hash even when the id is unknown, so both failures take the same time.
        candidate = hash_secret(match["secret"])
        expected = stored.secret_hash if stored else "0" * 64
        if not hmac.compare_digest(candidate, expected) or stored is None:
            raise AuthenticationFailed("the API key is not valid")
        return stored.principal
