"""The control plane's mail outbox: sends the ``outgoing_mail`` rows that invitations and
email verification queue (:mod:`apiary.control.identity.mail`), with retries.

:class:`MailOutbox` runs in the control-plane controller actor
(:mod:`apiary.actors.cp_controller`), or, with the federation endpoint off (no controller),
in each control-plane Serve replica (:mod:`apiary.deployments.control_plane`), polling cpdb
every second (:meth:`MailOutbox.run`; the HTTP replicas that queue mail and the controller
are different processes, so a commit does not wake it).
Each pass (:meth:`MailOutbox.send_due`):

1. **Claims** due rows (``sent_at`` and ``failed_at`` null, ``next_attempt_at`` <= now), a
   batch at a time, in one transaction: each claim moves the row's ``next_attempt_at`` a
   lease ahead and counts the attempt, by a conditional update that only succeeds while the
   row is still due (on PostgreSQL the rows are also selected ``FOR UPDATE SKIP LOCKED``).
   Two outboxes (two controllers, a restarted one) never claim one row at once.
2. **Sends** each claimed mail, once (:mod:`apiary.mail`: SES when ``cp_ses_region`` is
   set, else ``smtp_url``), from ``smtp_from``, with ``Message-ID``
   ``<mail id@apiary.control>``.
3. **Records** the outcome: ``sent_at``; or, after a failure a later attempt may cure (no
   connection, an SMTP 4xx, SES throttling), ``next_attempt_at`` = now + a random wait up
   to ``notify_retry_base_s`` doubled per attempt, at most ``notify_retry_max_s`` (full
   jitter); or, after a permanent failure (an SMTP 5xx, SES rejecting the sender, a
   message that does not decrypt) or a retryable one once the mail is older than
   ``notify_max_age_s``, ``failed_at`` and ``last_error`` (logged, and counted in
   ``apiary_cp_mail_total``).

Guarantees: a queued mail is attempted until it is sent or has failed; it is sent **at
least once**, and more than once only if the outbox dies (or cpdb is lost) between the
server's acceptance and the ``sent_at`` commit, or a send outlasts the claim's lease: the
copy has the same ``Message-ID``. With no transport configured nothing is claimed: mail
stays pending, unattempted, and goes out once one is configured. ``last_error`` never
holds the message (the link is a secret): only the transport's error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from apiary._private import metrics
from apiary.control._common import Clock, utcnow
from apiary.control.db import Database, OutgoingMail
from apiary.control.envelope import Envelope
from apiary.control.identity.mail import open_content, transport
from apiary.errors import ApiaryError, DeliveryRetryable
from apiary.mail import Mail, MailTransport
from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)

#: How often :meth:`MailOutbox.run` looks for due mail.
POLL_INTERVAL_S = 1.0
#: Rows claimed per transaction.
BATCH = 20
_ERROR_CHARS = 1000


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    kind: str
    to_address: str
    ciphertext: str
    created_at: datetime
    attempts: int


class MailOutbox:
    """Sends cpdb's queued mail (module docstring). ``mail_transport`` replaces the one
    the settings configure; ``clock`` and ``rng`` (a uniform float in [0, 1)) are
    injectable for tests."""

    def __init__(self, settings: ApiarySettings, database: Database, envelope: Envelope, *,
                 mail_transport: MailTransport | None = None, clock: Clock = utcnow,
                 rng: Callable[[], float] = random.random) -> None:
        self._settings = settings
        self._database = database
        self._envelope = envelope
        self._transport = mail_transport if mail_transport is not None else transport(settings)
        self._clock = clock
        self._rng = rng
        # A claim outlives any one send: every network step of an attempt has the timeout.
        self._lease = timedelta(seconds=max(60.0, 6 * settings.notify_timeout_s))
        self._postgresql = database.engine.dialect.name == "postgresql"

    @property
    def configured(self) -> bool:
        """Whether a transport is configured (without one nothing is ever claimed)."""
        return self._transport is not None

    # -- one pass ---------------------------------------------------------------------------

    def send_due(self) -> int:
        """Claim, send and record every mail due now; the number of mails attempted.
        Blocking (cpdb and the mail server): run it in a thread from async code."""
        if self._transport is None:
            return 0
        attempted = 0
        while True:
            claimed = self._claim()
            for mail in claimed:
                self._attempt(self._transport, mail)
            attempted += len(claimed)
            if len(claimed) < BATCH:
                return attempted

    def _claim(self) -> list[_Claimed]:
        now = self._clock()
        with self._database.transaction() as db:
            due = (select(OutgoingMail.id)
                   .where(OutgoingMail.sent_at.is_(None), OutgoingMail.failed_at.is_(None),
                          OutgoingMail.next_attempt_at <= now)
                   .order_by(OutgoingMail.next_attempt_at).limit(BATCH))
            if self._postgresql:
                due = due.with_for_update(skip_locked=True)
            ids = list(db.execute(due).scalars())
            claimed: list[_Claimed] = []
            for mail_id in ids:
                # Conditional: a row another outbox claimed meanwhile is no longer due.
                taken = db.execute(
                    update(OutgoingMail)
                    .where(OutgoingMail.id == mail_id, OutgoingMail.sent_at.is_(None),
                           OutgoingMail.failed_at.is_(None), OutgoingMail.next_attempt_at <= now)
                    .values(next_attempt_at=now + self._lease,
                            attempts=OutgoingMail.attempts + 1))
                if not taken.rowcount:  # type: ignore[attr-defined]
                    continue
                row = db.get(OutgoingMail, mail_id)
                assert row is not None
                claimed.append(_Claimed(row.id, row.kind, row.to_address,
                                        row.message_ciphertext, row.created_at, row.attempts))
            return claimed

    def _attempt(self, mail_transport: MailTransport, mail: _Claimed) -> None:
        context = {"mail_id": mail.id, "kind": mail.kind}
        try:
            content = open_content(self._envelope, mail.id, mail.ciphertext)
            mail_transport.send(Mail(
                self._settings.smtp_from, (mail.to_address,), content.subject, content.text,
                content.html, headers=(("Message-ID", f"<{mail.id}@apiary.control>"),)),
                **context)
        except DeliveryRetryable as exc:
            self._retry_or_fail(mail, exc)
        except ApiaryError as exc:  # DeliveryFailed, or a message that does not decrypt
            self._fail(mail, exc.message)
        except Exception as exc:  # a bug or an unforeseen library error: try again later
            log.exception("mail attempt raised", extra=context)
            self._retry_or_fail(mail, DeliveryRetryable(f"{type(exc).__name__}: {exc}"))
        else:
            self._record(mail.id, sent_at=self._clock(), last_error=None)
            metrics.inc(metrics.CP_MAIL, kind=mail.kind, outcome="sent")
            log.info("mail sent", extra={**context, "attempts": mail.attempts})

    def _retry_or_fail(self, mail: _Claimed, exc: DeliveryRetryable) -> None:
        now = self._clock()
        age = (now - mail.created_at).total_seconds()
        if age >= self._settings.notify_max_age_s:
            self._fail(mail, f"{exc.message} (retried {mail.attempts} times for {age:.0f} s, "
                             "past notify_max_age_s)")
            return
        bound = min(self._settings.notify_retry_max_s,
                    self._settings.notify_retry_base_s * 2 ** max(0, mail.attempts - 1))
        wait = max(bound * self._rng(), exc.retry_after or 0.0)
        self._record(mail.id, next_attempt_at=now + timedelta(seconds=wait),
                     last_error=exc.message[:_ERROR_CHARS])
        metrics.inc(metrics.CP_MAIL, kind=mail.kind, outcome="retried")
        log.info("mail attempt failed; retrying", extra={
            "mail_id": mail.id, "kind": mail.kind, "attempts": mail.attempts,
            "retry_in_s": round(wait, 3), "error": exc.message})

    def _fail(self, mail: _Claimed, error: str) -> None:
        self._record(mail.id, failed_at=self._clock(), last_error=error[:_ERROR_CHARS])
        metrics.inc(metrics.CP_MAIL, kind=mail.kind, outcome="failed")
        log.warning("mail failed for good", extra={
            "mail_id": mail.id, "kind": mail.kind, "attempts": mail.attempts, "error": error})

    def _record(self, mail_id: str, **values: object) -> None:
        with self._database.transaction() as db:
            db.execute(update(OutgoingMail).where(OutgoingMail.id == mail_id).values(**values))

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, interval_s: float = POLL_INTERVAL_S) -> None:
        """Send due mail every ``interval_s`` until cancelled. A pass that fails (cpdb
        unavailable) is logged and the loop goes on: nothing is lost, rows stay due."""
        if self._transport is None:
            log.info("no mail transport configured (APIARY_SMTP_URL, APIARY_CP_SES_REGION): "
                     "invitation and verification mail stays queued")
        while True:
            try:
                await asyncio.to_thread(self.send_due)
            except Exception as exc:
                metrics.inc(metrics.LOOP_RESTARTS, loop="cp_mail_outbox")
                log.warning("mail outbox pass failed", extra={"error": repr(exc)})
            await asyncio.sleep(interval_s)


__all__ = ["BATCH", "POLL_INTERVAL_S", "MailOutbox"]
