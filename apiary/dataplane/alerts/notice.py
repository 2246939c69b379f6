"""What the evaluator hands to the notifications side for one transition: the transition
and what a person needs to read it (the alert's name, where it happened, a link).

The notification itself (:class:`~apiary.dataplane.notifications.message.AlertNotification`
on ``notifications.<org>.<project>``) is built from a notice by
:func:`apiary.dataplane.notifications.alerting.publish_alert_notice`, which the evaluator
receives as its :data:`Notify` (the notifier reports deliveries to this package's activity
stream, so this package does not import the notifier's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson

from apiary.dataplane.alerts.rules import AlertRule
from apiary.dataplane.alerts.stages import Transition


@dataclass(frozen=True, slots=True)
class AlertNotice:
    transition: Transition
    alert_name: str
    org_id: str
    workspace_id: str | None
    link: str | None


#: Publishes the notification of one notice; durable when it returns (raises
#: :class:`~apiary.errors.QueueError` otherwise).
Notify = Callable[[AlertNotice], Awaitable[None]]


def events_link(ui_base: str, rule: AlertRule, window_end: int) -> str:
    """The web UI's list of the project's events the rule measured over the window ending
    at ``window_end`` (its filters and time range in the URL)."""
    params = {"range": "custom", "from": str((window_end - rule.window_s) * 1000),
              "to": str(window_end * 1000)}
    if rule.filters:
        params["f"] = orjson.dumps(list(rule.filters)).decode()
    return f"{ui_base.rstrip('/')}/projects/{rule.project_id}/traces?{urlencode(params)}"


__all__ = ["AlertNotice", "Notify", "events_link"]
