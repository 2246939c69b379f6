"""Bad input gets a precise 4xx with ``message`` and ``errorCode`` (never a 500), and a key
of project B can neither read nor change project A's sessions and events."""

from __future__ import annotations

from typing import Any

import pytest
from _event_api_plane import Api, new_id

LONG_ID = "x" * 300

BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    # method, path, JSON body (or raw bytes), status, text the message must contain
    ("POST", "/session/start", {}, 400, "session"),
    ("POST", "/session/start", {"session": {"session_id": ""}}, 400, "session_id"),
    ("POST", "/session/start", {"session": {"bogus": 1}}, 400, "bogus"),
    ("POST", "/session/start", {"session": {"start_time": -5}}, 400, "start_time"),
    ("POST", "/session/start", {"session": {"metadata": "text"}}, 400, "metadata"),
    ("POST", "/session/start", b"{not json", 400, "JSON"),
    ("POST", "/v1/sessions", [], 400, "body"),
    ("POST", "/v1/sessions", {"session_id": 5}, 400, "session_id"),
    ("POST", "/v1/sessions", {"user_properties": [1]}, 400, "user_properties"),
    ("POST", "/events", {"event": {"inputs": {}}}, 400, "event_type"),
    ("POST", "/events", {"event": {"event_type": "span", "inputs": {}}}, 400, "event_type"),
    ("POST", "/events", {"event": {"event_type": "tool"}}, 400, "inputs"),
    ("POST", "/events", {"event": {"event_type": "tool", "inputs": {}, "colour": 1}}, 400,
     "colour"),
    ("POST", "/events", {"event": {"event_type": "session", "inputs": {}, "event_id": "a",
                                   "session_id": "b"}}, 400, "session_id"),
    ("POST", "/events", {"event": {"event_type": "tool", "inputs": {}, "end_time": "late"}},
     400, "end_time"),
    ("POST", "/events/batch", {"events": []}, 400, "events"),
    ("POST", "/events/batch", {"events": {"event_type": "tool"}}, 400, "events"),
    ("POST", "/events/batch", {"events": [{"event_type": "tool", "parent_id": LONG_ID}]}, 400,
     "parent_id"),
    ("POST", "/v1/events", {"event_type": "tool", "inputs": []}, 400, "inputs"),
    ("POST", "/v1/events", b'{"event_type": "tool", "inputs": {}, "duration": 1e400}', 400,
     "duration"),
    ("POST", "/v1/events", b'{"event_type": "tool", "inputs": {"n": 123456789012345678901234}}',
     400, "cannot be stored"),
    ("PUT", "/events", b'{"event_id": "e", "metadata": {"n": -99999999999999999999999}}', 400,
     "cannot be stored"),
    ("POST", "/v1/events/batch", {"single_session": True}, 400, "events"),
    ("POST", "/v1/events/batch", {"events": [{"event_type": "model"}]}, 400, "inputs"),
    ("PUT", "/events", {"metadata": {"a": 1}}, 400, "event_id"),
    ("PUT", "/events", {"event_id": "e", "metadata": ["a"]}, 400, "metadata"),
    ("PUT", "/events", {"event_id": "e", "duration": "long"}, 400, "duration"),
    ("PUT", "/events", {"event_id": "e", "children_ids": "c1"}, 400, "children_ids"),
    ("PUT", "/events", {"event_id": "e", "inputs": {"q": 1}}, 400, "inputs"),
    ("PUT", "/events", {"event_id": "bad\nid"}, 400, "event_id"),
    ("PUT", "/v1/events/e1", {"event_id": "e1"}, 400, "event_id"),
    ("PUT", f"/v1/events/{LONG_ID}", {"metadata": {}}, 400, "event_id"),
    ("GET", f"/v1/events/{new_id()}", None, 404, "not found"),
    ("POST", "/v1/events/search", {"filters": [
        {"field": "metadata.x", "operator": "resembles", "value": 1}]}, 400, "operator"),
    ("POST", "/v1/events/search", {"filters": [
        {"field": "colour", "operator": "is", "value": 1}]}, 400, "colour"),
    ("POST", "/v1/events/search", {"filters": [
        {"field": "metadata.x", "operator": "is", "value": 1, "type": "money"}]}, 400, "type"),
    ("POST", "/v1/events/search", {"limit": 0}, 400, "limit"),
    ("POST", "/v1/events/search", {"dateRange": {"start_time": "yesterday"}}, 400,
     "dateRange"),
    ("POST", "/v1/events/search", {"filters": [{"field": "duration", "operator": "contains",
                                                "value": "1"}]}, 400, "duration"),
    ("GET", "/v1/events/schema?dateRange=last+tuesday", None, 400, "dateRange"),
    ("GET", '/v1/events/schema?dateRange={"$gte":"soon"}', None, 400, "dateRange"),
    ("POST", "/session/s1/traces", {"logs": [], "events": []}, 400, "exactly one"),
    ("POST", "/session/s1/traces", {}, 400, "exactly one"),
    ("POST", "/session/s1/traces", {"events": [{"inputs": {}}]}, 400, "event_type"),
    ("POST", "/v1/sessions/s1/events/batch", {"logs": []}, 400, "events"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "mentions"), BAD_REQUESTS,
                         ids=[f"{m} {p[:40]} {i}" for i, (m, p, *_) in enumerate(BAD_REQUESTS)])
async def test_bad_input_is_a_precise_4xx(api: Api, method: str, path: str, body: Any,
                                          status: int, mentions: str) -> None:
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs = {"content": body, "headers": {**api.auth(), "content-type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    if "headers" in kwargs:
        response = await api.http.request(method, path, **kwargs)
    else:
        response = await api.call(method, path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()
    assert isinstance(error["errorCode"], str)
    assert error["errorCode"]
    assert mentions.lower() in error["message"].lower(), error["message"]


WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/session/start", {"session": {}}),
    ("POST", "/v1/sessions", {}),
    ("POST", "/events", {"event": {"event_type": "tool", "inputs": {}}}),
    ("POST", "/events/batch", {"events": [{"event_type": "tool"}]}),
    ("POST", "/v1/events", {"event_type": "tool", "inputs": {}}),
    ("POST", "/v1/events/batch", {"events": [{"event_type": "tool", "inputs": {}}]}),
    ("PUT", "/events", {"event_id": "e", "metadata": {"a": 1}}),
    ("PUT", "/v1/events/e", {"metadata": {"a": 1}}),
    ("POST", "/session/s/traces", {"events": [{"event_type": "tool"}]}),
    ("POST", "/v1/sessions/s/events/batch", {"events": [{"event_type": "tool", "inputs": {}}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
async def test_writes_need_a_key_that_may_write(api: Api, method: str, path: str,
                                                body: dict[str, Any]) -> None:
    anonymous = await api.http.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["errorCode"] == "unauthenticated"
    reader = await api.call(method, path, "reader", json=body)
    assert reader.status_code == 403
    assert reader.json()["errorCode"] == "forbidden"


async def test_oversized_body_is_413(api: Api) -> None:
    limit = api.writer._settings.ingest_max_body_bytes
    big = {"event_type": "tool", "inputs": {"blob": "x" * (limit + 10)}}
    response = await api.call("POST", "/v1/events", json=big)
    assert response.status_code == 413
    assert response.json()["errorCode"] == "payload_too_large"


# --- tenant isolation: a key of project B against project A's data ----------------------


@pytest.fixture(scope="module")
async def a_session(api: Api) -> dict[str, str]:
    """A session of project A with one tool event, stored."""
    session_id, event_id = new_id(), new_id()
    await api.ok("POST", "/session/start", json={"session": {
        "session_id": session_id, "session_name": "a-only", "metadata": {"owner": "a"}}})
    await api.ok("POST", "/v1/events", json={
        "event_type": "tool", "event_id": event_id, "session_id": session_id,
        "inputs": {"secret_a_field": 1}, "metadata": {"owner": "a"}})
    await api.event(event_id)
    await api.event(session_id)
    await api.settled()  # rollups (the schema) included
    return {"session_id": session_id, "event_id": event_id}


async def _unchanged(api: Api, a_session: dict[str, str]) -> None:
    await api.settled()
    event = await api.event(a_session["event_id"])
    session = await api.event(a_session["session_id"])
    assert event["metadata"] == {"owner": "a"}
    assert event["feedback"] == {}
    assert session["metadata"] == {"owner": "a"}
    assert session["event_name"] == "a-only"
    found = await api.search({"filters": [{"field": "session_id", "operator": "is",
                                           "value": a_session["session_id"]}]})
    assert found["totalEvents"] == 2


async def test_b_cannot_get_a_event(api: Api, a_session: dict[str, str]) -> None:
    for event_id in a_session.values():
        response = await api.call("GET", f"/v1/events/{event_id}", "b")
        assert response.status_code == 404
        assert response.json()["errorCode"] == "not_found"


async def test_b_cannot_search_a_events(api: Api, a_session: dict[str, str]) -> None:
    found = await api.search({"filters": [{"field": "session_id", "operator": "is",
                                           "value": a_session["session_id"]}]}, who="b")
    assert found == {"events": [], "totalEvents": 0, "count": 0}


async def test_b_cannot_see_a_schema(api: Api, a_session: dict[str, str]) -> None:
    mine = await api.ok("GET", "/v1/events/schema")
    assert {"name": "inputs.secret_a_field", "event_type": "tool"} in mine["fields"]
    theirs = await api.ok("GET", "/v1/events/schema", "b")
    assert all("secret_a_field" not in f["name"] for f in theirs["fields"])


@pytest.mark.parametrize("path", ["/events", "/v1/events/{id}"])
async def test_b_cannot_update_a_event(api: Api, a_session: dict[str, str], path: str) -> None:
    for event_id in a_session.values():
        update = {"metadata": {"owner": "b"}, "feedback": {"hijacked": True}}
        if path == "/events":
            await api.ok("PUT", path, "b", json={"event_id": event_id, **update})
        else:
            await api.ok("PUT", path.format(id=event_id), "b", json=update)
    await _unchanged(api, a_session)
    # B's update is kept under B's project only, never under A's.
    assert api.store.event_patches(api.projects["a"], list(a_session.values())) == {}


@pytest.mark.parametrize("path", ["/session/start", "/v1/sessions"])
async def test_b_cannot_start_or_merge_into_a_session(api: Api, a_session: dict[str, str],
                                                     path: str) -> None:
    session = {"session_id": a_session["session_id"], "session_name": "b-name",
               "metadata": {"owner": "b"}}
    answer = await api.ok("POST", path, "b",
                          json={"session": session} if path == "/session/start" else session)
    assert answer["project_id"] == api.projects["b"]
    theirs = await api.event(a_session["session_id"], "b")
    assert theirs["metadata"] == {"owner": "b"}
    assert theirs["project_id"] == api.projects["b"]
    await _unchanged(api, a_session)


CREATES: list[tuple[str, Any]] = [
    ("/events", lambda s, e: {"event": {"event_type": "tool", "inputs": {}, "event_id": e,
                                        "session_id": s}}),
    ("/events/batch", lambda s, e: {"events": [{"event_type": "tool", "event_id": e,
                                                "session_id": s}], "is_single_session": True}),
    ("/v1/events", lambda s, e: {"event_type": "tool", "inputs": {}, "event_id": e,
                                 "session_id": s}),
    ("/v1/events/batch", lambda s, e: {"events": [
        {"event_type": "tool", "inputs": {}, "event_id": e, "session_id": s}]}),
    ("/session/{s}/traces", lambda s, e: {"events": [{"event_type": "tool", "event_id": e}]}),
    ("/v1/sessions/{s}/events/batch", lambda s, e: {"events": [
        {"event_type": "tool", "event_id": e, "inputs": {}}]}),
]


@pytest.mark.parametrize(("path", "body"), CREATES, ids=[p for p, _ in CREATES])
async def test_b_cannot_add_to_or_overwrite_a_session(api: Api, a_session: dict[str, str],
                                                      path: str, body: Any) -> None:
    session_id = a_session["session_id"]
    for event_id in (a_session["event_id"], new_id()):  # A's own id, and a new one
        await api.ok("POST", path.format(s=session_id), "b", json=body(session_id, event_id))
        stored = await api.event(event_id, "b")
        assert stored["project_id"] == api.projects["b"]
    await _unchanged(api, a_session)
