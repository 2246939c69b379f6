"""``POST /v1/evaluations/draft``: a draft evaluator run on one stored event, synchronously
(the web UI's "Test on this event"), on real servers without Ray: a real control plane
(keys), the data plane's app in-process over the session's nats-server and chDB, a real
writer, and the real sandbox with tight limits.

The attacker's side: an event of another project is a 404 (never scored, never shown);
a key without ``evaluators:write`` or (for a judge) ``proxy:use`` is refused; code that
loops forever or allocates without bound is answered with its error within the limits,
and the sandbox serves the next draft after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _fresh_topology import fresh_topology, until
from _openai_server import FakeOpenAI
from _owner import owner_of_two_projects, served_control_plane

from apiary.dataplane.app import create_app
from apiary.dataplane.auth import control_plane_authenticator
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ISSUER = "http://cp.draft.test/cp"
DP_ID = "dp-draft"
PASSWORD = "a long enough password 42"
WRITE = ["events:read", "events:write", "evaluators:read", "evaluators:write"]
WORDS = """
def evaluate(event):
    words = len(str(event["outputs"].get("content", "")).split())
    print("counted", words)
    return {"score": words, "explanation": "words in the answer", "long": words > 3}
"""


@dataclass
class World:
    dp: httpx.AsyncClient
    keys: dict[str, str]
    events: dict[str, str]  # project -> a stored event of it

    async def draft(self, who: str = "a", **body: Any) -> httpx.Response:
        body.setdefault("type", "python")
        body.setdefault("event_id", self.events["a"])
        return await self.dp.post("/v1/evaluations/draft", json=body,
                                  headers={"authorization": f"Bearer {self.keys[who]}"})

    async def result(self, who: str = "a", **body: Any) -> dict[str, Any]:
        response = await self.draft(who, **body)
        assert response.status_code == 200, (response.status_code, response.text)
        return dict(response.json())


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[str, ApiarySettings]]:
    with served_control_plane(tmp_path_factory.mktemp("cp"), issuer=ISSUER, dp_id=DP_ID,
                              name="draft") as served:
        yield served


@pytest.fixture(scope="module")
async def world(control_plane: tuple[str, ApiarySettings], nats_server: NatsServer,
                store: EventStore, judge_server: FakeOpenAI,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    cp_url, cp_settings = control_plane
    async with httpx.AsyncClient(base_url=cp_url, timeout=30) as cp:
        owner = await owner_of_two_projects(cp, cp_url, cp_settings, "Draft")
        key = owner.key
        keys = {"a": await key("a", WRITE), "b": await key("b", WRITE),
                "a_judge": await key("a", [*WRITE, "proxy:use"]),
                "a_read": await key("a", ["events:read", "evaluators:read"])}
    data_dir = tmp_path_factory.mktemp("dp")
    settings = cp_settings.model_copy(update={
        "data_dir": data_dir, "control_plane_url": cp_url, "jwt_issuer": ISSUER,
        "writer_flush_interval_s": 0.05, "sandbox_timeout_s": 2.0, "sandbox_cpu_s": 1,
        "sandbox_memory_mb": 64, "evaluator_judge_url": judge_server.url,
        "evaluator_judge_model": "judge-model"})
    nc = await connect(nats_server.url, name="draft-test")
    await fresh_topology(nc, settings)
    client = DirectStoreClient(store)
    context = await DataPlaneContext.open(settings, nats_server.url,
                                          control_plane_authenticator(settings), store=client)
    writer = WriterLoop(js=nc.jetstream(), store=client,
                        objects=LocalObjectStore(data_dir / "objects"), settings=settings,
                        name="draft-writer")
    task = asyncio.create_task(writer.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context)),
                                 base_url="http://dp", timeout=60) as dp:
        events: dict[str, str] = {}
        for project in ("a", "b"):
            event = {"event_type": "model", "event_name": "llm_call",
                     "event_id": str(uuid.uuid4()), "session_id": str(uuid.uuid4()),
                     "inputs": {"question": "where?"},
                     "outputs": {"content": "in the top drawer, left"}}
            auth = {"authorization": f"Bearer {keys[project]}"}
            sent = await dp.post("/v1/events/batch", json={"events": [event]}, headers=auth)
            assert sent.status_code == 200, sent.text
            events[project] = event["event_id"]

            async def stored(event_id: str = event["event_id"],
                             auth: dict[str, str] = auth) -> bool:
                return (await dp.get(f"/v1/events/{event_id}", headers=auth)).status_code == 200
            await until(stored, 30, f"event of {project} stored")
        yield World(dp, keys, events)
    writer.stop()
    await task
    await context.close()
    await nc.close()


async def test_a_python_draft_scores_the_event_and_shows_what_it_printed(world: World) -> None:
    result = await world.result(code=WORDS)
    assert result["ok"] is True
    assert result["event_id"] == world.events["a"]
    assert result["score"] == 5
    assert result["explanation"] == "words in the answer"
    assert result["extras"] == {"long": True}
    assert "counted 5" in result["logs"]
    assert result["error"] is None


async def test_a_failing_draft_answers_its_error(world: World) -> None:
    raised = await world.result(code="def evaluate(event):\n    return 1 / 0\n")
    assert raised["ok"] is False
    assert raised["score"] is None
    assert raised["error"]["code"] == "metric_runtime_error"
    assert raised["error"]["details"].get("error_type") == "ZeroDivisionError"
    rejected = await world.result(code="import socket\ndef evaluate(event):\n    return 1\n")
    assert rejected["ok"] is False
    assert rejected["error"]["code"] == "metric_compile_error"


async def test_runaway_code_is_stopped_and_the_sandbox_serves_the_next_draft(
        world: World) -> None:
    forever = await world.result(code="def evaluate(event):\n    while True:\n        pass\n")
    assert forever["ok"] is False
    assert forever["error"]["code"] in ("metric_timeout", "metric_resource_limit")
    hog = await world.result(
        code="def evaluate(event):\n    x = [0] * (1024 * 1024 * 1024)\n    return len(x)\n")
    assert hog["ok"] is False
    assert hog["error"]["code"] in ("metric_resource_limit", "metric_runtime_error")
    again = await world.result(code=WORDS)
    assert again["ok"] is True
    assert again["score"] == 5


async def test_another_projects_event_is_not_found(world: World) -> None:
    response = await world.draft("b", code=WORDS, event_id=world.events["a"])
    assert response.status_code == 404
    assert "drawer" not in response.text  # nothing of the event itself
    assert "score" not in response.json()
    missing = await world.draft(code=WORDS, event_id=str(uuid.uuid4()))
    assert missing.status_code == 404


async def test_drafts_need_evaluators_write_and_a_judge_needs_proxy_use(world: World) -> None:
    assert (await world.draft("a_read", code=WORDS)).status_code == 403
    judge = await world.draft(type="llm", criteria="Is {{outputs}} polite? true/false",
                              return_type="boolean")
    assert judge.status_code == 403
    assert "proxy:use" in judge.text


async def test_a_judge_draft_asks_the_judge_once_and_answers_its_verdict(
        world: World, judge: FakeOpenAI) -> None:
    judge.reply = lambda messages: '{"score": 4, "explanation": "mostly right"}'
    result = await world.result("a_judge", type="llm", return_type="float",
                                criteria="Rate {{outputs}} from 1 to 5.",
                                model_params={"model": "gpt-4o-mini"})
    assert result["ok"] is True
    assert result["score"] == 4
    assert result["explanation"] == "mostly right"
    assert len(judge.requests) == 1
    assert "top drawer" in str(judge.requests[0]["body"]["messages"])
    judge.reply = lambda messages: "no verdict here"
    vague = await world.result("a_judge", type="llm", criteria="Rate {{outputs}}.")
    assert vague["ok"] is False
    assert vague["error"]["code"] == "judge_rejected"


async def test_a_draft_is_checked(world: World) -> None:
    assert (await world.draft(code="")).status_code == 400
    assert (await world.draft(type="human", criteria="x")).status_code in (400, 422)
    assert (await world.draft(code=WORDS, extra=1)).status_code in (400, 422)
    assert (await world.dp.post("/v1/evaluations/draft", json={
        "type": "python", "code": WORDS, "event_id": world.events["a"]})).status_code == 401
