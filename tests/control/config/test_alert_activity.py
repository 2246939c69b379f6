"""Alert activity at the control plane: what a data plane reports is stored once, applied to
the alert's state in order (a late report never moves it back), refused when it is about a
project the data plane does not serve; ``GET .../activity`` lists it newest first; a manual
resolve stamps ``state_changed_at``; ``GET .../preview``'s answers when it cannot ask a data
plane (409 unassigned or legacy, 503 not connected or silent, 400 periods). Each runs on
SQLite and PostgreSQL. The preview over a real stream is in
tests/dataplane/federation/test_alert_activity.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from apiary.control import ControlPlane
from apiary.control.config import alerts
from apiary.control.db import (
    AlertDefinition,
    AlertEvent,
    ConfigChange,
    DataPlane,
    DataPlaneCommand,
    Project,
)
from apiary.control.federation import ALERT_PREVIEW, ReportedActivity, record_activity
from apiary.dataplane.alerts.events import (
    AlertActivity,
    delivery_event_id,
    transition_event_id,
)

from .._tenants import Tenant, auth, error_code, make_tenant, ok
from ..conftest import DATA_PLANE_ID, FakeClock
from .test_alerts import ERROR_RATE

FED = "dp-fed-1"
T0 = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def _federated_plane(cp: ControlPlane, dp_id: str = FED, *, connected: bool = True) -> None:
    with cp.transaction() as db:
        db.add(DataPlane(id=dp_id, name=f"plane {dp_id}", url="https://dp.example",
                         created_at=cp.now(), status="active", federated=True,
                         connected=connected))


def _assign(cp: ControlPlane, project_id: str, dp_id: str | None) -> None:
    with cp.transaction() as db:
        project = db.get(Project, project_id)
        assert project is not None
        project.data_plane_id = dp_id


def _alert(client: TestClient, t: Tenant, name: str = "errors") -> str:
    created = ok(client.post(f"/v1/projects/{t.project_id}/alerts", headers=auth(t.owner),
                             json={"name": name, "condition": ERROR_RATE}), 201)
    return str(created["id"])


def _transition(t: Tenant, alert_id: str, stage: str, at: datetime, *,
                window_end: int | None = None, value: float = 0.95) -> AlertActivity:
    end = window_end if window_end is not None else int(at.timestamp())
    return AlertActivity(
        event_id=transition_event_id(alert_id, end, stage), kind="transition",
        org_id=t.org_id, project_id=t.project_id, alert_id=alert_id, stage=stage,
        state="resolved" if stage == "resolution" else "triggered", value=value,
        threshold=0.9 if stage == "critical" else 0.5, window_end=end, at=at)


def _delivery(t: Tenant, alert_id: str, delivery: str, at: datetime,
              outcome: str = "delivered") -> AlertActivity:
    return AlertActivity(
        event_id=delivery_event_id(delivery, outcome), kind="delivery", org_id=t.org_id,
        project_id=t.project_id, alert_id=alert_id, stage="warning", state="triggered",
        channel_id="chan-1", channel_type="webhook", outcome=outcome, attempts=2,
        detail="accepted by the receiver after 2 attempt(s)", at=at)


def _report(cp: ControlPlane, activity: AlertActivity | bytes, *, dp_id: str = FED,
            event_id: str | None = None) -> str:
    payload = activity if isinstance(activity, bytes) else activity.model_dump_json().encode()
    ident = event_id if event_id is not None else (
        activity.event_id if isinstance(activity, AlertActivity) else "x")
    with cp.transaction() as db:
        return record_activity(db, data_plane_id=dp_id, event_id=ident, payload=payload,
                               now=cp.now())


def _state(cp: ControlPlane, alert_id: str) -> tuple[str | None, str | None, datetime | None,
                                                     datetime]:
    with cp.transaction() as db:
        alert = db.get(AlertDefinition, alert_id)
        assert alert is not None
        return alert.evaluation_state, alert.stage, alert.state_changed_at, alert.updated_at


def _events(cp: ControlPlane, alert_id: str) -> int:
    with cp.transaction() as db:
        return int(db.scalar(select(func.count()).select_from(AlertEvent)
                             .where(AlertEvent.alert_id == alert_id)) or 0)


def test_the_control_plane_reads_the_one_model_with_its_column_limits() -> None:
    """The data plane's AlertActivity is read by the control plane as itself (one model,
    :mod:`apiary.alert_activity`), only its column limits narrower."""
    activity = AlertActivity(
        event_id="delivery.abc.dead_lettered", kind="delivery", org_id="o", project_id="p",
        alert_id="a", stage="critical", state="triggered", value=0.97, threshold=0.9,
        window_end=1_800_000_000, muted=True, channel_id="c", channel_type="slack",
        outcome="dead_lettered", attempts=7, detail="the receiver refused it with 410",
        at=T0)
    read = ReportedActivity.model_validate_json(activity.model_dump_json())
    assert isinstance(read, AlertActivity)
    assert read.model_dump() == activity.model_dump()
    too_long = activity.model_copy(update={"alert_id": "a" * 65}).model_dump_json()
    with pytest.raises(ValidationError):
        ReportedActivity.model_validate_json(too_long)


def test_transitions_apply_in_order_and_a_late_one_never_moves_the_state_back(
        client: TestClient, cp: ControlPlane) -> None:
    t = make_tenant(client, "A")
    alert_id = _alert(client, t)
    _federated_plane(cp)
    _assign(cp, t.project_id, FED)
    created_updated_at = _state(cp, alert_id)[3]

    warning = _transition(t, alert_id, "warning", T0)
    assert _report(cp, warning) == "stored"
    assert _state(cp, alert_id)[:3] == ("triggered", "warning", T0)
    assert _report(cp, _transition(t, alert_id, "critical", T0 + timedelta(minutes=1))) \
        == "stored"
    assert _state(cp, alert_id)[:3] == ("triggered", "critical", T0 + timedelta(minutes=1))
    resolved_at = T0 + timedelta(minutes=5)
    assert _report(cp, _transition(t, alert_id, "resolution", resolved_at)) == "stored"
    assert _state(cp, alert_id)[:3] == ("resolved", None, resolved_at)

    # A report that arrives late (older than the state) is stored, and changes nothing.
    late = _transition(t, alert_id, "critical", T0 + timedelta(minutes=3))
    assert _report(cp, late) == "stored"
    evaluation_state, stage, changed_at, updated_at = _state(cp, alert_id)
    assert (evaluation_state, stage, changed_at) == ("resolved", None, resolved_at)
    # The rule's definition did not change: its updated_at is the creation's.
    assert updated_at == created_updated_at

    # Sent twice: stored once, applied once.
    assert _report(cp, warning) == "duplicate"
    assert _events(cp, alert_id) == 4
    assert _state(cp, alert_id)[:3] == ("resolved", None, resolved_at)

    # Each state change went to the config log for the data plane, with the state.
    with cp.transaction() as db:
        states = [c.payload["evaluation_state"] for c in db.scalars(
            select(ConfigChange).where(ConfigChange.kind == "alert_rule",
                                       ConfigChange.object_id == alert_id)
            .order_by(ConfigChange.version)) if c.payload]
    assert states[-3:] == ["triggered", "triggered", "resolved"]


def test_a_data_plane_reports_only_its_own_projects(client: TestClient,
                                                    cp: ControlPlane) -> None:
    a, b = make_tenant(client, "A"), make_tenant(client, "B")
    alert_a, alert_b = _alert(client, a), _alert(client, b)
    _federated_plane(cp, FED)
    _federated_plane(cp, "dp-fed-2")
    _assign(cp, a.project_id, FED)
    _assign(cp, b.project_id, "dp-fed-2")

    # dp-fed-1 claims an event of B's project (served by dp-fed-2): refused.
    assert _report(cp, _transition(b, alert_b, "critical", T0)) == "refused"
    # ... or B's alert under A's project id: refused.
    forged = _transition(a, alert_b, "critical", T0)
    assert _report(cp, forged) == "refused"
    # ... or A's project under B's org: refused.
    other_org = _transition(a, alert_a, "critical", T0).model_copy(update={"org_id": b.org_id})
    assert _report(cp, other_org) == "refused"
    # Not an activity, or an event id that is not the payload's: refused (and acknowledged
    # by the stream: they can never be stored).
    assert _report(cp, b"{\"kind\": \"transition\"}", event_id="transition.x.1.warning") \
        == "refused"
    assert _report(cp, b"not json", event_id="x") == "refused"
    good = _transition(a, alert_a, "warning", T0)
    assert _report(cp, good, event_id="transition.other.1.warning") == "refused"
    assert _events(cp, alert_a) == _events(cp, alert_b) == 0
    assert _state(cp, alert_b)[:3] == (None, None, None)

    assert _report(cp, good) == "stored"
    assert _state(cp, alert_a)[:2] == ("triggered", "warning")


def test_activity_lists_firings_and_deliveries_newest_first(client: TestClient,
                                                            cp: ControlPlane) -> None:
    t, other = make_tenant(client, "A"), make_tenant(client, "B")
    alert_id = _alert(client, t)
    _federated_plane(cp)
    _assign(cp, t.project_id, FED)
    _report(cp, _transition(t, alert_id, "warning", T0))
    _report(cp, _delivery(t, alert_id, "d1", T0 + timedelta(seconds=2)))
    _report(cp, _delivery(t, alert_id, "d2", T0 + timedelta(seconds=3), "dead_lettered"))
    _report(cp, _transition(t, alert_id, "critical", T0 + timedelta(minutes=1)))
    url = f"/v1/projects/{t.project_id}/alerts/{alert_id}/activity"

    listed = ok(client.get(url, headers=auth(t.owner)))
    assert [(e["kind"], e["stage"], e["outcome"]) for e in listed] == [
        ("transition", "critical", None), ("delivery", "warning", "dead_lettered"),
        ("delivery", "warning", "delivered"), ("transition", "warning", None)]
    delivered = listed[2]
    assert (delivered["id"], delivered["channel_id"], delivered["channel_type"],
            delivered["attempts"], delivered["data_plane_id"]) == (
        "delivery.d1.delivered", "chan-1", "webhook", 2, FED)
    assert listed[0]["value"] == 0.95
    assert listed[0]["threshold"] == 0.9
    assert [e["id"] for e in ok(client.get(url + "?limit=2", headers=auth(t.owner)))] == [
        e["id"] for e in listed[:2]]
    assert error_code(client.get(url + "?limit=0", headers=auth(t.owner)), 400) \
        == "invalid_request"
    assert error_code(client.get(url + "?limit=501", headers=auth(t.owner)), 400) \
        == "invalid_request"

    # Another org sees neither the activity nor the preview (404, as for the alert).
    for path in ("activity", "preview"):
        assert error_code(client.get(
            f"/v1/projects/{t.project_id}/alerts/{alert_id}/{path}",
            headers=auth(other.owner)), 404) == "not_found"
        assert error_code(client.get(
            f"/v1/projects/{other.project_id}/alerts/{alert_id}/{path}",
            headers=auth(other.owner)), 404) == "not_found"


def test_a_manual_resolve_is_not_undone_by_an_older_report(
        client: TestClient, cp: ControlPlane, clock: FakeClock) -> None:
    t = make_tenant(client, "A")
    alert_id = _alert(client, t)
    _federated_plane(cp)
    _assign(cp, t.project_id, FED)
    fired = clock.now - timedelta(minutes=10)
    _report(cp, _transition(t, alert_id, "warning", fired))
    resolved = ok(client.post(f"/v1/projects/{t.project_id}/alerts/{alert_id}/resolve",
                              headers=auth(t.owner)))
    assert (resolved["state"], resolved["stage"]) == ("resolved", None)
    assert datetime.fromisoformat(resolved["state_changed_at"]) == clock.now
    # The critical stage the data plane measured before the resolve arrives after it.
    _report(cp, _transition(t, alert_id, "critical", fired + timedelta(minutes=1)))
    assert _state(cp, alert_id)[:3] == ("resolved", None, clock.now)
    # One measured after it fires again.
    _report(cp, _transition(t, alert_id, "critical", clock.now + timedelta(seconds=5)))
    assert _state(cp, alert_id)[:2] == ("triggered", "critical")


def _preview(client: TestClient, t: Tenant, alert_id: str, query: str = "") -> Any:
    return client.get(f"/v1/projects/{t.project_id}/alerts/{alert_id}/preview{query}",
                      headers=auth(t.owner))


def test_preview_says_why_it_cannot_ask_a_data_plane(
        client: TestClient, cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tenant(client, "A")
    alert_id = _alert(client, t)

    # No data plane serves the project: 409, saying to assign one.
    _assign(cp, t.project_id, None)
    answer = _preview(client, t, alert_id)
    assert error_code(answer, 409) == "conflict"
    assert "assign it" in answer.json()["message"]
    # A legacy data plane (no stream) cannot be asked either.
    _assign(cp, t.project_id, DATA_PLANE_ID)
    answer = _preview(client, t, alert_id)
    assert error_code(answer, 409) == "conflict"
    assert "legacy" in answer.json()["message"]

    # A federated one that is not connected: 503, retryable, naming it.
    _federated_plane(cp, FED, connected=False)
    _assign(cp, t.project_id, FED)
    answer = _preview(client, t, alert_id)
    assert error_code(answer, 503) == "data_plane_unavailable"
    assert f"plane {FED}" in answer.json()["message"]
    assert answer.headers["Retry-After"] == "1"

    # Periods: from before to, at most 31 days.
    now = int(cp.now().timestamp())
    for query in (f"?from={now}&to={now}", f"?from={now}&to={now - 60}",
                  f"?from={now - 32 * 86_400}&to={now}", f"?to={now - 10}&from=-5"):
        answer = _preview(client, t, alert_id, query)
        assert error_code(answer, 400) == "invalid_request", query
        assert answer.json()["details"] == {"field": "from"}, query

    # Connected, but nobody answers (no federation server runs here): 503 after the wait,
    # and the command, never sent, is deleted: never sent later.
    with cp.transaction() as db:
        plane = db.get(DataPlane, FED)
        assert plane is not None
        plane.connected = True
    monkeypatch.setattr(alerts, "PREVIEW_TIMEOUT_S", 0.5)
    answer = _preview(client, t, alert_id, f"?from={now - 3600}&to={now}")
    assert error_code(answer, 503) == "data_plane_unavailable"
    assert "did not answer" in answer.json()["message"]
    with cp.transaction() as db:
        assert list(db.scalars(select(DataPlaneCommand).where(
            DataPlaneCommand.kind == ALERT_PREVIEW))) == []
