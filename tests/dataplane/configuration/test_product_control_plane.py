"""Metric definitions and prompt configurations, served by the data plane from a real
control plane through the trusted seam (the caller's API key forwarded; a data-plane token
is never forwarded, since the control plane refuses every token not minted for it).

The control plane runs as a real HTTP server (uvicorn) over its own SQLite cpdb; keys and
a user's token come from its API. The data plane's app runs in-process with the
authenticator ``apiary up`` gives it (key exchange and ES256 verification), over real NATS
and chDB, its CP client pointed at that server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from _accounts import verify_email
from _product_plane import ALL, event, open_product
from _servers import free_port, http_server
from honeyhive._generated.models import (
    CreateConfigurationResponse,
    CreateMetricResponse,
    CreateMetricVersionResponse,
    DeleteConfigurationResponse,
    DeleteMetricResponse,
    DeployMetricVersionResponse,
    GetConfigurationsResponse,
    GetMetricsResponse,
    GetMetricVersionsResponse,
    UpdateConfigurationResponse,
    UpdateMetricResponse,
)
from sqlalchemy import inspect

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import Permission, control_plane_authenticator
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.event import Tenant
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ISSUER = "http://cp.product.test/cp"
DP_ID = "dp-product"
PASSWORD = "a long enough password 42"
CONFIG = ["prompts:read", "prompts:write", "evaluators:read", "evaluators:write",
          "events:read", "events:write", "datasets:read", "datasets:write"]


@dataclass
class World:
    cp: httpx.AsyncClient
    dp: httpx.AsyncClient
    store: EventStore
    context: DataPlaneContext
    projects: dict[str, str]
    credentials: dict[str, str]
    owner: dict[str, str]

    async def at_cp(self, path: str) -> httpx.Response:
        """What the control plane itself holds (read with the owner's session)."""
        return await self.cp.get(path, headers=self.owner)

    async def call(self, method: str, path: str, who: str = "a", **kw: Any) -> httpx.Response:
        return await self.dp.request(method, path, **kw, headers={
            "authorization": f"Bearer {self.credentials[who]}"})

    async def ok(self, method: str, path: str, who: str = "a", **kw: Any) -> Any:
        response = await self.call(method, path, who, **kw)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    async def fails(self, status: int, method: str, path: str, who: str = "a",
                    **kw: Any) -> dict[str, Any]:
        response = await self.call(method, path, who, **kw)
        assert response.status_code == status, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        assert body["message"]
        assert body["errorCode"]
        return body


async def _signup(cp: httpx.AsyncClient, email: str, settings: ApiarySettings
                  ) -> dict[str, str]:
    response = await cp.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    # An unverified account owns nothing: verify as the operator's link would.
    await asyncio.to_thread(verify_email, settings, str(cp.base_url), email)
    return {"authorization": f"Bearer {response.json()['session_token']}"}


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[str, ApiarySettings]]:
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("cp"), cp_issuer=ISSUER,
                              data_plane_id=DP_ID)
    admin.data_planes_register(settings, dp_id=DP_ID, name="product", url="http://dp.test")
    cp = ControlPlane.open(settings)
    with http_server(create_control_plane_app(cp)) as url:
        yield url, settings
    cp.close()


@pytest.fixture(scope="module")
async def world(control_plane: tuple[str, ApiarySettings], nats_server: NatsServer,
                store: EventStore, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    cp_url, cp_settings = control_plane
    cp = httpx.AsyncClient(base_url=cp_url, timeout=30)
    owner = await _signup(cp, f"owner-{uuid.uuid4().hex[:6]}@example.com", cp_settings)
    org = (await cp.post("/v1/orgs", headers=owner, json={"name": "Product"})).json()
    ws = (await cp.post(f"/v1/orgs/{org['id']}/workspaces", headers=owner,
                        json={"name": "w"})).json()
    projects = {name: (await cp.post(f"/v1/workspaces/{ws['id']}/projects", headers=owner,
                                     json={"name": name})).json()["id"] for name in ("a", "b")}

    async def key(project: str, permissions: list[str] | None) -> str:
        body: dict[str, Any] = {"name": f"k-{uuid.uuid4().hex[:4]}"}
        if permissions is not None:
            body["permissions"] = permissions
        issued = await cp.post(f"/v1/projects/{projects[project]}/keys", headers=owner,
                               json=body)
        assert issued.status_code == 201, issued.text
        return str(issued.json()["api_key"])

    credentials = {"a": await key("a", CONFIG), "b": await key("b", CONFIG),
                   "a_events": await key("a", None),
                   "a_read": await key("a", ["prompts:read", "evaluators:read",
                                             "events:read"])}
    viewer_email = f"viewer-{uuid.uuid4().hex[:6]}@example.com"
    viewer = await _signup(cp, viewer_email, cp_settings)
    invited = await cp.post(f"/v1/orgs/{org['id']}/invitations", headers=owner, json={
        "email": viewer_email, "role": "viewer", "project_id": projects["a"]})
    await cp.post("/v1/invitations/accept", headers=viewer,
                  json={"token": invited.json()["token"]})
    for name, who in (("viewer_token", viewer), ("owner_token", owner)):
        token = await cp.post("/v1/auth/token", headers=who,
                              json={"audience": DP_ID, "project_id": projects["a"]})
        assert token.status_code == 200, token.text
        credentials[name] = token.json()["access_token"]

    dp_settings = cp_settings.model_copy(update={
        "data_dir": tmp_path_factory.mktemp("dp"), "control_plane_url": cp_url,
        "jwt_issuer": ISSUER})
    context = await DataPlaneContext.open(dp_settings, nats_server.url,
                                          control_plane_authenticator(dp_settings),
                                          store=DirectStoreClient(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context)),
                                 base_url="http://dp") as dp:
        yield World(cp, dp, store, context, projects, credentials, owner)
    await context.close()
    await cp.aclose()


def _config_body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "parameters": {
        "call_type": "chat", "model": "gpt-4o-mini", "hyperparameters": {"temperature": 0.2},
        "template": [{"role": "system", "content": "Answer {{question}}"}]}, **extra}


async def test_configurations_live_in_the_control_plane(world: World) -> None:
    name = f"cfg-{uuid.uuid4().hex[:6]}"
    created = await world.ok("POST", "/v1/configurations",
                             json=_config_body(name, env=["dev", "prod"], tags=["t1"],
                                               user_properties={"team": "x"}))
    CreateConfigurationResponse(**created)
    config_id = created["insertedId"]
    listed = await world.ok("GET", "/v1/configurations")
    GetConfigurationsResponse(**listed)
    (item,) = [c for c in listed["configurations"] if c["id"] == config_id]
    assert (item["name"], item["provider"], item["type"], item["env"], item["tags"]) == (
        name, "openai", "LLM", ["dev", "prod"], ["t1"])
    assert item["parameters"]["template"] == [{"role": "system",
                                               "content": "Answer {{question}}"}]
    assert item["parameters"]["hyperparameters"] == {"temperature": 0.2}
    assert item["user_properties"] == {"team": "x"}
    assert item["version"] == 1
    # The control plane holds it: a prompt template with its environments.
    prompts = (await world.at_cp(f"/v1/projects/{world.projects['a']}/prompts")).json()
    (template,) = [t for t in prompts if t["id"] == config_id]
    assert template["environments"] == {"dev": 1, "prod": 1}
    # The data plane holds nothing: dpdb has no configuration table.
    tables = set(inspect(world.context.dpdb.engine).get_table_names())
    assert not {t for t in tables if "prompt" in t or "config" in t or "evaluator" in t}

    update = _config_body(name, env=["staging"])
    update["parameters"]["model"] = "gpt-4o"
    updated = await world.ok("PUT", f"/v1/configurations/{config_id}", json=update)
    UpdateConfigurationResponse(**updated)
    assert (updated["modifiedCount"], updated["matchedCount"]) == (1, 1)
    template = (await world.at_cp(f"/v1/projects/{world.projects['a']}/prompts/{config_id}")
                ).json()
    assert [v["version"] for v in template["versions"]] == [1, 2]
    assert template["environments"] == {"staging": 2}
    unchanged = await world.ok("PUT", f"/v1/configurations/{config_id}",
                               json={"name": name})
    assert unchanged["modifiedCount"] == 0
    renamed = await world.ok("PUT", f"/v1/configurations/{config_id}",
                             json={"name": name + "-2", "tags": ["t2"]})
    assert renamed["modifiedCount"] == 1
    filtered = await world.ok("GET", "/v1/configurations", params={"env": "staging",
                                                                   "tags": "t2"})
    assert [(c["id"], c["name"], c["parameters"]["model"]) for c in
            filtered["configurations"]] == [(config_id, name + "-2", "gpt-4o")]
    assert (await world.ok("GET", "/v1/configurations", params={"env": "dev"})
            )["configurations"] == []
    deleted = await world.ok("DELETE", f"/v1/configurations/{config_id}")
    DeleteConfigurationResponse(**deleted)
    assert deleted["deletedCount"] == 1
    gone = await world.at_cp(f"/v1/projects/{world.projects['a']}/prompts/{config_id}")
    assert gone.status_code == 404
    await world.fails(404, "DELETE", f"/v1/configurations/{config_id}")


async def test_configurations_are_per_project_and_per_permission(world: World) -> None:
    name = f"iso-{uuid.uuid4().hex[:6]}"
    config_id = (await world.ok("POST", "/v1/configurations", json=_config_body(name))
                 )["insertedId"]
    assert name not in {c["name"] for c in
                        (await world.ok("GET", "/v1/configurations", "b"))["configurations"]}
    await world.fails(404, "PUT", f"/v1/configurations/{config_id}", "b", json={"name": "x"})
    await world.fails(404, "DELETE", f"/v1/configurations/{config_id}", "b")
    await world.ok("POST", "/v1/configurations", "b", json=_config_body(name))  # own name
    await world.fails(403, "GET", "/v1/configurations", "a_events")
    await world.fails(403, "POST", "/v1/configurations", "a_read", json=_config_body("n"))
    # A user's data-plane token is not forwarded (it would be refused there anyway): 403
    # before the control plane is called, saying where configuration is read.
    for who in ("viewer_token", "owner_token"):
        refused = await world.fails(403, "GET", "/v1/configurations", who)
        assert "API key" in refused["message"]
        assert "control plane" in refused["message"]
        await world.fails(403, "POST", "/v1/configurations", who,
                          json=_config_body(f"tok-{uuid.uuid4().hex[:6]}"))
    # ...and holds no management permission, even the owner's.
    claims = jwt.decode(world.credentials["owner_token"], options={"verify_signature": False})
    assert "prompts:write" in claims["permissions"]
    assert not {"keys:manage", "members:manage", "org:manage", "project:manage"} & set(
        claims["permissions"])


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/v1/configurations", {"name": "x", "provider": "p"}, 400),
    ("POST", "/v1/configurations", {**_config_body("x"), "env": ["qa"]}, 400),
    ("POST", "/v1/configurations", {**_config_body("x"), "typo": 1}, 400),
    ("PUT", "/v1/configurations/abc", {"provider": "p"}, 400),
    ("PUT", "/v1/configurations/..%2F..%2Fkeys", {"name": "x"}, 404),
    ("PUT", f"/v1/configurations/{uuid.uuid4()}", {"name": "x"}, 404),
])
async def test_bad_configuration_requests(world: World, method: str, path: str,
                                          body: dict[str, Any], status: int) -> None:
    await world.fails(status, method, path, json=body)


async def test_duplicate_configuration_names_conflict(world: World) -> None:
    name = f"dup-{uuid.uuid4().hex[:6]}"
    await world.ok("POST", "/v1/configurations", json=_config_body(name))
    assert (await world.fails(409, "POST", "/v1/configurations", json=_config_body(name))
            )["errorCode"] == "conflict"


def _metric(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "PYTHON", "criteria": "def m(o, i, g):\n    return 1.0",
            "description": "a score", "return_type": "float", "enabled_in_prod": True,
            "sampling_percentage": 25, "threshold": {"min": 0.5},
            "filters": {"filterArray": [{"field": "event_type", "operator": "is",
                                         "value": "model", "type": "string"}]}, **extra}


async def test_metrics_live_in_the_control_plane(world: World) -> None:
    name = f"m-{uuid.uuid4().hex[:6]}"
    created = await world.ok("POST", "/v1/metrics", json=_metric(name))
    CreateMetricResponse(**created)
    metric_id = created["metric_id"]
    listed = await world.ok("GET", "/v1/metrics", params={"type": "PYTHON"})
    GetMetricsResponse(**listed)
    (item,) = [m for m in listed["metrics"] if m["id"] == metric_id]
    assert (item["name"], item["type"], item["return_type"], item["sampling_percentage"],
            item["enabled_in_prod"], item["threshold"], item["version"]) == (
        name, "PYTHON", "float", 25.0, True, {"min": 0.5}, "v1")
    assert item["criteria"].startswith("def m(")
    assert item["needs_ground_truth"] is False
    assert item["filters"]["filterArray"][0]["value"] == "model"
    evaluator = (await world.at_cp(
        f"/v1/projects/{world.projects['a']}/evaluators/{metric_id}")).json()
    assert (evaluator["type"], evaluator["deployed_version"], evaluator["enabled"]) == (
        "python", 1, True)
    assert evaluator["versions"][0]["pass_min"] == 0.5
    assert evaluator["versions"][0]["code"].startswith("def m(")
    llm = (await world.ok("GET", "/v1/metrics", params={"type": "LLM"}))["metrics"]
    assert metric_id not in {m["id"] for m in llm}
    (by_id,) = (await world.ok("GET", "/v1/metrics", params={"id": metric_id}))["metrics"]
    assert by_id["id"] == metric_id

    updated = await world.ok("PUT", f"/v1/metrics/{metric_id}",
                             json={"threshold": {"min": 0.7}, "description": "stricter"})
    UpdateMetricResponse(**updated)
    versions = await world.ok("GET", f"/v1/metrics/{metric_id}/versions")
    GetMetricVersionsResponse(**versions)
    assert [(v["name"], v["deployed"]) for v in versions["data"]] == [("v1", False),
                                                                       ("v2", True)]
    assert versions["data"][1]["content"]["threshold"] == {"min": 0.7}
    assert versions["data"][0]["full_sha"] != versions["data"][1]["full_sha"]
    only_text = await world.ok("PUT", "/v1/metrics",
                               json={"id": metric_id, "description": "words only"})
    assert only_text["updated"] is True
    assert len((await world.ok("GET", f"/v1/metrics/{metric_id}/versions"))["data"]) == 2

    added = await world.ok("POST", f"/v1/metrics/{metric_id}/versions", json={
        "message": "looser", "content": _metric(name, threshold={"min": 0.1})})
    CreateMetricVersionResponse(**added)
    assert (added["data"]["name"], added["data"]["deployed"], added["data"]["message"]) == (
        "v3", False, "looser")
    deployed = await world.ok("POST", f"/v1/metrics/{metric_id}/versions/v3/deploy")
    DeployMetricVersionResponse(**deployed)
    assert deployed["data"]["deployed"] is True
    (current,) = (await world.ok("GET", "/v1/metrics", params={"id": metric_id}))["metrics"]
    assert current["threshold"] == {"min": 0.1}
    assert current["version"] == "v3"
    assert current["description"] == "words only"

    deleted = await world.ok("DELETE", "/v1/metrics", params={"metric_id": metric_id})
    DeleteMetricResponse(**deleted)
    gone = await world.at_cp(f"/v1/projects/{world.projects['a']}/evaluators/{metric_id}")
    assert gone.status_code == 404
    await world.fails(404, "DELETE", f"/v1/metrics/{metric_id}")


async def test_metrics_are_per_project_and_per_permission(world: World) -> None:
    metric_id = (await world.ok("POST", "/v1/metrics",
                                json=_metric(f"iso-{uuid.uuid4().hex[:6]}")))["metric_id"]
    assert metric_id not in {m["id"] for m in
                             (await world.ok("GET", "/v1/metrics", "b"))["metrics"]}
    assert (await world.ok("GET", "/v1/metrics", "b", params={"id": metric_id})
            )["metrics"] == []
    for method, path in (("PUT", f"/v1/metrics/{metric_id}"),
                         ("DELETE", f"/v1/metrics/{metric_id}"),
                         ("GET", f"/v1/metrics/{metric_id}/versions"),
                         ("POST", f"/v1/metrics/{metric_id}/versions/v1/deploy")):
        await world.fails(404, method, path, "b", json={} if method == "PUT" else None)
    await world.fails(403, "GET", "/v1/metrics", "a_events")
    await world.fails(403, "POST", "/v1/metrics", "a_read", json=_metric("nope"))
    refused = await world.fails(403, "GET", "/v1/metrics", "viewer_token")
    assert "API key" in refused["message"]


@pytest.mark.parametrize(("body", "status"), [
    ({**_metric("x"), "type": "COMPOSITE"}, 400),
    ({**_metric("x"), "type": "ORACLE"}, 400),
    ({**_metric("x"), "return_type": "image"}, 400),
    ({**_metric("x"), "sampling_percentage": 150}, 400),
    ({**_metric("x"), "threshold": {"min": 2, "max": 1}}, 400),
    ({**_metric("x"), "filters": {"filterArray": [{"field": "nope", "operator": "is",
                                                   "value": "x", "type": "string"}]}}, 400),
    ({**_metric("x"), "filters": {"filterArray": [{"field": "event_type",
                                                   "operator": "sounds like",
                                                   "value": "x", "type": "string"}]}}, 400),
    ({"name": "x", "type": "LLM"}, 400),
])
async def test_bad_metric_requests(world: World, body: dict[str, Any], status: int) -> None:
    await world.fails(status, "POST", "/v1/metrics", json=body)


async def test_metric_version_rules(world: World) -> None:
    name = f"rules-{uuid.uuid4().hex[:6]}"
    metric_id = (await world.ok("POST", "/v1/metrics", json=_metric(name)))["metric_id"]
    await world.fails(400, "PUT", f"/v1/metrics/{metric_id}", json={"type": "LLM"})
    await world.fails(400, "POST", f"/v1/metrics/{metric_id}/versions",
                      json={"message": "m", "content": _metric(name, type="HUMAN")})
    await world.fails(400, "POST", f"/v1/metrics/{metric_id}/versions",
                      json={"message": "m", "content": _metric("renamed")})
    await world.fails(404, "POST", f"/v1/metrics/{metric_id}/versions/v9/deploy")
    await world.fails(404, "POST", f"/v1/metrics/{metric_id}/versions/latest/deploy")
    await world.fails(409, "POST", "/v1/metrics", json=_metric(name))


async def test_run_results_use_the_metric_definitions(world: World) -> None:
    metric = f"quality-{uuid.uuid4().hex[:6]}"
    await world.ok("POST", "/v1/metrics", json=_metric(metric, threshold={"min": 0.5}))
    run_id = str(uuid.uuid4())
    await world.ok("POST", "/v1/runs", json={"run_id": run_id})
    tenant: Tenant = {"org_id": "o", "workspace_id": "w", "project_id": world.projects["a"]}
    scores = {"dp1": 0.4, "dp2": 0.6}
    world.store.insert_events(tenant, 1, [
        event(event_type="chain", event_name="f", metrics={metric: score},
              metadata={"run_id": run_id, "datapoint_id": dp}) for dp, score in scores.items()])
    result = await world.ok("GET", f"/v1/runs/{run_id}/result")
    assert (result["passed"], result["failed"], result["warnings"]) == (["dp2"], ["dp1"], [])
    # The run's own passing_ranges win over the definition.
    await world.ok("PUT", f"/v1/runs/{run_id}", json={"passing_ranges": {metric: {"min": 0}}})
    assert (await world.ok("GET", f"/v1/runs/{run_id}/result"))["failed"] == []
    await world.ok("PUT", f"/v1/runs/{run_id}", json={"passing_ranges": {}})
    # A key that may not read evaluators gets no definitions: the metric is not judged.
    unjudged = await world.ok("GET", f"/v1/runs/{run_id}/result", "a_events")
    assert unjudged["failed"] == []
    assert set(unjudged["passed"]) == {"dp1", "dp2"}


async def test_a_control_plane_that_does_not_answer_is_503(
    nats_server: NatsServer, store: EventStore, tmp_path: Any,
) -> None:
    """Configuration is unavailable (503, retryable); run results still answer."""
    product, context = await open_product(
        nats_server, store, tmp_path, control_plane_url=f"http://127.0.0.1:{free_port()}",
        extra_keys={"config": (*ALL, Permission.PROMPTS_READ, Permission.EVALUATORS_READ)})
    try:
        for path in ("/v1/configurations", "/v1/metrics"):
            failed = await product.fails(503, "GET", path, "config")
            assert failed["errorCode"] == "control_plane_unavailable"
        run = await product.ok("POST", "/v1/runs", "config", json={})
        result = await product.ok("GET", f"/v1/runs/{run['run_id']}/result", "config")
        assert "metric definitions unavailable" in result["warnings"][0]
    finally:
        await product.http.aclose()
        await context.close()
