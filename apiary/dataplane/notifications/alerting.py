"""Alert transitions as notifications: the evaluator's :data:`~apiary.dataplane.alerts.
notice.Notify`.

:func:`publish_alert_notice` builds the :class:`~.message.AlertNotification` of one
transition (its message id: ``alert.<alert_id>.<window_end>.<stage>``) and publishes it to
``notifications.<org>.<project>``; durable when it returns (:func:`~.message.
publish_notification`), :class:`~apiary.errors.QueueError` otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext

from apiary.dataplane.alerts.notice import AlertNotice
from apiary.dataplane.notifications.message import AlertNotification, publish_notification


def alert_notification(notice: AlertNotice) -> AlertNotification:
    t = notice.transition
    return AlertNotification(
        org_id=notice.org_id, workspace_id=notice.workspace_id, alert_id=t.alert_id,
        alert_name=notice.alert_name, stage=t.stage, state=t.state, value=t.value,
        threshold=t.threshold, window_s=t.window_s, window_end=t.window_end,
        project_id=t.project_id, fired_at=datetime.fromtimestamp(t.at, UTC),
        link=notice.link)


async def publish_alert_notice(js: JetStreamContext, notice: AlertNotice) -> None:
    """Publish ``notice``'s notification (module docstring)."""
    await publish_notification(js, alert_notification(notice))


def notify_with(js: JetStreamContext) -> Callable[[AlertNotice], Awaitable[None]]:
    """The evaluator's ``notify``: :func:`publish_alert_notice` on ``js``."""
    async def notify(notice: AlertNotice) -> None:
        await publish_alert_notice(js, notice)
    return notify


__all__ = ["alert_notification", "notify_with", "publish_alert_notice"]
