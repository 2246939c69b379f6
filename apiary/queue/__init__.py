"""The durable queue: NATS JetStream between ingestion, writers, evaluators and notifiers.

Public surface:

- :class:`NatsServer`: the embedded nats-server (``sync_interval: always``).
- :func:`connect`: a NATS connection with Apiary's reconnect policy.
- :func:`ensure_topology`: create/update the streams and durable consumers, idempotently.
- :class:`EventPublisher`: publish event batches; durable when the call returns. Each
  message carries its event count (:data:`ROWS_HEADER`); :func:`message_rows` reads it.
- :func:`encode_batch` / :func:`decode_batch` (and ``*_table``): the wire form of a batch.
- The topology's names: streams (``EVENTS_STREAM``, ``EVALUATION_STREAM``,
  ``NOTIFICATIONS_STREAM``, ``ALERT_ACTIVITY_STREAM``), their durable consumers
  (``WRITERS_CONSUMER``, ``EVALUATORS_CONSUMER``, ``NOTIFIERS_CONSUMER``,
  ``ALERT_ACTIVITY_CONSUMER``), :func:`events_subject`, and
  :func:`consumer_backlog`.

Only the foundations below it (:mod:`apiary.errors`, :mod:`apiary.event`,
:mod:`apiary.settings`) are imported; the planes and the Ray wrappers import this.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.aio.client import Client

from apiary.errors import QueueError
from apiary.queue._publisher import ROWS_HEADER, EventPublisher, message_rows, publish_once
from apiary.queue._server import NatsServer, describe_url, nats_server_binary
from apiary.queue._topology import (
    ALERT_ACTIVITY_CONSUMER,
    ALERT_ACTIVITY_STREAM,
    EVALUATION_STREAM,
    EVALUATORS_CONSUMER,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
    NOTIFIERS_CONSUMER,
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

# What nats-server sends before it closes a connection whose credentials it refuses.
_REFUSALS = ("authorization violation", "authentication")


async def connect(url: str, *, name: str, wait_s: float = 15.0) -> Client:
    """Connect to NATS within ``wait_s`` seconds; once connected, reconnect forever on loss.

    A server that refuses the credentials is a :class:`QueueError` at once, saying so: retrying
    the same token cannot succeed, and the resets the server answers later attempts with would
    hide the reason. A server that cannot be reached in time is a :class:`QueueError` naming the
    last problem seen.
    """
    problems: list[str] = []
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        problem = str(exc) or type(exc).__name__
        problems.append(problem)
        if any(word in problem.lower() for word in _REFUSALS) and not refused.done():
            refused.set_result(problem)

    connecting = asyncio.ensure_future(
        nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
            error_cb=on_error,
        )
    )
    try:
        waiting: set[asyncio.Future[Any]] = {connecting, refused}
        done, _ = await asyncio.wait(waiting, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        if connecting in done:
            return connecting.result()
    except Exception as exc:  # nats raises several unrelated types on connect
        detail = problems[-1] if problems else (str(exc) or type(exc).__name__)
        raise QueueError(f"cannot connect to NATS at {describe_url(url)}: {detail}") from exc
    finally:
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
    if refused.done():
        raise QueueError(
            f"NATS at {describe_url(url)} refused the credentials ({refused.result()}); "
            "check the token in APIARY_NATS_URL"
        )
    detail = problems[-1] if problems else f"no answer within {wait_s:g} s"
    raise QueueError(f"cannot connect to NATS at {describe_url(url)}: {detail}")


__all__ = [
    "ALERT_ACTIVITY_CONSUMER",
    "ALERT_ACTIVITY_STREAM",
    "ARROW_ENCODING",
    "ENCODING_HEADER",
    "EVALUATION_STREAM",
    "EVALUATORS_CONSUMER",
    "EVENTS_STREAM",
    "NOTIFICATIONS_STREAM",
    "NOTIFIERS_CONSUMER",
    "ROWS_HEADER",
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
    "message_rows",
    "nats_server_binary",
    "publish_once",
]
