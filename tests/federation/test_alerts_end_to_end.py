"""Alerts end to end through the real planes (issue 16): a control plane and a data plane,
each its own ``apiary up`` process (``bench/_planes.py``), the data plane evaluating every
5 s (``APIARY_ALERT_INTERVAL_S``).

At the control plane: a webhook channel scoped to the project (a local receiver that checks
``X-Apiary-Signature`` with its own code) and an error-rate alert (warning >= 0.5, critical
>= 0.9 over 60 s). Events sent to the data plane (``POST /v1/events/batch``) move the alert
through warning, then critical, then back inside both thresholds: the receiver gets the
warning, the critical and the resolution once each, signed; the alert's state at the
control plane follows what the data plane reported on its federation stream; the alert's
activity lists the three transitions and the three deliveries; its preview, computed by the
data plane, shows the measured values.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _notification_receivers import Receiver, Receivers, receivers
from _planes import (
    ControlPlaneAdmin,
    Plane,
    control_plane,
    data_plane,
    free_port,
    model_event,
    send_events,
    start_all,
    until,
)

pytestmark = pytest.mark.ray

SECRET = "whsec-end-to-end-0123456789"
TAG = uuid.uuid4().hex[:6]
STARTED = time.monotonic()
ENV = {"APIARY_OUTBOUND_ALLOWLIST": "127.0.0.1"}
ERROR_RATE = {"type": "aggregate", "field": "error_rate", "window_s": 60,
              "filters": [{"field": "event_type", "operator": "is", "value": "model"}],
              "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9}}


def _phase(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


@dataclass
class Planes:
    cp: Plane
    dp: Plane
    admin: ControlPlaneAdmin
    dp_id: str
    hub: Receivers


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    base = tmp_path_factory.mktemp("alerts-e2e")
    cp = control_plane(base, env=ENV)
    started: list[Plane] = [cp]
    admin: ControlPlaneAdmin | None = None
    with receivers() as hub:
        try:
            _phase("starting the control plane")
            cp.start().wait_ready()
            admin = ControlPlaneAdmin(cp.cp_url, cp.connection()["admin_email"],
                                      cp.admin_password())
            port = free_port()
            created = admin.create_data_plane(f"alerts-{TAG}", f"http://127.0.0.1:{port}")
            dp = data_plane(base, "dp", cp.cp_url, created["bootstrap_token"], port=port,
                            env={**ENV, "APIARY_ALERT_INTERVAL_S": "5"})
            started.append(dp)
            _phase("starting the data plane")
            start_all([dp])
            yield Planes(cp, dp, admin, str(created["id"]), hub)
        finally:
            _phase("stopping the planes")
            if admin is not None:
                admin.close()
            for plane in reversed(started):
                plane.stop()


def _stages(receiver: Receiver) -> list[str]:
    return [str(json.loads(r.body)["stage"]) for r in receiver.accepted()
            if json.loads(r.body).get("kind") == "alert"]


def _send(plane: Plane, key: str, errors: int, ok: int) -> None:
    events = []
    for i in range(errors + ok):
        event = model_event(f"answer {i}")
        if i < errors:
            event["error"] = "the model call failed"
        events.append(event)
    send_events(plane.url, key, events)


def test_error_spans_fire_warning_critical_and_resolution_once_each(planes: Planes) -> None:
    admin = planes.admin
    until("the data plane connected",
          lambda: admin.data_planes()[planes.dp_id]["connected"] or None, 60)
    workspace = admin.first_workspace()
    project = admin.create_project(workspace, f"alerts-{TAG}")
    admin.assign(project, planes.dp_id)
    key = admin.create_key(project, "alerts")[1]
    org_id = admin.ok("GET", "/v1/orgs")[0]["id"]
    receiver = Receiver(secret=SECRET.encode())
    url = planes.hub.add(f"e2e-{TAG}", receiver)
    admin.ok("POST", f"/v1/orgs/{org_id}/notification-channels", 201, json={
        "name": f"hook-{TAG}", "type": "webhook", "config": {"url": url, "secret": SECRET},
        "scope": {"project_id": project}})
    alert = admin.ok("POST", f"/v1/projects/{project}/alerts", 201,
                     json={"name": "model errors", "condition": ERROR_RATE})
    alert_url = f"/v1/projects/{project}/alerts/{alert['id']}"
    applied = admin.data_plane(planes.dp_id)

    def rule_applied() -> bool | None:
        plane = admin.data_plane(planes.dp_id)
        return plane["applied_config_version"] > (applied["applied_config_version"] or 0) \
            or None
    until("the rule pushed to the data plane", rule_applied, 60)

    _phase("warning: 6 errors in 10 model calls")
    _send(planes.dp, key, errors=6, ok=4)
    until("the warning", lambda: _stages(receiver) or None, 90)
    assert _stages(receiver) == ["warning"]
    until("the warning at the control plane", lambda: admin.ok("GET", alert_url)["stage"]
          == "warning" or None, 30)

    _phase("critical: 60 more errors")
    _send(planes.dp, key, errors=60, ok=0)
    until("the critical", lambda: len(_stages(receiver)) >= 2 or None, 90)
    assert _stages(receiver) == ["warning", "critical"]
    until("the critical at the control plane", lambda: admin.ok("GET", alert_url)["stage"]
          == "critical" or None, 30)

    _phase("resolution: 200 successful calls")
    _send(planes.dp, key, errors=0, ok=200)
    until("the resolution", lambda: len(_stages(receiver)) >= 3 or None, 90)

    def resolved() -> dict[str, Any] | None:
        found: dict[str, Any] = admin.ok("GET", alert_url)
        return found if found["state"] == "resolved" else None

    state = until("the resolution at the control plane", resolved, 30)
    assert (state["evaluation_state"], state["stage"]) == ("resolved", None)

    # Absence is seen over time: two more evaluation intervals send nothing again.
    resolved_at = time.monotonic()
    until("two more evaluation intervals",
          lambda: time.monotonic() - resolved_at >= 10 or None, 30)
    assert _stages(receiver) == ["warning", "critical", "resolution"]
    assert all(r.status == 200 for r in receiver.all())  # every signature verified
    assert len({r.delivery for r in receiver.accepted()}) == 3

    _phase("activity and preview")

    def listed() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = admin.ok("GET", f"{alert_url}/activity")
        return found if len(found) >= 6 else None

    activity = until("three transitions and three deliveries in the activity", listed, 60)
    transitions = [e for e in activity if e["kind"] == "transition"]
    deliveries = [e for e in activity if e["kind"] == "delivery"]
    assert [e["stage"] for e in transitions] == ["resolution", "critical", "warning"]
    assert sorted(e["stage"] for e in deliveries) == ["critical", "resolution", "warning"]
    assert {(e["outcome"], e["channel_type"], e["data_plane_id"]) for e in deliveries} == {
        ("delivered", "webhook", planes.dp_id)}
    assert len(activity) == 6

    # The preview, computed by the data plane: once a point's window holds the events (the
    # points may sit on a coarser grid than the evaluations), each value measured is the
    # error rate of a run of consecutive batches (6/10, 60/60, 0/200 or a union of them).
    def previewed() -> list[float] | None:
        now = int(time.time())
        found = admin.ok("GET", f"{alert_url}/preview", params={"from": now - 600, "to": now})
        assert (found["field"], found["window_s"], found["critical"]) == (
            "error_rate", 60, {"op": ">=", "value": 0.9})
        values = [float(p["value"]) for p in found["series"] if p["value"] is not None]
        return values or None

    batches = [(6, 10), (60, 60), (0, 200)]
    runs = {sum(e for e, _ in batches[i:j]) / sum(n for _, n in batches[i:j])
            for i in range(3) for j in range(i + 1, 4)}
    for value in until("a previewed value", previewed, 120, 2.0):
        assert any(abs(value - run) < 1e-9 for run in runs), (value, sorted(runs))
