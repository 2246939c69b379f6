"""Explicit evaluation requests: score a run's events, named events, or a filtered set,
with one metric version (``POST /v1/evaluations``).

Which events: a run's (``run_id``: the events carrying its id and those of the sessions it
names) or the project's matching ``filters`` (the export filter language), in both cases
narrowed by the metric version's own filters, which say what the metric applies to; or the
events named in ``event_ids``, scored as named. At most ``limit`` events (newest versions),
none sampled out: a request wants every score it names.

Each event becomes one task (source ``run`` or ``request``) carrying the event as it is
stored now. Asking again for a score already requested or already made is harmless: the
task id is the same, so JetStream drops the copy within its duplicate window and the
ledger skips it after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.tasks import EvaluationTask, new_task
from apiary.errors import InvalidRequest
from apiary.event import Tenant
from apiary.store import StoreClient, check_filters

MAX_REQUEST_EVENTS = 10_000


async def select_events(
    store: StoreClient, project_id: str, metric: MetricSpec, *,
    run: tuple[str, Sequence[str]] | None = None, event_ids: Sequence[str] | None = None,
    filters: Sequence[Mapping[str, Any]] = (), limit: int = 1000,
) -> list[dict[str, Any]]:
    """The events a request names (module docstring), newest versions, API shape."""
    if not 1 <= limit <= MAX_REQUEST_EVENTS:
        raise InvalidRequest(f"limit must be between 1 and {MAX_REQUEST_EVENTS}",
                             field="limit")
    if event_ids:
        if run is not None or filters:
            raise InvalidRequest("name events by event_ids, or select them with run_id "
                                 "and/or filters, not both", field="event_ids")
        if len(event_ids) > limit:
            raise InvalidRequest(f"at most {limit} event_ids (the limit)", field="event_ids")
        return await store.latest_events(project_id, list(event_ids))
    if run is None and not filters:
        raise InvalidRequest("say which events to score: run_id, event_ids or filters",
                             field="filters")
    selecting = [dict(f) for f in filters] + list(metric["filters"])
    check_filters(selecting)
    if run is not None:
        run_id, sessions = run
        return await store.run_events(project_id, run_id, list(sessions), selecting, limit)
    result = await store.export(project_id, {"filters": selecting, "limit": limit})
    events: list[dict[str, Any]] = result["events"]
    return events


def request_tasks(tenant: Tenant, events: Sequence[Mapping[str, Any]], metric: MetricSpec,
                  *, request_id: str, source: str) -> list[EvaluationTask]:
    """One task per event (duplicates of an event id once)."""
    tasks: list[EvaluationTask] = []
    seen: set[str] = set()
    for event in events:
        event_id = str(event["event_id"])
        if event_id in seen:
            continue
        seen.add(event_id)
        snapshot = {k: v for k, v in event.items() if k != "version"}
        tasks.append(new_task(tenant, snapshot, metric, source=source,
                              request_id=request_id))
    return tasks


__all__ = ["MAX_REQUEST_EVENTS", "request_tasks", "select_events"]
