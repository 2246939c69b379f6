"""The notifier: delivers the ``notifications`` stream to the channels each message goes to.

Each notifier (a Ray actor, :mod:`apiary.actors.notifier`) runs one :class:`NotifierLoop`
on the shared durable pull consumer ``notifications/notifiers``; JetStream spreads the
messages over the pool. For one message, in this order:

1. the channels it goes to are read (:class:`~.channels.ChannelDirectory`); trouble
   reading them hands the message back (``nak`` with back-off; dead-lettered at its last
   delivery);
2. for each channel, the delivery is **claimed** in the delivery records
   (:mod:`.deliveries`, a compare-and-set): a channel already done (delivered, or
   dead-lettered, unless the message is a replayed dead letter) is skipped, and one that
   another copy of the message is sending to is waited for (its claim is held for one
   attempt or back-off at a time, so a dead holder's claim expires);
3. the other channels are sent to concurrently (:mod:`.senders`), each **retried** with
   exponential back-off and full jitter (a random wait up to ``notify_retry_base_s``
   doubled per attempt, at most ``notify_retry_max_s``; exactly the receiver's
   ``Retry-After`` when it sent one) while the failure is retryable (connection errors,
   timeouts, 408, 429, 5xx, SMTP 4xx, SES throttling) and the message is younger than
   ``notify_max_age_s`` (its age is counted from when JetStream stored it, so a
   redelivery does not start the clock again). The message is kept alive meanwhile
   (``in_progress``, every third of ``ack_wait``, at most 5 s);
4. each delivery the receiver accepted is recorded (durable) as soon as it succeeded;
5. deliveries that failed for good, or past the max age, are dead-lettered together in
   one record (object store, ``dlq/notifications/...-delivery.json``: the message
   restricted to the failed channels, each channel and its error), durable before their
   records are written (``dead_lettered``);
6. the message is acknowledged.

**Exactly once, as the receiver sees it.** A notifier killed anywhere before 6 makes
JetStream redeliver the message (after ``ack_wait``); step 2 then skips every channel whose
delivery was recorded, so those receive nothing again. The one window left is a kill
between a receiver's 2xx and step 4: that channel receives the delivery a second time,
with the **same** ``X-Apiary-Delivery`` id (a hash of the message id and the channel id),
which a receiver uses to drop it (``docs/alerts.md``). Mail carries the id as its
``Message-ID`` too.

**Delivery activity.** When an alert notification's delivery to a channel ends — recorded
``delivered`` (4) or ``dead_lettered`` (5) — a ``delivery`` activity
(:class:`~apiary.dataplane.alerts.events.AlertActivity`, event id
``delivery.<delivery id>.<outcome>``: the channel, its type, the attempts, a short detail)
is published to the ``alert-activity`` stream, on its way to the control plane. It is
durable, without touching the delivery: it is published after the delivery's record and
before the message is acknowledged. If publishing fails (counted in
``apiary_notification_activity_failures_total``), the message is handed back (a dead
letter's records are retried, their activity with them); on its redelivery every channel
whose delivery is recorded is skipped (never sent twice) and its activity published again,
from the record. A repeat is stored once (the event id is the ``Nats-Msg-Id`` and the
control plane's key). Test messages report nothing.

Stopping (:meth:`NotifierLoop.stop`) takes no new message and hands back (``nak``) the
ones still being retried: another notifier goes on with them, skipping what is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from apiary._private import metrics
from apiary.dataplane.alerts.events import AlertActivity, delivery_event_id, publish_activity
from apiary.dataplane.notifications.channels import Channel, ChannelDirectory
from apiary.dataplane.notifications.deliveries import DeliveryLedger
from apiary.dataplane.notifications.message import (
    AlertNotification,
    TestNotification,
    encode_message,
    message_id,
    parse_message,
)
from apiary.dataplane.notifications.senders import Senders, delivery_id
from apiary.errors import DeliveryFailed, DeliveryRetryable, PoisonMessage
from apiary.objects import ObjectStore
from apiary.queue import NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER, connect
from apiary.queue.dead_letters import replayed
from apiary.queue.outcomes import (
    DeadLetterInfo,
    DeadPart,
    Outcomes,
    deliveries,
    start_supervised,
    task_ended,
)
from apiary.settings import ApiarySettings

log = logging.getLogger("apiary.notifier")

#: How long one fetch waits for messages before the loop looks at ``stop`` again.
FETCH_WAIT_S = 1.0
#: Messages one notifier holds at once (each may be retrying for up to the max age).
MAX_HELD = 64
#: How much longer than one attempt (``notify_timeout_s``) a delivery's claim is held.
CLAIM_MARGIN_S = 5.0
#: URLs in a delivery's detail are replaced (a Slack webhook URL is a secret).
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")

Message = AlertNotification | TestNotification


@dataclass
class NotifierStats:
    """What one notifier has done (``stats()`` of its actor)."""

    received: int = 0
    acked: int = 0
    delivered: int = 0
    already_done: int = 0
    retries: int = 0
    failed_deliveries: int = 0
    dead_lettered: int = 0
    dead_letter_failures: int = 0
    dead_letters_pending: int = 0
    handed_back: int = 0
    #: Delivery activities published, and attempts at one that failed.
    activity_published: int = 0
    activity_failures: int = 0
    loop_restarts: int = 0
    held: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotifierLoop:
    """One notifier's loop (module docstring)."""

    def __init__(self, *, js: JetStreamContext, directory: ChannelDirectory, senders: Senders,
                 ledger: DeliveryLedger, objects: ObjectStore, settings: ApiarySettings,
                 name: str) -> None:
        self._js = js
        self._directory = directory
        self._senders = senders
        self._ledger = ledger
        self._settings = settings
        self._name = name
        self.stats = NotifierStats()
        keep_alive = min(settings.writer_ack_wait_s / 3, 5.0)
        self._keep_alive_s = keep_alive
        self._outcomes = Outcomes(stream=NOTIFICATIONS_STREAM, objects=objects,
                                  stats=self.stats, log=log, what="notification",
                                  keep_alive_s=keep_alive)
        self._stopping = asyncio.Event()
        self._held: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and handle messages until :meth:`stop`; then hand back what is held."""
        sub = await self._js.pull_subscribe_bind(NOTIFIERS_CONSUMER, NOTIFICATIONS_STREAM)
        try:
            while not self._stopping.is_set():
                free = MAX_HELD - len(self._held)
                if free <= 0:
                    await asyncio.wait(self._held, timeout=FETCH_WAIT_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(batch=free, timeout=FETCH_WAIT_S)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    self.stats.received += 1
                    task = asyncio.create_task(self._handle(msg))
                    self._held.add(task)
                    self.stats.held = len(self._held)
                    task.add_done_callback(self._done)
        finally:
            held = list(self._held)
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            await self._outcomes.close()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._held.discard(task)
        self.stats.held = len(self._held)
        if not task.cancelled() and task.exception() is not None:
            self.stats.last_error = f"handle: {task.exception()!r}"

    # -- one message ------------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        keep_alive = asyncio.create_task(self._keep_alive(msg))
        try:
            await self._handle_held(msg)
        except asyncio.CancelledError:
            # Stopping: another notifier goes on with it, skipping what is recorded.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception as exc:  # the delivery records, the queue: try again later
            self.stats.handed_back += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("notification handed back", extra={"error": repr(exc)})
            await self._outcomes.hand_back(
                msg, deliveries(msg), exc, last_delivery=self._settings.writer_max_deliver,
                info=DeadLetterInfo(stage="notify"))
        finally:
            keep_alive.cancel()

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._keep_alive_s)
            with contextlib.suppress(Exception):  # a lost beat: redelivered at worst
                await msg.in_progress()

    async def _handle_held(self, msg: Msg) -> None:
        try:
            message = parse_message(msg.data)
        except ValidationError as exc:
            error = PoisonMessage(f"not a notification message: {exc.errors()[0]['msg']}",
                                  subject=msg.subject)
            await self._outcomes.dead_letter(msg, error, info=DeadLetterInfo(stage="decode"))
            return
        try:
            channels = await self._directory.channels_for(message)
        except Exception as exc:
            raise DeliveryFailed(f"the channels could not be read: {exc!r}") from exc
        ident = message_id(message)
        queued_at = msg.metadata.timestamp.timestamp() if msg.metadata.timestamp else time.time()
        deadline = queued_at + self._settings.notify_max_age_s
        again = replayed(msg)
        results = await asyncio.gather(*(
            self._deliver(ident, message, channel, queued_at, deadline, again)
            for channel in channels), return_exceptions=True)
        # Trouble with the records or the queue: every delivery has ended (recorded or
        # not); the message is handed back and the records skip what was done.
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, DeliveryFailed):
                raise result
        failed = [(channel, error) for channel, error in zip(channels, results, strict=True)
                  if isinstance(error, DeliveryFailed)]
        if not failed:
            await self._outcomes.ack(msg)
            self.stats.acked += 1
            return
        await self._dead_letter(msg, ident, message, failed)

    async def _deliver(self, ident: str, message: Message, channel: Channel, queued_at: float,
                       deadline: float, again: bool) -> DeliveryFailed | None:
        """Deliver to ``channel`` with retries; None once delivered and recorded (or found
        done), else the failure to dead-letter."""
        delivery = delivery_id(ident, channel.id)
        owner = f"{self._name}.{uuid.uuid4().hex[:12]}"
        margin = self._settings.notify_timeout_s + CLAIM_MARGIN_S
        while True:
            claim = await self._ledger.claim(delivery, owner=owner, hold_s=margin,
                                             again=again)
            if claim.revision is not None:
                revision = claim.revision
                break
            if claim.state != "claimed" or time.time() > deadline:
                # Finished, or another copy of the message is still on it: it decides.
                self.stats.already_done += 1
                metrics.inc(metrics.NOTIFICATIONS, channel_type=channel.type,
                            outcome="already_done")
                if claim.state in ("delivered", "dead_lettered"):
                    await self._report_recorded(delivery, message, channel)
                return None
            await asyncio.sleep(min(max(claim.until - time.time(), 0.05), 1.0))
        held = [revision]  # the claim's revision, as extended
        try:
            return await self._attempts(delivery, ident, message, channel, queued_at,
                                        deadline, owner, held)
        except asyncio.CancelledError:
            # Stopping mid-delivery: let the next copy claim it at once.
            with contextlib.suppress(Exception):
                await self._ledger.release(delivery, owner=owner, revision=held[0])
            raise

    async def _attempts(self, delivery: str, ident: str, message: Message, channel: Channel,
                        queued_at: float, deadline: float, owner: str,
                        held: list[int]) -> DeliveryFailed | None:
        margin = self._settings.notify_timeout_s + CLAIM_MARGIN_S
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._senders.send(channel, message, delivery)
            except DeliveryFailed as exc:
                if not exc.retryable:
                    exc.context.setdefault("attempts", attempt)
                    return exc
                bound = min(self._settings.notify_retry_max_s,
                            self._settings.notify_retry_base_s * 2 ** (attempt - 1))
                asked = exc.retry_after if isinstance(exc, DeliveryRetryable) else None
                wait = asked if asked is not None else random.uniform(0, bound)
                if time.time() + wait > deadline:
                    return DeliveryFailed(
                        f"still failing after {attempt} attempt(s) when the notification "
                        f"reached notify_max_age_s ({self._settings.notify_max_age_s:g} s): "
                        f"{exc.message}", attempts=attempt, **exc.context)
                extended = await self._ledger.extend(delivery, owner=owner, revision=held[0],
                                                     hold_s=wait + margin)
                if extended is None:  # stalled past the claim, and another copy took it
                    return None
                held[0] = extended
                self.stats.retries += 1
                metrics.inc(metrics.NOTIFICATIONS, channel_type=channel.type, outcome="retried")
                log.info("notification delivery will be retried",
                         extra={"channel_id": channel.id, "delivery": delivery,
                                "attempt": attempt, "retry_in_s": round(wait, 3),
                                "error": exc.message})
                await asyncio.sleep(wait)
                continue
            break
        detail = f"accepted by the receiver after {attempt} attempt(s)"
        await self._ledger.record(delivery, "delivered", channel_id=channel.id, msg_id=ident,
                                  attempts=attempt, detail=detail)
        self.stats.delivered += 1
        metrics.inc(metrics.NOTIFICATIONS, channel_type=channel.type, outcome="delivered")
        metrics.observe(metrics.NOTIFY_SECONDS, max(0.0, time.time() - queued_at),
                        channel_type=channel.type)
        log.info("notification delivered", extra={"channel_id": channel.id,
                                                  "delivery": delivery, "attempts": attempt})
        await self._report(delivery, message, channel, "delivered", attempt, detail)
        return None

    async def _dead_letter(self, msg: Msg, ident: str, message: Message,
                           failed: list[tuple[Channel, DeliveryFailed]]) -> None:
        """One record for the failed channels: the message restricted to them (replaying it
        retries those alone), each channel's error; then their delivery records; then the
        message is acknowledged."""
        self.stats.failed_deliveries += len(failed)
        ids = tuple(channel.id for channel, _ in failed)
        if len(failed) == 1:
            error = failed[0][1]
        else:
            error = DeliveryFailed(
                f"{len(failed)} deliveries failed: " + "; ".join(
                    f"{channel.type} channel {channel.id}: {exc}" for channel, exc in failed),
                channel_ids=list(ids))
        part = DeadPart(data=encode_message(message.model_copy(update={"channel_ids": ids})),
                        msg_id=ident, suffix="delivery")

        async def record() -> None:
            for channel, exc in failed:
                delivery = delivery_id(ident, channel.id)
                attempts = exc.context.get("attempts")
                attempts = attempts if isinstance(attempts, int) else None
                detail = _detail(exc.message)
                await self._ledger.record(delivery, "dead_lettered", channel_id=channel.id,
                                          msg_id=ident, attempts=attempts, detail=detail)
                await self._report(delivery, message, channel, "dead_lettered", attempts,
                                   detail)
                metrics.inc(metrics.NOTIFICATIONS, channel_type=channel.type,
                            outcome="dead_lettered")

        await self._outcomes.dead_letter(
            msg, error, info=DeadLetterInfo(stage="delivery", project_id=message.project_id),
            part=part, durable=record)


    async def _report(self, delivery: str, message: Message, channel: Channel,
                      outcome: Literal["delivered", "dead_lettered"], attempts: int | None,
                      detail: str | None) -> None:
        """Publish the ``delivery`` activity of an alert notification's ended delivery
        (module docstring); raises :class:`~apiary.errors.QueueError` when JetStream does
        not take it (the caller hands the message back)."""
        if not isinstance(message, AlertNotification):
            return
        activity = AlertActivity(
            event_id=delivery_event_id(delivery, outcome), kind="delivery",
            org_id=message.org_id, project_id=message.project_id, alert_id=message.alert_id,
            stage=message.stage, state=message.state, value=message.value,
            threshold=message.threshold, window_end=message.window_end,
            channel_id=channel.id, channel_type=channel.type, outcome=outcome,
            attempts=attempts, detail=detail, at=datetime.now(UTC))
        try:
            await publish_activity(self._js, activity)
        except Exception as exc:
            self.stats.activity_failures += 1
            metrics.inc(metrics.NOTIFY_ACTIVITY_FAILURES)
            log.warning("delivery activity not published; the message is handed back and "
                        "it is published on the redelivery", extra={
                            "event_id": activity.event_id, "error": repr(exc)})
            raise
        self.stats.activity_published += 1

    async def _report_recorded(self, delivery: str, message: Message,
                               channel: Channel) -> None:
        """Publish again the activity of a delivery found finished (a redelivered message:
        the first copy may have stopped before its activity was published)."""
        if not isinstance(message, AlertNotification):
            return
        record = await self._ledger.finished(delivery)
        if record is None:
            return
        outcome = record.get("outcome")
        attempts, detail = record.get("attempts"), record.get("detail")
        await self._report(delivery, message, channel,
                           "delivered" if outcome == "delivered" else "dead_lettered",
                           attempts if isinstance(attempts, int) else None,
                           detail if isinstance(detail, str) else None)


def _detail(text: str) -> str:
    """A delivery's detail for its activity: URLs left out, at most 1000 characters."""
    cleaned = _URL.sub("<url>", text)
    return cleaned if len(cleaned) <= 1000 else cleaned[:999] + "…"


class NotifierService:
    """One notifier named ``name`` on the NATS server at ``nats_url``: :meth:`start`
    connects and runs the supervised loop (idempotent: a restarted actor calls it again),
    :meth:`stop` hands back what is held and disconnects. ``directory`` defaults to the
    federation bucket's (:class:`~.channels.KvChannelDirectory`)."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str, *,
                 directory: ChannelDirectory | None = None) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._name = name
        self._directory = directory
        self._nc: Client | None = None
        self._loop: NotifierLoop | None = None
        self._senders: Senders | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self._stopping.is_set() or (self._task is not None and not self._task.done()):
            return
        if self._loop is None:
            from apiary._private.logs import configure_logging
            from apiary.objects import object_store

            configure_logging(self._settings)
            self._nc = await connect(self._nats_url, name=self._name)
            js = self._nc.jetstream()
            directory = self._directory
            if directory is None:
                from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
                from apiary.dataplane.notifications.channels import KvChannelDirectory

                directory = KvChannelDirectory(js, envelope_from_settings(self._settings))
            self._senders = Senders(self._settings)
            self._loop = NotifierLoop(
                js=js, directory=directory, senders=self._senders,
                ledger=await DeliveryLedger.open(js, self._settings),
                objects=object_store(self._settings), settings=self._settings,
                name=self._name)
        self._task = start_supervised(self._loop.run, self._loop.stats, loop="notifier",
                                      stopping=self._stopping, log=log, previous=self._task)

    async def ensure_running(self) -> None:
        await self.start()

    async def stats(self) -> dict[str, Any]:
        if self._loop is None:
            return {"name": self._name, "running": False}
        stats = self._loop.stats.as_dict()
        stats["name"] = self._name
        stats["running"] = self._task is not None and not self._task.done()
        if self._task is not None and self._task.done() and not self._stopping.is_set():
            stats["last_error"] = f"supervisor ended: {task_ended(self._task)}"
        return stats

    async def stop(self) -> dict[str, Any]:
        self._stopping.set()
        if self._loop is not None and self._task is not None:
            self._loop.stop()
            await asyncio.gather(self._task, return_exceptions=True)
        final = await self.stats()
        if self._senders is not None:
            await self._senders.close()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        return final


__all__ = ["MAX_HELD", "NotifierLoop", "NotifierService", "NotifierStats"]
