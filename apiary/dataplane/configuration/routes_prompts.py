"""Prompt configurations (HoneyHive ``/v1/configurations``), served from the control plane.

A configuration is a control-plane prompt template; this data plane never stores one. Each
call goes to the control plane's prompt API through the trusted seam
(:mod:`apiary.dataplane.replica.control_plane`) with the caller's own API key (a token is refused
with 403: the control plane accepts no token minted for a data plane); the control plane
authorizes it (``prompts:read`` / ``prompts:write``, checked here first too).

Mapping (HoneyHive ``ConfigurationItem`` ⇄ prompt template and its latest version):

- ``name`` ⇄ the template's name (unique in the project: a duplicate is 409), ``tags`` ⇄
  its tags, ``id`` ⇄ its id.
- ``parameters.template`` ⇄ the version's body (a string as it is; a message list as JSON,
  remembered by ``model_params.template_format``); the other parameters, ``provider``,
  ``type`` and ``user_properties`` ⇄ the version's ``model_params``.
- ``env`` ⇄ the environments (``dev``, ``staging``, ``prod``) serving the latest version.

A ``PUT`` that changes the content adds a version (versions are immutable) and moves the
environments it lists to it; environments it omits stop serving the template. The steps
are separate control-plane calls: a failure part-way leaves the earlier steps done (each
is a valid state), and the error is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.configuration.schemas import (
    ConfigurationCreate,
    ConfigurationCreated,
    ConfigurationDeleted,
    ConfigurationsResponse,
    ConfigurationUpdate,
    ConfigurationUpdated,
)
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import ERRORS, credential_of, project_principal
from apiary.errors import InvalidRequest

router = APIRouter(tags=["configurations"])

READ, WRITE = Permission.PROMPTS_READ, Permission.PROMPTS_WRITE
ENVIRONMENTS = ("dev", "staging", "prod")
_RESERVED = ("provider", "type", "user_properties", "template_format")


def _envs(env: list[str] | None) -> list[str] | None:
    if env is None:
        return None
    unknown = [e for e in env if e not in ENVIRONMENTS]
    if unknown:
        raise InvalidRequest(f"env must be among {', '.join(ENVIRONMENTS)}", field="env")
    return list(dict.fromkeys(env))


def _version_content(provider: str, parameters: Mapping[str, Any], kind: str | None,
                     user_properties: Mapping[str, Any] | None) -> dict[str, Any]:
    """A control-plane prompt version (``body``, ``model_params``) from HoneyHive fields."""
    params = {k: v for k, v in parameters.items() if k != "template" and k not in _RESERVED}
    template = parameters.get("template")
    if template is None:
        body, fmt = "[]", "none"
    elif isinstance(template, str):
        body, fmt = template, "text"
        if not body:
            body, fmt = "[]", "none"
    else:
        body, fmt = orjson.dumps(template).decode(), "messages"
    params.update(provider=provider, type=kind or "LLM", template_format=fmt)
    if user_properties is not None:
        params["user_properties"] = dict(user_properties)
    return {"body": body, "model_params": params}


def _stored_parameters(version: Mapping[str, Any]) -> dict[str, Any]:
    """The HoneyHive ``parameters`` a prompt version holds, as they were sent."""
    params = dict(version.get("model_params") or {})
    parameters = {k: v for k, v in params.items() if k not in _RESERVED}
    fmt = params.get("template_format", "text")
    if fmt == "text":
        parameters["template"] = version["body"]
    elif fmt == "messages":
        parameters["template"] = orjson.loads(version["body"])
    return parameters


def configuration_out(template: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt template as HoneyHive's ``ConfigurationItem`` (its latest version)."""
    version = template["versions"][-1]
    params = dict(version.get("model_params") or {})
    parameters = _stored_parameters(version)
    parameters.setdefault("call_type", "chat")
    parameters.setdefault("model", "")
    return {
        "id": template["id"], "name": template["name"], "type": params.get("type", "LLM"),
        "provider": params.get("provider", ""), "parameters": parameters,
        "env": sorted(e for e, n in template["environments"].items()
                      if n == version["version"]),
        "tags": template["tags"], "user_properties": params.get("user_properties"),
        "created_at": str(template["created_at"]), "updated_at": template["updated_at"],
        "version": version["version"],
    }


@router.get("/v1/configurations", response_model=ConfigurationsResponse, responses=ERRORS,
            summary="The project's prompt configurations")
async def list_configurations(
    request: Request,
    name: Annotated[str | None, Query(max_length=200)] = None,
    env: Annotated[str | None, Query(max_length=20, description="Only those serving in "
                                     "this environment")] = None,
    tags: Annotated[str | None, Query(max_length=2000, description="Comma-separated: "
                                      "only those carrying all of them")] = None,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    templates = await context.control_plane.list_prompts(credential_of(request),
                                                         principal.project_id, name)
    items = [configuration_out(t) for t in templates if t.get("versions")]
    if env is not None:
        items = [i for i in items if env in i["env"]]
    if tags:
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        items = [i for i in items if wanted <= set(i["tags"])]
    return {"configurations": items}


@router.post("/v1/configurations", response_model=ConfigurationCreated, responses=ERRORS,
             summary="Create a prompt configuration (a control-plane prompt template)")
async def create_configuration(request: Request, body: ConfigurationCreate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    envs = _envs(body.env) or []
    credential, cp, project = credential_of(request), context.control_plane, principal.project_id
    content = _version_content(body.provider, body.parameters.model_dump(exclude_none=True),
                               body.type, body.user_properties)
    created = await cp.create_prompt(credential, project, {
        "name": body.name, **content, "tags": body.tags or [], "message": "created"})
    for environment in envs:
        await cp.set_prompt_environment(credential, project, created["id"], environment, 1)
    return {"acknowledged": True, "insertedId": created["id"]}


@router.put("/v1/configurations/{config_id}", response_model=ConfigurationUpdated,
            responses=ERRORS, summary="Update a configuration (changed content is a new "
            "version; env lists the environments serving it)")
async def update_configuration(request: Request, config_id: str, body: ConfigurationUpdate
                               ) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    envs = _envs(body.env)
    credential, cp, project = credential_of(request), context.control_plane, principal.project_id
    template = await cp.get_prompt(credential, project, config_id)
    current = configuration_out(template)
    modified = False
    if body.name != template["name"]:
        await cp.rename_prompt(credential, project, config_id, body.name)
        modified = True
    latest = template["versions"][-1]
    parameters = (body.parameters.model_dump(exclude_none=True) if body.parameters
                  else _stored_parameters(latest))
    content = _version_content(
        body.provider or current["provider"], parameters, body.type or current["type"],
        body.user_properties if body.user_properties is not None
        else current["user_properties"])
    number = latest["version"]
    if content != {"body": latest["body"], "model_params": latest["model_params"]}:
        added = await cp.add_prompt_version(credential, project, config_id,
                                            {**content, "message": "updated"})
        number, modified = added["version"], True
    if body.tags is not None and sorted(set(body.tags)) != sorted(template["tags"]):
        await cp.set_prompt_tags(credential, project, config_id, body.tags)
        modified = True
    if envs is not None:
        serving = template["environments"]
        for environment in envs:
            if serving.get(environment) != number:
                await cp.set_prompt_environment(credential, project, config_id,
                                                environment, number)
                modified = True
        for environment in serving:
            if environment not in envs:
                await cp.clear_prompt_environment(credential, project, config_id,
                                                  environment)
                modified = True
    elif number != latest["version"]:
        # Environments that served the previous version follow the configuration.
        for environment, served in template["environments"].items():
            if served == latest["version"]:
                await cp.set_prompt_environment(credential, project, config_id,
                                                environment, number)
    return {"acknowledged": True, "modifiedCount": int(modified), "upsertedId": None,
            "upsertedCount": 0, "matchedCount": 1}


@router.delete("/v1/configurations/{config_id}", response_model=ConfigurationDeleted,
               responses=ERRORS, summary="Delete a configuration with its versions")
async def delete_configuration(request: Request, config_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    await context.control_plane.delete_prompt(credential_of(request), principal.project_id,
                                              config_id)
    return {"acknowledged": True, "deletedCount": 1}
