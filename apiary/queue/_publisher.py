"""Publishing event batches to JetStream: durable when the call returns, never duplicated.

:meth:`EventPublisher.publish` returns only after JetStream has acknowledged every message
of the batch (and the embedded server fsyncs before acknowledging). Each message carries a
``Nats-Msg-Id`` derived from the caller's id, so publishing the same batch again within
the stream's duplicate window stores nothing new: a client that retries a request whose
answer it never saw does not create duplicates.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from apiary.errors import PayloadTooLarge, PipelineBackpressure, QueueError
from apiary.event import EventBatch
from apiary.queue._topology import EVENTS_STREAM, events_subject
from apiary.queue._wire import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    TableBatch,
    encode_batch,
    encode_table,
)

_ARROW_HEADERS = {ENCODING_HEADER: ARROW_ENCODING}

# JetStream answers a full stream (discard-new) with these error codes.
_STREAM_FULL_CODES = frozenset({10077, 10047, 10028})


class EventPublisher:
    """Publishes :class:`EventBatch` es onto the ``events`` stream."""

    def __init__(
        self, js: JetStreamContext, *, timeout: float, max_message_bytes: int
    ) -> None:
        self._js = js
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
        return await self._publish_all(subject, parts, msg_id, None)

    async def publish_table(self, batch: TableBatch, *, msg_id: str) -> int:
        """Publish an Arrow-encoded batch (spans), split by rows as needed; same guarantees
        as :meth:`publish`."""
        parts = self._split_table(batch)
        subject = events_subject(batch.kind, batch.tenant["project_id"])
        return await self._publish_all(subject, parts, msg_id, _ARROW_HEADERS)

    async def _publish_all(
        self, subject: str, parts: list[bytes], msg_id: str, headers: dict[str, str] | None
    ) -> int:
        if len(parts) == 1:
            await self._publish_one(subject, parts[0], msg_id, headers)
        else:
            await asyncio.gather(*(
                self._publish_one(subject, p, f"{msg_id}.{i}", headers)
                for i, p in enumerate(parts)
            ))
        return len(parts)

    def _split_table(self, batch: TableBatch) -> list[bytes]:
        data = encode_table(batch)
        if len(data) <= self._max_bytes:
            return [data]
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

    def _split(self, batch: EventBatch) -> list[bytes]:
        data = encode_batch(batch)
        if len(data) <= self._max_bytes:
            return [data]
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
        self, subject: str, data: bytes, msg_id: str, headers: dict[str, str] | None
    ) -> None:
        try:
            await self._js.publish(
                subject,
                data,
                timeout=self._timeout,
                stream=EVENTS_STREAM,
                headers={"Nats-Msg-Id": msg_id, **(headers or {})},
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
