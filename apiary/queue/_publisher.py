"""Publishing event batches to JetStream: durable when the call returns, never duplicated.

:meth:`EventPublisher.publish` returns only after JetStream has acknowledged every message
of the batch (and the embedded server fsyncs before acknowledging). Each message carries a
``Nats-Msg-Id`` derived from the caller's id, so publishing the same batch again within
the stream's duplicate window stores nothing new: a client that retries a request whose
answer it never saw does not create duplicates.

Each message also carries ``Apiary-Rows`` (:data:`ROWS_HEADER`): how many events (or
patches) it holds, so that the accounting (:mod:`apiary.dataplane.accounting`) counts the
rows still in the stream from headers alone. :func:`message_rows` is the one count, for a
message with or without the header (published before it existed, or by another
producer).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError

from apiary.errors import PayloadTooLarge, PipelineBackpressure, PoisonMessage, QueueError
from apiary.event import EventBatch
from apiary.queue._topology import EVENTS_STREAM, events_subject
from apiary.queue._wire import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    TableBatch,
    decode_batch,
    decode_table,
    encode_batch,
    encode_table,
)

#: The header saying how many events (or patches) a message on ``events`` holds.
ROWS_HEADER = "Apiary-Rows"

_ARROW_HEADERS = {ENCODING_HEADER: ARROW_ENCODING}

# JetStream answers a full stream (discard-new) with these error codes.
_STREAM_FULL_CODES = frozenset({10077, 10047, 10028})


async def publish_once(js: JetStreamContext, subject: str, data: bytes, *, stream: str,
                       msg_id: str, what: str, timeout_s: float = 10.0) -> PubAck:
    """Publish ``data`` to ``subject`` of ``stream`` under ``Nats-Msg-Id`` ``msg_id``.

    Durable when it returns (JetStream acknowledged it; a copy within the duplicate window is
    acknowledged with ``duplicate`` set and stored once). Raises
    :class:`~apiary.errors.QueueError` (retryable), naming ``what``, when JetStream refuses,
    is unreachable or does not answer within ``timeout_s``.
    """
    try:
        return await js.publish(subject, data, timeout=timeout_s, stream=stream,
                                headers={"Nats-Msg-Id": msg_id})
    except APIError as exc:
        raise QueueError(f"JetStream refused the {what}: {exc.description}",
                         msg_id=msg_id) from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise QueueError(f"JetStream did not acknowledge the {what} in time",
                         msg_id=msg_id, timeout_s=timeout_s) from exc
    except nats.errors.Error as exc:
        raise QueueError(f"JetStream unreachable: {exc}", msg_id=msg_id) from exc


def message_rows(headers: dict[str, str] | None, data: bytes | None) -> int:
    """The events (or patches) a message of the ``events`` stream holds: its
    :data:`ROWS_HEADER`, else counted by decoding ``data``; 0 for a message that does not
    decode (it holds nothing that could be stored) or whose header is not a count."""
    value = (headers or {}).get(ROWS_HEADER)
    if value is not None:
        return int(value) if value.isdigit() else 0
    if data is None:
        return 0
    try:
        if (headers or {}).get(ENCODING_HEADER) == ARROW_ENCODING:
            return int(decode_table(data).table.num_rows)
        batch = decode_batch(data)
        return len(batch.get("events") or []) + len(batch.get("patches") or [])
    except PoisonMessage:
        return 0


def _rows(batch: EventBatch) -> int:
    return len(batch["events"]) + len(batch.get("patches") or [])


class EventPublisher:
    """Publishes :class:`EventBatch` es onto the ``events`` stream."""

    def __init__(
        self, js: JetStreamContext, *, timeout: float, max_message_bytes: int,
        connection: Client | None = None,
    ) -> None:
        """``connection``: the client ``js`` runs on. Given, a publish while it is not
        connected (reconnecting after the server went away) is refused at once with
        :class:`QueueError` instead of waiting ``timeout`` in the client's reconnect buffer,
        where it is not durable: a caller answers 503 quickly, and retries."""
        self._js = js
        self._connection = connection
        self._timeout = timeout
        # Headers and protocol framing need a little room below the server's max_payload.
        self._max_bytes = max_message_bytes - 4096

    async def publish(self, batch: EventBatch, *, msg_id: str) -> int:
        """Publish ``batch``, split into as few messages as fit; return how many.

        Raises :class:`PipelineBackpressure` when the stream is full,
        :class:`QueueError` when JetStream does not acknowledge in time,
        :class:`PayloadTooLarge` when a single event alone exceeds the message limit.
        """
        parts = self._split(batch)
        subject = events_subject(batch["kind"], batch["tenant"]["project_id"])
        return await self._publish_all(subject, parts, msg_id, {})

    async def publish_table(self, batch: TableBatch, *, msg_id: str) -> int:
        """Publish an Arrow-encoded batch (spans), split by rows as needed; same guarantees
        as :meth:`publish`."""
        parts = self._split_table(batch)
        subject = events_subject(batch.kind, batch.tenant["project_id"])
        return await self._publish_all(subject, parts, msg_id, _ARROW_HEADERS)

    async def _publish_all(
        self, subject: str, parts: list[tuple[bytes, int]], msg_id: str,
        headers: dict[str, str],
    ) -> int:
        if len(parts) == 1:
            data, rows = parts[0]
            await self._publish_one(subject, data, msg_id, {**headers, ROWS_HEADER: str(rows)})
        else:
            await asyncio.gather(*(
                self._publish_one(subject, data, f"{msg_id}.{i}",
                                  {**headers, ROWS_HEADER: str(rows)})
                for i, (data, rows) in enumerate(parts)
            ))
        return len(parts)

    def _split_table(self, batch: TableBatch) -> list[tuple[bytes, int]]:
        """The batch encoded as messages that fit, each with its row count."""
        data = encode_table(batch)
        if len(data) <= self._max_bytes:
            return [(data, int(batch.table.num_rows))]
        rows = batch.table.num_rows
        if rows <= 1:
            raise PayloadTooLarge(
                "a single event is larger than the queue's message limit",
                size=len(data),
                limit=self._max_bytes,
            )
        half = rows // 2
        return self._split_table(
            replace(batch, table=batch.table.slice(0, half))
        ) + self._split_table(replace(batch, table=batch.table.slice(half)))

    def _split(self, batch: EventBatch) -> list[tuple[bytes, int]]:
        """The batch encoded as messages that fit, each with its event (or patch) count."""
        data = encode_batch(batch)
        if len(data) <= self._max_bytes:
            return [(data, _rows(batch))]
        events = batch["events"]
        if len(events) <= 1:
            raise PayloadTooLarge(
                "a single event is larger than the queue's message limit",
                size=len(data),
                limit=self._max_bytes,
            )
        half = len(events) // 2
        first: EventBatch = {**batch, "events": events[:half]}
        second: EventBatch = {**batch, "events": events[half:]}
        return self._split(first) + self._split(second)

    async def _publish_one(
        self, subject: str, data: bytes, msg_id: str, headers: dict[str, str]
    ) -> None:
        if self._connection is not None and not self._connection.is_connected:
            raise QueueError("JetStream unreachable: the NATS connection is down "
                             "(reconnecting)", subject=subject)
        try:
            await self._js.publish(
                subject,
                data,
                timeout=self._timeout,
                stream=EVENTS_STREAM,
                headers={"Nats-Msg-Id": msg_id, **headers},
            )
        except APIError as exc:
            if exc.err_code in _STREAM_FULL_CODES or "maximum" in (exc.description or ""):
                raise PipelineBackpressure(
                    "the events queue is full; retry later", retry_after=5.0
                ) from exc
            raise QueueError(f"JetStream refused the publish: {exc.description}") from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise QueueError(
                "JetStream did not acknowledge in time", timeout_s=self._timeout
            ) from exc
        except nats.errors.Error as exc:
            raise QueueError(f"JetStream unreachable: {exc}") from exc
