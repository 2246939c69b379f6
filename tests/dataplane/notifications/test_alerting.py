"""The evaluator's transitions as notification messages (apiary.dataplane.notifications.
alerting): every field carried, the message id of alert, window and stage."""

from __future__ import annotations

from datetime import UTC, datetime

from apiary.dataplane.alerts.notice import AlertNotice
from apiary.dataplane.alerts.stages import Transition
from apiary.dataplane.notifications.alerting import alert_notification
from apiary.dataplane.notifications.message import message_id, subject


def test_a_transition_becomes_its_alert_notification() -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    notice = AlertNotice(
        transition=Transition(alert_id="a1", project_id="p1", stage="resolution",
                              state="resolved", value=0.1, threshold=0.5, window_s=60,
                              window_end=1_767_268_800, muted=False, at=at.timestamp()),
        alert_name="Error rate", org_id="o1", workspace_id="w1",
        link="https://cp.example.com/projects/p1/traces?range=custom")
    message = alert_notification(notice)
    assert (message.stage, message.state, message.value, message.threshold) == (
        "resolution", "resolved", 0.1, 0.5)
    assert (message.org_id, message.workspace_id, message.project_id) == ("o1", "w1", "p1")
    assert message.fired_at == at
    assert message.link == notice.link
    assert message_id(message) == "alert.a1.1767268800.resolution"
    assert subject(message) == "notifications.o1.p1"
