"""Configuration endpoints of a project: prompt templates (``prompts:*``), evaluator
configurations (``evaluators:*``), alert definitions (``alerts:*``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from apiary.control.api._guards import On, Scope
from apiary.control.api.schemas_config import (
    AlertCreate,
    AlertEventOut,
    AlertOut,
    AlertPreviewOut,
    AlertUpdate,
    DeployRequest,
    EnvironmentSet,
    EvaluatorCreate,
    EvaluatorOut,
    EvaluatorUpdate,
    EvaluatorVersionCreate,
    EvaluatorVersionOut,
    PromptCreate,
    PromptTemplateOut,
    PromptUpdate,
    PromptVersionCreate,
    PromptVersionOut,
    TagsSet,
)
from apiary.control.config import alerts, evaluators, prompts
from apiary.control.db import Project
from apiary.control.permissions import Permission as P
from apiary.control.tenancy import get_project
from apiary.errors import NotFound, PermissionDenied

router = APIRouter()

PromptsRead = Annotated[Scope, Depends(On(P.PROMPTS_READ, "project"))]
PromptsWrite = Annotated[Scope, Depends(On(P.PROMPTS_WRITE, "project"))]
EvaluatorsRead = Annotated[Scope, Depends(On(P.EVALUATORS_READ, "project"))]
EvaluatorsWrite = Annotated[Scope, Depends(On(P.EVALUATORS_WRITE, "project"))]
AlertsRead = Annotated[Scope, Depends(On(P.ALERTS_READ, "project"))]
AlertsWrite = Annotated[Scope, Depends(On(P.ALERTS_WRITE, "project"))]

_PROMPTS = "/v1/projects/{project_id}/prompts"
_EVALUATORS = "/v1/projects/{project_id}/evaluators"
_ALERTS = "/v1/projects/{project_id}/alerts"


def _template_out(view: prompts.TemplateView) -> PromptTemplateOut:
    t = view.template
    return PromptTemplateOut(
        id=t.id, project_id=t.project_id, name=t.name, tags=t.tags,
        versions=[PromptVersionOut.model_validate(v) for v in view.versions],
        environments=view.environments, created_at=t.created_at, updated_at=t.updated_at,
    )


def _evaluator_out(view: evaluators.EvaluatorView) -> EvaluatorOut:
    e = view.evaluator
    return EvaluatorOut(
        id=e.id, project_id=e.project_id, name=e.name, type=e.type, description=e.description,
        enabled=e.enabled, deployed_version=e.deployed_version,
        versions=[EvaluatorVersionOut.model_validate(v) for v in view.versions],
        created_at=e.created_at, updated_at=e.updated_at,
    )


def _spec(body: EvaluatorVersionCreate) -> evaluators.VersionSpec:
    return evaluators.VersionSpec(
        criteria=body.criteria, code=body.code, return_type=body.return_type,
        pass_min=body.pass_min, pass_max=body.pass_max, sampling_pct=body.sampling_pct,
        filters=body.filters, model_params=body.model_params, message=body.message,
    )


def _require_judge_spending(scope: Scope, kind: str) -> None:
    """An LLM-judge evaluator spends the workspace's provider key on every event it scores,
    so defining, changing or deploying one needs ``proxy:use`` besides ``evaluators:write``
    (the data plane checks the same when it runs or refreshes one)."""
    if kind == "llm" and P.PROXY_USE not in scope.access.permissions:
        raise PermissionDenied(
            "an LLM-judge evaluator spends the workspace's provider key: this needs proxy:use",
            project_id=scope.resource.project_id,
        )


def _project(db: Session, scope: Scope) -> Project:
    assert scope.resource.project_id is not None
    return get_project(db, scope.resource.project_id)


# --- prompts ------------------------------------------------------------------------


@router.get(_PROMPTS, response_model=list[PromptTemplateOut], tags=["prompts"])
def list_prompts(
    project_id: str, scope: PromptsRead, name: str | None = Query(None)
) -> list[PromptTemplateOut]:
    with scope.cp.transaction() as db:
        return [_template_out(v) for v in prompts.list_templates(db, _project(db, scope), name)]


@router.post(_PROMPTS, response_model=PromptTemplateOut, status_code=201, tags=["prompts"],
             summary="Create a prompt template with its version 1")
def create_prompt(project_id: str, body: PromptCreate, scope: PromptsWrite) -> PromptTemplateOut:
    with scope.cp.transaction() as db:
        view = prompts.create_template(
            scope.cp, db, _project(db, scope), name=body.name, body=body.body,
            model_params=body.model_params, tags=body.tags, message=body.message,
            author=scope.actor,
        )
        return _template_out(view)


@router.get(_PROMPTS + "/{template_id}", response_model=PromptTemplateOut, tags=["prompts"])
def get_prompt(project_id: str, template_id: str, scope: PromptsRead) -> PromptTemplateOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        return _template_out(prompts.view(db, template))


@router.post(_PROMPTS + "/{template_id}/versions", response_model=PromptVersionOut,
             status_code=201, tags=["prompts"], summary="Add the next (immutable) version")
def add_prompt_version(
    project_id: str, template_id: str, body: PromptVersionCreate, scope: PromptsWrite
) -> PromptVersionOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        version = prompts.add_version(scope.cp, db, template, body=body.body,
                                      model_params=body.model_params, message=body.message,
                                      author=scope.actor)
        return PromptVersionOut.model_validate(version)


@router.get(_PROMPTS + "/{template_id}/versions/{version}", response_model=PromptVersionOut,
            tags=["prompts"])
def get_prompt_version(
    project_id: str, template_id: str, version: int, scope: PromptsRead
) -> PromptVersionOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        return PromptVersionOut.model_validate(prompts.get_version(db, template, version))


@router.put(_PROMPTS + "/{template_id}/environments/{environment}",
            response_model=PromptTemplateOut, tags=["prompts"],
            summary="Point an environment (dev, staging, prod) at a version")
def set_prompt_environment(
    project_id: str, template_id: str, environment: str, body: EnvironmentSet,
    scope: PromptsWrite,
) -> PromptTemplateOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        prompts.set_environment(scope.cp, db, template, environment, body.version, scope.actor)
        return _template_out(prompts.view(db, template))


@router.get(_PROMPTS + "/{template_id}/environments/{environment}",
            response_model=PromptVersionOut, tags=["prompts"],
            summary="The version an environment serves")
def get_prompt_environment(
    project_id: str, template_id: str, environment: str, scope: PromptsRead
) -> PromptVersionOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        version = prompts.resolve_environment(db, template, environment)
        return PromptVersionOut.model_validate(version)


@router.delete(_PROMPTS + "/{template_id}/environments/{environment}", status_code=204,
               tags=["prompts"], summary="Make an environment serve no version (404 if none)")
def clear_prompt_environment(
    project_id: str, template_id: str, environment: str, scope: PromptsWrite
) -> None:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        if not prompts.clear_environment(scope.cp, db, template, environment):
            raise NotFound(f"no version is deployed to {environment}")


@router.patch(_PROMPTS + "/{template_id}", response_model=PromptTemplateOut, tags=["prompts"],
              summary="Rename a prompt template")
def update_prompt(
    project_id: str, template_id: str, body: PromptUpdate, scope: PromptsWrite
) -> PromptTemplateOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        prompts.rename_template(scope.cp, db, template, body.name)
        return _template_out(prompts.view(db, template))


@router.delete(_PROMPTS + "/{template_id}", status_code=204, tags=["prompts"],
               summary="Delete a prompt template with its versions and environments")
def delete_prompt(project_id: str, template_id: str, scope: PromptsWrite) -> None:
    with scope.cp.transaction() as db:
        prompts.delete_template(db, prompts.get_template(db, _project(db, scope), template_id))


@router.put(_PROMPTS + "/{template_id}/tags", response_model=PromptTemplateOut,
            tags=["prompts"])
def set_prompt_tags(
    project_id: str, template_id: str, body: TagsSet, scope: PromptsWrite
) -> PromptTemplateOut:
    with scope.cp.transaction() as db:
        template = prompts.get_template(db, _project(db, scope), template_id)
        prompts.set_tags(scope.cp, template, body.tags)
        return _template_out(prompts.view(db, template))


# --- evaluators ---------------------------------------------------------------------


@router.get(_EVALUATORS, response_model=list[EvaluatorOut], tags=["evaluators"])
def list_evaluators(project_id: str, scope: EvaluatorsRead) -> list[EvaluatorOut]:
    with scope.cp.transaction() as db:
        return [_evaluator_out(v) for v in evaluators.list_evaluators(db, _project(db, scope))]


@router.post(_EVALUATORS, response_model=EvaluatorOut, status_code=201, tags=["evaluators"],
             summary="Define an evaluator with its version 1")
def create_evaluator(
    project_id: str, body: EvaluatorCreate, scope: EvaluatorsWrite
) -> EvaluatorOut:
    _require_judge_spending(scope, body.type)
    with scope.cp.transaction() as db:
        view = evaluators.create_evaluator(
            scope.cp, db, _project(db, scope), name=body.name, kind=body.type,
            description=body.description, spec=_spec(body), author=scope.actor,
        )
        return _evaluator_out(view)


@router.get(_EVALUATORS + "/{evaluator_id}", response_model=EvaluatorOut, tags=["evaluators"])
def get_evaluator(project_id: str, evaluator_id: str, scope: EvaluatorsRead) -> EvaluatorOut:
    with scope.cp.transaction() as db:
        evaluator = evaluators.get_evaluator(db, _project(db, scope), evaluator_id)
        return _evaluator_out(evaluators.view(db, evaluator))


@router.patch(_EVALUATORS + "/{evaluator_id}", response_model=EvaluatorOut, tags=["evaluators"])
def update_evaluator(
    project_id: str, evaluator_id: str, body: EvaluatorUpdate, scope: EvaluatorsWrite
) -> EvaluatorOut:
    with scope.cp.transaction() as db:
        evaluator = evaluators.get_evaluator(db, _project(db, scope), evaluator_id)
        if body.enabled:  # switching a judge back on resumes spending; off never needs it
            _require_judge_spending(scope, evaluator.type)
        evaluators.update_evaluator(scope.cp, evaluator, enabled=body.enabled,
                                    description=body.description, name=body.name, db=db)
        return _evaluator_out(evaluators.view(db, evaluator))


@router.delete(_EVALUATORS + "/{evaluator_id}", status_code=204, tags=["evaluators"],
               summary="Delete an evaluator with its versions")
def delete_evaluator(project_id: str, evaluator_id: str, scope: EvaluatorsWrite) -> None:
    with scope.cp.transaction() as db:
        evaluators.delete_evaluator(
            db, evaluators.get_evaluator(db, _project(db, scope), evaluator_id))


@router.post(_EVALUATORS + "/{evaluator_id}/versions", response_model=EvaluatorVersionOut,
             status_code=201, tags=["evaluators"])
def add_evaluator_version(
    project_id: str, evaluator_id: str, body: EvaluatorVersionCreate, scope: EvaluatorsWrite
) -> EvaluatorVersionOut:
    with scope.cp.transaction() as db:
        evaluator = evaluators.get_evaluator(db, _project(db, scope), evaluator_id)
        _require_judge_spending(scope, evaluator.type)
        version = evaluators.add_version(scope.cp, db, evaluator, _spec(body), scope.actor)
        return EvaluatorVersionOut.model_validate(version)


@router.post(_EVALUATORS + "/{evaluator_id}/deploy", response_model=EvaluatorOut,
             tags=["evaluators"], summary="Make a version the one the project runs")
def deploy_evaluator(
    project_id: str, evaluator_id: str, body: DeployRequest, scope: EvaluatorsWrite
) -> EvaluatorOut:
    with scope.cp.transaction() as db:
        evaluator = evaluators.get_evaluator(db, _project(db, scope), evaluator_id)
        _require_judge_spending(scope, evaluator.type)
        evaluators.deploy(scope.cp, db, evaluator, body.version)
        return _evaluator_out(evaluators.view(db, evaluator))


# --- alerts -------------------------------------------------------------------------


@router.get(_ALERTS, response_model=list[AlertOut], tags=["alerts"])
def list_alerts(project_id: str, scope: AlertsRead) -> list[AlertOut]:
    with scope.cp.transaction() as db:
        return [AlertOut.model_validate(a) for a in alerts.list_alerts(db, _project(db, scope))]


@router.post(_ALERTS, response_model=AlertOut, status_code=201, tags=["alerts"])
def create_alert(project_id: str, body: AlertCreate, scope: AlertsWrite) -> AlertOut:
    with scope.cp.transaction() as db:
        alert = alerts.create_alert(
            scope.cp, db, _project(db, scope), name=body.name, description=body.description,
            condition=body.condition.model_dump(mode="json"),
            channels=[c.model_dump() for c in body.channels], author=scope.actor,
        )
        return AlertOut.model_validate(alert)


@router.get(_ALERTS + "/{alert_id}", response_model=AlertOut, tags=["alerts"])
def get_alert(project_id: str, alert_id: str, scope: AlertsRead) -> AlertOut:
    with scope.cp.transaction() as db:
        return AlertOut.model_validate(alerts.get_alert(db, _project(db, scope), alert_id))


@router.patch(_ALERTS + "/{alert_id}", response_model=AlertOut, tags=["alerts"])
def update_alert(
    project_id: str, alert_id: str, body: AlertUpdate, scope: AlertsWrite
) -> AlertOut:
    with scope.cp.transaction() as db:
        alert = alerts.get_alert(db, _project(db, scope), alert_id)
        changes = body.model_dump(mode="json", exclude_unset=True)
        alerts.update_alert(scope.cp, db, alert, changes)
        return AlertOut.model_validate(alert)


def _transition(project_id: str, alert_id: str, scope: Scope,
                action: alerts.Transition) -> AlertOut:
    with scope.cp.transaction() as db:
        alert = alerts.get_alert(db, _project(db, scope), alert_id)
        alerts.transition(scope.cp, alert, action)
        return AlertOut.model_validate(alert)


@router.post(_ALERTS + "/{alert_id}/pause", response_model=AlertOut, tags=["alerts"],
             summary="Stop evaluating the alert (409 if paused)")
def pause_alert(project_id: str, alert_id: str, scope: AlertsWrite) -> AlertOut:
    return _transition(project_id, alert_id, scope, "pause")


@router.post(_ALERTS + "/{alert_id}/resume", response_model=AlertOut, tags=["alerts"],
             summary="Evaluate a paused alert again (409 if not paused)")
def resume_alert(project_id: str, alert_id: str, scope: AlertsWrite) -> AlertOut:
    return _transition(project_id, alert_id, scope, "resume")


@router.post(_ALERTS + "/{alert_id}/mute", response_model=AlertOut, tags=["alerts"],
             summary="Keep evaluating, send nothing (409 if muted)")
def mute_alert(project_id: str, alert_id: str, scope: AlertsWrite) -> AlertOut:
    return _transition(project_id, alert_id, scope, "mute")


@router.post(_ALERTS + "/{alert_id}/unmute", response_model=AlertOut, tags=["alerts"],
             summary="Send notifications again (409 if not muted)")
def unmute_alert(project_id: str, alert_id: str, scope: AlertsWrite) -> AlertOut:
    return _transition(project_id, alert_id, scope, "unmute")


@router.post(_ALERTS + "/{alert_id}/resolve", response_model=AlertOut, tags=["alerts"],
             summary="Mark a triggered alert resolved (409 if not triggered)")
def resolve_alert(project_id: str, alert_id: str, scope: AlertsWrite) -> AlertOut:
    return _transition(project_id, alert_id, scope, "resolve")


@router.get(_ALERTS + "/{alert_id}/activity", response_model=list[AlertEventOut],
            tags=["alerts"], summary="The alert's firings and deliveries, newest first")
def alert_activity(
    project_id: str, alert_id: str, scope: AlertsRead,
    limit: int = Query(50, ge=1, le=alerts.MAX_ACTIVITY),
) -> list[AlertEventOut]:
    """Transitions (``warning``, ``critical``, ``resolution``, muted ones included) and
    each channel's delivery outcome, as the data plane evaluating the alert reported them
    (stored once each; a report arrives within seconds while the data plane is connected,
    and after it reconnects otherwise)."""
    with scope.cp.transaction() as db:
        alert = alerts.get_alert(db, _project(db, scope), alert_id)
        return [AlertEventOut.model_validate(e) for e in alerts.activity(db, alert, limit=limit)]


@router.get(_ALERTS + "/{alert_id}/preview", response_model=AlertPreviewOut, tags=["alerts"],
            summary="The rule's value over a period and its thresholds, for a chart")
async def alert_preview(
    project_id: str, alert_id: str, scope: AlertsRead,
    from_: int | None = Query(None, alias="from",
                              description="Start, unix seconds (default: `to` - 24 h)"),
    to: int | None = Query(None, description="End, unix seconds (default: now)"),
) -> AlertPreviewOut:
    """Computed by the data plane serving the project, over its events, and asked for on
    its federation stream: 409 when no data plane serves the project (assign one), 503
    ``data_plane_unavailable`` (retryable, naming the data plane) when it is not connected
    or does not answer within 10 s. ``from`` < ``to``, at most 31 days apart (400)."""

    def start() -> tuple[str, str]:
        with scope.cp.transaction() as db:
            project = _project(db, scope)
            alert = alerts.get_alert(db, project, alert_id)
            period = alerts.preview_period(scope.cp.now(), from_, to)
            return alerts.start_preview(scope.cp, db, project, alert, *period)

    command_id, data_plane = await asyncio.to_thread(start)
    result = await alerts.await_preview(scope.cp, command_id, data_plane)
    return AlertPreviewOut.model_validate(result)


@router.delete(_ALERTS + "/{alert_id}", status_code=204, tags=["alerts"])
def delete_alert(project_id: str, alert_id: str, scope: AlertsWrite) -> None:
    with scope.cp.transaction() as db:
        alerts.delete_alert(db, alerts.get_alert(db, _project(db, scope), alert_id))
