"""Password hashing: argon2id (memory-hard), through argon2-cffi.

:data:`DEFAULT_HASHER` uses argon2-cffi's RFC 9106 "low memory" profile (t=3, 64 MiB,
p=4). Hashes carry their parameters, so raising them later only needs
:meth:`PasswordHasher.check_needs_rehash` on the next login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

DEFAULT_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

# Verified against when the account does not exist, so that a wrong email takes as long
# as a wrong password and timing does not reveal which accounts exist.
_DUMMY_HASH = DEFAULT_HASHER.hash("not a password of anyone")


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def verify_password(hasher: PasswordHasher, stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None: no password; always False)."""
    try:
        return hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
