"""Outgoing mail: verification and invitation links over SMTP (stdlib :mod:`smtplib`).

``APIARY_SMTP_URL`` selects the server: ``smtp://host:port`` (plain, for a relay on the
host or in the cluster), ``smtp+starttls://user:pass@host:port`` (STARTTLS, then login) or
``smtps://user:pass@host:port`` (TLS from the start). Without it nothing is sent:
:func:`send` returns False and callers log only that something is pending, never the link,
which is a secret (an operator prints one with ``apiary users verify-link EMAIL``).

Sending happens outside database transactions; a failure is logged and reported as not
sent, never raised to the HTTP caller (the account or invitation exists; the link can be
sent again).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)

_TIMEOUT_S = 10.0


def configured(settings: ApiarySettings) -> bool:
    return settings.smtp_url is not None


def send(settings: ApiarySettings, *, to: str, subject: str, body: str) -> bool:
    """Send one plain-text mail; True when the server accepted it, False when no SMTP
    server is configured or delivery failed (logged, without the body)."""
    if settings.smtp_url is None:
        return False
    url = urlsplit(settings.smtp_url.get_secret_value())
    if not url.hostname:
        raise ConfigurationError("APIARY_SMTP_URL names no host")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    implicit_tls = url.scheme == "smtps"
    port = url.port or (465 if implicit_tls else 587 if url.scheme == "smtp+starttls" else 25)
    try:
        server: smtplib.SMTP
        if implicit_tls:
            server = smtplib.SMTP_SSL(url.hostname, port, timeout=_TIMEOUT_S,
                                      context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(url.hostname, port, timeout=_TIMEOUT_S)
        with server:
            if url.scheme == "smtp+starttls":
                server.starttls(context=ssl.create_default_context())
            if url.username:
                server.login(unquote(url.username), unquote(url.password or ""))
            server.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail to a user could not be sent (%s: %s)", type(exc).__name__, exc)
        return False
    return True
