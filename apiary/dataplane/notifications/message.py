"""The notification message: what an alert transition (or a channel's test) publishes to
``notifications.<org>.<project>``, and its publishing.

Two kinds share the stream (``kind`` tells them apart, :data:`NotificationMessage`):

- :class:`AlertNotification`: one transition of an alert, ``stage`` ``warning``,
  ``critical`` or ``resolution``, with the measured ``value`` against the ``threshold`` of
  that stage over ``window_s`` seconds, ending at ``window_end`` (unix seconds);
- :class:`TestNotification`: a channel's test message (``POST .../notification-channels/
  {id}/test``), sent to that channel only, whatever its severities.

Either may name ``channel_ids``: then only those channels (still within the message's org)
receive it. A dead-lettered delivery is stored as its message restricted to the channel
that failed, so replaying it (``apiary dlq replay``) retries that channel alone.

**Identity** (:func:`message_id`, the ``Nats-Msg-Id``): an alert's is its alert, its window
and its stage (``alert.<alert_id>.<window_end>.<stage>``), so an evaluator that publishes
the same transition again (a restart, a redelivered evaluation) within JetStream's
duplicate window stores one message; the notifier's delivery records
(:mod:`.deliveries`) cover a repeat after the window. A test's is ``test.<test_id>``.

:func:`publish_notification` is durable when it returns: JetStream acknowledged the
message (the embedded server fsyncs first); a copy inside the duplicate window is
acknowledged too and stored once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from apiary.queue import NOTIFICATIONS_STREAM, publish_once

#: The stages of an alert's firing, in the order a firing moves through them.
Stage = Literal["warning", "critical", "resolution"]
STAGES: tuple[Stage, ...] = ("warning", "critical", "resolution")

#: Ids that appear in subjects and message ids: no dots, spaces or wildcards.
_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"
_TOKEN_RE = re.compile(_TOKEN)
#: The subject token of a message that concerns no project (an org-wide channel's test).
NO_PROJECT = "_"


def _now() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    org_id: str = Field(pattern=_TOKEN)
    #: The project's workspace, so that a channel scoped to a workspace can be matched.
    workspace_id: str | None = Field(default=None, pattern=_TOKEN)
    #: Only these channels receive it (a test, a replayed dead letter); None: every match.
    channel_ids: tuple[str, ...] | None = None


class AlertNotification(_Message):
    """One transition of an alert (module docstring)."""

    kind: Literal["alert"] = "alert"
    alert_id: str = Field(pattern=_TOKEN)
    alert_name: str = Field(min_length=1, max_length=512)
    stage: Stage
    #: The alert's state after the transition: ``triggered`` (warning, critical) or
    #: ``resolved`` (resolution).
    state: Literal["triggered", "resolved"]
    value: float | None
    #: The threshold of ``stage`` (for a resolution, the one the value went back inside).
    threshold: float | None
    window_s: int = Field(gt=0)
    #: End of the evaluated window, unix seconds: part of the message's identity.
    window_end: int = Field(ge=0)
    project_id: str = Field(pattern=_TOKEN)
    fired_at: datetime = Field(default_factory=_now)
    #: Where a person sees the matching events (the web UI).
    link: str | None = None


class TestNotification(_Message):
    """A channel's test message: delivered to ``channel_ids`` only."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    kind: Literal["test"] = "test"
    test_id: str = Field(pattern=_TOKEN)
    project_id: str | None = Field(default=None, pattern=_TOKEN)
    text: str = Field(default="This is a test notification from Apiary.", max_length=2000)
    fired_at: datetime = Field(default_factory=_now)
    link: str | None = None


NotificationMessage = Annotated[AlertNotification | TestNotification,
                                Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AlertNotification | TestNotification] = TypeAdapter(NotificationMessage)


def parse_message(data: bytes) -> AlertNotification | TestNotification:
    """The message in ``data`` (JSON); :class:`pydantic.ValidationError` if it is not one."""
    return _ADAPTER.validate_json(data)


def encode_message(message: AlertNotification | TestNotification) -> bytes:
    return message.model_dump_json().encode()


def message_id(message: AlertNotification | TestNotification) -> str:
    """The message's ``Nats-Msg-Id`` (module docstring)."""
    if isinstance(message, AlertNotification):
        return f"alert.{message.alert_id}.{message.window_end}.{message.stage}"
    return f"test.{message.test_id}"


def subject(message: AlertNotification | TestNotification) -> str:
    """``notifications.<org>.<project>`` (``_`` for a message of no project)."""
    return f"{NOTIFICATIONS_STREAM}.{message.org_id}.{message.project_id or NO_PROJECT}"


async def publish_notification(js: JetStreamContext,
                               message: AlertNotification | TestNotification, *,
                               publish_timeout_s: float = 10.0,
                               msg_id: str | None = None) -> PubAck:
    """Publish ``message`` to its subject under :func:`message_id` (or ``msg_id``).

    Durable when it returns (JetStream acknowledged it); a copy within the duplicate window
    returns JetStream's acknowledgement with ``duplicate`` set and is stored once. Raises
    :class:`~apiary.errors.QueueError` (retryable) when JetStream refuses or does not answer
    within ``publish_timeout_s``.
    """
    return await publish_once(js, subject(message), encode_message(message),
                              stream=NOTIFICATIONS_STREAM,
                              msg_id=msg_id or message_id(message), what="notification",
                              timeout_s=publish_timeout_s)


def valid_token(text: str) -> bool:
    """Whether ``text`` can be an id in a subject or message id."""
    return bool(_TOKEN_RE.match(text))


__all__ = ["NO_PROJECT", "STAGES", "AlertNotification", "NotificationMessage", "Stage",
           "TestNotification", "encode_message", "message_id", "parse_message",
           "publish_notification", "subject", "valid_token"]
