"""``/v1/admin/dead-letters`` on the data-plane app (real NATS, chDB and writer; see
``tests/_dataplane.py``): the operator lists, shows, replays and purges; nobody else may.

The attacker holds a project key with every data-plane permission, or a workspace key: a
dead letter holds whole events of any project, so neither may read, replay or remove one.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from _dataplane import KeySpec, Plane, open_plane, until

from apiary.dataplane.auth import Permission
from apiary.event import new_event
from apiary.queue import WIRE_SCHEMA, NatsServer
from apiary.store import EventStore

ADMIN = "operator-" + "x" * 40
EVERY = tuple(Permission)
BASE = "/v1/admin/dead-letters"


@pytest.fixture
async def plane(nats_server: NatsServer, store: EventStore, tmp_path: Path,
                project: str) -> AsyncIterator[Plane]:
    keys = {"owner": KeySpec(project, EVERY),
            "workspace": KeySpec("", EVERY, workspace_permissions=EVERY)}
    async with open_plane(nats_server, store, tmp_path, keys, admin_token=ADMIN) as p:
        p.keys["operator"] = ADMIN
        yield p


async def _poison(plane: Plane, project: str) -> str:
    """A message the writer dead-letters at once; the dead letter's id."""
    await plane.context.js.publish(f"events.api.{project}", b"{not json",
                                   headers={"Nats-Msg-Id": f"poison-{uuid.uuid4().hex}"})

    async def dead_lettered() -> bool:
        listed = await plane.ok("GET", BASE, who="operator")
        return bool(listed["counts"]["total"] >= 1)

    await until(dead_lettered)
    listed = await plane.ok("GET", BASE, who="operator")
    return str(listed["dead_letters"][0]["id"])


async def test_a_project_or_workspace_key_cannot_list_show_replay_or_purge_dead_letters(
    plane: Plane, project: str
) -> None:
    letter = await _poison(plane, project)
    for who in ("owner", "workspace"):
        for method, path, body in (
            ("GET", BASE, None),
            ("GET", f"{BASE}/{letter}", None),
            ("POST", f"{BASE}/replay", {"all": True}),
            ("POST", f"{BASE}/purge", {"all": True}),
            ("DELETE", f"{BASE}/{letter}", None),
        ):
            refused = await plane.fails(403, method, path, who, json=body)
            assert refused["errorCode"] == "forbidden"
            assert "payload" not in str(refused)
    # Nor without a credential, or with a guess of the operator's token.
    response = await plane.http.get(BASE)
    assert response.status_code == 401
    plane.keys["guess"] = ADMIN[:-1] + "y"
    await plane.fails(403, "GET", BASE, "guess")
    # The dead letter is untouched.
    listed = await plane.ok("GET", BASE, who="operator")
    assert [d["id"] for d in listed["dead_letters"]] == [letter]


async def test_the_admin_api_is_closed_without_an_admin_token(
    nats_server: NatsServer, store: EventStore, tmp_path: Path, project: str
) -> None:
    async with open_plane(nats_server, store, tmp_path, {"a": KeySpec(project, EVERY)}) as p:
        p.keys["operator"] = ADMIN
        body = await p.fails(403, "GET", BASE, "operator")
        assert "APIARY_ADMIN_TOKEN" in body["message"]
        await p.fails(403, "POST", f"{BASE}/replay", "a", json={"all": True})


async def test_the_operator_lists_shows_replays_and_purges(
    plane: Plane, project: str
) -> None:
    letter = await _poison(plane, project)
    listed = await plane.ok("GET", BASE, who="operator")
    # The writer names the stage that failed: the message did not decode.
    assert listed["counts"]["by_reason_and_stage"] == [
        {"reason": "PoisonMessage", "stage": "decode", "count": 1}]
    assert listed["counts"]["by_stage"] == {"decode": 1}
    [summary] = listed["dead_letters"]
    assert summary["project_id"] == project
    assert (summary["stage"], summary["rows"]) == ("decode", 0)
    assert "not JSON" in summary["error"]
    shown = (await plane.ok("GET", f"{BASE}/{letter}", who="operator"))["dead_letter"]
    assert shown["payload"]["encoding"] == "base64"
    assert base64.b64decode(shown["payload"]["base64"]) == b"{not json"
    assert (await plane.ok("GET", BASE, who="operator", params={"reason": "StoreRejected"}
                           ))["counts"]["total"] == 0

    # A batch that was dead-lettered by a fault since fixed (its record as the writer
    # leaves it): replayed, the writer stores it, and the record goes.
    event_id = str(uuid.uuid4())
    batch = {"schema": WIRE_SCHEMA, "kind": "api", "version": time.time_ns(),
             "tenant": {"org_id": "org-1", "workspace_id": "ws-1", "project_id": project},
             "events": [new_event(event_id=event_id, session_id=event_id,
                                  event_type="session", start_time=1e12, end_time=1e12 + 1)]}
    fixed = "events.2026.01.02.000000999999"
    (plane.context.settings.data_dir / "objects/dlq/events/2026/01/02").mkdir(
        parents=True, exist_ok=True)
    (plane.context.settings.data_dir / "objects/dlq/events/2026/01/02/000000999999.json"
     ).write_bytes(orjson.dumps({
        "subject": f"events.api.{project}", "stream_sequence": 999999, "deliveries": 20,
        "headers": {"Nats-Msg-Id": f"fixed-{event_id}"}, "error": "ClickHouse was down",
        "error_type": "StoreUnavailable", "dead_lettered_at": time.time() - 3600,
        "data_base64": base64.b64encode(orjson.dumps(batch)).decode()}))
    replayed = await plane.ok("POST", f"{BASE}/replay", who="operator",
                              json={"reason": "StoreUnavailable"})
    assert replayed == {"replayed": [fixed], "already_replayed": [], "deferred": [],
                        "failed": []}
    stored = await plane.event(event_id, who="owner")
    assert stored["event_id"] == event_id
    await plane.fails(404, "GET", f"{BASE}/{fixed}", "operator")
    await plane.fails(404, "POST", f"{BASE}/replay", "operator", json={"ids": [fixed]})

    # Purge: nothing without a selection; one by id; the rest by reason.
    await plane.fails(400, "POST", f"{BASE}/purge", "operator", json={})
    await plane.fails(400, "GET", f"{BASE}/events..etc.passwd", "operator")
    assert await plane.ok("DELETE", f"{BASE}/{letter}", who="operator") == {"purged": [letter]}
    await plane.fails(404, "DELETE", f"{BASE}/{letter}", "operator")
    assert (await plane.ok("GET", BASE, who="operator"))["counts"]["total"] == 0
