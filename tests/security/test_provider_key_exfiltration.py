"""Attacks on the workspace's LLM provider key (issue item 4): sending it to an endpoint the
attacker runs, reaching internal hosts through the proxy (SSRF, DNS rebinding), a project
admin rewriting the credential other projects share, and spending the key through an LLM
judge without ``proxy:use``.

A real data plane runs in-process (``tests/_dataplane.py``: its FastAPI app, dpdb, NATS,
chDB, a writer loop) with LiteLLM making real HTTP calls. The legitimate provider and the
attacker's endpoint are real HTTP servers on 127.0.0.1 that record what they receive; the
operator allow-lists only the name ``localhost`` (how the legitimate provider is reached),
so the attacker's ``127.0.0.1`` is as internal as it would be in production. Evaluator
definitions come from a stand-in control plane (a real HTTP server serving the evaluator
API the data plane reads with the caller's key).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _dataplane import KeySpec, Plane, open_plane
from _servers import http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apiary.dataplane.auth import Permission
from apiary.dataplane.evaluation.proxy import credentials as vault
from apiary.dataplane.evaluation.proxy.request import ChatCompletionRequest
from apiary.dataplane.evaluation.proxy.routes import envelope_of, proxy_of
from apiary.dataplane.evaluation.proxy.service import Caller, ChatProxy
from apiary.dataplane.evaluation.proxy.tracing import TraceSink
from apiary.errors import OutboundUrlRefused
from apiary.outbound import OutboundPolicy, Resolver
from apiary.queue import NatsServer
from apiary.store import EventStore
from security._recording_server import RecordingServer, recording_server

P = Permission
USE, MANAGE = P.PROXY_USE, P.PROXY_MANAGE
EVALUATE = (P.EVENTS_READ, P.EVENTS_WRITE, P.EVALUATORS_READ, P.EVALUATORS_WRITE)
SECRET = "sk-workspace-" + "s3cr3t" * 6


# --- a stand-in control plane serving evaluator definitions ---------------------------


@dataclass
class EvaluatorApi:
    """The control plane's ``/v1/projects/{p}/evaluators`` as the data plane reads it; it
    records every request, so a test can tell nothing was changed there."""

    evaluators: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def judge(self, evaluator_id: str, version: int = 1) -> None:
        self.evaluators[evaluator_id] = {
            "id": evaluator_id, "name": f"judged_{evaluator_id[:6]}", "type": "llm",
            "description": "", "enabled": True, "deployed_version": version,
            "versions": [{"version": v, "criteria": f"Is {{{{outputs.content}}}} right? v{v}",
                          "code": None, "return_type": "float", "sampling_pct": 100.0,
                          "filters": [], "model_params": {"model_name": "gpt-4o-mini"}}
                         for v in range(1, version + 1)]}

    async def _list(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        return JSONResponse(list(self.evaluators.values()))

    async def _one(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        found = self.evaluators.get(request.path_params["evaluator_id"])
        if request.method != "GET" or found is None:
            return JSONResponse({"message": "not here", "errorCode": "not_found"}, 404)
        return JSONResponse(found)

    def app(self) -> Starlette:
        base = "/v1/projects/{project_id}/evaluators"
        return Starlette(routes=[
            Route(base, self._list, methods=["GET", "POST"]),
            Route(base + "/{evaluator_id}", self._one, methods=["GET", "PATCH", "DELETE"]),
            Route(base + "/{evaluator_id}/{action:path}", self._one, methods=["POST"]),
        ])


@dataclass
class Scene:
    plane: Plane
    provider: RecordingServer
    attacker: RecordingServer
    evaluators: EvaluatorApi
    project: str
    judged_project: str

    async def chat(self, who: str = "user") -> Any:
        return await self.plane.call("POST", "/v1/chat/completions", who, json={
            "model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})

    async def credential(self, who: str = "ws_admin") -> dict[str, Any]:
        listed = await self.plane.ok("GET", "/v1/proxy/credentials", who)
        (only,) = listed["credentials"]
        return dict(only)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RecordingServer, RecordingServer, EvaluatorApi, str]]:
    evaluators = EvaluatorApi()
    with recording_server() as provider, recording_server() as attacker, \
            http_server(evaluators.app()) as cp_url:
        yield provider, attacker, evaluators, cp_url


@pytest.fixture(scope="module")
async def scene(servers: tuple[RecordingServer, RecordingServer, EvaluatorApi, str],
                nats_server: NatsServer, store: EventStore,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    provider, attacker, evaluators, cp_url = servers
    suffix = uuid.uuid4().hex[:10]
    project, judged = f"proj-exfil-{suffix}", f"proj-judged-{suffix}"
    keys = {
        # A workspace admin acting in project A: proxy:manage on the workspace itself.
        "ws_admin": KeySpec(project, (USE, MANAGE, P.EVENTS_READ),
                            workspace_permissions=(USE, MANAGE)),
        # A project admin: proxy:manage on project A only.
        "project_admin": KeySpec(project, (USE, MANAGE, P.EVENTS_READ)),
        "user": KeySpec(project, (USE, P.EVENTS_READ)),
        "no_proxy": KeySpec(judged, EVALUATE),
        "judge_runner": KeySpec(judged, (*EVALUATE, USE)),
    }
    async with open_plane(nats_server, store, tmp_path_factory.mktemp("exfil"), keys,
                          outbound_allowlist=("localhost",), control_plane_url=cp_url,
                          evaluator_definitions_ttl_s=0.2) as plane:
        scene = Scene(plane, provider, attacker, evaluators, project, judged)
        await plane.ok("POST", "/v1/proxy/credentials", "ws_admin", status=201, json={
            "provider": "openai", "api_key": SECRET,
            "api_base": f"http://localhost:{provider.port}/v1"})
        yield scene
        await proxy_of(plane.context).sink.drain(30)


# --- sending the key elsewhere -------------------------------------------------------


async def test_changing_api_base_to_attackers_server_without_the_key_is_refused(
        scene: Scene) -> None:
    before = await scene.credential()
    for api_base in (f"{scene.attacker.url}/v1", f"http://localhost:{scene.attacker.port}/v1",
                     None):
        body = await scene.plane.fails(400, "PUT", f"/v1/proxy/credentials/{before['id']}",
                                       "ws_admin", json={"api_base": api_base})
        assert body["errorCode"] == "invalid_request"
        assert body["details"] == {"field": "api_key"}
        assert "api_key" in body["message"]
    assert await scene.credential() == before
    # The next call still goes to the real provider, with the key; the attacker sees nothing.
    assert (await scene.chat()).status_code == 200
    assert scene.provider.authorizations()[-1] == f"Bearer {SECRET}"
    assert scene.attacker.received == []


async def test_changing_api_base_with_a_new_key_still_cannot_point_at_loopback(
        scene: Scene) -> None:
    credential = await scene.credential()
    body = await scene.plane.fails(
        400, "PUT", f"/v1/proxy/credentials/{credential['id']}", "ws_admin",
        json={"api_base": f"{scene.attacker.url}/v1", "api_key": "sk-attacker-" + "x" * 20})
    assert body["errorCode"] == "outbound_url_refused"
    assert body["details"] == {"field": "api_base", "reason": "loopback_address"}
    assert await scene.credential() == credential
    assert scene.attacker.received == []


@pytest.mark.parametrize(("api_base", "reason"), [
    ("http://127.0.0.1:{port}/v1", "loopback_address"),
    ("https://127.0.0.1:{port}/v1", "loopback_address"),
    ("https://10.0.0.1/v1", "private_address"),
    ("https://169.254.169.254/latest/meta-data", "link_local_address"),
    ("https://[::1]:{port}/v1", "loopback_address"),
    ("https://[::ffff:127.0.0.1]:{port}/v1", "loopback_address"),
    ("http://api.openai.com/v1", "http_not_allowed"),
])
async def test_provider_base_on_loopback_or_private_network_is_refused_unless_allow_listed(
        scene: Scene, api_base: str, reason: str) -> None:
    url = api_base.format(port=scene.attacker.port)
    body = await scene.plane.fails(400, "POST", "/v1/proxy/credentials", "ws_admin", json={
        "provider": "anthropic", "api_key": "sk-ant-" + "k" * 30, "api_base": url})
    assert body["errorCode"] == "outbound_url_refused"
    assert body["details"] == {"field": "api_base", "reason": reason}
    # With the allow-list empty the vault refuses it too (what every caller of it gets).
    with scene.plane.context.dpdb.transaction() as db, pytest.raises(OutboundUrlRefused):
        vault.create_credential(db, envelope_of(scene.plane.context),
                                vault.Workspace("org-1", "ws-empty"), provider="openai",
                                api_key="sk-" + "k" * 30, api_base=url,
                                outbound=OutboundPolicy())
    assert scene.attacker.received == []


async def test_credential_stored_before_the_policy_cannot_send_the_key_inside(
        scene: Scene) -> None:
    # A credential pointing at loopback, stored before the policy existed (or while the
    # operator allow-listed it): the proxy checks api_base again before every call.
    workspace = vault.Workspace("org-1", "ws-1")
    with scene.plane.context.dpdb.transaction() as db:
        credential = vault.credential_for(db, workspace, "openai")
        assert credential is not None
        credential.api_base = f"{scene.attacker.url}/v1"
        credential_id = credential.id
    try:
        answer = await scene.chat()
        assert answer.status_code == 400, answer.text
        assert answer.json()["errorCode"] == "outbound_url_refused"
        assert SECRET not in answer.text
        assert scene.attacker.received == []
    finally:
        with scene.plane.context.dpdb.transaction() as db:
            restored = vault.get_credential(db, workspace, credential_id)
            restored.api_base = f"http://localhost:{scene.provider.port}/v1"


def _rebinding(*answers: list[str]) -> tuple[list[str], Resolver]:
    asked: list[str] = []
    pending = list(answers)

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return pending.pop(0) if len(pending) > 1 else pending[0]
    return asked, resolve


async def _rebinding_call(scene: Scene, resolve: Resolver, provider: str = "openai",
                          model: str = "openai/gpt-4o-mini") -> None:
    """Store a credential whose host answered a (listed) public address, then call it."""
    policy = OutboundPolicy(["198.51.100.0/24"], resolver=resolve)
    workspace = vault.Workspace("org-1", f"ws-rebind-{uuid.uuid4().hex[:6]}")
    context = scene.plane.context
    with context.dpdb.transaction() as db:
        vault.create_credential(db, envelope_of(context), workspace, provider=provider,
                                api_key=SECRET, outbound=policy,
                                api_base=f"http://localhost:{scene.attacker.port}/v1")
    proxy = ChatProxy(database=lambda: context.dpdb, envelope=lambda: envelope_of(context),
                      sink=TraceSink(context.publisher), timeout_s=10, outbound=policy)
    caller = Caller({"org_id": "org-1", "workspace_id": workspace.workspace_id,
                     "project_id": scene.project}, "key:attacker")
    try:
        with pytest.raises(OutboundUrlRefused) as refused:
            await proxy.complete(caller, ChatCompletionRequest(
                model=model, messages=[{"role": "user", "content": "hi"}]))
        assert refused.value.context["field"] == "api_base"
        assert refused.value.status == 400
    finally:
        await proxy.sink.drain(10)


# LiteLLM reaches OpenAI-compatible providers through the OpenAI SDK's client and the others
# (Anthropic here) through its own HTTP handler: both must be checked at connect time.
@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "openai/gpt-4o-mini"), ("anthropic", "anthropic/claude-3-5-haiku-20241022")])
async def test_dns_rebinding_of_provider_base_at_connect_time_does_not_reach_loopback(
        scene: Scene, provider: str, model: str) -> None:
    # Public when stored, public again when the proxy re-checks it, loopback when LiteLLM
    # connects: only the connect-time check stands between the key and the attacker (the
    # system resolves "localhost" to the attacker's 127.0.0.1).
    asked, resolve = _rebinding(["198.51.100.7"], ["198.51.100.7"], ["127.0.0.1"])
    await _rebinding_call(scene, resolve, provider, model)
    # Stored, re-checked, then each connection attempt (a client may retry a refused one).
    assert len(asked) >= 3
    assert set(asked) == {"localhost"}
    assert scene.attacker.received == []


async def test_dns_rebinding_between_storing_and_calling_is_refused_before_connecting(
        scene: Scene) -> None:
    asked, resolve = _rebinding(["198.51.100.7"], ["127.0.0.1"])
    await _rebinding_call(scene, resolve)
    assert asked == ["localhost"] * 2  # refused by the re-check: no connection attempted
    assert scene.attacker.received == []


# --- the workspace's credential and a project admin ---------------------------------------


async def test_project_admin_cannot_change_the_workspace_credential(scene: Scene) -> None:
    credential = await scene.credential("project_admin")  # listing is fine
    path = f"/v1/proxy/credentials/{credential['id']}"
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", path, {"api_base": f"{scene.attacker.url}/v1",
                       "api_key": "sk-attacker-" + "x" * 20}),
        ("PUT", path, {"api_key": "sk-attacker-" + "y" * 20}),
        ("DELETE", path, None),
        ("POST", "/v1/proxy/credentials", {"provider": "anthropic",
                                          "api_key": "sk-ant-" + "z" * 30}),
    ]
    for method, url, body in attempts:
        kwargs = {"json": body} if body is not None else {}
        refused = await scene.plane.fails(403, method, url, "project_admin", **kwargs)
        assert refused["errorCode"] == "forbidden"
        assert "workspace" in refused["message"]
    assert await scene.credential() == credential
    assert (await scene.chat()).status_code == 200
    assert scene.provider.authorizations()[-1] == f"Bearer {SECRET}"
    assert scene.attacker.received == []


async def test_workspace_admin_can_rotate_the_key_and_move_the_endpoint_together(
        scene: Scene) -> None:
    credential = await scene.credential()
    rotated = "sk-rotated-" + "r" * 30
    updated = await scene.plane.ok(
        "PUT", f"/v1/proxy/credentials/{credential['id']}", "ws_admin",
        json={"api_base": f"http://LOCALHOST:{scene.provider.port}/v1/", "api_key": rotated})
    assert updated["api_base"] == f"http://localhost:{scene.provider.port}/v1"
    assert (await scene.chat()).status_code == 200
    assert scene.provider.authorizations()[-1] == f"Bearer {rotated}"
    await scene.plane.ok("PUT", f"/v1/proxy/credentials/{credential['id']}", "ws_admin",
                         json={"api_key": SECRET})


# --- spending the key through an LLM judge -------------------------------------------------


async def _online_tasks(scene: Scene) -> int:
    subject = f"evaluation.online.{scene.judged_project}"
    info = await scene.plane.context.js.stream_info("evaluation", subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def _model_event(scene: Scene, who: str) -> str:
    event_id = str(uuid.uuid4())
    await scene.plane.ok("POST", "/v1/events/batch", who, json={"events": [{
        "event_type": "model", "event_name": "llm_call", "event_id": event_id,
        "session_id": str(uuid.uuid4()), "inputs": {"question": "where?"},
        "outputs": {"content": "Paris"}}]})
    await scene.plane.event(event_id, who)
    return event_id


async def test_caller_without_proxy_use_cannot_get_a_judge_to_spend_the_key(
        scene: Scene) -> None:
    judge_id = uuid.uuid4().hex
    scene.evaluators.judge(judge_id)
    event_id = await _model_event(scene, "no_proxy")
    # Defining an LLM metric, changing or deploying one, or running one on events: 403.
    llm_metric = {"name": "sneaky", "type": "LLM", "criteria": "Is it right?",
                  "return_type": "float", "enabled_in_prod": True}
    refused = await scene.plane.fails(403, "POST", "/v1/metrics", "no_proxy", json=llm_metric)
    assert "proxy:use" in refused["message"]
    await scene.plane.fails(403, "PUT", f"/v1/metrics/{judge_id}", "no_proxy",
                            json={"criteria": "Is it right, really?"})
    await scene.plane.fails(403, "POST", f"/v1/metrics/{judge_id}/versions/v1/deploy",
                            "no_proxy")
    await scene.plane.fails(403, "POST", "/v1/evaluations", "no_proxy",
                            json={"metric_id": judge_id, "event_ids": [event_id]})
    assert not [r for r in scene.evaluators.requests if r[0] != "GET"]
    # Deploying it to this data plane (it was defined at the control plane): withheld.
    refreshed = await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "no_proxy")
    assert refreshed["metrics"] == []
    assert [w["id"] for w in refreshed["withheld"]] == [judge_id]
    assert (await scene.plane.ok("GET", "/v1/evaluations/online", "no_proxy"))["metrics"] == []
    before = await _online_tasks(scene)
    await _model_event(scene, "no_proxy")
    await asyncio.sleep(1.0)  # the writer's copy of the definitions lives 0.2 s
    assert await _online_tasks(scene) == before
    # The same steps by a caller holding proxy:use do reach the judge: the refusals above
    # are the permission, not something else failing.
    allowed = await scene.plane.ok("POST", "/v1/evaluations", "judge_runner",
                                   json={"metric_id": judge_id, "event_ids": [event_id]})
    assert allowed["queued"] == 1
    deployed = await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "judge_runner")
    assert [m["id"] for m in deployed["metrics"]] == [judge_id]
    await asyncio.sleep(0.5)
    await _model_event(scene, "judge_runner")
    for _ in range(100):
        if await _online_tasks(scene) > before:
            break
        await asyncio.sleep(0.1)
    assert await _online_tasks(scene) == before + 1


async def test_caller_without_proxy_use_cannot_swap_in_a_new_judge_version(
        scene: Scene) -> None:
    judge_id = uuid.uuid4().hex
    scene.evaluators.judge(judge_id, version=1)
    await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "judge_runner")
    # Version 2 appears at the control plane; the caller without proxy:use refreshes.
    scene.evaluators.judge(judge_id, version=2)
    # Version 1 is no longer the deployed one, and version 2 is not deployed here: the
    # judge stops (which spends nothing) until a caller with proxy:use refreshes.
    refreshed = await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "no_proxy")
    assert judge_id not in {m["id"] for m in refreshed["metrics"]}
    assert [(w["id"], w["version"]) for w in refreshed["withheld"]] == [(judge_id, 2)]
    deployed = await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "judge_runner")
    assert {m["id"]: m["version"] for m in deployed["metrics"]}[judge_id] == 2
    # An unchanged judge survives a refresh by anyone, as it was deployed.
    again = await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "no_proxy")
    assert {m["id"]: m["version"] for m in again["metrics"]}[judge_id] == 2
    assert again["withheld"] == []
    # Stopping one needs no proxy:use: a removed judge spends nothing.
    del scene.evaluators.evaluators[judge_id]
    stopped = await scene.plane.ok("POST", "/v1/evaluations/online/refresh", "no_proxy")
    assert judge_id not in {m["id"] for m in stopped["metrics"]}
