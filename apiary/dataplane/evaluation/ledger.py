"""The scored-task ledger: which tasks already produced their score, beyond JetStream's
duplicate window.

A JetStream key-value bucket (``evaluation-scored``), one key per task id, written **after**
the task's score patch was acknowledged by JetStream and **before** the task is
acknowledged. An evaluator that receives a task looks it up first and acknowledges a
recorded one without scoring it again. Together with the score patch's ``Nats-Msg-Id``
this covers every way a task can arrive twice:

- redelivered after a crash between publishing the score and recording it: scored again,
  but the score's publish is dropped by JetStream (the redelivery comes within
  ``ack_wait``, far inside the duplicate window);
- redelivered after a crash between recording and acknowledging: skipped;
- published again later (a writer's batch redelivered after the window, the same explicit
  request repeated): skipped for as long as the ledger keeps the key
  (``APIARY_EVALUATOR_LEDGER_TTL_S``).

The bucket lives in JetStream, so it is as durable as the streams (file storage, the
configured replicas).
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from apiary.settings import ApiarySettings

LEDGER_BUCKET = "evaluation-scored"


async def open_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """The bucket of ``config``, created if it does not exist (an existing bucket is used
    as it is: changed limits are not applied to it)."""
    try:
        return await js.key_value(config.bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    with contextlib.suppress(Exception):  # a concurrent creator may win; then just open it
        return await js.create_key_value(config)
    return await js.key_value(config.bucket)


class ScoredLedger:
    """Task ids whose score is published (module docstring)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, settings: ApiarySettings) -> ScoredLedger:
        config = KeyValueConfig(
            bucket=LEDGER_BUCKET, description="Apiary: evaluation tasks already scored",
            history=1, ttl=settings.evaluator_ledger_ttl_s, storage=StorageType.FILE,
            replicas=settings.nats_replicas,
        )
        return cls(await open_bucket(js, config))

    async def scored(self, task_id: str) -> bool:
        try:
            await self._kv.get(task_id)
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True

    async def record(self, task_id: str, version: int) -> None:
        """Durable when it returns (JetStream acknowledged the put)."""
        await self._kv.put(task_id, str(version).encode())


__all__ = ["LEDGER_BUCKET", "ScoredLedger", "open_bucket"]
