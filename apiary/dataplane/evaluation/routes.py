"""Evaluation requests and the project's online evaluators (``/v1/evaluations``).

- ``POST /v1/evaluations``: score a run's events, named events or a filtered set with one
  version of a metric (:mod:`apiary.dataplane.evaluation.requests`). Answers once every task is on
  the ``evaluation`` stream (durable); the scores follow as the evaluators work, as
  updates of the events (``metrics.<name>``, ``metrics.<name>_explanation``). Needs
  ``events:read``, ``events:write`` and ``evaluators:read``, and ``proxy:use`` for an LLM
  metric (its judge spends the workspace's provider key; 403 otherwise); the metric is
  read from the control plane with the caller's credential.
- ``GET /v1/evaluations/online``: the metrics this data plane runs on the project's new
  events (its copy, :mod:`apiary.dataplane.evaluation.definitions`).
- ``POST /v1/evaluations/online/refresh``: read them again from the control plane (after
  a change made there directly; changes made through ``/v1/metrics`` refresh it already).
  A caller without ``proxy:use`` deploys no new LLM judge: those are listed in
  ``withheld`` and keep running only in the version already deployed, if any.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from apiary.dataplane.auth import Permission, Principal
from apiary.dataplane.evaluation.definitions import DefinitionStore, refresh_project
from apiary.dataplane.evaluation.metrics import AUTO_KINDS, JUDGE_KIND, MetricSpec, spec_of
from apiary.dataplane.evaluation.publish import TaskPublisher
from apiary.dataplane.evaluation.requests import MAX_REQUEST_EVENTS, request_tasks, select_events
from apiary.dataplane.experiments import runs as run_ops
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.dataplane.replica.routing import (
    ERRORS,
    credential_of,
    in_transaction,
    project_principal,
)
from apiary.errors import ApiaryError, InvalidRequest, PermissionDenied
from apiary.event import Tenant

log = logging.getLogger("apiary.dataplane.evaluation.routes")
router = APIRouter(tags=["evaluations"])


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric_id: str = Field(min_length=1, max_length=128, description="The metric (evaluator) id")
    version: int | str | None = Field(default=None, description="A version number or 'v<n>'; "
                                      "default: the deployed version, else the latest")
    run_id: str | None = Field(default=None, min_length=1, max_length=200)
    event_ids: list[str] | None = Field(default=None, max_length=MAX_REQUEST_EVENTS)
    filters: list[dict[str, Any]] | None = Field(default=None, max_length=50)
    limit: int = Field(default=1000, ge=1, le=MAX_REQUEST_EVENTS)


class EvaluationQueued(BaseModel):
    success: bool
    evaluation_id: str
    metric_id: str
    metric_name: str
    version: int
    events: int = Field(description="Events selected")
    queued: int = Field(description="Tasks newly queued")
    duplicates: int = Field(description="Tasks already queued (the same event and version)")


class OnlineMetrics(BaseModel):
    project_id: str
    metrics: list[dict[str, Any]]
    withheld: list[dict[str, Any]] = Field(
        default_factory=list, description="LLM judges defined at the control plane that "
        "this refresh did not deploy, because its caller lacks proxy:use")


def require_judge_permission(principal: Principal, kind: str) -> None:
    """403 unless ``principal`` may spend the workspace's provider key when ``kind`` is an
    LLM judge: defining, deploying or running one needs ``proxy:use``."""
    if kind == JUDGE_KIND and Permission.PROXY_USE not in principal.permissions:
        raise PermissionDenied(
            "an LLM-judge metric spends the workspace's provider key: defining, deploying "
            "or running one needs proxy:use", project_id=principal.project_id or None)


def _tenant(principal: Principal) -> Tenant:
    return {"org_id": principal.org_id, "workspace_id": principal.workspace_id,
            "project_id": principal.project_id}


def _version(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    text = value[1:] if value[:1] in ("v", "V") else value
    if not text.isdigit() or len(text) > 9:
        raise InvalidRequest("version is a number or 'v<number>'", field="version")
    return int(text)


@router.post("/v1/evaluations", response_model=EvaluationQueued, responses=ERRORS,
             summary="Score a run, named events or a filtered set with a metric version")
async def create_evaluation(request: Request, body: EvaluationRequest) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, Permission.EVENTS_READ,
                                        Permission.EVENTS_WRITE, Permission.EVALUATORS_READ)
    project_id = principal.project_id
    evaluator = await context.control_plane.get_evaluator(credential_of(request), project_id,
                                                          body.metric_id)
    metric = spec_of(evaluator, _version(body.version))
    if metric["kind"] not in AUTO_KINDS:
        raise InvalidRequest(f"{metric['kind']} metrics are scored by reviewers, not "
                             "automatically", field="metric_id")
    require_judge_permission(principal, metric["kind"])
    run: tuple[str, list[str]] | None = None
    if body.run_id is not None:
        run_id = body.run_id

        def sessions(db: Any) -> list[str]:
            found = run_ops.get_run(db, project_id, run_id)
            return list(dict.fromkeys([*found.event_ids, *found.session_ids]))
        run = (run_id, await in_transaction(context, sessions))
    events = await select_events(context.store, project_id, metric, run=run,
                                 event_ids=body.event_ids, filters=body.filters or [],
                                 limit=body.limit)
    evaluation_id = str(uuid.uuid4())
    tasks = request_tasks(_tenant(principal), events, metric, request_id=evaluation_id,
                          source="run" if run is not None else "request")
    published = await TaskPublisher(context.js).publish(tasks)
    log.info("evaluation requested", extra={"evaluation_id": evaluation_id,
                                            "project_id": project_id, "tasks": len(tasks)})
    return {"success": True, "evaluation_id": evaluation_id, "metric_id": metric["id"],
            "metric_name": metric["name"], "version": metric["version"],
            "events": len(events), "queued": published.new,
            "duplicates": published.duplicates}


async def refresh_online(context: DataPlaneContext, credential: str,
                         principal: Principal) -> tuple[list[MetricSpec], list[MetricSpec]]:
    """Re-read the project's evaluators from the control plane (as the caller) and store
    the online ones where the writers read them; ``(stored, withheld)``. New LLM judges
    are withheld unless ``principal`` holds ``proxy:use``."""
    project_id = principal.project_id
    evaluators = await context.control_plane.list_evaluators(credential, project_id)
    stored, withheld = await refresh_project(
        context.js, context.settings, evaluators, project_id,
        may_spend=Permission.PROXY_USE in principal.permissions)
    if withheld:
        log.info("online LLM judges withheld: the caller lacks proxy:use",
                 extra={"project_id": project_id, "metrics": [s["id"] for s in withheld]})
    return stored, withheld


async def refresh_online_quietly(context: DataPlaneContext, credential: str,
                                 principal: Principal) -> None:
    """:func:`refresh_online` after a metric change the caller already made: a failure
    is logged (the change stands; ``/v1/evaluations/online/refresh`` retries it)."""
    try:
        await refresh_online(context, credential, principal)
    except (ApiaryError, OSError) as exc:
        log.warning("online evaluators not refreshed",
                    extra={"project_id": principal.project_id, "error": str(exc)})


@router.get("/v1/evaluations/online", response_model=OnlineMetrics, responses=ERRORS,
            summary="The metrics this data plane runs on the project's new events")
async def online_metrics(request: Request) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, Permission.EVALUATORS_READ)
    store = await DefinitionStore.open(context.js, context.settings)
    specs = await store.get(principal.project_id)
    return {"project_id": principal.project_id, "metrics": [dict(s) for s in specs]}


@router.post("/v1/evaluations/online/refresh", response_model=OnlineMetrics,
             responses=ERRORS, summary="Read the project's online metrics again from the "
             "control plane")
async def refresh_online_metrics(request: Request) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, Permission.EVALUATORS_READ)
    specs, withheld = await refresh_online(context, credential_of(request), principal)
    return {"project_id": principal.project_id, "metrics": [dict(s) for s in specs],
            "withheld": [{"id": s["id"], "name": s["name"], "version": s["version"]}
                         for s in withheld]}


__all__ = ["refresh_online", "refresh_online_quietly", "require_judge_permission", "router"]
