"""Alert rules at the control plane: the condition's validation (each bad body a 400
naming the field), the state transitions (409 for an impossible one), tenant isolation and
RBAC, and the ``alert_rule`` entry each change writes to the config log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.db import AlertDefinition, ConfigChange

from .._tenants import Tenant, add_member, auth, error_code, make_tenant, ok

ERROR_RATE = {"type": "aggregate", "field": "error_rate", "window_s": 60,
              "filters": [{"field": "event_type", "operator": "is", "value": "model"}],
              "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9},
              "min_duration_s": 30}


def _alerts(t: Tenant) -> str:
    return f"/v1/projects/{t.project_id}/alerts"


def _create(client: TestClient, t: Tenant, name: str = "errors",
            condition: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"name": name, "condition": condition or ERROR_RATE}
    return ok(client.post(_alerts(t), headers=auth(t.owner), json=body), 201)  # type: ignore[no-any-return]


def test_a_rule_is_stored_with_its_defaults(client: TestClient) -> None:
    t = make_tenant(client, "A")
    created = _create(client, t)
    assert created["condition"] == {**ERROR_RATE, "aggregation": None,
                                    "comparison_window_s": None, "direction": None}
    assert (created["state"], created["paused"], created["muted"]) == ("active", False, False)
    assert (created["evaluation_state"], created["stage"],
            created["state_changed_at"]) == (None, None, None)
    score = _create(client, t, "score", {"type": "aggregate", "field": "metrics.relevance",
                                         "window_s": 3600, "critical": {"op": "<", "value": 3}})
    assert score["condition"]["aggregation"] == "mean"
    thumbs = _create(client, t, "thumbs", {
        "type": "aggregate", "field": "feedback.thumbs_up", "aggregation": "share_true",
        "window_s": 86_400, "warning": {"op": "<", "value": 0.8},
        "critical": {"op": "<", "value": 0.6}})
    assert thumbs["condition"]["aggregation"] == "share_true"
    drift = _create(client, t, "latency drift", {
        "type": "drift", "field": "latency_p95", "window_s": 900,
        "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">", "value": 0.5}})
    assert (drift["condition"]["comparison_window_s"], drift["condition"]["direction"]) == (
        900, "either")
    listed = ok(client.get(_alerts(t), headers=auth(t.owner)))
    assert [a["name"] for a in listed] == ["errors", "latency drift", "score", "thumbs"]


BAD_CONDITIONS: list[tuple[str, dict[str, Any], str]] = [
    ("window too short", {"window_s": 59}, "condition.window_s"),
    ("window over 7 days", {"window_s": 7 * 86_400 + 1}, "condition.window_s"),
    ("unknown condition key", {"threshold": 5}, "condition.threshold"),
    ("unknown type", {"type": "spike"}, "condition.type"),
    ("unknown field", {"field": "latency"}, "condition.field"),
    ("bare metrics", {"field": "metrics."}, "condition.field"),
    ("aggregation on a fixed field", {"aggregation": "mean"}, "condition.aggregation"),
    ("unknown aggregation", {"field": "metrics.x", "aggregation": "p99"},
     "condition.aggregation"),
    ("bad filter operator",
     {"filters": [{"field": "event_type", "operator": "resembles", "value": "x"}]},
     "condition.filters"),
    ("bad filter field", {"filters": [{"field": "1nope", "operator": "is", "value": "x"}]},
     "condition.filters"),
    ("no threshold", {"warning": None, "critical": None}, "condition.warning"),
    ("threshold op", {"warning": {"op": "==", "value": 1}}, "condition.warning.op"),
    ("threshold key", {"warning": {"op": ">", "value": 1, "for": 3}},
     "condition.warning.for"),
    ("critical looser", {"critical": {"op": ">=", "value": 0.3}}, "condition.critical"),
    ("critical the same", {"critical": {"op": ">=", "value": 0.5}}, "condition.critical"),
    ("critical looser by its op", {"warning": {"op": ">", "value": 0.5},
                                   "critical": {"op": ">=", "value": 0.5}},
     "condition.critical"),
    ("directions differ", {"critical": {"op": "<", "value": 0.1}}, "condition.critical"),
    ("lower critical looser", {"warning": {"op": "<", "value": 0.5},
                               "critical": {"op": "<=", "value": 0.7}}, "condition.critical"),
    ("direction on aggregate", {"direction": "up"}, "condition.direction"),
    ("comparison on aggregate", {"comparison_window_s": 600},
     "condition.comparison_window_s"),
    ("drift below", {"type": "drift", "warning": {"op": "<", "value": 0.5},
                     "critical": None}, "condition.warning"),
    ("drift non-positive", {"type": "drift", "critical": {"op": ">=", "value": 0}},
     "condition.critical"),
    ("drift unknown direction", {"type": "drift", "direction": "sideways"},
     "condition.direction"),
    ("negative flap guard", {"min_duration_s": -1}, "condition.min_duration_s"),
]


def _names(body: dict[str, Any], field: str) -> bool:
    """A 400 names ``field``: in ``details.field`` (domain checks) or as the location of a
    body validation error (``condition.window_s: ...``)."""
    return body.get("details", {}).get("field") == field or f"{field}:" in body["message"]


@pytest.mark.parametrize(("case", "change", "field"), BAD_CONDITIONS,
                         ids=[c[0] for c in BAD_CONDITIONS])
def test_each_bad_condition_is_a_400_naming_the_field(
    client: TestClient, case: str, change: dict[str, Any], field: str,
) -> None:
    t = make_tenant(client, "A")
    condition = {k: v for k, v in {**ERROR_RATE, **change}.items() if v is not None}
    response = client.post(_alerts(t), headers=auth(t.owner),
                           json={"name": "bad", "condition": condition})
    assert error_code(response, 400) == "invalid_request"
    assert _names(response.json(), field), response.json()
    assert ok(client.get(_alerts(t), headers=auth(t.owner))) == []


def test_a_bad_change_is_a_400_and_changes_nothing(client: TestClient) -> None:
    t = make_tenant(client, "A")
    one = f"{_alerts(t)}/{_create(client, t)['id']}"
    looser = {**ERROR_RATE, "critical": {"op": ">=", "value": 0.1}}
    response = client.patch(one, headers=auth(t.owner), json={"condition": looser})
    assert error_code(response, 400) == "invalid_request"
    assert response.json()["details"]["field"] == "condition.critical"
    for unknown in ({"enabled": False}, {"state": "paused"}, {"muted": True}):
        response = client.patch(one, headers=auth(t.owner), json=unknown)
        assert error_code(response, 400) == "invalid_request"
        assert f"{next(iter(unknown))}:" in response.json()["message"]
    assert ok(client.get(one, headers=auth(t.owner)))["condition"]["critical"] == {
        "op": ">=", "value": 0.9}


def _report(cp: ControlPlane, alert_id: str, state: str, stage: str | None) -> None:
    """What the data plane's report will write (not built yet): the evaluation state."""
    with cp.transaction() as db:
        alert = db.get(AlertDefinition, alert_id)
        assert alert is not None
        alert.evaluation_state, alert.stage = state, stage
        alert.state_changed_at = cp.now()


def test_state_transitions_and_the_impossible_ones(client: TestClient, cp: ControlPlane) -> None:
    t = make_tenant(client, "A")
    alert = _create(client, t)
    one = f"{_alerts(t)}/{alert['id']}"
    h = auth(t.owner)

    def post(action: str, status: int = 200) -> dict[str, Any]:
        response = client.post(f"{one}/{action}", headers=h)
        if status == 409:
            assert error_code(response, 409) == "conflict"
            return {}
        return ok(response, status)  # type: ignore[no-any-return]

    for impossible in ("resume", "unmute", "resolve"):  # from active
        post(impossible, 409)
    assert post("pause")["state"] == "paused"
    post("pause", 409)
    resumed = post("resume")
    assert (resumed["state"], resumed["paused"]) == ("active", False)
    post("resume", 409)
    assert post("mute")["state"] == "muted"
    post("mute", 409)
    assert post("unmute")["state"] == "active"
    post("unmute", 409)

    _report(cp, alert["id"], "triggered", "critical")
    triggered = ok(client.get(one, headers=h))
    assert (triggered["state"], triggered["stage"]) == ("triggered", "critical")
    muted = post("mute")  # a muted alert still shows what the evaluator says
    assert (muted["state"], muted["evaluation_state"], muted["stage"]) == (
        "muted", "triggered", "critical")
    assert post("pause")["state"] == "paused"  # paused wins over muted
    post("resume")
    post("unmute")
    resolved = post("resolve")
    assert (resolved["state"], resolved["evaluation_state"], resolved["stage"]) == (
        "resolved", "resolved", None)
    assert datetime.fromisoformat(resolved["state_changed_at"].replace("Z", "+00:00")) \
        >= datetime.fromisoformat(triggered["state_changed_at"].replace("Z", "+00:00"))
    post("resolve", 409)
    assert ok(client.get(one, headers=h))["state"] == "resolved"
    assert error_code(client.post(f"{_alerts(t)}/nope/pause", headers=h), 404) == "not_found"


def test_another_org_gets_404_and_a_viewer_cannot_change(client: TestClient) -> None:
    a, b = make_tenant(client, "A"), make_tenant(client, "B")
    alert = _create(client, a)
    one = f"{_alerts(a)}/{alert['id']}"
    for action in ("pause", "resume", "mute", "unmute", "resolve"):
        for path in (f"{one}/{action}", f"{_alerts(b)}/{alert['id']}/{action}"):
            response = client.post(path, headers=auth(b.owner))
            assert error_code(response, 404) == "not_found", (path, response.text)
    viewer = add_member(client, a, "viewer@a.example", "viewer")
    assert ok(client.get(one, headers=auth(viewer)))["state"] == "active"
    for action in ("pause", "mute"):
        assert error_code(client.post(f"{one}/{action}", headers=auth(viewer)),
                          403) == "forbidden"
    assert error_code(client.patch(one, headers=auth(viewer), json={"description": "x"}),
                      403) == "forbidden"
    after = ok(client.get(one, headers=auth(a.owner)))
    assert (after["state"], after["description"], after["updated_at"]) == (
        "active", "", alert["updated_at"])


def _log(cp: ControlPlane) -> list[ConfigChange]:
    with cp.transaction() as db:
        return list(db.scalars(select(ConfigChange).order_by(ConfigChange.version)))


def _instants(value: Any) -> Any:
    """Datetimes compared as instants (the API writes 'Z', the log '+00:00')."""
    if isinstance(value, dict):
        return {k: _instants(v) for k, v in value.items()}
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def test_each_change_pushes_one_alert_rule_entry_with_the_rule_and_its_state(
    client: TestClient, cp: ControlPlane,
) -> None:
    t = make_tenant(client, "A")
    h = auth(t.owner)
    seen = len(_log(cp))

    def one_entry(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal seen
        new = _log(cp)[seen:]
        seen += len(new)
        assert [(c.kind, c.object_id, c.deleted, c.project_id) for c in new] == [
            ("alert_rule", body["id"], False, t.project_id)]
        assert _instants(new[0].payload) == _instants(body)  # the alerts API's JSON
        return new[0].payload  # type: ignore[return-value]

    created = _create(client, t)
    payload = one_entry(created)
    assert payload["condition"]["critical"] == {"op": ">=", "value": 0.9}
    assert payload["condition"]["min_duration_s"] == 30
    assert (payload["state"], payload["paused"], payload["muted"]) == ("active", False, False)
    one = f"{_alerts(t)}/{created['id']}"
    assert one_entry(ok(client.post(f"{one}/mute", headers=h)))["muted"] is True
    paused = one_entry(ok(client.post(f"{one}/pause", headers=h)))
    assert (paused["state"], paused["paused"], paused["muted"]) == ("paused", True, True)
    drift = {"type": "drift", "field": "cost", "window_s": 3600, "direction": "up",
             "warning": {"op": ">=", "value": 0.5}}
    changed = one_entry(ok(client.patch(one, headers=h, json={"condition": drift})))
    assert changed["condition"]["comparison_window_s"] == 3600
    # A refused transition writes nothing.
    assert client.post(f"{one}/pause", headers=h).status_code == 409
    assert len(_log(cp)) == seen
