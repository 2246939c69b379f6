"""Metric definitions (HoneyHive ``/v1/metrics``), served from the control plane.

**Where metrics live — the control plane.** A metric definition is configuration, not data:
docs/architecture.md ("Two planes, one seam") puts it in the control plane, whose evaluator
model is exactly a metric's (``python``/``llm``/``human``, criteria or code, return type,
pass range, sampling percentage, event filters, immutable numbered versions and a deployed
one), and one control plane serves many data planes, which must all run the same
definitions. So this data plane stores none: each call goes to the control plane's evaluator
API through the trusted seam (:mod:`apiary.dataplane.replica.control_plane`) with the
caller's own API key (a token is refused with 403: the control plane accepts no token minted
for a data plane), and the control plane authorizes it (``evaluators:read`` /
``evaluators:write``, checked here first too). The cost — a control-plane round trip per
call and no metric API while the control plane is down (503) — is acceptable for
configuration; the evaluation service of a later issue will receive definitions by the
controller's config push rather than per request.

Mapping (HoneyHive ``MetricItem`` ⇄ control-plane evaluator and its versions):

- ``type`` PYTHON/LLM/HUMAN ⇄ ``python``/``llm``/``human`` (COMPOSITE: 400, not yet);
  ``criteria`` ⇄ the version's ``code`` (python) or ``criteria``; ``enabled_in_prod`` ⇄
  ``enabled``; ``sampling_percentage`` ⇄ ``sampling_pct``; ``filters`` (``{filterArray:
  [...]}``, validated as export filters) ⇄ ``filters``; ``threshold.min/max`` ⇄
  ``pass_min/pass_max``; the rest (model, scale, categories, child metrics,
  needs_ground_truth, the whole threshold) in the version's ``model_params``.
- A metric shows its deployed version (else its latest); versions are named ``v<n>``,
  ``full_sha`` is the SHA-256 of the version's content. Creating deploys version 1; a
  ``PUT`` that changes the definition adds a version and deploys it; ``POST .../versions``
  adds one (deployed only with ``deploy_immediately``).
- An LLM metric's judge spends the workspace's provider key: creating, changing, adding a
  version to or deploying one also needs ``proxy:use`` (403); deleting one does not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Annotated, Any

import nats.errors
import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.configuration.schemas import (
    LegacyMetricUpdate,
    MetricCreate,
    MetricCreated,
    MetricDeleted,
    MetricResumed,
    MetricsResponse,
    MetricUpdate,
    MetricUpdated,
    MetricVersionCreate,
    MetricVersionResponse,
    MetricVersionsResponse,
)
from apiary.dataplane.evaluation.breakers import BreakerState, BreakerStore
from apiary.dataplane.evaluation.routes import refresh_online_quietly, require_judge_permission
from apiary.dataplane.experiments.results import PassRule, current_version, version_threshold
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import ERRORS, credential_of, project_principal
from apiary.errors import InvalidRequest, NotFound, QueueError
from apiary.store import check_filters

router = APIRouter(tags=["metrics"])
log = logging.getLogger("apiary.dataplane.metrics")

READ, WRITE = Permission.EVALUATORS_READ, Permission.EVALUATORS_WRITE
_TYPES = {"python": "python", "code": "python", "custom": "python", "function": "python",
          "llm": "llm", "model": "llm", "judge": "llm", "llm_judge": "llm",
          "human": "human", "manual": "human"}
_TYPE_OUT = {"python": "PYTHON", "llm": "LLM", "human": "HUMAN"}
_RETURN_TYPES = {"float": "float", "number": "float", "numeric": "float", "int": "float",
                 "integer": "float", "boolean": "boolean", "bool": "boolean",
                 "binary": "boolean", "string": "string", "text": "string",
                 "categorical": "categorical", "category": "categorical"}
#: Content fields kept in the version's model_params.
_EXTRAS = ("model_provider", "model_name", "scale", "threshold", "categories",
           "child_metrics", "needs_ground_truth", "enabled_in_prod", "description")


def _kind(value: str) -> str:
    kind = _TYPES.get(value.strip().lower())
    if kind is None:
        detail = ("composite metrics are not supported yet" if value.strip().lower() ==
                  "composite" else f"unknown metric type {value[:20]!r}")
        raise InvalidRequest(f"{detail}; use PYTHON, LLM or HUMAN", field="type")
    return kind


def _return_type(value: str | None) -> str:
    found = _RETURN_TYPES.get((value or "float").strip().lower())
    if found is None:
        raise InvalidRequest("return_type must be float, boolean, string or categorical",
                             field="return_type")
    return found


def _content(evaluator: Mapping[str, Any], version: Mapping[str, Any]) -> dict[str, Any]:
    """A version as HoneyHive's ``MetricVersionContent``."""
    params = version.get("model_params") or {}
    filters = version.get("filters") or {}
    return {
        "name": evaluator["name"],
        "type": _TYPE_OUT.get(evaluator["type"], str(evaluator["type"]).upper()),
        "criteria": (version.get("code") if evaluator["type"] == "python"
                     else version.get("criteria")) or "",
        "description": params.get("description", evaluator.get("description")),
        "return_type": version["return_type"],
        "enabled_in_prod": bool(params.get("enabled_in_prod", evaluator["enabled"])),
        "sampling_percentage": float(version["sampling_pct"]),
        "needs_ground_truth": bool(params.get("needs_ground_truth", False)),
        "filters": {"filterArray": list(filters.get("filterArray") or [])},
        "model_provider": params.get("model_provider"),
        "model_name": params.get("model_name"),
        "scale": params.get("scale"),
        "threshold": version_threshold(version),
        "categories": params.get("categories"),
        "child_metrics": params.get("child_metrics"),
    }


def metric_out(evaluator: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluator as HoneyHive's ``MetricItem`` (its deployed, else latest, version)."""
    version = current_version(evaluator)
    content = _content(evaluator, version)
    content.update(
        id=evaluator["id"], description=evaluator.get("description"),
        enabled_in_prod=bool(evaluator["enabled"]),
        created_at=str(evaluator.get("created_at") or version["created_at"]),
        updated_at=evaluator.get("updated_at") or version["created_at"],
        version=f"v{version['version']}",
    )
    return content


def _sha(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def version_out(evaluator: Mapping[str, Any], version: Mapping[str, Any]) -> dict[str, Any]:
    content = _content(evaluator, version)
    return {"name": f"v{version['version']}", "full_sha": _sha(content),
            "message": version.get("message") or "", "date": str(version["created_at"]),
            "deployed": version["version"] == evaluator.get("deployed_version"),
            "content": content}


def _version_body(kind: str, fields: Mapping[str, Any], message: str) -> dict[str, Any]:
    """A control-plane evaluator version from HoneyHive content fields."""
    threshold = fields.get("threshold")
    PassRule.of(threshold, where="threshold")
    filters = fields.get("filters") or {"filterArray": []}
    check_filters(filters.get("filterArray") or [])
    human = kind == "human"
    params = {k: fields.get(k) for k in _EXTRAS if fields.get(k) is not None}
    params.setdefault("enabled_in_prod", human)
    criteria = fields["criteria"]
    return {
        "criteria": None if kind == "python" else criteria,
        "code": criteria if kind == "python" else None,
        "return_type": _return_type(fields.get("return_type")),
        "pass_min": (threshold or {}).get("min"), "pass_max": (threshold or {}).get("max"),
        "sampling_pct": (fields["sampling_percentage"]
                         if fields.get("sampling_percentage") is not None else 10.0),
        "filters": filters, "model_params": params, "message": message,
    }


def _definition(version: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a version a different definition (not its message, nor the metric-level
    description and production switch it also snapshots)."""
    params = {k: v for k, v in version["model_params"].items()
              if k not in ("description", "enabled_in_prod")}
    return {**{k: v for k, v in version.items() if k != "message"}, "model_params": params}


@router.get("/v1/metrics", response_model=MetricsResponse, responses=ERRORS,
            summary="The project's metric definitions (optionally one by id, or of a type)")
async def list_metrics(
    request: Request,
    type: Annotated[str | None, Query(max_length=20)] = None,
    id: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    credential = credential_of(request)
    if id is not None:
        try:
            found = [await context.control_plane.get_evaluator(credential,
                                                               principal.project_id, id)]
        except NotFound:
            found = []
    else:
        found = await context.control_plane.list_evaluators(credential, principal.project_id)
    wanted = _kind(type) if type else None
    shown = [metric_out(e) for e in found
             if e.get("versions") and (wanted is None or e["type"] == wanted)]
    breakers = await _breakers(context, principal.project_id, [m["id"] for m in shown])
    for metric in shown:
        state = breakers.get(metric["id"])
        if state is not None and (state.paused or state.last_error is not None):
            metric["breaker"] = state.as_dict()
    return {"metrics": shown}


async def _breakers(context: Any, project_id: str, metric_ids: list[str]
                    ) -> dict[str, BreakerState]:
    """The metrics' circuit breakers; none if the bucket cannot be read (the list still
    answers: breakers are shown, never required)."""
    if not metric_ids:
        return {}
    try:
        store = await BreakerStore.open(context.js, context.settings)
        return await store.states(project_id, metric_ids)
    except Exception as exc:
        log.warning("circuit breakers unreadable", extra={"error": repr(exc)})
        return {}


@router.post("/v1/metrics/{metric_id}/resume", response_model=MetricResumed, responses=ERRORS,
             summary="Resume a metric its circuit breaker paused")
async def resume_metric(request: Request, metric_id: str) -> dict[str, Any]:
    """Close the metric's circuit breaker in this project (``evaluators:write``): durable
    when it returns; every evaluator runs the metric again within
    ``APIARY_EVALUATOR_BREAKER_TTL_S``. Tasks skipped while it was paused stay skipped
    (score them with ``POST /v1/evaluations``). 404 if the metric does not exist."""
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    await context.control_plane.get_evaluator(credential_of(request), principal.project_id,
                                              metric_id)
    try:
        store = await BreakerStore.open(context.js, context.settings)
        state = await store.resume(principal.project_id, metric_id)
    except (TimeoutError, nats.errors.Error) as exc:
        raise QueueError(f"the circuit breaker could not be written: {exc!r}",
                         metric_id=metric_id) from exc
    log.info("metric resumed", extra={"project_id": principal.project_id,
                                      "metric_id": metric_id})
    return {"resumed": True, "breaker": state.as_dict()}


@router.post("/v1/metrics", response_model=MetricCreated, responses=ERRORS,
             summary="Define a metric (its version 1, deployed)")
async def create_metric(request: Request, body: MetricCreate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    kind = _kind(body.type)
    require_judge_permission(principal, kind)
    fields = body.model_dump(exclude_none=True)
    version = _version_body(kind, fields, "created")
    credential, cp = credential_of(request), context.control_plane
    enabled = version["model_params"]["enabled_in_prod"]
    created = await cp.create_evaluator(credential, principal.project_id, {
        "name": body.name, "type": kind, "description": body.description or "", **version})
    await cp.deploy_evaluator(credential, principal.project_id, created["id"], 1)
    if not enabled:
        await cp.update_evaluator(credential, principal.project_id, created["id"],
                                  {"enabled": False})
    await refresh_online_quietly(context, credential, principal)
    return {"inserted": True, "metric_id": created["id"]}


async def _update(request: Request, metric_id: str, body: MetricUpdate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    credential, cp, project = credential_of(request), context.control_plane, principal.project_id
    evaluator = await cp.get_evaluator(credential, project, metric_id)
    require_judge_permission(principal, evaluator["type"])
    if body.type is not None and _kind(body.type) != evaluator["type"]:
        raise InvalidRequest("a metric's type cannot change; create another metric",
                             field="type")
    current = metric_out(evaluator)
    given = body.model_dump(exclude_unset=True, exclude={"id"})
    patch: dict[str, Any] = {}
    if given.get("name") is not None and given["name"] != evaluator["name"]:
        patch["name"] = given["name"]
    if given.get("description") is not None:
        patch["description"] = given["description"]
    if given.get("enabled_in_prod") is not None:
        patch["enabled"] = given["enabled_in_prod"]
    merged = {**current, **{k: v for k, v in given.items() if v is not None}}
    before = _version_body(evaluator["type"], current, "")
    after = _version_body(evaluator["type"], merged, "updated through PUT /v1/metrics")
    changed = _definition(after) != _definition(before)
    if changed:
        added = await cp.add_evaluator_version(credential, project, metric_id, after)
        await cp.deploy_evaluator(credential, project, metric_id, added["version"])
    if patch:
        await cp.update_evaluator(credential, project, metric_id, patch)
    await refresh_online_quietly(context, credential, principal)
    return {"updated": True}


@router.put("/v1/metrics/{metric_id}", response_model=MetricUpdated, responses=ERRORS,
            summary="Change a metric (a changed definition is a new deployed version)")
async def update_metric(request: Request, metric_id: str, body: MetricUpdate
                        ) -> dict[str, Any]:
    return await _update(request, metric_id, body)


@router.put("/v1/metrics", response_model=MetricUpdated, responses=ERRORS,
            summary="Change the metric named in the body")
async def update_metric_legacy(request: Request, body: LegacyMetricUpdate) -> dict[str, Any]:
    return await _update(request, body.id, body)


async def _delete(request: Request, metric_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    await context.control_plane.delete_evaluator(credential_of(request), principal.project_id,
                                                 metric_id)
    await refresh_online_quietly(context, credential_of(request), principal)
    return {"deleted": True}


@router.delete("/v1/metrics/{metric_id}", response_model=MetricDeleted, responses=ERRORS,
               summary="Delete a metric with its versions")
async def delete_metric(request: Request, metric_id: str) -> dict[str, Any]:
    return await _delete(request, metric_id)


@router.delete("/v1/metrics", response_model=MetricDeleted, responses=ERRORS,
               summary="Delete the metric named in the query")
async def delete_metric_legacy(
    request: Request, metric_id: Annotated[str, Query(min_length=1, max_length=128)]
) -> dict[str, Any]:
    return await _delete(request, metric_id)


# --- versions ---------------------------------------------------------------------------


def _version_number(name: str) -> int:
    number = name[1:] if name[:1] in ("v", "V") else name
    if not number.isdigit() or len(number) > 9 or int(number) < 1:
        raise NotFound("metric version not found")
    return int(number)


@router.get("/v1/metrics/{metric_id}/versions", response_model=MetricVersionsResponse,
            responses=ERRORS, summary="A metric's versions, oldest first")
async def list_metric_versions(request: Request, metric_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    evaluator = await context.control_plane.get_evaluator(
        credential_of(request), principal.project_id, metric_id)
    return {"success": True, "data": [version_out(evaluator, v)
                                      for v in evaluator["versions"]]}


@router.post("/v1/metrics/{metric_id}/versions", response_model=MetricVersionResponse,
             responses=ERRORS, summary="Add a version (deployed if deploy_immediately)")
async def create_metric_version(request: Request, metric_id: str, body: MetricVersionCreate
                                ) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    credential, cp, project = credential_of(request), context.control_plane, principal.project_id
    evaluator = await cp.get_evaluator(credential, project, metric_id)
    require_judge_permission(principal, evaluator["type"])
    if _kind(body.content.type) != evaluator["type"]:
        raise InvalidRequest("a version cannot change the metric's type", field="content.type")
    if body.content.name != evaluator["name"]:
        raise InvalidRequest("a version cannot rename the metric; rename it with PUT",
                             field="content.name")
    fields = body.content.model_dump(exclude_none=True)
    added = await cp.add_evaluator_version(credential, project, metric_id,
                                           _version_body(evaluator["type"], fields,
                                                         body.message))
    if body.deploy_immediately:
        return await _deploy(request, metric_id, added["version"])
    evaluator = await cp.get_evaluator(credential, project, metric_id)
    version = next(v for v in evaluator["versions"] if v["version"] == added["version"])
    return {"success": True, "data": version_out(evaluator, version)}


async def _deploy(request: Request, metric_id: str, number: int) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    credential, cp, project = credential_of(request), context.control_plane, principal.project_id
    if Permission.PROXY_USE not in principal.permissions:  # only then is the type needed
        evaluator = await cp.get_evaluator(credential, project, metric_id)
        require_judge_permission(principal, evaluator["type"])
    evaluator = await cp.deploy_evaluator(credential, project, metric_id, number)
    version = next(v for v in evaluator["versions"] if v["version"] == number)
    enabled = (version.get("model_params") or {}).get("enabled_in_prod")
    if enabled is not None and bool(enabled) != evaluator["enabled"]:
        evaluator = await cp.update_evaluator(credential, project, metric_id,
                                              {"enabled": bool(enabled)})
    await refresh_online_quietly(context, credential, principal)
    return {"success": True, "data": version_out(evaluator, version)}


@router.post("/v1/metrics/{metric_id}/versions/{version_name}/deploy",
             response_model=MetricVersionResponse, responses=ERRORS,
             summary="Make a version (v<n>) the one the project runs")
async def deploy_metric_version(request: Request, metric_id: str, version_name: str
                                ) -> dict[str, Any]:
    return await _deploy(request, metric_id, _version_number(version_name))
