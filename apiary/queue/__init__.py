"""The durable queue: NATS JetStream between ingestion, writers, evaluators and notifiers.

Public surface:

- :class:`NatsServer`: the embedded nats-server (``sync_interval: always``).
- :func:`connect`: a NATS connection with Apiary's reconnect policy.
- :func:`ensure_topology`: create/update the streams and durable consumers, idempotently.
- :class:`EventPublisher`: publish event batches; durable when the call returns.
- :func:`encode_batch` / :func:`decode_batch`: the wire form of a batch.
"""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client

from apiary.errors import QueueError
from apiary.queue._publisher import EventPublisher
from apiary.queue._server import NatsServer, describe_url, nats_server_binary
from apiary.queue._topology import (
    EVALUATION_STREAM,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
    WRITERS_CONSUMER,
    consumer_backlog,
    ensure_topology,
    events_subject,
)
from apiary.queue._wire import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    WIRE_SCHEMA,
    TableBatch,
    decode_batch,
    decode_table,
    encode_batch,
    encode_table,
)


async def connect(url: str, *, name: str, wait_s: float = 15.0) -> Client:
    """Connect to NATS within ``wait_s`` seconds; once connected, reconnect forever on loss.

    A server that refuses the credentials, or cannot be reached in time, is a
    :class:`QueueError` naming the last problem seen.
    """
    problems: list[str] = []

    async def on_error(exc: Exception) -> None:
        problems.append(str(exc) or type(exc).__name__)

    try:
        return await asyncio.wait_for(
            nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=5,
                allow_reconnect=True,
                error_cb=on_error,
            ),
            wait_s,
        )
    except Exception as exc:  # nats raises several unrelated types on connect
        detail = problems[-1] if problems else (str(exc) or type(exc).__name__)
        raise QueueError(f"cannot connect to NATS at {describe_url(url)}: {detail}") from exc


__all__ = [
    "ARROW_ENCODING",
    "ENCODING_HEADER",
    "EVALUATION_STREAM",
    "EVENTS_STREAM",
    "NOTIFICATIONS_STREAM",
    "WIRE_SCHEMA",
    "WRITERS_CONSUMER",
    "EventPublisher",
    "NatsServer",
    "TableBatch",
    "connect",
    "consumer_backlog",
    "decode_batch",
    "decode_table",
    "describe_url",
    "encode_batch",
    "encode_table",
    "ensure_topology",
    "events_subject",
    "nats_server_binary",
]
