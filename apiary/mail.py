"""Sending one mail: a MIME message (plain text, and HTML when given) over SMTP or Amazon SES.

Both planes send mail through this module: the data plane's notifier (alert mail,
:mod:`apiary.dataplane.notifications.senders`) and the control plane's outbox (invitations
and email verification, :mod:`apiary.control.outbox`). Each keeps its own settings and
credentials (the planes share none); this module only knows how to send.

**SMTP** (:class:`SmtpTransport`): ``smtp://host:port`` (plain, port 25 by default),
``smtp+starttls://user:pass@host:port`` (STARTTLS, then login; 587) or
``smtps://user:pass@host:port`` (TLS from the start; 465). One connection per mail. Given
an ``addresses`` vetter (the outbound-URL policy's :meth:`vetted_addresses
<apiary.outbound.OutboundPolicy.vetted_addresses>`), the TCP connection goes to an address
it vetted just now, while TLS still verifies the host *name*.

**SES** (:class:`SesTransport`): ``SendEmail`` through boto3 (credentials from the usual
``AWS_*`` variables), one client per transport, boto3's own retries off.

:meth:`~MailTransport.send` makes **one attempt** and either returns (the server took the
mail; SES returned a message id) or raises :class:`~apiary.errors.DeliveryRetryable` (a
later attempt may succeed: no connection, a timeout, an SMTP 4xx, every recipient deferred,
SES throttling or a 5xx) or :class:`~apiary.errors.DeliveryFailed` (it will not: an SMTP
5xx, every recipient refused, SES rejecting the mail, an address the vetter refuses).
Retrying is the caller's. Errors carry the caller's ``context`` and never the message.
"""

from __future__ import annotations

import email.utils
import smtplib
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from apiary.errors import DeliveryFailed, DeliveryRetryable, OutboundUrlRefused

#: SMTP URL schemes a transport understands.
SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail: ``text`` always, ``html`` as an alternative when given; ``headers`` are
    extra headers (``Message-ID``, ``X-Apiary-Delivery``, ...)."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def mime(mail: Mail) -> EmailMessage:
    """The MIME message of ``mail``: ``text/plain``, or ``multipart/alternative`` with
    ``text/html`` after it; dated now unless ``headers`` name a ``Date``."""
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Subject"] = mail.subject
    names = {name.lower() for name, _ in mail.headers}
    if "date" not in names:
        message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    for name, value in mail.headers:
        message[name] = value
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    return message


class AddressVetter(Protocol):
    """What decides which address a connection to ``host:port`` may use (the outbound-URL
    policy); raises :class:`~apiary.errors.OutboundUrlRefused` when none may be used."""

    def vetted_addresses(self, host: str, port: int) -> Sequence[str]: ...


class MailTransport(Protocol):
    """Sends one mail, once (module docstring): returns, or raises ``DeliveryRetryable`` or
    ``DeliveryFailed`` carrying ``context``. Thread-safe; blocking."""

    def send(self, mail: Mail, **context: Any) -> None: ...


# --- SMTP ---------------------------------------------------------------------------------


class _VettedSMTP(smtplib.SMTP):
    """An SMTP client whose TCP connection goes to an address ``vetter`` vetted just now."""

    vetter: AddressVetter | None = None

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        if self.vetter is None:
            sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
            return sock
        address = self.vetter.vetted_addresses(host, port)[0]
        return socket.create_connection((address, port), timeout, self.source_address)


class _VettedSMTPSSL(smtplib.SMTP_SSL, _VettedSMTP):
    """:class:`_VettedSMTP` with TLS from the start (``smtps``)."""


class SmtpTransport:
    """Mail over the SMTP server of ``url`` (module docstring), each attempt within
    ``timeout`` seconds per network operation."""

    def __init__(self, url: str, *, timeout: float,
                 addresses: AddressVetter | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SMTP_SCHEMES:
            raise DeliveryFailed("the SMTP URL is not smtp://, smtp+starttls:// or smtps://")
        if not parts.hostname:
            raise DeliveryFailed("the SMTP URL names no host")
        self._scheme = parts.scheme
        self._host = parts.hostname
        implicit_tls = parts.scheme == "smtps"
        self._port = parts.port or (465 if implicit_tls else 587
                                    if parts.scheme == "smtp+starttls" else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password or "")
        self._timeout = timeout
        self._addresses = addresses

    def send(self, mail: Mail, **context: Any) -> None:
        try:
            self._send(mime(mail))
        except (OSError, smtplib.SMTPException, OutboundUrlRefused) as exc:
            raise smtp_error(exc, context) from None

    def _send(self, message: EmailMessage) -> None:
        server: _VettedSMTP
        if self._scheme == "smtps":
            server = _VettedSMTPSSL(timeout=self._timeout, context=ssl.create_default_context())
        else:
            server = _VettedSMTP(timeout=self._timeout)
        server.vetter = self._addresses
        with server:
            # connect() keeps the host *name* for TLS (server_hostname); the socket goes to
            # the vetted address.
            server.connect(self._host, self._port)
            if self._scheme == "smtp+starttls":
                server.starttls(context=ssl.create_default_context())
            if self._username is not None:
                server.login(self._username, self._password)
            server.send_message(message)


def smtp_error(exc: BaseException, context: dict[str, Any]) -> DeliveryFailed:
    """Whether a later attempt may succeed: connection trouble and 4xx replies yes."""
    if isinstance(exc, OutboundUrlRefused):
        return DeliveryFailed(f"the SMTP server is refused: {exc.message}",
                              reason=exc.context.get("reason"), **context)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(400 <= code < 500 for code in codes):
            return DeliveryRetryable("every recipient was deferred (4xx)", **context)
        return DeliveryFailed("every recipient was refused", codes=codes, **context)
    if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(
            exc, smtplib.SMTPConnectError):
        if 400 <= exc.smtp_code < 500:
            return DeliveryRetryable(f"SMTP {exc.smtp_code}", status=exc.smtp_code, **context)
        return DeliveryFailed(f"SMTP {exc.smtp_code}", status=exc.smtp_code, **context)
    return DeliveryRetryable(f"SMTP unreachable: {type(exc).__name__}: {exc}", **context)


# --- SES ----------------------------------------------------------------------------------

_SES_RETRYABLE = frozenset({"Throttling", "ThrottlingException", "ServiceUnavailable",
                            "InternalFailure", "RequestTimeout", "TooManyRequestsException"})


class SesTransport:
    """Mail through Amazon SES in ``region`` (``endpoint_url``: an SES-compatible server),
    each attempt within ``timeout`` seconds to connect and to read."""

    def __init__(self, region: str, *, endpoint_url: str | None = None,
                 timeout: float) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _ses(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "ses", region_name=self._region, endpoint_url=self._endpoint_url,
                    config=Config(connect_timeout=self._timeout, read_timeout=self._timeout,
                                  retries={"max_attempts": 1}))
            return self._client

    def send(self, mail: Mail, **context: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body: dict[str, Any] = {"Text": {"Data": mail.text, "Charset": "UTF-8"}}
        if mail.html is not None:
            body["Html"] = {"Data": mail.html, "Charset": "UTF-8"}
        try:
            self._ses().send_email(
                Source=mail.sender, Destination={"ToAddresses": list(mail.recipients)},
                Message={"Subject": {"Data": mail.subject, "Charset": "UTF-8"}, "Body": body})
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in _SES_RETRYABLE or status >= 500:
                raise DeliveryRetryable(f"SES {code}", status=status, **context) from None
            raise DeliveryFailed(f"SES refused the mail: {code}: {error.get('Message', '')}",
                                 status=status, **context) from None
        except BotoCoreError as exc:
            raise DeliveryRetryable(f"SES unreachable: {exc}", **context) from None


__all__ = ["SMTP_SCHEMES", "AddressVetter", "Mail", "MailTransport", "SesTransport",
           "SmtpTransport", "mime", "smtp_error"]
