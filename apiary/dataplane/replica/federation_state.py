"""What every replica reads of its federation controller's state (docs/architecture.md,
"Federation"), and the names the controller writes it under.

The controller (:mod:`apiary.dataplane.federation.controller`) keeps its state in the
JetStream key-value bucket ``federation-state`` (file storage, durable like the streams):

- ``drain``: ``{"enabled": bool}``, set by the control plane's Drain command. Replicas read it
  with their backlog poll (every 0.5 s, :class:`FederationFlags`), so every replica refuses new
  ingestion with 503 ``draining`` (and ``Retry-After``) within about half a second of the
  command, and accepts again as quickly when it ends.
- ``revoked``: ``{"reason", "at"}`` once the control plane revoked this data plane;
  ``/readyz`` then reports it (check ``federation``).
- ``applied``: the highest config version applied durably; ``projects``: the served projects.

Key revocations pushed by the control plane are announced on the core NATS subject
:data:`KEY_REVOKED_SUBJECT` (``{"key_sha256": hex | null}``); each replica forgets that key
at once (or every key when the hash is unknown). It is a notice, not the guarantee: a replica
that misses it (NATS down, a replica starting) still stops honouring a revoked key within
``auth_cache_max_s``.

A data plane that is not federated has no such bucket: the flags then stay off, and the
replica looks for the bucket again every :data:`BUCKET_RETRY_S` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

STATE_BUCKET = "federation-state"
CONFIG_BUCKET = "federation-config"
KEY_REVOKED_SUBJECT = "apiary.federation.key_revoked"
DRAIN_KEY = "drain"
REVOKED_KEY = "revoked"
APPLIED_KEY = "applied"
PROJECTS_KEY = "projects"
CONNECTION_KEY = "connection"
#: How long a replica waits before looking again for a bucket that does not exist.
BUCKET_RETRY_S = 1.0


async def read_json(kv: KeyValue, key: str) -> dict[str, Any] | None:
    """The JSON object at ``key``, or None when absent or deleted."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    if not entry.value:
        return None
    doc = orjson.loads(entry.value)
    return doc if isinstance(doc, dict) else None


async def live_entries(kv: KeyValue, keys: str) -> list[tuple[str, bytes]]:
    """``(key, value)`` of every entry matching ``keys`` (a subject filter) that the bucket
    holds now; deleted and purged entries are left out."""
    watcher = await kv.watch(keys, ignore_deletes=True)
    found: list[tuple[str, bytes]] = []
    try:
        async for entry in watcher:
            if entry is None:
                break
            if entry.value is None or entry.operation is not None:
                continue  # a delete or purge marker
            found.append((entry.key, entry.value))
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return found


@dataclass(slots=True)
class FederationFlags:
    """The drain and revoked flags as one replica last read them (see the module doc)."""

    draining: bool = False
    revoked: dict[str, Any] | None = None
    _kv: KeyValue | None = None
    _next_open: float = 0.0

    async def poll(self, js: JetStreamContext) -> None:
        """Read the flags once; raises what NATS raises (the caller keeps the last value)."""
        if self._kv is None:
            now = time.monotonic()
            if now < self._next_open:
                return
            try:
                self._kv = await js.key_value(STATE_BUCKET)
            except (BucketNotFoundError, NotFoundError):
                self._next_open = now + BUCKET_RETRY_S
                self.draining, self.revoked = False, None
                return
        drain = await read_json(self._kv, DRAIN_KEY)
        self.draining = bool(drain and drain.get("enabled"))
        self.revoked = await read_json(self._kv, REVOKED_KEY)


async def federation_status(js: JetStreamContext) -> dict[str, Any] | None:
    """The controller's state for ``/readyz`` (None when this data plane is not federated)."""
    try:
        kv = await js.key_value(STATE_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return None
    applied = await read_json(kv, APPLIED_KEY) or {}
    return {
        "revoked": await read_json(kv, REVOKED_KEY),
        "draining": bool((await read_json(kv, DRAIN_KEY) or {}).get("enabled")),
        "applied_config_version": int(applied.get("version") or 0),
        "connection": await read_json(kv, CONNECTION_KEY),
    }


__all__ = [
    "APPLIED_KEY", "CONFIG_BUCKET", "CONNECTION_KEY", "DRAIN_KEY", "KEY_REVOKED_SUBJECT",
    "PROJECTS_KEY", "REVOKED_KEY", "STATE_BUCKET", "FederationFlags", "federation_status",
    "live_entries", "read_json",
]
