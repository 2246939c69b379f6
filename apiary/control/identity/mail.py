"""The control plane's outgoing mail (verification links, invitations): queued in cpdb, in
the transaction that creates what it announces.

:func:`queue` writes one ``outgoing_mail`` row in the caller's transaction: the recipient
in the clear, the message (subject, plain text, HTML; it holds a secret link or token)
encrypted with the control plane's envelope and bound to ``outgoing_mail:<id>``, so a
ciphertext copied into another row does not decrypt. So the mail exists exactly when what
it announces was committed: a transaction that rolls back leaves no mail, and one that
commits leaves a mail that survives any crash. The control-plane controller's outbox
(:mod:`apiary.control.outbox`) sends it, with retries.

The transport (:func:`transport`) is Amazon SES when ``cp_ses_region`` is set, else the
SMTP server of ``smtp_url`` (:mod:`apiary.mail`). With neither, mail stays queued (nothing
is sent, nothing fails; an operator prints a verification link with ``apiary users
verify-link EMAIL``) and is sent once a transport is configured. Links are never logged.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import OutgoingMail
from apiary.control.envelope import Envelope
from apiary.control.service import ControlPlane
from apiary.mail import MailTransport, SesTransport, SmtpTransport
from apiary.settings import ApiarySettings

#: What a message's ciphertext is bound to, followed by the row's id.
CONTEXT_PREFIX = "outgoing_mail:"


@dataclass(frozen=True, slots=True)
class MailContent:
    """What a queued mail says (kept encrypted at rest)."""

    subject: str
    text: str
    html: str


def configured(settings: ApiarySettings) -> bool:
    """Whether a mail transport is configured (SES or SMTP): queued mail will be sent."""
    return settings.cp_ses_region is not None or settings.smtp_url is not None


def transport(settings: ApiarySettings) -> MailTransport | None:
    """The control plane's transport: SES when ``cp_ses_region`` is set, else SMTP when
    ``smtp_url`` is, else None (mail stays queued)."""
    timeout = settings.notify_timeout_s
    if settings.cp_ses_region is not None:
        return SesTransport(settings.cp_ses_region, endpoint_url=settings.cp_ses_endpoint_url,
                            timeout=timeout)
    if settings.smtp_url is not None:
        return SmtpTransport(settings.smtp_url.get_secret_value(), timeout=timeout)
    return None


def html_body(title: str, paragraphs: Sequence[str], *, link: str | None = None,
              link_text: str = "", code: str | None = None, after: Sequence[str] = ()
              ) -> str:
    """A plain HTML rendering of a mail: a title, paragraphs, a link (``link_text``, or
    the link itself), a code (a token) in a ``<pre>``, more paragraphs; every value is
    escaped."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs if p]
    if link is not None:
        parts.append(f'<p><a href="{html.escape(link, quote=True)}">'
                     f"{html.escape(link_text or link)}</a></p>")
    if code is not None:
        parts.append(f"<pre>{html.escape(code)}</pre>")
    parts += [f"<p>{html.escape(p)}</p>" for p in after if p]
    return "<html><body>" + "".join(parts) + "</body></html>"


def _context(mail_id: str) -> str:
    return f"{CONTEXT_PREFIX}{mail_id}"


def queue(cp: ControlPlane, db: Session, *, kind: str, to: str, content: MailContent
          ) -> OutgoingMail:
    """Queue one mail in ``db``'s transaction (durable when it commits, gone if it rolls
    back), due now."""
    now = cp.now()
    mail_id = new_id()
    sealed = cp.envelope.encrypt(
        orjson.dumps({"subject": content.subject, "text": content.text,
                      "html": content.html}), context=_context(mail_id))
    row = OutgoingMail(id=mail_id, kind=kind, to_address=to, message_ciphertext=sealed,
                       created_at=now, next_attempt_at=now, attempts=0)
    db.add(row)
    return row


def open_content(envelope: Envelope, mail_id: str, ciphertext: str) -> MailContent:
    """The content of queued mail ``mail_id``; :class:`~apiary.errors.ConfigurationError`
    when it does not decrypt (another envelope key, or a ciphertext from another row)."""
    values = orjson.loads(envelope.decrypt(ciphertext, context=_context(mail_id)))
    return MailContent(subject=str(values["subject"]), text=str(values["text"]),
                       html=str(values["html"]))


__all__ = ["CONTEXT_PREFIX", "MailContent", "configured", "html_body", "open_content",
           "queue", "transport"]
