"""Dead letters, read back: list them, show one, replay them into their stream, purge them.

:mod:`apiary.queue.outcomes` writes a dead letter as one JSON record in the object store
(:mod:`apiary.objects`) under ``dlq/<stream>/<yyyy>/<mm>/<dd>/<stream sequence>.json``; this
module is everything that happens to it afterwards. Both the ``apiary dlq`` command (an
operator with the data directory or the object store's credentials) and the data plane's
admin API (``/v1/admin/dead-letters``) go through :class:`DeadLetters`.

A dead letter's **id** is its key without ``dlq/`` and ``.json``, ``/`` written as ``.``
(``events.2026.12.05.000000000042``): stable, URL-safe, and it names where the record is.
Its **reason** is the record's ``reason`` or else the error's type (``PoisonMessage``,
``StoreRejected``, ...); its **stage** the record's ``stage`` (the writer's stage that
failed: ``decode``, ``updates``, ``enrich``, ``relink``, ``backfill``, ``dedup_check``,
``insert``, ``crash_loop``, ...) or else the consumer of its stream (``writer`` for
``events``, ``evaluator`` for ``evaluation``); its **project** the record's ``project_id``
or else the last token of its subject; its **rows** the events it holds (None when the
record does not say). A record of *part* of a message (the unstorable spans of a message
whose other spans were stored) is stored under ``<sequence>-spans.json`` and carries that
part's own ``msg_id`` and data, so it is listed, shown and replayed like a message.

Guarantees:

- **Replay keeps the message's identity.** A message goes back to the subject and stream it
  came from, with its data and headers, under its original ``Nats-Msg-Id`` (the record's
  ``msg_id`` when it has one, e.g. a part of a message; ``dlq.<id>`` when the original had
  none). Replaying the same record twice, or a crash between the publish and the removal of
  the record, therefore stores one message while JetStream's duplicate window remembers the
  id, and the consumers' idempotence (a batch's events carry their version; reads collapse
  versions, and a writer checks a replayed message's events against the stored versions as
  it does a redelivered one's: :func:`replayed`) covers a replay after it, so the session
  rollups stay exact too.
- **Nothing replayed is lost.** The record is removed only after JetStream acknowledged the
  publish (durable: ``sync_interval: always``). If JetStream answers that the id is a
  duplicate *of the dead-lettered message itself* (the original was dead-lettered within
  the duplicate window, so JetStream would drop the replay), the record stays and
  :class:`~apiary.errors.Conflict` says when to retry; a duplicate of an earlier replay
  means the message is back in the stream already, and the record is removed.
- **Purge is final** and idempotent: removing a record that is already gone succeeds.
- A record that cannot be parsed is listed (reason ``unreadable_record``) so it can be
  looked at and purged; it is never replayed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from apiary._private import metrics
from apiary.errors import Conflict, InvalidRequest, NotFound, QueueError
from apiary.objects import ObjectStore
from apiary.queue._topology import EVALUATION_STREAM, EVENTS_STREAM
from apiary.queue._wire import ARROW_ENCODING, ENCODING_HEADER, decode_table

log = logging.getLogger("apiary.dead_letters")

#: Where :mod:`apiary.queue.outcomes` writes dead letters in the object store.
PREFIX = "dlq/"
#: The reason of a record that is not a dead letter this module can read.
UNREADABLE = "unreadable_record"
#: Header naming the dead letter a replayed message came from.
REPLAYED_FROM_HEADER = "Apiary-Replayed-From"

def replayed(msg: Msg) -> bool:
    """Whether ``msg`` is a dead letter put back by :meth:`DeadLetters.replay`: a consumer
    must treat it like a redelivery (it may have been stored or done already)."""
    return REPLAYED_FROM_HEADER in (msg.headers or {})


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){1,8}$")
_STAGES = {EVENTS_STREAM: "writer", EVALUATION_STREAM: "evaluator"}


def key_of(dead_letter_id: str) -> str:
    """The object key of the dead letter ``dead_letter_id``; :class:`InvalidRequest` if the
    id is not one this module gives out (so no id reaches outside ``dlq/``)."""
    if not _ID.match(dead_letter_id):
        raise InvalidRequest("not a dead letter id", field="id")
    return f"{PREFIX}{dead_letter_id.replace('.', '/')}.json"


def id_of(key: str) -> str | None:
    """The id of the dead letter stored under ``key``, or None if ``key`` is not one."""
    if not key.startswith(PREFIX) or not key.endswith(".json"):
        return None
    candidate = key[len(PREFIX):-len(".json")].replace("/", ".")
    return candidate if _ID.match(candidate) and key_of(candidate) == key else None


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message and why. ``data`` is the message's payload as it was."""

    id: str
    key: str
    stream: str
    subject: str
    stream_sequence: int
    deliveries: int | None
    msg_id: str
    reason: str
    stage: str
    error: str
    dead_lettered_at: float | None
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    #: Events (rows) the record holds, when the record says.
    rows: int | None = None
    #: The record's project, when it names one (else the subject's: :attr:`project_id`).
    project: str | None = None

    @property
    def replayable(self) -> bool:
        return self.reason != UNREADABLE and bool(self.subject)

    @property
    def project_id(self) -> str | None:
        """The project the message belongs to: the record's ``project_id``, or else the
        last token of its subject (``events.<kind>.<project>``)."""
        if self.project:
            return self.project
        tokens = self.subject.split(".")
        return tokens[-1] if len(tokens) >= 3 else None

    def summary(self) -> dict[str, Any]:
        """What a listing shows of it (no payload)."""
        return {
            "id": self.id, "stream": self.stream, "subject": self.subject,
            "project_id": self.project_id, "stream_sequence": self.stream_sequence,
            "deliveries": self.deliveries, "msg_id": self.msg_id, "reason": self.reason,
            "stage": self.stage, "error": self.error, "dead_lettered_at": self.dead_lettered_at,
            "size": len(self.data), "rows": self.rows,
        }

    def detail(self) -> dict[str, Any]:
        """Everything: the summary, the headers, and the payload (:meth:`payload`)."""
        return {**self.summary(), "headers": self.headers, "payload": self.payload()}

    def payload(self) -> dict[str, Any]:
        """The payload for a reader: ``{"encoding": "json", "json": ...}`` for a JSON
        message, ``{"encoding": "arrow", "envelope": ..., "rows": [...]}`` for an Arrow
        batch of spans, else ``{"encoding": "base64", "base64": ..., "problem": ...}``."""
        if self.headers.get(ENCODING_HEADER) == ARROW_ENCODING:
            try:
                batch = decode_table(self.data)
            except Exception as exc:  # that may be why it was dead-lettered
                return self._raw(str(exc))
            return {"encoding": "arrow",
                    "envelope": {"kind": batch.kind, "tenant": dict(batch.tenant),
                                 "version": batch.version,
                                 "inherited_sessions": sorted(batch.inherited_sessions)},
                    "rows": batch.table.to_pylist()}
        try:
            return {"encoding": "json", "json": orjson.loads(self.data)}
        except orjson.JSONDecodeError as exc:
            return self._raw(f"not JSON: {exc}")

    def _raw(self, problem: str) -> dict[str, Any]:
        return {"encoding": "base64", "base64": base64.b64encode(self.data).decode("ascii"),
                "problem": problem}


def parse(dead_letter_id: str, key: str, body: bytes) -> DeadLetter:
    """The dead letter of a record as :mod:`apiary.queue.outcomes` writes it; a record that
    does not parse becomes one with reason :data:`UNREADABLE`."""
    stream = dead_letter_id.split(".", 1)[0]
    try:
        record: Any = orjson.loads(body)
        if not isinstance(record, dict):
            raise ValueError("the record is not a JSON object")
        data = base64.b64decode(record.get("data_base64", ""), validate=True)
        sequence = int(record.get("stream_sequence") or 0)
        raw_headers = record.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise ValueError("headers are not an object")
        headers = {str(k): str(v) for k, v in raw_headers.items()}
        subject = str(record.get("subject") or "")
        if not subject.startswith(f"{stream}."):
            raise ValueError(f"subject {subject!r} is not on stream {stream!r}")
    except (orjson.JSONDecodeError, ValueError, TypeError, binascii.Error) as exc:
        return DeadLetter(id=dead_letter_id, key=key, stream=stream, subject="",
                          stream_sequence=0, deliveries=None, msg_id="", reason=UNREADABLE,
                          stage=_STAGES.get(stream, stream), error=str(exc),
                          dead_lettered_at=None, data=body)
    msg_id = (str(record.get("msg_id") or "") or headers.get("Nats-Msg-Id")
              or f"dlq.{dead_letter_id}")
    deliveries = record.get("deliveries")
    at = record.get("dead_lettered_at")
    rows = record.get("rows")
    project = record.get("project_id")
    return DeadLetter(
        id=dead_letter_id, key=key, stream=stream, subject=subject, stream_sequence=sequence,
        deliveries=deliveries if isinstance(deliveries, int) else None, msg_id=msg_id,
        reason=str(record.get("reason") or record.get("error_type") or "unknown"),
        stage=str(record.get("stage") or _STAGES.get(stream, stream)),
        error=str(record.get("error") or ""),
        dead_lettered_at=float(at) if isinstance(at, (int, float)) else None,
        headers=headers, data=data,
        rows=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        project=project if isinstance(project, str) and project else None,
    )


def counts(letters: Iterable[DeadLetter]) -> dict[str, Any]:
    """How many dead letters there are: in all, by reason, by stage, by both, by stream."""
    letters = list(letters)
    both = Counter((d.reason, d.stage) for d in letters)
    return {
        "total": len(letters),
        "by_reason": dict(sorted(Counter(d.reason for d in letters).items())),
        "by_stage": dict(sorted(Counter(d.stage for d in letters).items())),
        "by_stream": dict(sorted(Counter(d.stream for d in letters).items())),
        "by_reason_and_stage": [{"reason": r, "stage": s, "count": n}
                                for (r, s), n in sorted(both.items())],
    }


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation is about: every filter given must match. An empty
    selection matches nothing unless ``everything`` says so (purge and replay never act on
    all dead letters by accident)."""

    ids: tuple[str, ...] = ()
    stream: str | None = None
    reason: str | None = None
    stage: str | None = None
    project_id: str | None = None
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.ids or self.stream or self.reason or self.stage or self.project_id
                    or self.everything)

    def matches(self, letter: DeadLetter) -> bool:
        return ((not self.ids or letter.id in self.ids)
                and (self.stream is None or letter.stream == self.stream)
                and (self.reason is None or letter.reason == self.reason)
                and (self.stage is None or letter.stage == self.stage)
                and (self.project_id is None or letter.project_id == self.project_id))


@dataclass
class ReplayReport:
    """What a replay did, by dead letter id."""

    replayed: list[str] = field(default_factory=list)
    #: Already back in the stream (an earlier replay published it); the record was removed.
    already_replayed: list[str] = field(default_factory=list)
    #: Kept: JetStream would drop them as duplicates of the original for ``retry_after`` s.
    deferred: list[dict[str, Any]] = field(default_factory=list)
    #: Kept: they could not be replayed (unreadable, or JetStream refused).
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "already_replayed": self.already_replayed,
                "deferred": self.deferred, "failed": self.failed}


class DeadLetters:
    """The dead letters in ``objects``; replays publish through ``js`` (None: replay is
    refused with :class:`QueueError`, listing and purging work)."""

    def __init__(self, objects: ObjectStore, js: JetStreamContext | None = None, *,
                 publish_timeout_s: float = 10.0) -> None:
        self._objects = objects
        self._js = js
        self._timeout = publish_timeout_s

    async def ids(self, stream: str | None = None) -> list[str]:
        """Ids of the stored dead letters (of ``stream``), oldest first within a stream."""
        prefix = f"{PREFIX}{stream}/" if stream else PREFIX
        found = [id_of(key) for key in await self._objects.keys(prefix)]
        return [i for i in found if i is not None]

    async def get(self, dead_letter_id: str) -> DeadLetter:
        """The dead letter ``dead_letter_id``; :class:`NotFound` if there is none."""
        key = key_of(dead_letter_id)
        try:
            body = await self._objects.get(key)
        except NotFound:
            raise NotFound("no such dead letter", reason=dead_letter_id) from None
        return parse(dead_letter_id, key, body)

    async def select(self, selection: Selection | None = None) -> list[DeadLetter]:
        """The dead letters ``selection`` matches (all if None), ordered by stream and
        sequence; :class:`NotFound` if an id it names has none. Reads every record: an
        operator's tool, not a hot path."""
        selection = selection or Selection(everything=True)
        ids = selection.ids or tuple(await self.ids(selection.stream))
        letters = []
        for dead_letter_id in ids:
            try:
                letter = await self.get(dead_letter_id)
            except NotFound:
                if selection.ids:  # named: say so
                    raise
                continue  # listed, then replayed or purged meanwhile
            if selection.matches(letter):
                letters.append(letter)
        return sorted(letters, key=lambda d: (d.stream, d.stream_sequence, d.id))

    async def replay(self, letter: DeadLetter) -> bool:
        """Publish ``letter``'s message into its stream again, then remove the record (see
        the module docstring). True if this call published it, False if an earlier replay
        had. :class:`Conflict` (record kept) while JetStream would drop it as a duplicate
        of the original; :class:`InvalidRequest` for an unreadable record;
        :class:`QueueError` if JetStream is unreachable or refuses (record kept)."""
        if self._js is None:
            raise QueueError("replaying needs NATS: set APIARY_NATS_URL, or start Apiary")
        if not letter.replayable:
            raise InvalidRequest("this dead letter's record cannot be read; it can only be "
                                 "purged", reason=letter.id)
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("Nats-")}
        headers["Nats-Msg-Id"] = letter.msg_id
        headers[REPLAYED_FROM_HEADER] = letter.id
        try:
            ack = await self._js.publish(letter.subject, letter.data, timeout=self._timeout,
                                         stream=letter.stream, headers=headers)
        except APIError as exc:
            raise QueueError(f"JetStream refused the replay: {exc.description}",
                             reason=letter.id) from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise QueueError(f"JetStream did not take the replay: {exc!r}",
                             reason=letter.id) from exc
        if ack.duplicate and ack.seq == letter.stream_sequence:
            retry_after = await self._window_left(letter)
            metrics.inc(metrics.DEAD_LETTERS_REPLAYED, stream=letter.stream, outcome="deferred")
            raise Conflict(
                "JetStream still remembers the original message's id and would drop the "
                f"replay; retry in {retry_after:.0f} s", reason=letter.id,
                retry_after=retry_after)
        await self.purge(letter)
        metrics.inc(metrics.DEAD_LETTERS_REPLAYED, stream=letter.stream,
                    outcome="already_replayed" if ack.duplicate else "replayed")
        log.info("dead letter replayed", extra={
            "dead_letter": letter.id, "subject": letter.subject, "msg_id": letter.msg_id,
            "stream_sequence": ack.seq, "duplicate": bool(ack.duplicate)})
        return not ack.duplicate

    async def replay_all(self, letters: Iterable[DeadLetter]) -> ReplayReport:
        """Replay each of ``letters`` in order, carrying on past the ones that fail."""
        report = ReplayReport()
        for letter in letters:
            try:
                published = await self.replay(letter)
            except Conflict as exc:
                report.deferred.append({"id": letter.id, "error": exc.message,
                                        "retry_after": exc.context.get("retry_after")})
                continue
            except (InvalidRequest, QueueError) as exc:
                report.failed.append({"id": letter.id, "error": exc.message})
                continue
            (report.replayed if published else report.already_replayed).append(letter.id)
        return report

    async def purge(self, letter: DeadLetter) -> None:
        """Remove ``letter``'s record (durably, like a put); a record already gone is fine."""
        await self._objects.delete(letter.key)
        metrics.inc(metrics.DEAD_LETTERS_PURGED, stream=letter.stream)
        log.info("dead letter removed", extra={"dead_letter": letter.id})

    async def _window_left(self, letter: DeadLetter) -> float:
        """Seconds until JetStream forgets the original's id, at most: its duplicate window
        counted from the dead letter's time (the original was published before that)."""
        assert self._js is not None
        try:
            info = await self._js.stream_info(letter.stream)
            window = float(info.config.duplicate_window or 0.0)
        except (TimeoutError, nats.errors.Error):
            window = 600.0
        since = letter.dead_lettered_at or time.time()
        return max(1.0, since + window - time.time())


__all__ = [
    "PREFIX",
    "REPLAYED_FROM_HEADER",
    "UNREADABLE",
    "DeadLetter",
    "DeadLetters",
    "ReplayReport",
    "Selection",
    "counts",
    "id_of",
    "key_of",
    "parse",
    "replayed",
]
