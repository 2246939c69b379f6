"""Try a draft evaluator on one stored event, synchronously (``POST /v1/evaluations/draft``).

The web UI's "Test on this event": the caller sends an evaluator as it is being edited
(Python code, or an LLM judge's criteria and model) and the id of one event of its
project; the answer is the score (with its explanation, extras and what the code printed)
or the reason it failed, as the evaluation service would record it. Nothing is stored or
queued.

- **Where it runs.** Python code runs in this replica's own :class:`SandboxPool` (the same
  OS limits as the evaluation service: CPU, memory, wall clock, no network, no files;
  ``apiary.dataplane.evaluation.sandbox``), started on the first draft and isolated per
  project. Code that loops forever is stopped at ``sandbox_timeout_s``, code that allocates
  too much fails at ``sandbox_memory_mb``: both are answered as the draft's error, never a
  hung request. A judge is called like the service calls it.
- **Admission.** At most :data:`MAX_DRAFTS_WAITING` drafts run or wait per replica; more are
  refused with 429 (the pool itself runs one or two at once).
- **Who.** ``events:read`` (it reads the event) and ``evaluators:write`` (it runs code the
  caller wrote); an LLM judge also ``proxy:use`` (it spends the workspace's provider key).
  The event is looked up in the caller's project only: another project's id is a 404.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.routes import require_judge_permission
from apiary.dataplane.evaluation.sandbox import SandboxLimits
from apiary.dataplane.evaluation.scoring import Scorer
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.dataplane.replica.routing import ERRORS, project_principal
from apiary.errors import (
    ConfigurationError,
    InvalidRequest,
    JudgeError,
    NotFound,
    SandboxError,
    SandboxUnavailable,
    TooManyRequests,
)
from apiary.event import Tenant

log = logging.getLogger("apiary.dataplane.evaluation.draft")
router = APIRouter(tags=["evaluations"])

#: Drafts running or waiting on one replica at once; beyond: 429.
MAX_DRAFTS_WAITING = 4


class DraftEvaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["python", "llm"] = Field(description="python: code run in the sandbox; "
                                           "llm: a judge prompt")
    event_id: str = Field(min_length=1, max_length=200, description="An event of the project")
    name: str = Field(default="draft", min_length=1, max_length=200)
    code: str | None = Field(default=None, max_length=100_000)
    criteria: str | None = Field(default=None, max_length=100_000)
    return_type: Literal["float", "boolean", "string", "categorical"] = "float"
    model_params: dict[str, Any] = Field(default_factory=dict)


class DraftError(BaseModel):
    code: str = Field(description="metric_timeout, metric_resource_limit, "
                      "metric_runtime_error, invalid_request, judge_rejected, ...")
    message: str
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="e.g. error_type, line, limit")


class DraftResult(BaseModel):
    ok: bool = Field(description="The evaluator produced a result (else see error)")
    event_id: str
    score: bool | int | float | str | None = None
    explanation: str | None = None
    extras: dict[str, bool | int | float | str] = Field(default_factory=dict)
    logs: str = Field(default="", description="What the code printed (truncated)")
    duration_ms: float = 0.0
    error: DraftError | None = None


class _Drafts:
    """One replica's draft scorer (its sandbox pool starts on the first Python draft)."""

    def __init__(self, context: DataPlaneContext) -> None:
        settings = context.settings
        judge_client = Scorer.from_settings(settings).judge_client
        self.scorer = Scorer(sandbox_size=1, sandbox_max_size=2,
                             limits=SandboxLimits.from_settings(settings),
                             judge_client=judge_client,
                             default_model=settings.evaluator_judge_model)
        self.running = 0


_drafts: weakref.WeakKeyDictionary[DataPlaneContext, _Drafts] = weakref.WeakKeyDictionary()


def _drafts_of(context: DataPlaneContext) -> _Drafts:
    drafts = _drafts.get(context)
    if drafts is None:
        drafts = _drafts[context] = _Drafts(context)
        context.on_close(drafts.scorer.close)
    return drafts


def _spec(body: DraftEvaluation) -> MetricSpec:
    if body.type == "python" and not (body.code or "").strip():
        raise InvalidRequest("a python evaluator needs code", field="code")
    if body.type == "llm" and not (body.criteria or "").strip():
        raise InvalidRequest("an llm evaluator needs criteria", field="criteria")
    return {"id": "draft", "name": body.name, "kind": body.type, "version": 0,
            "code": body.code, "criteria": body.criteria, "return_type": body.return_type,
            "sampling_pct": 100.0, "filters": [], "model_params": dict(body.model_params)}


@router.post("/v1/evaluations/draft", response_model=DraftResult, responses=ERRORS,
             summary="Run a draft evaluator on one event of the project, synchronously")
async def draft_evaluation(request: Request, body: DraftEvaluation) -> DraftResult:
    context = context_of(request)
    principal = await project_principal(context, request, Permission.EVENTS_READ,
                                        Permission.EVALUATORS_WRITE)
    require_judge_permission(principal, body.type)
    metric = _spec(body)
    found = await context.store.latest_events(principal.project_id, [body.event_id])
    if not found:
        raise NotFound("event not found", event_id=body.event_id)
    event = {k: v for k, v in found[0].items() if k != "version"}
    drafts = _drafts_of(context)
    if drafts.running >= MAX_DRAFTS_WAITING:
        raise TooManyRequests("this replica is testing as many drafts as it can; retry soon",
                              retry_after=2.0, limit=MAX_DRAFTS_WAITING)
    tenant: Tenant = {"org_id": principal.org_id, "workspace_id": principal.workspace_id,
                      "project_id": principal.project_id}
    drafts.running += 1
    try:
        result = await drafts.scorer.score(metric, event, tenant)
    except ConfigurationError as exc:  # this replica cannot isolate workers: say so, 503
        raise SandboxUnavailable(f"drafts cannot run on this data plane: {exc.message}") from None
    except (SandboxError, JudgeError) as exc:
        if exc.retryable:  # the sandbox or the judge is unavailable: not the draft's fault
            raise
        return DraftResult(ok=False, event_id=body.event_id,
                           error=DraftError(code=exc.error_code, message=exc.message,
                                            details=exc.to_body().get("details", {})))
    finally:
        drafts.running -= 1
    return DraftResult(ok=True, event_id=body.event_id, score=result.score,
                       explanation=result.explanation, extras=dict(result.extras),
                       logs=result.logs, duration_ms=result.duration_ms)


__all__ = ["MAX_DRAFTS_WAITING", "DraftEvaluation", "DraftResult", "router"]
