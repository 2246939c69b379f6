"""Human review: annotation queues filled by hand and by rules, reviewers assigned, scores
recorded as feedback on the event and read back through the export API.

The data plane runs in-process (``tests/_dataplane.py``) over real NATS, chDB, a writer and
dpdb on SQLite. Keys (project A unless said): ``lead`` (queues read/write, events
read/write), ``alice`` and ``bob`` (reviewers: queues:read, annotations:write),
``carol`` (may annotate but reviews no queue), ``viewer`` (queues:read), ``b`` (everything,
project B).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _dataplane import KeySpec, Plane, open_plane, until
from honeyhive._generated.models import (
    CreateAnnotationQueueRequest,
    CreateAnnotationQueueResponse,
    DeleteAnnotationQueueResponse,
    GetAnnotationQueueByIdResponse,
    GetAnnotationQueuesResponse,
    UpdateAnnotationQueueRequest,
    UpdateAnnotationQueueResponse,
)

from apiary.dataplane.auth import Permission
from apiary.dataplane.review import queues as queue_ops
from apiary.dataplane.review.routes import filler_of
from apiary.queue import NatsServer
from apiary.store import EventStore

P = Permission
EVERYTHING = (P.QUEUES_READ, P.QUEUES_WRITE, P.ANNOTATIONS_WRITE, P.EVENTS_READ,
              P.EVENTS_WRITE)
REVIEWER = (P.QUEUES_READ, P.ANNOTATIONS_WRITE, P.EVENTS_READ)


@pytest.fixture(scope="module")
async def review(nats_server: NatsServer, store: EventStore,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Plane]:
    suffix = uuid.uuid4().hex[:10]
    a, b = f"proj-qa-{suffix}", f"proj-qb-{suffix}"
    keys = {
        "lead": KeySpec(a, (P.QUEUES_READ, P.QUEUES_WRITE, P.EVENTS_READ, P.EVENTS_WRITE)),
        "alice": KeySpec(a, REVIEWER), "bob": KeySpec(a, REVIEWER),
        "carol": KeySpec(a, REVIEWER), "viewer": KeySpec(a, (P.QUEUES_READ,)),
        "b": KeySpec(b, EVERYTHING),
    }
    async with open_plane(nats_server, store, tmp_path_factory.mktemp("review"), keys,
                          review_fill_interval_s=0.2) as plane:
        yield plane


async def _events(plane: Plane, *metadata: dict[str, Any], who: str = "lead") -> list[str]:
    """Create one model event per metadata object; returns their ids once stored."""
    body = {"events": [{"event_type": "model", "event_name": "answer",
                        "inputs": {"q": f"question {i}"}, "metadata": meta}
                       for i, meta in enumerate(metadata)]}
    ids: list[str] = (await plane.ok("POST", "/v1/events/batch", who, json=body))["event_ids"]
    for event_id in ids:
        await plane.event(event_id, who)
    return ids


async def _queue(plane: Plane, name: str, who: str = "lead", **fields: Any) -> dict[str, Any]:
    body = CreateAnnotationQueueRequest(name=name, **fields).model_dump(exclude_none=True)
    answer = await plane.ok("POST", "/v1/queues", who, status=201, json=body)
    CreateAnnotationQueueResponse(**answer)  # the SDK can read it
    queue: dict[str, Any] = answer["queue"]
    return queue


async def _items(plane: Plane, queue_id: str, who: str = "lead", **query: Any
                 ) -> list[dict[str, Any]]:
    page = await plane.ok("GET", f"/v1/queues/{queue_id}/items", who, params=query)
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_queues_have_the_honeyhive_shapes(review: Plane) -> None:
    queue = await _queue(review, f"shapes-{uuid.uuid4().hex[:6]}", description="d",
                         filters={"filterArray": [{"field": "event_type", "operator": "is",
                                                   "value": "model", "type": "string"}]})
    assert queue["scope_type"] == "project"
    assert queue["enabled"] is True
    listed = await review.ok("GET", "/v1/queues", "viewer")
    GetAnnotationQueuesResponse(**listed)
    assert queue["id"] in [q["id"] for q in listed["queues"]]
    one = await review.ok("GET", f"/v1/queues/{queue['id']}", "viewer")
    GetAnnotationQueueByIdResponse(**one)
    assert one["filters"]["filterArray"][0]["field"] == "event_type"
    update = UpdateAnnotationQueueRequest(id=queue["id"], name=queue["name"] + "-2",
                                          enabled=False)
    updated = await review.ok("PUT", f"/v1/queues/{queue['id']}", "lead",
                              json=update.model_dump(exclude_none=True))
    UpdateAnnotationQueueResponse(**updated)
    assert (updated["queue"]["name"], updated["queue"]["enabled"]) == (
        queue["name"] + "-2", False)
    assert [q["id"] for q in (await review.ok("GET", "/v1/queues", "lead",
                                              params={"enabled": "false"}))["queues"]] == [
        queue["id"]]
    DeleteAnnotationQueueResponse(**await review.ok("DELETE", f"/v1/queues/{queue['id']}",
                                                    "lead"))
    await review.fails(404, "GET", f"/v1/queues/{queue['id']}", "lead")


async def test_manual_queue_with_reviewers_and_scores_as_feedback(review: Plane) -> None:
    alice, bob = review.subjects["alice"], review.subjects["bob"]
    ids = await _events(review, {"n": 1}, {"n": 2}, {"n": 3})
    queue = await _queue(review, f"manual-{uuid.uuid4().hex[:6]}", event_ids=ids[:2],
                         reviewers=[alice, bob])
    assert queue["reviewers"] == [alice, bob]
    assert queue["item_counts"]["pending"] == 2
    # Least loaded first, earlier-listed on a tie: one each.
    items = {i["event_id"]: i for i in await _items(review, queue["id"])}
    assert {items[ids[0]]["assignee"], items[ids[1]]["assignee"]} == {alice, bob}
    assert all(i["source"] == "manual" for i in items.values())
    added = await review.ok("POST", f"/v1/queues/{queue['id']}/items", "lead",
                            json={"event_ids": ids})  # two already there
    assert added["added"] == [ids[2]]

    claimed = await review.ok("POST", f"/v1/queues/{queue['id']}/items/next", "alice")
    mine = claimed["item"]
    assert mine["assignee"] == alice
    assert mine["status"] == "in_progress"
    assert claimed["event"]["event_id"] == mine["event_id"]
    # Not a reviewer of this queue; or someone else's item.
    await review.fails(403, "POST", f"/v1/queues/{queue['id']}/items/next", "carol")
    path = f"/v1/queues/{queue['id']}/items/{mine['event_id']}/scores"
    await review.fails(403, "POST", path, "bob", json={"feedback": {"rating": 1}})
    await review.fails(403, "POST", path, "viewer", json={"feedback": {"rating": 1}})
    scored = await review.ok("POST", path, "alice",
                             json={"feedback": {"rating": 4, "comment": "good"}})
    assert scored["item"]["status"] == "completed"
    assert scored["item"]["completed_by"] == alice
    # The score is feedback on the event, read back through the export.
    await review.settled()
    exported = await review.ok("POST", "/v1/events/export", "lead", json={"filters": [
        {"field": "feedback.rating", "operator": "is", "value": "4", "type": "number"}]})
    assert [e["event_id"] for e in exported["events"]] == [mine["event_id"]]
    assert exported["events"][0]["feedback"] == {"rating": 4, "comment": "good"}
    assert exported["events"][0]["metadata"]["n"] in (1, 2)  # the event itself, intact
    counts = (await review.ok("GET", f"/v1/queues/{queue['id']}", "viewer"))["item_counts"]
    assert counts == {"pending": 2, "in_progress": 0, "completed": 1, "skipped": 0}


async def test_assignment_skip_and_reopen(review: Plane) -> None:
    alice, bob = review.subjects["alice"], review.subjects["bob"]
    [event_id] = await _events(review, {"n": "assign"})
    queue = await _queue(review, f"assign-{uuid.uuid4().hex[:6]}", event_ids=[event_id],
                         reviewers=[alice, bob])
    item_path = f"/v1/queues/{queue['id']}/items/{event_id}"
    # Reviewers may not reassign; the lead may.
    await review.fails(403, "PUT", item_path, "alice", json={"assignee": bob})
    moved = await review.ok("PUT", item_path, "lead", json={"assignee": bob})
    assert moved["assignee"] == bob
    assert [i["event_id"] for i in await _items(review, queue["id"], assignee=bob)] == [
        event_id]
    await review.fails(403, "PUT", item_path, "alice", json={"status": "skipped"})
    assert (await review.ok("PUT", item_path, "bob", json={"status": "skipped"}))[
        "status"] == "skipped"
    await review.fails(400, "PUT", item_path, "bob", json={"status": "completed"})
    assert (await review.ok("POST", f"/v1/queues/{queue['id']}/items/next", "bob"))[
        "item"] is None
    await review.ok("PUT", item_path, "bob", json={"status": "pending"})
    assert (await review.ok("POST", f"/v1/queues/{queue['id']}/items/next", "bob"))[
        "item"]["event_id"] == event_id


async def test_rule_filled_queue_takes_new_matching_events_only_once(review: Plane) -> None:
    marker = uuid.uuid4().hex[:8]
    queue = await _queue(review, f"rules-{marker}", filters={"filterArray": [
        {"field": "metadata.flag", "operator": "is", "value": marker, "type": "string"},
        {"field": "metadata.score", "operator": "less than", "value": "0.5",
         "type": "number"}]})
    low, high, other = await _events(review, {"flag": marker, "score": 0.2},
                                     {"flag": marker, "score": 0.9},
                                     {"flag": "nope", "score": 0.1})
    items = await _items(review, queue["id"])  # listing fills a queue that is due
    assert [(i["event_id"], i["source"]) for i in items] == [(low, "rule")]
    assert high not in str(items)
    assert other not in str(items)
    # A person takes it out; the rule does not bring it back.
    await review.ok("DELETE", f"/v1/queues/{queue['id']}/items/{low}", "lead")
    assert (await review.ok("POST", f"/v1/queues/{queue['id']}/fill", "lead"))["added"] == 0
    assert await _items(review, queue["id"]) == []
    [newer] = await _events(review, {"flag": marker, "score": 0.3})
    assert (await review.ok("POST", f"/v1/queues/{queue['id']}/fill", "lead"))["added"] == 1
    assert [i["event_id"] for i in await _items(review, queue["id"])] == [newer]
    # Added by hand again, the removed event comes back.
    assert (await review.ok("PUT", f"/v1/queues/{queue['id']}", "lead", json={
        "id": queue["id"], "add_event_ids": [low]}))["queue"]["item_counts"]["pending"] == 2


async def test_the_background_filler_fills_without_any_request(review: Plane) -> None:
    marker = uuid.uuid4().hex[:8]
    queue = await _queue(review, f"background-{marker}", filters={"filterArray": [
        {"field": "metadata.flag", "operator": "is", "value": marker, "type": "string"}]})
    [event_id] = await _events(review, {"flag": marker})

    def pending() -> int:
        with review.context.dpdb.transaction() as db:
            return queue_ops.item_counts(db, [queue["id"]])[queue["id"]]["pending"]

    assert pending() == 0
    async with review.app.router.lifespan_context(review.app):

        async def filled() -> bool:
            return pending() == 1

        await until(filled, wait_s=20)
    assert filler_of(review.context).interval_s == 0.2
    assert [i["event_id"] for i in await _items(review, queue["id"])] == [event_id]


async def test_queues_are_scoped_to_their_project(review: Plane) -> None:
    [event_id] = await _events(review, {"n": "scoped"})
    queue = await _queue(review, f"scoped-{uuid.uuid4().hex[:6]}", event_ids=[event_id])
    for method, path, body in (
            ("GET", f"/v1/queues/{queue['id']}", None),
            ("PUT", f"/v1/queues/{queue['id']}", {"name": "taken over"}),
            ("GET", f"/v1/queues/{queue['id']}/items", None),
            ("POST", f"/v1/queues/{queue['id']}/items/next", None),
            ("POST", f"/v1/queues/{queue['id']}/items/{event_id}/scores",
             {"feedback": {"rating": 0}}),
            ("DELETE", f"/v1/queues/{queue['id']}", None)):
        reply = await review.fails(404, method, path, "b", json=body)
        assert reply["errorCode"] == "not_found"
    assert queue["id"] not in str(await review.ok("GET", "/v1/queues", "b"))
    assert (await review.ok("GET", f"/v1/queues/{queue['id']}", "lead"))["name"] == (
        queue["name"])


async def test_permissions_and_validation(review: Plane) -> None:
    name = f"valid-{uuid.uuid4().hex[:6]}"
    await review.fails(403, "POST", "/v1/queues", "viewer", json={"name": name})
    await review.fails(403, "POST", "/v1/queues", "alice", json={"name": name})
    bad = await review.fails(400, "POST", "/v1/queues", "lead", json={
        "name": name, "filters": {"filterArray": [
            {"field": "no_such_column", "operator": "is", "value": "x", "type": "string"}]}})
    assert "no_such_column" in bad["message"]
    await review.fails(400, "POST", "/v1/queues", "lead", json={"name": name, "bogus": 1})
    # Text PostgreSQL cannot store (NUL) is refused up front, never a 500 later.
    await review.fails(400, "POST", "/v1/queues", "lead", json={"name": "nul\x00name"})
    await review.fails(400, "POST", "/v1/queues", "lead",
                       json={"name": name, "event_ids": ["bad\x00id"]})
    queue = await _queue(review, name)
    assert (await review.fails(409, "POST", "/v1/queues", "lead", json={"name": name}))[
        "errorCode"] == "conflict"
    await review.fails(400, "PUT", f"/v1/queues/{queue['id']}", "lead",
                       json={"id": "another-queue", "name": "x"})
    await review.fails(400, "POST", f"/v1/queues/{queue['id']}/items/e/scores", "lead",
                       json={"feedback": {}})


async def test_scoring_criteria_are_kept_and_scores_must_fit_them(review: Plane) -> None:
    """A queue names what reviewers score (the web UI's scoring form); a score for a
    criterion's key must fit its kind, other keys pass as they are."""
    criteria = [
        {"key": "rating", "kind": "rating", "label": "Overall quality"},
        {"key": "helpful", "kind": "thumbs"},
        {"key": "tone", "kind": "category", "options": ["formal", "casual"]},
        {"key": "note", "kind": "text", "label": "Notes"},
    ]
    ids = await _events(review, {"n": "criteria-1"}, {"n": "criteria-2"})
    answer = await review.ok("POST", "/v1/queues", "lead", status=201, json={
        "name": f"criteria-{uuid.uuid4().hex[:6]}", "event_ids": ids, "criteria": criteria})
    CreateAnnotationQueueResponse(**answer)  # the SDK still reads it
    queue = answer["queue"]
    assert queue["criteria"] == [{**c, "label": c.get("label"), "options": c.get("options")}
                                 for c in criteria]
    got = await review.ok("GET", f"/v1/queues/{queue['id']}", "viewer")
    assert got["criteria"] == queue["criteria"]
    GetAnnotationQueueByIdResponse(**got)

    claimed = (await review.ok("POST", f"/v1/queues/{queue['id']}/items/next", "alice"))
    path = f"/v1/queues/{queue['id']}/items/{claimed['item']['event_id']}/scores"
    for wrong in ({"rating": 6}, {"rating": 0}, {"rating": 4.5}, {"rating": True},
                  {"helpful": "yes"}, {"tone": "rude"}, {"note": 3}):
        reply = await review.fails(400, "POST", path, "alice", json={"feedback": wrong})
        assert reply["errorCode"] == "invalid_request", reply
    # Nothing recorded by the refusals: the item is still the reviewer's, in progress.
    [item] = [i for i in await _items(review, queue["id"])
              if i["event_id"] == claimed["item"]["event_id"]]
    assert item["status"] == "in_progress"
    feedback = {"rating": 5, "helpful": False, "tone": "casual", "note": "ok",
                "extra": [1]}
    scored = await review.ok("POST", path, "alice", json={"feedback": feedback})
    assert scored["item"]["feedback"] == feedback

    # Changing the criteria; bad ones are refused with the reason.
    changed = await review.ok("PUT", f"/v1/queues/{queue['id']}", "lead",
                              json={"criteria": [{"key": "ok", "kind": "thumbs"}]})
    assert [c["key"] for c in changed["queue"]["criteria"]] == ["ok"]
    for bad in ([{"key": "a", "kind": "thumbs"}, {"key": "a", "kind": "text"}],
                [{"key": "a", "kind": "category"}],
                [{"key": "a", "kind": "category", "options": ["x", "x"]}],
                [{"key": "a", "kind": "rating", "options": ["x", "y"]}],
                [{"key": "a", "kind": "stars"}],
                [{"key": "has space", "kind": "text"}]):
        await review.fails(400, "PUT", f"/v1/queues/{queue['id']}", "lead",
                           json={"criteria": bad})
    # A queue without criteria says so (an empty list), and scores stay free-form.
    plain = await _queue(review, f"plain-{uuid.uuid4().hex[:6]}")
    assert plain["criteria"] == []
