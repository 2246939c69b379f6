"""The bytes of event batches on JetStream: JSON documents, or Arrow tables for spans.

Two encodings, told apart by the ``Apiary-Encoding`` header:

- **JSON** (no header): an :class:`~apiary.event.EventBatch` as one orjson document.
  Used by the REST API (``api`` events, ``updates`` patches): compact and readable with
  ``nats stream view`` when something has to be inspected by hand.
- **Arrow** (``Apiary-Encoding: arrow``): the ``events`` rows themselves, as an Arrow IPC
  stream in the schema of :data:`apiary.store.EVENTS_ARROW_SCHEMA`, built by the ingestion
  replica. Spans are the volume (tens of thousands a second); shipping them as the columns
  ClickHouse inserts spares the writer a JSON parse and a row-to-column conversion per
  span. The batch's envelope (kind, tenant, version, and which sessions' metadata the
  replica already inherited) rides in the Arrow schema's metadata.

``schema`` (JSON) / ``apiary.schema`` (Arrow) is bumped when a shape changes
incompatibly; a writer dead-letters what it does not know rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from apiary.errors import PoisonMessage
from apiary.event import EventBatch, Tenant

WIRE_SCHEMA = 1
ENCODING_HEADER = "Apiary-Encoding"
ARROW_ENCODING = "arrow"
_META_KEY = b"apiary"


@dataclass
class TableBatch:
    """An Arrow-encoded batch: ``events`` rows of one tenant, at one version."""

    kind: str
    tenant: Tenant
    version: int
    table: pa.Table
    #: Sessions whose metadata and user properties the producer already copied into
    #: their events (the writer need not look them up again).
    inherited_sessions: frozenset[str] = field(default_factory=frozenset)


def encode_batch(batch: EventBatch) -> bytes:
    return orjson.dumps(batch)


def decode_batch(data: bytes) -> EventBatch:
    """Decode a JSON batch, or raise :class:`PoisonMessage` saying what is wrong with it."""
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
    if not isinstance(doc.get("version"), int):
        raise PoisonMessage("batch has no version")
    if not isinstance(doc.get("events", []), list):
        raise PoisonMessage("batch events are not a list")
    return cast(EventBatch, doc)


def encode_table(batch: TableBatch) -> bytes:
    """An Arrow IPC stream of ``batch.table`` with the envelope in its schema metadata.

    Uncompressed on purpose: LZ4 framing cost ~10x the encode and decode time here, for
    bytes that stay on the local disk of the queue.
    """
    envelope = {
        "schema": WIRE_SCHEMA,
        "kind": batch.kind,
        "tenant": batch.tenant,
        "version": batch.version,
        "inherited_sessions": sorted(batch.inherited_sessions),
    }
    table = batch.table.replace_schema_metadata({_META_KEY: orjson.dumps(envelope)})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return cast(bytes, sink.getvalue().to_pybytes())


def decode_table(data: bytes) -> TableBatch:
    """Decode an Arrow batch, or raise :class:`PoisonMessage` saying what is wrong."""
    try:
        table = ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise PoisonMessage(f"message is not an Arrow IPC stream: {exc}") from None
    meta = (table.schema.metadata or {}).get(_META_KEY)
    try:
        envelope: Any = orjson.loads(meta) if meta else None
    except orjson.JSONDecodeError:
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("schema") != WIRE_SCHEMA:
        raise PoisonMessage("Arrow batch has no (known) apiary envelope")
    tenant = envelope.get("tenant")
    if not isinstance(tenant, dict) or not isinstance(tenant.get("project_id"), str):
        raise PoisonMessage("Arrow batch has no tenant.project_id")
    version = envelope.get("version")
    if not isinstance(version, int):
        raise PoisonMessage("Arrow batch has no version")
    return TableBatch(
        kind=str(envelope.get("kind", "spans")),
        tenant=cast(Tenant, tenant),
        version=version,
        table=table.replace_schema_metadata(None),
        inherited_sessions=frozenset(envelope.get("inherited_sessions") or ()),
    )
