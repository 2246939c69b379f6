"""Apiary's JetStream topology: the streams, their durable consumers, and how to ensure them.

Streams (docs/architecture.md, "The data path"): ``events`` (``events.>``), ``evaluation``
(``evaluation.>``), ``notifications`` (``notifications.>``) and ``alert-activity``
(``alert-activity.<org>.<project>``: alert transitions and delivery outcomes on their way to
the control plane, consumed by the federation controller as ``federation-activity`` with a
30 s ack wait, acked once the control plane stored them). Each uses *interest*
retention (a message is removed once every durable consumer acknowledged it) and *discard
new* with a byte limit: when the backlog is full JetStream refuses the publish, so Apiary
answers 503 instead of accepting data it could not persist. Every consumer is a durable pull
consumer with explicit acks and a bounded number of deliveries.

JetStream *reserves* each stream's byte limit against its store, which is at most 75% of the
free disk when the server starts: ``events`` takes ``events_stream_max_bytes``, ``evaluation``
a quarter of it, and the two small streams of alerts and notifications (a message is a few
hundred bytes) an eighth of that, between 16 and 256 MiB each. Left unset,
``events_stream_max_bytes`` is a ceiling: on a store too small for it (a laptop or CI machine
with little free disk) the events stream is sized down, a fifth at a time, to the most the
store takes, and the change says so. Set explicitly, or when not even 64 MiB fits, a store too
small fails start-up with :class:`~apiary.errors.ConfigurationError` naming the setting.

Subjects on ``events``: ``events.<kind>.<project_id>``, where ``kind`` names the producer
(``spans`` for OTLP ingestion).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError, ServerError

from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

_log = logging.getLogger(__name__)

EVENTS_STREAM = "events"
EVALUATION_STREAM = "evaluation"
NOTIFICATIONS_STREAM = "notifications"
ALERT_ACTIVITY_STREAM = "alert-activity"

WRITERS_CONSUMER = "writers"
EVALUATORS_CONSUMER = "evaluators"
NOTIFIERS_CONSUMER = "notifiers"
ALERT_ACTIVITY_CONSUMER = "federation-activity"
#: How long the control plane may take to store an alert activity before it is redelivered.
ALERT_ACTIVITY_ACK_WAIT_S = 30.0

_MiB = 1024 * 1024
#: JetStream's "insufficient storage resources available": a reservation over the store.
_INSUFFICIENT_STORAGE = 10047
#: The smallest events stream an unset ``events_stream_max_bytes`` is sized down to.
_AUTO_FLOOR_BYTES = 64 * _MiB


def events_subject(kind: str, project_id: str) -> str:
    return f"events.{kind}.{project_id}"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    consumer: str
    max_bytes: int
    #: The consumer's ack wait; None: the writers' (``writer_ack_wait_s``).
    ack_wait_s: float | None = None
    #: The consumer's delivery bound; None: the writers' (``writer_max_deliver``), -1: none.
    max_deliver: int | None = None


def stream_specs(settings: ApiarySettings, events_bytes: int | None = None) -> list[StreamSpec]:
    """The streams for an events stream of ``events_bytes`` (default: the setting)."""
    if events_bytes is None:
        events_bytes = settings.events_stream_max_bytes
    evaluation_bytes = max(events_bytes // 4, 64 * _MiB)
    small_bytes = min(max(evaluation_bytes // 8, 16 * _MiB), 256 * _MiB)
    return [
        StreamSpec(EVENTS_STREAM, WRITERS_CONSUMER, events_bytes),
        StreamSpec(EVALUATION_STREAM, EVALUATORS_CONSUMER, evaluation_bytes),
        StreamSpec(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER, small_bytes),
        StreamSpec(ALERT_ACTIVITY_STREAM, ALERT_ACTIVITY_CONSUMER, small_bytes,
                   ack_wait_s=ALERT_ACTIVITY_ACK_WAIT_S,
                   # An activity waits for the control plane however long it is away.
                   max_deliver=-1),
    ]


def stream_config(spec: StreamSpec, settings: ApiarySettings) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=[f"{spec.name}.>"],
        retention=RetentionPolicy.INTEREST,
        discard=DiscardPolicy.NEW,
        storage=StorageType.FILE,
        max_bytes=spec.max_bytes,
        num_replicas=settings.nats_replicas,
        duplicate_window=settings.duplicate_window_s,
    )


def consumer_config(spec: StreamSpec, settings: ApiarySettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.consumer,
        description=f"Apiary {spec.consumer} (durable pull consumer)",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s if spec.ack_wait_s is not None else settings.writer_ack_wait_s,
        max_deliver=spec.max_deliver if spec.max_deliver is not None
        else settings.writer_max_deliver,
        # Enough for several full writer batches in flight across the pool.
        max_ack_pending=max(20_000, 4 * settings.writer_count * 1_000),
        max_waiting=512,
        filter_subject=f"{spec.name}.>",
        num_replicas=settings.nats_replicas,
    )


async def ensure_topology(js: JetStreamContext, settings: ApiarySettings) -> list[str]:
    """Create or update every stream and durable consumer; return what changed.

    Idempotent: running it against an existing topology with the same settings changes
    nothing and loses no message. A changed limit (e.g. ``max_bytes``) updates the stream
    in place.

    When ``events_stream_max_bytes`` was not set and the server's store cannot reserve it,
    the streams are sized down to the most the store takes (the first change returned, and a
    warning, say so). Raises :class:`~apiary.errors.ConfigurationError` when an explicitly set
    size, or the smallest automatic one, does not fit.
    """
    explicit = "events_stream_max_bytes" in settings.model_fields_set
    events_bytes = settings.events_stream_max_bytes
    changed: list[str] = []
    while True:
        specs = stream_specs(settings, events_bytes)
        try:
            await _ensure_streams(js, settings, specs, changed)
            break
        except _StoreTooSmall as exc:
            smaller = (events_bytes * 4 // 5) // _MiB * _MiB
            if explicit or smaller < _AUTO_FLOOR_BYTES:
                raise _store_too_small(exc.spec, specs, settings, explicit=explicit) from exc.cause
            events_bytes = smaller
    if events_bytes != settings.events_stream_max_bytes:
        sized = (f"sized stream {EVENTS_STREAM} to {events_bytes / _MiB:,.0f} MiB, the most the "
                 f"JetStream store takes (less than the default "
                 f"{settings.events_stream_max_bytes / _MiB:,.0f} MiB: free disk space, or set "
                 "APIARY_EVENTS_STREAM_MAX_BYTES)")
        _log.warning(sized)
        changed.insert(0, sized)
    return changed


class _StoreTooSmall(Exception):
    def __init__(self, spec: StreamSpec, cause: ServerError) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.cause = cause


async def _ensure_streams(js: JetStreamContext, settings: ApiarySettings,
                          specs: list[StreamSpec], changed: list[str]) -> None:
    """Ensure ``specs`` in order, appending each change to ``changed``; raises
    :class:`_StoreTooSmall` at the first stream the store cannot reserve."""
    for spec in specs:
        wanted = stream_config(spec, settings)
        try:
            try:
                info = await js.stream_info(spec.name)
            except NotFoundError:
                await js.add_stream(wanted)
                changed.append(f"created stream {spec.name}")
            else:
                current = info.config
                if (
                    current.max_bytes != wanted.max_bytes
                    or current.duplicate_window != wanted.duplicate_window
                    or list(current.subjects or []) != wanted.subjects
                ):
                    await js.update_stream(wanted)
                    changed.append(f"updated stream {spec.name}")
        except ServerError as exc:
            if exc.err_code != _INSUFFICIENT_STORAGE:
                raise
            raise _StoreTooSmall(spec, exc) from exc
        wanted_consumer = consumer_config(spec, settings)
        try:
            existing = await js.consumer_info(spec.name, spec.consumer)
        except NotFoundError:
            await js.add_consumer(spec.name, wanted_consumer)
            changed.append(f"created consumer {spec.name}/{spec.consumer}")
        else:
            c = existing.config
            if (c.ack_wait, c.max_deliver, c.max_ack_pending) != (
                wanted_consumer.ack_wait,
                wanted_consumer.max_deliver,
                wanted_consumer.max_ack_pending,
            ):
                await js.add_consumer(spec.name, wanted_consumer)
                changed.append(f"updated consumer {spec.name}/{spec.consumer}")


async def consumer_backlog(js: JetStreamContext, stream: str, consumer: str) -> int:
    """Messages not yet acknowledged by ``consumer``: pending plus delivered-unacked."""
    info = await js.consumer_info(stream, consumer)
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


def _store_too_small(spec: StreamSpec, specs: list[StreamSpec], settings: ApiarySettings,
                     *, explicit: bool) -> ConfigurationError:
    total = sum(s.max_bytes for s in specs)
    fix = ("Free disk space where the store is, or lower APIARY_EVENTS_STREAM_MAX_BYTES (now "
           f"{settings.events_stream_max_bytes / _MiB:,.0f} MiB; the other streams follow it)"
           if explicit else
           "Free disk space where the store is, or give nats-server a larger max_file_store "
           f"(unset, APIARY_EVENTS_STREAM_MAX_BYTES goes no lower than "
           f"{_AUTO_FLOOR_BYTES / _MiB:,.0f} MiB)")
    return ConfigurationError(
        f"JetStream could not reserve {spec.max_bytes / _MiB:,.0f} MiB for the stream "
        f"{spec.name!r}: Apiary's streams reserve {total / _MiB:,.0f} MiB in all, more than the "
        "server's store allows (nats-server gives JetStream 75% of the disk space free when it "
        f"starts, or its max_file_store). {fix}",
        stream=spec.name, reserve_bytes=spec.max_bytes, total_bytes=total,
    )
