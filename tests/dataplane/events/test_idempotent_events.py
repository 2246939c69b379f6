"""A REST event sent again is one message, one stored event and counted once (issue 13).

The bug: ``Nats-Msg-Id`` hashed the event after the server had filled ``start_time`` with the
time of arrival, so the same create sent twice became two messages, two versions and twice
the cost in ``GET /v1/sessions``.
"""

from __future__ import annotations

from typing import Any

from _event_api_plane import Api, new_id


def _model_call(event_id: str, session_id: str, **more: Any) -> dict[str, Any]:
    # No start_time: the server fills in the time of arrival, which differs on every send.
    return {"event_id": event_id, "session_id": session_id, "event_type": "model",
            "event_name": "llm", "inputs": {"q": "hi"},
            "metadata": {"cost": 0.5, "prompt_tokens": 20, "completion_tokens": 10,
                         "total_tokens": 30}, **more}


def _rollup_cost(api: Api, session_id: str) -> float:
    """The session's cost as ``session_aggregates`` sums it (plain sums, merged or not)."""
    rows = api.store.driver.query_rows(
        f"SELECT sum(cost) AS cost FROM `{api.store.database}`.session_aggregates "
        "WHERE project_id = {p:String} AND session_id = {s:String}",
        {"p": api.projects["a"], "s": session_id},
    )
    return float(rows[0]["cost"])


async def _session(api: Api, session_id: str) -> dict[str, Any]:
    listed = await api.ok("GET", "/v1/sessions", params={"limit": 1000})
    found = [s for s in listed["sessions"] if s["session_id"] == session_id]
    assert len(found) == 1, listed
    return dict(found[0])


async def test_the_same_rest_event_sent_three_times_is_stored_and_counted_once(
        api: Api) -> None:
    event_id, session_id = new_id(), new_id()
    body = _model_call(event_id, session_id)
    await api.settled()
    delivered = api.writer.stats.messages
    for _ in range(3):  # a client retrying a create whose answer it never saw
        answer = await api.ok("POST", "/v1/events", json=body)
        assert answer["event_id"] == event_id
    await api.event(event_id)
    await api.settled()
    assert api.writer.stats.messages - delivered == 1  # one message reached the writer
    assert _rollup_cost(api, session_id) == 0.5  # the rollups counted it once
    session = await _session(api, session_id)
    assert session["event_count"] == 1
    assert session["cost"] == 0.5
    assert session["total_tokens"] == 30
    assert session["prompt_tokens"] == 20


async def test_a_rest_event_sent_again_changed_is_a_new_version_not_a_second_cost(
        api: Api) -> None:
    event_id, session_id = new_id(), new_id()
    await api.ok("POST", "/v1/events", json=_model_call(event_id, session_id))
    await api.event(event_id)
    changed = _model_call(event_id, session_id, outputs={"a": "second answer"})
    await api.ok("POST", "/v1/events", json=changed)
    stored = await api.event(event_id, until=lambda e: e["outputs"] == {"a": "second answer"})
    assert stored["metadata"]["cost"] == 0.5
    await api.settled()
    assert _rollup_cost(api, session_id) == 1.0  # the rollups' plain sums count both
    session = await _session(api, session_id)
    assert session["event_count"] == 1
    assert session["cost"] == 0.5  # the newest version's, not the sum of both
    assert session["total_tokens"] == 30


async def test_a_batch_sent_twice_is_stored_once(api: Api) -> None:
    session_id = new_id()
    ids = [new_id(), new_id()]
    body = {"events": [_model_call(i, session_id) for i in ids]}
    await api.settled()
    delivered = api.writer.stats.messages
    for _ in range(2):
        await api.ok("POST", "/v1/events/batch", json=body)
    for event_id in ids:
        await api.event(event_id)
    await api.settled()
    assert api.writer.stats.messages - delivered == 1
    assert _rollup_cost(api, session_id) == 1.0
    session = await _session(api, session_id)
    assert session["cost"] == 1.0
