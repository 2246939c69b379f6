"""Alert activity: what the data plane reports to the control plane about its alerts.

Two kinds travel on JetStream stream ``alert-activity`` (subject
``alert-activity.<org>.<project>``), consumed by the data-plane federation controller as
``federation-activity`` and forwarded to the control plane, which stores each in
``alert_events`` (insert-if-absent by :attr:`AlertActivity.event_id`):

``transition`` and ``delivery``, one model for both planes
(:class:`apiary.alert_activity.AlertActivity`, re-exported here); their ids are made by
:func:`transition_event_id` and :func:`delivery_event_id`.

:func:`publish_activity` is durable when it returns: JetStream acknowledged the message (the
embedded server fsyncs first). The ``Nats-Msg-Id`` is the event id, so a repeat within the
duplicate window is stored once; a later repeat is one row anyway (the control plane inserts
by id).
"""

from __future__ import annotations

from nats.js import JetStreamContext

from apiary.alert_activity import ActivityKind, AlertActivity
from apiary.queue import ALERT_ACTIVITY_STREAM, publish_once


def transition_event_id(alert_id: str, window_end: int, stage: str) -> str:
    return f"transition.{alert_id}.{window_end}.{stage}"


def delivery_event_id(delivery_id: str, outcome: str) -> str:
    return f"delivery.{delivery_id}.{outcome}"


def activity_subject(org_id: str, project_id: str) -> str:
    """``alert-activity.<org>.<project>``."""
    return f"{ALERT_ACTIVITY_STREAM}.{org_id}.{project_id}"


def parse_activity(data: bytes) -> AlertActivity:
    """The activity in ``data`` (JSON); :class:`pydantic.ValidationError` if it is not one."""
    return AlertActivity.model_validate_json(data)


async def publish_activity(js: JetStreamContext, activity: AlertActivity, *,
                           publish_timeout_s: float = 10.0) -> None:
    """Publish ``activity`` under ``Nats-Msg-Id`` = its event id.

    Durable when it returns (JetStream acknowledged it; a copy within the duplicate window is
    acknowledged and stored once). Raises :class:`~apiary.errors.QueueError` (retryable) when
    JetStream refuses or does not answer within ``publish_timeout_s``.
    """
    await publish_once(js, activity_subject(activity.org_id, activity.project_id),
                       activity.model_dump_json().encode(), stream=ALERT_ACTIVITY_STREAM,
                       msg_id=activity.event_id, what="alert activity",
                       timeout_s=publish_timeout_s)


__all__ = ["ActivityKind", "AlertActivity", "activity_subject", "delivery_event_id",
           "parse_activity", "publish_activity", "transition_event_id"]
