"""The config log: one entry per changed object, written in the change's transaction
(none for a rolled-back change), payloads that are the objects' API JSON, and the sending
rule (a data plane's entries in version order, the replay before a project's assignment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.config import evaluators
from apiary.control.db import ConfigChange, Project
from apiary.control.federation import entries_for

from .._tenants import Tenant, auth, error_code, make_tenant, ok, project_key
from ._keys import create_and_register, installation_admin


def _log(cp: ControlPlane) -> list[ConfigChange]:
    with cp.transaction() as db:
        return list(db.scalars(select(ConfigChange).order_by(ConfigChange.version)))


def _new(cp: ControlPlane, seen: int) -> list[tuple[str, str, bool]]:
    return [(c.kind, c.object_id, c.deleted) for c in _log(cp)[seen:]]


def _normalized(value: Any) -> Any:
    """Datetimes compared as instants (the API writes 'Z', the log '+00:00')."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def test_each_change_writes_exactly_one_entry_in_order(client: TestClient,
                                                       cp: ControlPlane) -> None:
    t = make_tenant(client, "Acme")
    h = auth(t.owner)
    evaluators_url = f"/v1/projects/{t.project_id}/evaluators"
    steps: list[tuple[str, Any]] = []

    def step(expected_kind: str, request: Any, status: int = 200) -> Any:
        before = len(_log(cp))
        body = ok(request(), status)
        new = _new(cp, before)
        assert len(new) == 1, (expected_kind, new)
        assert new[0][0] == expected_kind
        steps.append(new[0])
        return body

    metric = step("metric", lambda: client.post(evaluators_url, headers=h, json={
        "name": "len", "type": "python", "code": "def score(e): return 1"}), 201)
    one = f"{evaluators_url}/{metric['id']}"
    step("metric", lambda: client.post(f"{one}/versions", headers=h,
                               json={"code": "def score(e): return 2"}), 201)
    step("metric", lambda: client.post(f"{one}/deploy", headers=h, json={"version": 2}))
    step("metric", lambda: client.patch(one, headers=h, json={"enabled": False}))
    prompts_url = f"/v1/projects/{t.project_id}/prompts"
    prompt = step("prompt", lambda: client.post(prompts_url, headers=h, json={
        "name": "greet", "body": "Hello {{name}}"}), 201)
    step("prompt", lambda: client.post(f"{prompts_url}/{prompt['id']}/versions", headers=h,
                               json={"body": "Hi {{name}}"}), 201)
    step("prompt", lambda: client.put(f"{prompts_url}/{prompt['id']}/environments/prod", headers=h,
                              json={"version": 2}))
    alerts_url = f"/v1/projects/{t.project_id}/alerts"
    alert = step("alert_rule", lambda: client.post(alerts_url, headers=h, json={
        "name": "budget", "condition": {"type": "aggregate", "field": "cost", "window_s": 60,
                                        "warning": {"op": ">=", "value": 1}}}),
        201)
    key_id = project_key(client, t).split("_")[2]
    step("key_revoked", lambda: client.delete(f"/v1/projects/{t.project_id}/keys/{key_id}",
                                      headers=h))
    step("alert_rule", lambda: client.delete(f"{alerts_url}/{alert['id']}", headers=h), 204)
    step("metric", lambda: client.delete(one, headers=h), 204)
    step("prompt", lambda: client.delete(f"{prompts_url}/{prompt['id']}", headers=h), 204)

    log = _log(cp)
    assert [c.version for c in log] == sorted(c.version for c in log)
    assert [(c.kind, c.object_id, c.deleted) for c in log] == steps
    assert [c.deleted for c in log][-3:] == [True, True, True]
    assert all(c.payload is None for c in log[-3:])
    assert {c.project_id for c in log} == {t.project_id}
    assert log[8].payload == {"key_id": key_id, "project_id": t.project_id,
                              "workspace_id": t.workspace_id}


def test_a_rolled_back_change_writes_no_entry(client: TestClient, cp: ControlPlane) -> None:
    t = make_tenant(client, "Acme")
    before = len(_log(cp))
    spec = evaluators.VersionSpec(criteria=None, code="def score(e): return 1",
                                  return_type="float", pass_min=None, pass_max=None,
                                  sampling_pct=100, filters={}, model_params={})

    def failing_change() -> None:
        with cp.transaction() as db:
            project = db.get(Project, t.project_id)
            assert project is not None
            evaluators.create_evaluator(cp, db, project, name="x", kind="python",
                                        description="", spec=spec, author="test")
            db.flush()
            raise RuntimeError("the change fails after its flush")

    with pytest.raises(RuntimeError):
        failing_change()
    assert len(_log(cp)) == before
    # A refused request (a duplicate name: 409) writes none either.
    url = f"/v1/projects/{t.project_id}/evaluators"
    ok(client.post(url, headers=auth(t.owner), json={"name": "x", "type": "python",
                                                      "code": "def score(e): return 1"}), 201)
    assert len(_log(cp)) == before + 1
    duplicate = client.post(url, headers=auth(t.owner), json={
        "name": "x", "type": "python", "code": "def score(e): return 1"})
    assert error_code(duplicate, 409) == "conflict"
    assert len(_log(cp)) == before + 1


def test_a_metric_entry_is_the_evaluator_as_its_api_returns_it(client: TestClient,
                                                               cp: ControlPlane) -> None:
    t = make_tenant(client, "Acme")
    url = f"/v1/projects/{t.project_id}/evaluators"
    created = ok(client.post(url, headers=auth(t.owner), json={
        "name": "relevance", "type": "llm", "criteria": "Rate 1-5", "pass_min": 3,
        "pass_max": 5, "sampling_pct": 25, "filters": {"event_type": "model"}}), 201)
    deployed = ok(client.post(f"{url}/{created['id']}/deploy", headers=auth(t.owner),
                              json={"version": 1}))
    entry = _log(cp)[-1]
    assert entry.kind == "metric"
    assert entry.object_id == created["id"]
    assert _normalized(entry.payload) == _normalized(deployed)


def _assign(client: TestClient, tenant: Tenant, dp_id: str | None) -> None:
    ok(client.put(f"/v1/projects/{tenant.project_id}/data-plane",
                  json={"data_plane_id": dp_id}, headers=auth(tenant.owner)))


def _sent(cp: ControlPlane, dp_id: str, after: int = 0) -> list[tuple[int, str, str]]:
    with cp.transaction() as db:
        return [(c.version, c.kind, c.object_id) for c in entries_for(db, dp_id, after)]


def test_sending_rule_replays_a_project_before_its_assignment(client: TestClient,
                                                             cp: ControlPlane) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    two = create_and_register(client, root, "two")
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    url = f"/v1/projects/{a.project_id}/evaluators"
    metric = ok(client.post(url, headers=auth(a.owner), json={
        "name": "len", "type": "python", "code": "def score(e): return 1"}), 201)
    ok(client.post(f"/v1/projects/{b.project_id}/evaluators", headers=auth(b.owner), json={
        "name": "other", "type": "python", "code": "def score(e): return 1"}), 201)
    assert _sent(cp, one.id) == []  # nothing assigned yet
    _assign(client, a, one.id)
    first = _sent(cp, one.id)
    assert [kind for _v, kind, _o in first] == ["metric", "project_assigned"]
    assert first[0][2] == metric["id"]
    assigned_at = first[-1][0]
    assert first[0][0] < assigned_at  # the replay keeps the entry's own version
    assert _sent(cp, two.id) == []  # B's metric goes nowhere: B is unassigned

    # A change now is sent to one, after the assignment; resuming skips what was sent.
    ok(client.post(f"{url}/{metric['id']}/deploy", headers=auth(a.owner), json={"version": 1}))
    after = _sent(cp, one.id, assigned_at)
    assert [kind for _v, kind, _o in after] == ["metric"]
    assert after[0][0] > assigned_at

    # Moving A to two: one is told, two gets A's whole history, then the assignment.
    _assign(client, a, two.id)
    told = _sent(cp, one.id, after[0][0])
    assert [kind for _v, kind, _o in told] == ["project_unassigned"]
    moved = _sent(cp, two.id)
    assert [kind for _v, kind, _o in moved] == ["metric", "metric", "project_assigned"]
    assert [v for v, _k, _o in moved] == sorted(v for v, _k, _o in moved)
    # A change of A is one's no more.
    ok(client.patch(f"{url}/{metric['id']}", headers=auth(a.owner), json={"enabled": False}))
    assert _sent(cp, one.id, told[0][0]) == []
    assert [k for _v, k, _o in _sent(cp, two.id, moved[-1][0])] == ["metric"]


def test_a_workspace_key_revocation_goes_to_the_data_planes_of_its_workspace(
        client: TestClient, cp: ControlPlane) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    t = make_tenant(client, "Acme")
    issued = ok(client.post(f"/v1/workspaces/{t.workspace_id}/keys", json={"name": "ws"},
                            headers=auth(t.owner)), 201)
    _assign(client, t, one.id)
    start = _sent(cp, one.id)[-1][0]
    ok(client.delete(f"/v1/workspaces/{t.workspace_id}/keys/{issued['key']['id']}",
                     headers=auth(t.owner)))
    sent = _sent(cp, one.id, start)
    assert [(k, o) for _v, k, o in sent] == [("key_revoked", issued["key"]["id"])]


def test_a_deleted_project_is_revoked_on_its_data_plane(client: TestClient,
                                                        cp: ControlPlane) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    t = make_tenant(client, "Acme")
    _assign(client, t, one.id)
    start = _sent(cp, one.id)[-1][0]
    with cp.transaction() as db:
        project = db.get(Project, t.project_id)
        assert project is not None
        db.delete(project)
    assert [(k, o) for _v, k, o in _sent(cp, one.id, start)] == [
        ("project_revoked", t.project_id)]
