"""Sessions over HTTP with the HoneyHive SDK's exact bodies: start, idempotent create, merge,
and adding events to a session. Everything goes through JetStream and the writer."""

from __future__ import annotations

from typing import Any

from _event_api_plane import Api, honeyhive_body, new_id
from honeyhive._generated.models import PostSessionStartResponse, SessionTracesResponse

START_KEYS = {"event_id", "session_id", "org_id", "workspace_id", "project_id"}


async def test_session_start_from_tracer_init_generates_the_session(api: Api) -> None:
    body = honeyhive_body("rest_session_start_tracer_init")  # carries the SDK's "project"
    answer = await api.ok("POST", "/session/start", json=body)
    assert set(answer) == START_KEYS
    PostSessionStartResponse(**answer)  # what the SDK validates
    assert answer["event_id"] == answer["session_id"]
    assert answer["project_id"] == api.projects["a"]  # from the key, not the body
    assert (answer["org_id"], answer["workspace_id"]) == ("org-1", "ws-1")
    stored = await api.event(answer["session_id"])
    assert stored["event_type"] == "session"
    assert stored["event_name"] == "wire-capture-session"
    assert stored["source"] == "wire-test"
    assert stored["parent_id"] is None
    assert stored["start_time"] > 0


async def test_session_start_keeps_the_given_id_and_inputs(api: Api) -> None:
    body = honeyhive_body("rest_session_start_tracer_init_session_id")
    session_id = new_id()
    body["session"]["session_id"] = session_id
    answer = await api.ok("POST", "/session/start", json=body)
    assert answer["session_id"] == answer["event_id"] == session_id
    stored = await api.event(session_id)
    assert stored["inputs"] == {"q": 1}
    assert stored["event_name"] == "givenid"


async def test_session_start_of_evaluate_and_client(api: Api) -> None:
    evaluate = honeyhive_body("rest_session_start_evaluate")
    first = await api.ok("POST", "/session/start", json=evaluate)
    stored = await api.event(first["session_id"])
    assert stored["source"] == "evaluation"
    assert stored["inputs"] == {"question": "abc"}
    assert stored["metadata"]["datapoint_id"] == "EXT-186ecf70d851d31b"

    client = honeyhive_body("rest_session_start_client")
    second = await api.ok("POST", "/session/start", json=client)
    stored = await api.event(second["session_id"])
    assert stored["start_time"] == 1700000000000.0
    assert stored["user_properties"] == {"u": 1}
    assert second["session_id"] != first["session_id"]


async def test_v1_sessions_is_idempotent_and_merges_metadata(api: Api) -> None:
    session_id = new_id()
    first = await api.ok("POST", "/v1/sessions", json={
        "session_id": session_id, "session_name": "chat", "source": "prod",
        "metadata": {"a": 1, "shared": "first"}, "user_properties": {"plan": "pro"}})
    assert first["event_id"] == first["session_id"] == session_id
    assert PostSessionStartResponse(**first).metadata == {"a": 1, "shared": "first"}
    assert first["event_type"] == "session"
    assert first["project_id"] == api.projects["a"]
    await api.event(session_id)
    # An update in between must survive the second start.
    await api.ok("PUT", "/events", json={"event_id": session_id, "feedback": {"ok": True}})
    await api.event(session_id, until=lambda e: e["feedback"] == {"ok": True})
    again = await api.ok("POST", "/v1/sessions", json={
        "session_id": session_id, "session_name": "chat", "metadata": {"b": 2, "shared": "2nd"}})
    assert again["session_id"] == session_id
    merged = await api.event(session_id, until=lambda e: "b" in e["metadata"])
    assert merged["metadata"] == {"a": 1, "b": 2, "shared": "2nd"}
    assert merged["user_properties"] == {"plan": "pro"}
    assert merged["feedback"] == {"ok": True}
    assert merged["source"] == "prod"  # the first start's fields stay
    found = await api.search({"filters": [
        {"field": "session_id", "operator": "is", "value": session_id, "type": "string"}]})
    assert found["totalEvents"] == 1  # one session, not two


async def test_session_start_twice_in_quick_succession_stays_one_session(api: Api) -> None:
    session_id = new_id()
    for n in range(3):
        await api.ok("POST", "/session/start", json={"session": {
            "session_id": session_id, "session_name": "s", "metadata": {f"k{n}": n}}})
    merged = await api.event(session_id, until=lambda e: len(e["metadata"]) == 3)
    assert merged["metadata"] == {"k0": 0, "k1": 1, "k2": 2}
    await api.settled()
    found = await api.search({"filters": [
        {"field": "session_id", "operator": "is", "value": session_id}]})
    assert found["totalEvents"] == 1


async def _session_events(api: Api, session_id: str) -> list[dict[str, Any]]:
    found = await api.search({"filters": [
        {"field": "session_id", "operator": "is", "value": session_id, "type": "string"},
        {"field": "event_type", "operator": "is not", "value": "session"}]})
    return list(found["events"])


async def test_session_traces_add_events_to_the_session(api: Api) -> None:
    session = (await api.ok("POST", "/session/start", json={"session": {"session_name": "t"}}))
    session_id = session["session_id"]
    answer = await api.ok("POST", f"/session/{session_id}/traces", json={"logs": [
        {"event_type": "tool", "event_name": "search", "inputs": {"q": "x"},
         "session_id": "ignored-the-url-wins"},
        {"event_type": "model", "event_name": "llm", "inputs": {}, "config": {"model": "m"}},
    ]})
    assert SessionTracesResponse(**answer).success is True
    assert len(answer["event_ids"]) == 2
    for event_id in answer["event_ids"]:
        stored = await api.event(event_id)
        assert stored["session_id"] == session_id
        assert stored["parent_id"] == session_id
    assert {e["event_name"] for e in await _session_events(api, session_id)} == {
        "search", "llm"}


async def test_v1_session_events_batch(api: Api) -> None:
    session_id = new_id()
    await api.ok("POST", "/v1/sessions", json={"session_id": session_id})
    answer = await api.ok("POST", f"/v1/sessions/{session_id}/events/batch", json={"events": [
        {"event_type": "chain", "event_name": "step", "inputs": {"n": 1},
         "event_id": (child := new_id()), "start_time": 1700000000000.0, "duration": 25.0}]})
    assert answer == {"success": True, "event_ids": [child]}
    stored = await api.event(child)
    assert stored["session_id"] == session_id
    assert stored["end_time"] == 1700000000025.0
    assert stored["duration"] == 25.0
    tree = await api.ok("GET", f"/v1/sessions/{session_id}")
    assert [c["event_id"] for c in tree["session"]["children"]] == [child]
