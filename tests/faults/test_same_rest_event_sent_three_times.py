"""Fault 9: the same REST event (``POST /v1/events``, same ``event_id``, no ``start_time``)
sent three times, as a client retrying a create whose answer it never saw, while a steady
OTLP/HTTP stream runs into the same data plane (tests/faults/_ray_pipeline.py).

Before issue 13 the message id hashed the event after the server had filled ``start_time``
with the time of arrival: three sends were three messages, three versions and three times
the cost in the session's rollup. Now the event is keyed by the client's ``event_id``: one
message (JetStream drops the copies), one stored event, its cost and tokens counted once in
``session_aggregates`` and ``GET /v1/sessions``, and the ingest accounting says so exactly.
The stream around it is kept exactly once as in every fault.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from _ray_pipeline import (
    HttpIngest,
    RayPipeline,
    assert_accounted,
    assert_kept_exactly_once,
    settled_accounting,
    under_stream,
)
from _report import FaultReport

pytestmark = pytest.mark.ray

COST, PROMPT, COMPLETION = 0.5, 20, 10


def _model_call(event_id: str, session_id: str) -> dict[str, Any]:
    # No start_time: the server fills in the time of arrival, which differs on every send.
    return {"event_id": event_id, "session_id": session_id, "event_type": "model",
            "event_name": "llm", "inputs": {"q": "hi"},
            "metadata": {"cost": COST, "prompt_tokens": PROMPT,
                         "completion_tokens": COMPLETION,
                         "total_tokens": PROMPT + COMPLETION}}


async def _sessions(rest: HttpIngest) -> list[dict[str, Any]]:
    response = await rest.http.get("/v1/sessions", params={"limit": 1000},
                                   headers={"authorization": f"Bearer {rest.key}"})
    response.raise_for_status()
    return list(response.json()["sessions"])


async def test_the_same_rest_event_sent_three_times_is_stored_and_counted_once(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    pipeline = ray_pipeline
    event_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    answers: list[int] = []

    async with pipeline.http_ingest(f"proj-{uuid.uuid4().hex[:12]}") as ingest, \
            pipeline.http_ingest(f"proj-rest-{uuid.uuid4().hex[:12]}") as rest:

        async def send_three_times() -> None:
            for _ in range(3):
                response = await rest.http.post(
                    "/v1/events", json=_model_call(event_id, session_id),
                    headers={"authorization": f"Bearer {rest.key}"})
                answers.append(response.status_code)
                assert response.json()["event_id"] == event_id

        _, ended = await under_stream(pipeline, ingest, send_three_times)
        tally = await pipeline.settle(ingest, wait_s=120)
        counts = await settled_accounting(rest.stats, 60)
        sessions = await _sessions(rest)

    assert answers == [200, 200, 200]
    assert_kept_exactly_once(ingest, tally, await pipeline.diagnosis())
    # One message reached the writer, one event stored, one row (merges or not).
    assert_accounted(counts, accepted=1, stored=1)
    assert counts["accepted"]["messages"] == 1, counts
    store = pipeline.store()
    assert await store.count_events(rest.project) == 1
    assert await store.count_rows(rest.project) == 1
    db = pipeline.settings.clickhouse_database
    [rollup] = await store.query_rows(
        f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens FROM `{db}`.session_aggregates"
        " WHERE project_id = {p:String} AND session_id = {s:String}",
        {"p": rest.project, "s": session_id})
    assert float(rollup["cost"]) == COST  # counted once, not three times
    assert int(rollup["tokens"]) == PROMPT + COMPLETION
    [session] = [s for s in sessions if s["session_id"] == session_id]
    assert session["event_count"] == 1
    assert session["cost"] == COST
    assert session["total_tokens"] == PROMPT + COMPLETION
    fault_report.record("9. same REST event sent three times", counts["accepted"]["rows"],
                        counts["stored"]["rows"], counts["dead_lettered"]["rows"],
                        await store.count_rows(rest.project) - 1, tally.settled_at - ended)
