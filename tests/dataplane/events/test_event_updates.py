"""Updates (PUT /events) against spans sent over OTLP, end to end through the writer:
before the span, after it, several in order, and session rollups that count once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from _event_api_plane import Api, new_id, until

from apiary.dataplane.ingest.otlp._ids import derive_event_id


def _attr(key: str, value: Any) -> dict[str, Any]:
    """An attribute as the SDK's JSON exporter encodes it."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def span(session_id: str, *, event_type: str = "model", parent: str | None = None,
         trace_id: str | None = None, **attributes: Any) -> tuple[str, dict[str, Any]]:
    """(event id, OTLP/JSON span) of one span of the HoneyHive SDK in ``session_id``."""
    trace_id = trace_id or uuid.uuid4().hex
    span_id = uuid.uuid4().hex[:16]
    now = time.time_ns()
    attrs = [_attr("honeyhive.session_id", session_id),
             _attr("honeyhive.source", "test"),
             _attr("honeyhive_event_type", event_type)]
    attrs += [_attr(k, v) for k, v in attributes.items()]
    body = {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": "llm_call",
            "kind": "SPAN_KIND_INTERNAL", "startTimeUnixNano": str(now),
            "endTimeUnixNano": str(now + 250_000_000), "attributes": attrs, "events": [],
            "status": {"code": "STATUS_CODE_OK"}}
    return derive_event_id(trace_id, span_id), body


async def send_spans(api: Api, *spans: dict[str, Any], who: str = "a") -> None:
    body = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [
        {"scope": {"name": "honeyhive.1"}, "spans": list(spans)}]}]}
    response = await api.http.post("/opentelemetry/v1/traces", json=body, headers={
        **api.auth(who), "content-type": "application/json"})
    assert response.status_code == 200, response.text


def _model_attrs(cost: float = 0.5) -> dict[str, Any]:
    return {"honeyhive_config.model": "gpt-4o-mini", "honeyhive_metadata.prompt_tokens": 10,
            "honeyhive_metadata.completion_tokens": 5, "honeyhive_metadata.cost": cost,
            "honeyhive_outputs.content": "hello", "honeyhive_metadata.step": "span"}


async def _patch_stored(api: Api, event_id: str, n: int = 1) -> None:
    async def stored() -> bool:
        patches = api.store.event_patches(api.projects["a"], [event_id])
        return len(patches.get(event_id, [])) >= n
    await until(stored)


async def test_update_before_its_span_is_applied_when_the_span_lands(api: Api) -> None:
    session_id = new_id()
    event_id, body = span(session_id, **_model_attrs())
    await api.ok("PUT", "/events", json={"event_id": event_id, "metadata": {"late": True},
                                         "feedback": {"rating": 4},
                                         "outputs": {"content": "edited"}})
    await _patch_stored(api, event_id)
    missing = await api.call("GET", f"/v1/events/{event_id}")
    assert missing.status_code == 404  # the update is kept, waiting for its event
    await send_spans(api, body)
    stored = await api.event(event_id, until=lambda e: e["metadata"].get("late") is True)
    assert stored["metadata"]["step"] == "span"  # the span's own keys stay
    assert stored["metadata"]["prompt_tokens"] == 10
    assert stored["feedback"] == {"rating": 4}
    assert stored["outputs"] == {"content": "edited"}  # outputs are replaced
    assert stored["config"]["model"] == "gpt-4o-mini"
    assert stored["session_id"] == session_id


async def test_update_after_its_span_is_merged_as_a_new_version(api: Api) -> None:
    session_id = new_id()
    event_id, body = span(session_id, **_model_attrs())
    await send_spans(api, body)
    before = await api.event(event_id)
    assert "late" not in before["metadata"]
    await api.ok("PUT", f"/v1/events/{event_id}", json={
        "metadata": {"late": "yes"}, "metrics": {"score": 0.7}, "end_time":
        before["start_time"] + 1000.0})
    stored = await api.event(event_id, until=lambda e: e["metrics"] == {"score": 0.7})
    assert stored["metadata"] == {**before["metadata"], "late": "yes"}
    assert stored["duration"] == pytest.approx(1000.0, abs=0.01)  # from the new end
    assert stored["outputs"] == before["outputs"]
    # Filters see the merged version only.
    found = await api.search({"filters": [
        {"field": "metadata.late", "operator": "is", "value": "yes"},
        {"field": "session_id", "operator": "is", "value": session_id}]})
    assert [e["event_id"] for e in found["events"]] == [event_id]


async def test_several_updates_merge_in_the_order_they_were_accepted(api: Api) -> None:
    session_id = new_id()
    early_id, early = span(session_id, **_model_attrs())
    late_id, late = span(session_id, **_model_attrs())
    await send_spans(api, late)
    await api.event(late_id)
    for n in range(1, 5):
        for event_id in (early_id, late_id):
            await api.ok("PUT", "/events", json={
                "event_id": event_id, "metadata": {"round": n, f"seen_{n}": True},
                "outputs": {"round": n}})
    await _patch_stored(api, early_id, 4)
    await send_spans(api, early)
    for event_id in (early_id, late_id):
        stored = await api.event(event_id, until=lambda e: e["metadata"].get("round") == 4)
        assert all(stored["metadata"][f"seen_{n}"] for n in range(1, 5))
        assert stored["outputs"] == {"round": 4}


async def _session_summary(api: Api, session_id: str) -> dict[str, Any]:
    # Acknowledged means inserted, rollups included (a reader may see an event row a moment
    # before the rollup row its insert also writes).
    await api.settled()
    listing = await api.ok("GET", "/v1/sessions", params={"limit": 1000})
    return next(s for s in listing["sessions"] if s["session_id"] == session_id)


async def test_session_rollups_are_not_double_counted_by_updates(api: Api) -> None:
    session_id = new_id()
    await api.ok("POST", "/session/start", json={"session": {"session_id": session_id}})
    event_id, body = span(session_id, **_model_attrs(cost=0.5))
    other_id, other = span(session_id, **_model_attrs(cost=0.25))
    await send_spans(api, body, other)
    await api.event(event_id)
    await api.event(other_id)
    summary = await _session_summary(api, session_id)
    assert (summary["cost"], summary["total_tokens"]) == (0.75, 30)

    for n in range(3):  # updates that do not touch cost or tokens
        await api.ok("PUT", "/events", json={"event_id": event_id, "metadata": {"n": n}})
        await api.ok("PUT", "/events", json={"event_id": session_id, "metrics": {"n": n}})
    await api.event(event_id, until=lambda e: e["metadata"].get("n") == 2)
    await api.event(session_id, until=lambda e: e["metrics"].get("n") == 2)
    summary = await _session_summary(api, session_id)
    assert (summary["cost"], summary["prompt_tokens"], summary["total_tokens"]) == (
        0.75, 20, 30)
    assert summary["event_count"] == 3

    # An update of the cost replaces the event's share instead of adding to it.
    await api.ok("PUT", "/events", json={"event_id": event_id,
                                         "metadata": {"cost": 1.0, "prompt_tokens": 4}})
    await api.event(event_id, until=lambda e: e["metadata"]["cost"] == 1.0)
    summary = await _session_summary(api, session_id)
    assert summary["cost"] == 1.25
    assert summary["prompt_tokens"] == 14  # 4 + 10: the delta may be negative
    assert summary["total_tokens"] == 30

