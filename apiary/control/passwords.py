"""Password hashing: argon2id (memory-hard), through argon2-cffi, with bounded concurrency.

:data:`DEFAULT_HASHER` uses argon2-cffi's RFC 9106 "low memory" profile (t=3, 64 MiB,
p=4). Hashes carry their parameters, so raising them later only needs
:meth:`PasswordHasher.check_needs_rehash` on the next login.

Every hash and every verification holds one slot of :data:`HASH_SLOTS`, a process-wide
bound (``cp_max_concurrent_password_hashes``): 64 MiB per hash means that a flood of
logins would otherwise allocate memory without limit. A caller that finds no free slot
within ``cp_password_hash_wait_s`` gets :class:`~apiary.errors.Overloaded` (503 with
Retry-After) and allocates nothing. 503 rather than 429 because the condition is the
server's capacity, shared by every caller, not something this caller did: a 429 would
tell an innocent client it is misbehaving.
"""

from __future__ import annotations

import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from apiary.errors import Overloaded

DEFAULT_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

# Verified against when the account does not exist, so that a wrong email takes as long
# as a wrong password and timing does not reveal which accounts exist.
_DUMMY_HASH = DEFAULT_HASHER.hash("not a password of anyone")


class HashSlots:
    """A counting semaphore whose size can be set after creation, with usage counters.

    ``in_use`` is the number of hashes running now and ``peak`` the most ever seen at
    once (since :meth:`reset_peak`); both are exact (kept under the lock).
    """

    def __init__(self, limit: int = 8, wait_s: float = 2.0) -> None:
        self._cond = threading.Condition()
        self.limit = limit
        self.wait_s = wait_s
        self.in_use = 0
        self.peak = 0

    def configure(self, limit: int, wait_s: float) -> None:
        """Set the bound; hashes already running keep their slots."""
        if limit < 1:
            raise ValueError("the hash concurrency limit must be at least 1")
        with self._cond:
            self.limit, self.wait_s = limit, wait_s
            self._cond.notify_all()

    def acquire(self) -> None:
        """Take a slot, waiting up to ``wait_s``; :class:`Overloaded` (503) if none frees."""
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.in_use >= self.limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Overloaded(
                        "too many logins are being checked right now; retry shortly",
                        retry_after=1.0,
                    )
                self._cond.wait(left)
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        with self._cond:
            self.in_use -= 1
            self._cond.notify()

    def reset_peak(self) -> None:
        with self._cond:
            self.peak = self.in_use


#: The one bound of this process; :class:`~apiary.control.service.ControlPlane` sizes it
#: from the settings.
HASH_SLOTS = HashSlots()


def hash_password(hasher: PasswordHasher, password: str) -> str:
    """The argon2 hash of ``password``; holds a :data:`HASH_SLOTS` slot while hashing."""
    HASH_SLOTS.acquire()
    try:
        return hasher.hash(password)
    finally:
        HASH_SLOTS.release()


def verify_password(hasher: PasswordHasher, stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None: no password; always False).

    Costs one argon2 verification (and one :data:`HASH_SLOTS` slot) either way, so an
    account without a password, or no account, is not told apart by timing.
    """
    HASH_SLOTS.acquire()
    try:
        return hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
    finally:
        HASH_SLOTS.release()
