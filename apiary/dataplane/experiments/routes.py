"""Experiment runs (HoneyHive ``/v1/runs``): CRUD, results, comparisons.

A run is recorded in dpdb with the dataset version it ran on; its **results are computed
from ClickHouse on every read** — from the events carrying ``metadata.run_id`` (and the
sessions the run names), their ``metrics.<name>`` scores and ``metadata.datapoint_id`` —
never from summaries a client sent (:mod:`apiary.dataplane.experiments.results`). A result first
waits (at most ``SETTLE_WAIT_S``, under the SDK's 5 s timeout) for the writers to store what the
project sent before it: ``evaluate()`` asks the moment its last spans were acknowledged.
Pass rules come from the run's ``passing_ranges``, then from the project's metric
definitions (read from the control plane with the caller's credential when it may read
evaluators).

Permissions: runs are experiment data made of events: reading them (and their results)
needs ``events:read``, recording, updating and deleting them ``events:write`` — what an
ingestion key running ``evaluate()`` holds. A run naming a dataset of the project also
needs ``datasets:read`` (its version is recorded).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import nats.errors
import orjson
from fastapi import APIRouter, Query
from nats.js.errors import NotFoundError
from sqlalchemy.orm import Session
from starlette.requests import Request

from apiary.dataplane.auth import Permission, Principal
from apiary.dataplane.datasets import catalog as dataset_ops
from apiary.dataplane.db import Dataset, ExperimentRun
from apiary.dataplane.experiments import runs as ops
from apiary.dataplane.experiments.results import (
    PassRule,
    build_comparison,
    build_result,
    pair_events,
    pass_rules_from_evaluators,
)
from apiary.dataplane.experiments.schemas import (
    CompareEventsResponse,
    RunComparison,
    RunCreate,
    RunCreated,
    RunDeleted,
    RunResponse,
    RunResult,
    RunsResponse,
    RunUpdate,
    RunUpdated,
)
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.dataplane.replica.routing import (
    ERRORS,
    DbPage,
    credential_of,
    in_transaction,
    iso,
    owner_of,
    project_principal,
)
from apiary.errors import (
    AuthenticationFailed,
    ControlPlaneUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from apiary.queue import EVENTS_STREAM, events_subject
from apiary.store import aggregate_expression, check_filters, parse_time

log = logging.getLogger("apiary.dataplane.experiments.routes")
router = APIRouter(tags=["experiments"])

READ, WRITE = Permission.EVENTS_READ, Permission.EVENTS_WRITE
OFFLINE_PREFIX = "EXT-"
_RELATIVE = re.compile(r"^(\d{1,6})([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: Longest a result waits for the writers to store what its project sent before it.
SETTLE_WAIT_S = 3.0
_AGGREGATE = Query(description="average (default), median, min, max, sum, count, or a "
                   "percentile: p50, p90, p95, p99, ...", max_length=20)


def run_out(run: ExperimentRun, dataset_name: str | None = None) -> dict[str, Any]:
    return {
        "id": run.id, "run_id": run.id, "name": run.name, "description": run.description,
        "status": run.status, "metadata": run.meta, "results": run.results,
        "event_ids": run.event_ids, "configuration": run.configuration,
        "is_active": run.is_active, "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at), "scope_type": "project",
        "scope_id": run.project_id, "dataset_id": run.dataset_id,
        "dataset_name": dataset_name, "dataset_version_id": run.dataset_version_id,
        "session_ids": run.session_ids, "datapoint_ids": run.datapoint_ids,
        "evaluators": run.evaluators, "passing_ranges": run.passing_ranges,
    }


def _dataset_name(db: Session, run: ExperimentRun) -> str | None:
    if not run.dataset_id:
        return None
    dataset = db.get(Dataset, run.dataset_id)
    return dataset.name if dataset is not None and dataset.project_id == run.project_id \
        else None


def _check_ranges(ranges: Mapping[str, Any] | None) -> None:
    for name, rule in (ranges or {}).items():
        PassRule.of(rule, where=f"passing_ranges.{name}")


@router.post("/v1/runs", response_model=RunCreated, responses=ERRORS,
             summary="Open an experiment run (records the dataset version)")
async def create_run(request: Request, body: RunCreate) -> dict[str, Any]:
    context = context_of(request)
    online = bool(body.dataset_id) and not str(body.dataset_id).startswith(OFFLINE_PREFIX)
    extra = (Permission.DATASETS_READ,) if online else ()
    principal = await project_principal(context, request, WRITE, *extra)
    _check_ranges(body.passing_ranges)

    def work(db: Session) -> dict[str, Any]:
        owner = owner_of(principal)
        version_id, dataset_name = None, None
        if online:
            assert body.dataset_id is not None
            try:
                dataset = dataset_ops.get_dataset(db, principal.project_id, body.dataset_id)
            except NotFound:
                raise InvalidRequest("unknown dataset_id (offline datasets start with "
                                     "EXT-)", field="dataset_id") from None
            version_id = dataset_ops.snapshot(db, owner, dataset)[0].id
            dataset_name = dataset.name
        run = ops.create_run(
            db, owner, run_id=body.run_id, name=body.name, description=body.description,
            status=body.status, dataset_id=body.dataset_id, dataset_version_id=version_id,
            metadata=body.metadata, results=body.results, configuration=body.configuration,
            event_ids=body.event_ids, session_ids=body.session_ids,
            datapoint_ids=body.datapoint_ids, evaluators=body.evaluators,
            passing_ranges=body.passing_ranges,
        )
        return run_out(run, dataset_name)
    evaluation = await in_transaction(context, work)
    return {"run_id": evaluation["run_id"], "evaluation": evaluation}


@router.put("/v1/runs/{run_id}", response_model=RunUpdated, responses=ERRORS,
            summary="Update a run (status, event ids, metadata, ...)")
async def update_run(request: Request, run_id: str, body: RunUpdate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    _check_ranges(body.passing_ranges)
    changes = body.model_dump(exclude_unset=True)

    def work(db: Session) -> dict[str, Any]:
        run = ops.get_run(db, principal.project_id, run_id)
        ops.update_run(db, run, changes)
        return run_out(run, _dataset_name(db, run))
    return {"evaluation": await in_transaction(context, work)}


@router.get("/v1/runs/compare/events", response_model=CompareEventsResponse,
            responses=ERRORS, summary="Events of two runs side by side, per common datapoint")
async def compare_run_events(
    request: Request,
    run_id_1: Annotated[str, Query(min_length=1, max_length=128)],
    run_id_2: Annotated[str, Query(min_length=1, max_length=128)],
    event_name: Annotated[str | None, Query(max_length=500)] = None,
    event_type: Annotated[str | None, Query(max_length=32)] = None,
    filter: Annotated[str | None, Query(description="JSON: a filter or a list of filters "
                                        "(export filter language)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1)] = 1,
) -> dict[str, Any]:
    return await _compare_events(request, run_id_1, run_id_2, event_name, event_type,
                                 filter, limit, page)


async def _compare_events(request: Request, first_id: str, second_id: str,
                          event_name: str | None, event_type: str | None,
                          raw_filter: str | None, limit: int, page: int) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    filters = _filters(raw_filter, "filter")
    check_filters(filters)
    if event_name is not None:
        filters.append({"field": "event_name", "operator": "is", "value": event_name,
                        "type": "string"})
    if event_type is not None:
        filters.append({"field": "event_type", "operator": "is", "value": event_type,
                        "type": "string"})

    def work(db: Session) -> tuple[ExperimentRun, ExperimentRun]:
        return (ops.get_run(db, principal.project_id, first_id),
                ops.get_run(db, principal.project_id, second_id))
    first, second = await in_transaction(context, work)
    one, two = await asyncio.gather(
        context.store.run_events(principal.project_id, first.id, first.event_ids, filters),
        context.store.run_events(principal.project_id, second.id, second.event_ids, filters))
    return pair_events(one, two, limit=limit, page=page)


@router.get("/v1/runs", response_model=RunsResponse, responses=ERRORS,
            summary="The project's runs, one page, newest first by default")
async def list_runs(
    request: Request,
    dataset_id: Annotated[str | None, Query(max_length=128)] = None,
    page: DbPage = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    bracketed: Annotated[list[str] | None, Query(alias="run_ids[]", max_length=1000)] = None,
    run_ids: Annotated[list[str] | None, Query(max_length=1000)] = None,
    name: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    dateRange: Annotated[str | None, Query(
        description='On created_at: JSON {"$gte": ..., "$lte": ...} (ISO or epoch ms), or '
        "a relative window such as 7d, 24h, 30m")] = None,
    sort_by: Annotated[str, Query(description="created_at, updated_at, name or status")
                       ] = "created_at",
    sort_order: Annotated[str, Query(description="asc or desc")] = "desc",
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    created_from, created_to = _date_range(dateRange)
    ids = [*(bracketed or []), *(run_ids or [])] or None

    def work(db: Session) -> dict[str, Any]:
        found = ops.list_runs(db, principal.project_id, dataset_id=dataset_id, run_ids=ids,
                              name=name, status=status, created_from=created_from,
                              created_to=created_to, sort_by=sort_by, sort_order=sort_order,
                              page=page, limit=limit)
        metrics = sorted({str(n) for run in found.runs
                          for n in [*run.configuration.get("evaluators", []),
                                    *run.evaluators] if isinstance(n, str)})
        return {
            "evaluations": [run_out(r, _dataset_name(db, r)) for r in found.runs],
            "pagination": {"page": page, "limit": limit, "total": found.total,
                           "total_unfiltered": found.total_unfiltered,
                           "total_pages": found.total_pages,
                           "has_next": page < found.total_pages, "has_prev": page > 1},
            "metrics": metrics,
        }
    return await in_transaction(context, work)


@router.get("/v1/runs/{run_id}", response_model=RunResponse, responses=ERRORS,
            summary="One run")
async def get_run(request: Request, run_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)

    def work(db: Session) -> dict[str, Any]:
        run = ops.get_run(db, principal.project_id, run_id)
        return run_out(run, _dataset_name(db, run))
    return {"evaluation": await in_transaction(context, work)}


@router.delete("/v1/runs/{run_id}", response_model=RunDeleted, responses=ERRORS,
               summary="Delete a run (its events stay)")
async def delete_run(request: Request, run_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> None:
        ops.delete_run(db, ops.get_run(db, principal.project_id, run_id))
    await in_transaction(context, work)
    return {"id": run_id, "deleted": True}


# --- results ---------------------------------------------------------------------------


def _filters(raw: str | None, name: str) -> list[dict[str, Any]]:
    if raw is None or not raw.strip():
        return []
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{name} must be JSON: a filter object or a list of them",
                             field=name) from None
    parsed = [parsed] if isinstance(parsed, dict) else parsed
    if not isinstance(parsed, list) or not all(isinstance(f, dict) for f in parsed):
        raise InvalidRequest(f"{name} must be a filter object or a list of them", field=name)
    return parsed


def _date_range(raw: str | None) -> tuple[datetime | None, datetime | None]:
    if raw is None or not raw.strip():
        return None, None
    relative = _RELATIVE.match(raw.strip())
    if relative:
        seconds = int(relative.group(1)) * _UNITS[relative.group(2)]
        return datetime.now(UTC) - timedelta(seconds=seconds), None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict) or not set(parsed) <= {"$gte", "$lte"}:
        raise InvalidRequest('dateRange must be {"$gte": ..., "$lte": ...} or like 7d',
                             field="dateRange")
    def bound(key: str) -> datetime | None:
        if parsed.get(key) is None:
            return None
        micros = parse_time(parsed[key], what=f"dateRange.{key}")
        return datetime.fromtimestamp(micros / 1e6, UTC)
    return bound("$gte"), bound("$lte")


async def _pass_rules(context: DataPlaneContext, request: Request, principal: Principal,
                      run: ExperimentRun, warnings: list[str]) -> dict[str, PassRule]:
    """The run's pass rules, over the project's metric definitions when readable."""
    rules: dict[str, PassRule] = {}
    if Permission.EVALUATORS_READ in principal.permissions:
        try:
            evaluators = await context.control_plane.list_evaluators(
                credential_of(request), principal.project_id)
            rules.update(pass_rules_from_evaluators(evaluators))
        except (ControlPlaneUnavailable, AuthenticationFailed, PermissionDenied,
                NotFound) as exc:
            log.warning("metric definitions unavailable", extra={"error": str(exc)})
            warnings.append(f"metric definitions unavailable ({exc.message}); pass rules "
                            "come from the run's passing_ranges only")
    for name, raw in run.passing_ranges.items():
        rule = PassRule.of(raw, where=f"passing_ranges.{name}")
        if rule is not None:
            rules[name] = rule
    return rules


async def _settled(context: DataPlaneContext, project_id: str) -> bool:
    """Wait (at most ``SETTLE_WAIT_S``) until the writers have stored every message of the
    project that the events stream held when the request came: ``evaluate()`` reads the
    result the moment it closed the run, right after its spans and session updates were
    acknowledged. A stored message is acknowledged, and acknowledged messages leave the
    stream (interest retention), so the project's oldest message left tells. False if
    they were not done in time."""
    js, subject = context.js, events_subject("*", project_id)
    deadline = time.monotonic() + SETTLE_WAIT_S
    try:
        last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        while time.monotonic() < deadline:
            try:
                oldest = await js.get_msg(EVENTS_STREAM, seq=1, subject=subject, next=True)
            except NotFoundError:
                return True
            if oldest.seq is None or oldest.seq > last:
                return True
            await asyncio.sleep(0.05)
    except NotFoundError:  # no events stream: nothing to wait for
        return True
    except nats.errors.Error as exc:  # NATS unreachable: answer from what is stored
        log.warning("cannot tell whether the writers are done", extra={"error": str(exc)})
        return False
    return False


async def _result(request: Request, run_id: str, aggregate: str, raw_filters: str | None,
                  principal: Principal | None = None) -> dict[str, Any]:
    context = context_of(request)
    principal = principal or await project_principal(context, request, READ)
    filters = _filters(raw_filters, "filters")
    check_filters(filters)
    aggregate_expression(aggregate)

    def work(db: Session) -> tuple[ExperimentRun, dict[str, Any]]:
        run = ops.get_run(db, principal.project_id, run_id)
        return run, run_out(run, _dataset_name(db, run))
    run, run_object = await in_transaction(context, work)
    warnings: list[str] = []
    started = time.perf_counter()
    settled, rules = await asyncio.gather(
        _settled(context, principal.project_id),
        _pass_rules(context, request, principal, run, warnings))
    if not settled:
        warnings.append("computed before the writers stored every event sent before this "
                        "request; ask again for the complete result")
    rows = await context.store.run_result_rows(principal.project_id, run.id, run.event_ids,
                                               aggregate, filters)
    result = build_result(run_object, rows, aggregate, rules)
    result["warnings"] = warnings
    log.debug("run result", extra={"run_id": run.id,
                                   "seconds": round(time.perf_counter() - started, 4)})
    return result


@router.get("/v1/runs/{run_id}/result", response_model=RunResult, responses=ERRORS,
            summary="The run's results, computed from its events")
async def run_result(
    request: Request, run_id: str,
    aggregate_function: Annotated[str, _AGGREGATE] = "average",
    filters: Annotated[str | None, Query(description="JSON: a filter or a list of filters "
                                         "on the run's events")] = None,
) -> dict[str, Any]:
    return await _result(request, run_id, aggregate_function, filters)


@router.get("/v1/runs/{run_id}/summary", response_model=RunResult, responses=ERRORS,
            summary="Same as /result")
async def run_summary(
    request: Request, run_id: str,
    aggregate_function: Annotated[str, _AGGREGATE] = "average",
    filters: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    return await _result(request, run_id, aggregate_function, filters)


async def _compare(request: Request, new_run_id: str, old_run_id: str, aggregate: str,
                   filters: str | None) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    new, old = await asyncio.gather(
        _result(request, new_run_id, aggregate, filters, principal),
        _result(request, old_run_id, aggregate, filters, principal))
    return build_comparison(new, old)


# One handler, two paths (decorators apply bottom-up: /compare-with/ is registered first);
# ``name`` keeps the alias's OpenAPI operation id.
@router.get("/v1/runs/{new_run_id}/compare/{old_run_id}", response_model=RunComparison,
            responses=ERRORS, summary="Same as /compare-with/", name="compare_runs_alias")
@router.get("/v1/runs/{new_run_id}/compare-with/{old_run_id}", response_model=RunComparison,
            responses=ERRORS, summary="Aggregate and per-datapoint deltas of two runs")
async def compare_runs(
    request: Request, new_run_id: str, old_run_id: str,
    aggregate_function: Annotated[str, _AGGREGATE] = "average",
    filters: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    return await _compare(request, new_run_id, old_run_id, aggregate_function, filters)


@router.get("/v1/runs/{new_run_id}/compare/{old_run_id}/events",
            response_model=CompareEventsResponse, responses=ERRORS,
            summary="Same as /v1/runs/compare/events (event_1 from the new run)")
async def compare_run_events_alias(
    request: Request, new_run_id: str, old_run_id: str,
    event_name: Annotated[str | None, Query(max_length=500)] = None,
    event_type: Annotated[str | None, Query(max_length=32)] = None,
    filter: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1)] = 1,
) -> dict[str, Any]:
    return await _compare_events(request, new_run_id, old_run_id, event_name, event_type,
                                 filter, limit, page)
