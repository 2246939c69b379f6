"""Configuration resources: prompt templates (immutable versions, environments, tags),
evaluator configurations (versions, deploy), alert definitions (CRUD)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ._tenants import auth, error_code, make_tenant, ok, project_key


def test_prompt_versions_are_immutable_and_environments_point_at_them(
    client: TestClient,
) -> None:
    t = make_tenant(client, "A")
    base = f"/v1/projects/{t.project_id}/prompts"
    created = ok(client.post(base, headers=auth(t.owner), json={
        "name": "support", "body": "You help. {{question}}", "tags": ["b", "a", "a"],
        "model_params": {"model": "gpt-4o", "temperature": 0.2}}), 201)
    assert created["tags"] == ["a", "b"]
    assert [v["version"] for v in created["versions"]] == [1]
    assert created["versions"][0]["created_by"].startswith("user:")
    one = f"{base}/{created['id']}"
    v2 = ok(client.post(f"{one}/versions", headers=auth(t.owner),
                        json={"body": "You help kindly. {{question}}", "message": "kinder"}), 201)
    assert v2["version"] == 2
    assert ok(client.get(f"{one}/versions/1", headers=auth(t.owner)))["body"] == (
        "You help. {{question}}")
    assert error_code(client.get(f"{one}/environments/prod", headers=auth(t.owner)),
                      404) == "not_found"
    ok(client.put(f"{one}/environments/prod", json={"version": 1}, headers=auth(t.owner)))
    ok(client.put(f"{one}/environments/dev", json={"version": 2}, headers=auth(t.owner)))
    view = ok(client.get(one, headers=auth(t.owner)))
    assert view["environments"] == {"prod": 1, "dev": 2}
    # A read-only key (what an SDK uses) resolves the environment.
    reader = project_key(client, t, ["prompts:read"])
    assert ok(client.get(f"{one}/environments/prod", headers=auth(reader)))["version"] == 1
    assert client.post(f"{one}/versions", json={"body": "x"},
                       headers=auth(reader)).status_code == 403
    ok(client.put(f"{one}/environments/prod", json={"version": 2}, headers=auth(t.owner)))
    assert ok(client.get(f"{one}/environments/prod", headers=auth(reader)))["body"] == (
        "You help kindly. {{question}}")
    assert error_code(client.put(f"{one}/environments/prod", json={"version": 9},
                                 headers=auth(t.owner)), 404) == "not_found"
    assert error_code(client.put(f"{one}/environments/qa", json={"version": 1},
                                 headers=auth(t.owner)), 400) == "invalid_request"
    # No endpoint edits a version: only new versions.
    assert client.patch(f"{one}/versions/1", json={"body": "x"},
                        headers=auth(t.owner)).status_code == 405
    assert ok(client.put(f"{one}/tags", json={"tags": ["prod-ready"]},
                         headers=auth(t.owner)))["tags"] == ["prod-ready"]
    assert [p["name"] for p in ok(client.get(base, params={"name": "support"},
                                             headers=auth(t.owner)))] == ["support"]
    assert ok(client.get(base, params={"name": "other"}, headers=auth(t.owner))) == []
    assert error_code(client.post(base, json={"name": "support", "body": "x"},
                                  headers=auth(t.owner)), 409) == "conflict"


def test_evaluator_versions_and_deployment(client: TestClient) -> None:
    t = make_tenant(client, "A")
    base = f"/v1/projects/{t.project_id}/evaluators"
    missing_code = client.post(base, json={"name": "len", "type": "python"},
                               headers=auth(t.owner))
    assert error_code(missing_code, 400) == "invalid_request"
    created = ok(client.post(base, headers=auth(t.owner), json={
        "name": "relevance", "type": "llm", "criteria": "Rate relevance 1-5",
        "return_type": "float", "pass_min": 3, "pass_max": 5, "sampling_pct": 25,
        "filters": {"event_type": "model"}}), 201)
    assert created["deployed_version"] is None
    assert created["enabled"] is True
    one = f"{base}/{created['id']}"
    ok(client.post(f"{one}/versions", headers=auth(t.owner),
                   json={"criteria": "Rate relevance 1-10", "pass_min": 6, "pass_max": 10}), 201)
    assert error_code(client.post(f"{one}/deploy", json={"version": 3},
                                  headers=auth(t.owner)), 404) == "not_found"
    deployed = ok(client.post(f"{one}/deploy", json={"version": 2}, headers=auth(t.owner)))
    assert deployed["deployed_version"] == 2
    assert [(v["version"], v["pass_min"], v["sampling_pct"]) for v in deployed["versions"]] == [
        (1, 3.0, 25.0), (2, 6.0, 100.0)]
    disabled = ok(client.patch(one, json={"enabled": False}, headers=auth(t.owner)))
    assert disabled["enabled"] is False
    bad_range = client.post(f"{one}/versions", headers=auth(t.owner),
                            json={"criteria": "x", "pass_min": 5, "pass_max": 1})
    assert error_code(bad_range, 400) == "invalid_request"


def test_alert_definitions_crud(client: TestClient) -> None:
    t = make_tenant(client, "A")
    base = f"/v1/projects/{t.project_id}/alerts"
    condition = {"type": "aggregate", "field": "cost", "window_s": 3600,
                 "warning": {"op": ">=", "value": 100}}
    created = ok(client.post(base, headers=auth(t.owner), json={
        "name": "budget", "condition": condition,
        "channels": [{"type": "slack", "target": "#alerts"}]}), 201)
    assert created["condition"]["warning"] == {"op": ">=", "value": 100}
    one = f"{base}/{created['id']}"
    updated = ok(client.patch(one, headers=auth(t.owner), json={
        "condition": {**condition, "warning": {"op": ">=", "value": 250}}}))
    assert (updated["state"], updated["condition"]["warning"]["value"]) == ("active", 250)
    assert updated["channels"] == [{"type": "slack", "target": "#alerts"}]
    bad = client.post(base, headers=auth(t.owner), json={
        "name": "x", "condition": {**condition, "warning": {"op": "~", "value": 1}}})
    assert error_code(bad, 400) == "invalid_request"
    assert client.delete(one, headers=auth(t.owner)).status_code == 204
    assert ok(client.get(base, headers=auth(t.owner))) == []
    assert error_code(client.get(one, headers=auth(t.owner)), 404) == "not_found"
