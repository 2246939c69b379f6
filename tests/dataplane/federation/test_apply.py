"""The appliers of the control plane's config push (apiary.dataplane.federation.apply),
against a real JetStream: each kind lands where its readers look, applying twice changes
nothing, and a sequence applied in version order leaves the final state."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from _payloads import evaluator
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.dataplane.evaluation.definitions import DEFINITIONS_BUCKET, DefinitionStore
from apiary.dataplane.federation.apply import Change, ConfigApplier
from apiary.dataplane.replica.federation_state import (
    CONFIG_BUCKET,
    KEY_REVOKED_SUBJECT,
    STATE_BUCKET,
    read_json,
)
from apiary.queue import NatsServer, connect
from apiary.settings import ApiarySettings


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="apply-test")
    js = client.jetstream()
    for bucket in (STATE_BUCKET, CONFIG_BUCKET, DEFINITIONS_BUCKET):
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_key_value(bucket)
    yield client
    await client.close()


@pytest.fixture
async def applier(nc: Client, tmp_path: Any) -> ConfigApplier:
    return await ConfigApplier.open(nc, ApiarySettings(data_dir=tmp_path))


def change(version: int, kind: str, project: str, obj: str, payload: dict[str, Any] | None,
           *, deleted: bool = False) -> Change:
    return Change.of(version, kind, project, obj, deleted,
                     orjson.dumps(payload) if payload is not None else b"")


async def definitions(nc: Client, project: str) -> list[dict[str, Any]]:
    store = await DefinitionStore.open(nc.jetstream(), ApiarySettings())
    return [dict(s) for s in await store.get(project)]


async def test_a_metric_is_applied_to_the_writers_definitions_and_deleted(
    nc: Client, applier: ConfigApplier
) -> None:
    assert await applier.apply(change(3, "metric", "p-1", "m-1", evaluator("m-1", "p-1"))) == 3
    specs = await definitions(nc, "p-1")
    assert [(s["id"], s["version"], s["kind"]) for s in specs] == [("m-1", 1, "python")]
    assert "return 1" in specs[0]["code"]
    assert await applier.apply(change(4, "metric", "p-1", "m-1", None, deleted=True)) == 4
    assert await definitions(nc, "p-1") == []
    assert await applier.applied_version() == 4  # durable: read back from the bucket


async def test_a_pushed_llm_judge_is_applied_and_a_disabled_metric_is_not_online(
    nc: Client, applier: ConfigApplier
) -> None:
    await applier.apply(change(1, "metric", "p-1", "judge", evaluator("judge", "p-1", kind="llm")))
    await applier.apply(change(2, "metric", "p-1", "off", evaluator("off", "p-1", enabled=False)))
    await applier.apply(change(3, "metric", "p-1", "undeployed",
                               evaluator("undeployed", "p-1", deployed=False)))
    assert [s["id"] for s in await definitions(nc, "p-1")] == ["judge"]


async def test_applying_a_change_twice_is_applying_it_once(
    nc: Client, applier: ConfigApplier
) -> None:
    entry = change(7, "metric", "p-1", "m-1", evaluator("m-1", "p-1", version=2))
    await applier.apply(entry)
    store = await DefinitionStore.open(nc.jetstream(), ApiarySettings())
    first = await store.deployed("p-1")
    config_first = await read_json(applier.config, "metric.p-1")
    await applier.apply(entry)
    assert await store.deployed("p-1") == first  # same spec, same deployment time
    assert await read_json(applier.config, "metric.p-1") == config_first
    assert await applier.applied_version() == 7


async def test_changes_in_version_order_leave_the_final_state_even_with_a_replay(
    nc: Client, applier: ConfigApplier
) -> None:
    await applier.apply(change(5, "metric", "p-2", "m", evaluator("m", "p-2", version=1)))
    await applier.apply(change(9, "metric", "p-2", "m", evaluator("m", "p-2", version=2)))
    await applier.apply(change(10, "project_unassigned", "p-2", "p-2", {"project_id": "p-2"}))
    assert await definitions(nc, "p-2") == []
    # Reassigned: the control plane replays the project's earlier entries with their
    # original (lower) versions, in order, then the assignment.
    for entry in (change(5, "metric", "p-2", "m", evaluator("m", "p-2", version=1)),
                  change(9, "metric", "p-2", "m", evaluator("m", "p-2", version=2)),
                  change(12, "project_assigned", "p-2", "p-2",
                         {"project_id": "p-2", "workspace_id": "w", "org_id": "o",
                          "name": "two", "data_plane_id": "dp-x"})):
        await applier.apply(entry)
    assert [(s["id"], s["version"]) for s in await definitions(nc, "p-2")] == [("m", 2)]
    assert "p-2" in await applier.served_projects()
    assert await applier.applied_version() == 12  # never lowered by the replay


async def test_alert_rules_and_prompts_are_kept_by_kind_project_and_object(
    applier: ConfigApplier
) -> None:
    rule = {"id": "r-1", "project_id": "p-1", "name": "errors", "enabled": True,
            "definition": {"metric": "error_rate", "above": 0.1}}
    prompt = {"id": "pr-1", "project_id": "p-1", "name": "greet",
              "versions": [{"version": 1, "template": "Hi {{name}}"}],
              "environments": {"prod": 1}}
    await applier.apply(change(1, "alert_rule", "p-1", "r-1", rule))
    await applier.apply(change(2, "prompt", "p-1", "pr-1", prompt))
    stored_rule = await read_json(applier.config, "alert_rule.p-1.r-1")
    stored_prompt = await read_json(applier.config, "prompt.p-1.pr-1")
    assert stored_rule is not None
    assert stored_rule["object"] == rule
    assert stored_prompt is not None
    assert stored_prompt["object"] == prompt
    await applier.apply(change(3, "alert_rule", "p-1", "r-1", None, deleted=True))
    assert await read_json(applier.config, "alert_rule.p-1.r-1") is None


async def test_a_revoked_key_is_announced_to_every_replica(
    nc: Client, applier: ConfigApplier
) -> None:
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_notice(msg: Any) -> None:
        await heard.put(orjson.loads(msg.data))

    await nc.subscribe(KEY_REVOKED_SUBJECT, cb=on_notice)
    digest = hashlib.sha256(b"hh_ingst_revoked").hexdigest()
    await applier.apply(change(1, "key_revoked", "p-1", "k-1",
                               {"key_id": "k-1", "project_id": "p-1", "workspace_id": "w",
                                "key_sha256": digest}))
    notice = await asyncio.wait_for(heard.get(), 5)
    assert notice == {"key_id": "k-1", "key_sha256": digest}
    assert (await read_json(applier.config, "key_revoked.k-1") or {})["key_sha256"] == digest


async def test_projects_join_and_leave_the_served_set(applier: ConfigApplier) -> None:
    await applier.set_projects({"p-1": {"project_id": "p-1"}})
    await applier.apply(change(1, "project_assigned", "p-3", "p-3",
                               {"project_id": "p-3", "workspace_id": "w", "org_id": "o",
                                "name": "three", "data_plane_id": "dp-x"}))
    assert set(await applier.served_projects()) == {"p-1", "p-3"}
    await applier.apply(change(2, "project_revoked", "p-1", "p-1", {"project_id": "p-1"}))
    assert set(await applier.served_projects()) == {"p-3"}


async def test_an_unknown_kind_is_skipped_and_still_recorded(applier: ConfigApplier) -> None:
    assert await applier.apply(change(4, "dashboard", "p-1", "d", {"x": 1})) == 4


async def test_a_change_that_can_never_be_applied_does_not_stall_the_stream(
    nc: Client, applier: ConfigApplier
) -> None:
    # A payload that is not JSON, and a metric whose versions are unusable: each is skipped
    # (logged) and recorded, so the controller acknowledges it instead of failing forever.
    broken = Change.of(1, "metric", "p-1", "m", False, b"{not json")
    assert broken.payload is None
    assert await applier.apply(broken) == 1
    unusable = change(2, "metric", "p-1", "m2", {"id": "m2", "versions": "nonsense",
                                                  "enabled": True, "type": "python",
                                                  "deployed_version": 1, "name": "m2"})
    assert await applier.apply(unusable) == 2
    await applier.apply(change(3, "metric", "p-1", "m3", evaluator("m3", "p-1")))
    assert [s["id"] for s in await definitions(nc, "p-1")] == ["m3"]
