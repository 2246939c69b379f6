"""Where the evaluator keeps each rule's state: the JetStream key-value bucket
``alert-state`` (file storage, fsync'ed by the embedded server, one entry per rule under
``<project>.<alert>``).

An entry is ``{"state": <RuleState>, "outbox": [<Transition>, ...]}``. The evaluator writes
the next state **together with** the transitions it is about to publish (the outbox) before
publishing them, and clears the outbox once they are published (JetStream acknowledged
them). A restarted evaluator finds an unfinished outbox and publishes it again first, under
the same message ids (alert, window end, stage): JetStream's duplicate window and the
notifier's delivery records make that one notification per channel. So a restart neither
repeats a transition (the state moved on durably before anything was sent) nor forgets one
(it stays in the outbox until sent).

Writes are compare-and-set on the entry's revision: two evaluators (an old one not yet dead
and its restarted successor) never both move a rule on; the loser skips the rule until the
next evaluation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from apiary.dataplane.alerts.stages import RuleState, Transition

STATE_BUCKET = "alert-state"
_TOKEN = re.compile(r"^[A-Za-z0-9_=-]{1,80}$")


def key_token(value: str) -> str:
    """``value`` as one token of a key: itself when it is a valid one, else a hash (the
    federation's keys are made the same way)."""
    if _TOKEN.match(value):
        return value
    return "_h_" + hashlib.sha256(value.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class StoredState:
    """A rule's entry and the revision it was read at (0: none yet)."""

    state: RuleState = field(default_factory=RuleState)
    outbox: tuple[Transition, ...] = ()
    revision: int = 0


class StateConflict(Exception):
    """Another evaluator wrote the rule's state since it was read."""


def state_key(project_id: str, alert_id: str) -> str:
    return f"{key_token(project_id)}.{key_token(alert_id)}"


class StateStore:
    """The ``alert-state`` bucket (module docstring)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> StateStore:
        """The bucket, created if needed."""
        try:
            return cls(await js.key_value(STATE_BUCKET))
        except (BucketNotFoundError, NotFoundError):
            pass
        config = KeyValueConfig(bucket=STATE_BUCKET, history=1, storage=StorageType.FILE,
                                replicas=replicas,
                                description="Apiary: the alert evaluator's state per rule")
        try:
            return cls(await js.create_key_value(config))
        except Exception:  # a concurrent creator may have won
            return cls(await js.key_value(STATE_BUCKET))

    async def load(self, project_id: str, alert_id: str) -> StoredState:
        try:
            entry = await self._kv.get(state_key(project_id, alert_id))
        except (KeyNotFoundError, KeyDeletedError):
            return StoredState()
        if not entry.value:
            return StoredState(revision=int(entry.revision or 0))
        doc = orjson.loads(entry.value)
        return StoredState(
            state=RuleState.from_dict(doc.get("state") or {}),
            outbox=tuple(Transition.from_dict(t) for t in doc.get("outbox") or []),
            revision=int(entry.revision or 0))

    async def save(self, project_id: str, alert_id: str, state: RuleState,
                   outbox: tuple[Transition, ...], revision: int) -> int:
        """Write the entry if it is still at ``revision`` (0: absent); its new revision.
        Durable when it returns. :class:`StateConflict` when another writer came first."""
        value = orjson.dumps({"state": state.as_dict(),
                              "outbox": [t.as_dict() for t in outbox]})
        key = state_key(project_id, alert_id)
        try:
            if revision:
                return int(await self._kv.update(key, value, last=revision))
            return int(await self._kv.create(key, value))
        except KeyWrongLastSequenceError as exc:
            raise StateConflict(key) from exc
        except Exception as exc:
            # create() on a key that exists (or was deleted) answers a generic API error.
            if "wrong last sequence" in str(exc).lower():
                raise StateConflict(key) from exc
            raise

    async def keys(self) -> list[str]:
        watcher = await self._kv.watch(">", ignore_deletes=True, meta_only=True)
        found: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None:
                    found.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return found

    async def delete(self, key: str) -> None:
        await self._kv.delete(key)


__all__ = ["STATE_BUCKET", "StateConflict", "StateStore", "StoredState", "key_token",
           "state_key"]
