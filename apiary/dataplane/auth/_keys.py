"""API keys checked on the data plane (their shape: :mod:`apiary.credentials`).

:class:`ApiKeyAuthenticator` checks keys against hashes it was given (the bootstrap
project key of ``apiary up``). Only a SHA-256 of the secret part is kept, compared in
constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from apiary.credentials import hash_secret, parse_api_key
from apiary.dataplane.auth._seam import Principal
from apiary.errors import AuthenticationFailed


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
        parsed = parse_api_key(credential)
        if parsed is None:
            raise AuthenticationFailed("the API key is not in a recognised format")
        key_id, secret = parsed
        stored = self._keys.get(key_id)
        # Hash even when the id is unknown, so both failures take the same time.
        candidate = hash_secret(secret)
        expected = stored.secret_hash if stored else "0" * 64
        if not hmac.compare_digest(candidate, expected) or stored is None:
            raise AuthenticationFailed("the API key is not valid")
        return stored.principal
