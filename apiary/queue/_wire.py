"""The bytes of an :class:`~apiary.event.EventBatch` on JetStream.

A batch is one JSON document (orjson): compact, fast on both sides, and readable with
``nats stream view`` when something has to be inspected by hand. ``schema`` is bumped when
the shape changes incompatibly; a writer refuses (dead-letters) schemas it does not know
rather than guessing.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from apiary.errors import PoisonMessage
from apiary.event import EventBatch

WIRE_SCHEMA = 1


def encode_batch(batch: EventBatch) -> bytes:
    return orjson.dumps(batch)


def decode_batch(data: bytes) -> EventBatch:
    """Decode a batch, or raise :class:`PoisonMessage` saying what is wrong with it."""
    try:
        doc: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("message is not a JSON object")
    schema = doc.get("schema")
    if schema != WIRE_SCHEMA:
        raise PoisonMessage(f"unknown batch schema {schema!r}", expected=WIRE_SCHEMA)
    tenant = doc.get("tenant")
    if not isinstance(tenant, dict) or not isinstance(tenant.get("project_id"), str):
        raise PoisonMessage("batch has no tenant.project_id")
    if not isinstance(doc.get("events"), list) or not isinstance(doc.get("version"), int):
        raise PoisonMessage("batch has no events list or version")
    return cast(EventBatch, doc)
