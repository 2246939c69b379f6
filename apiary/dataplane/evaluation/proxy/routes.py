"""The LLM proxy over HTTP: OpenAI's ``POST /v1/chat/completions``, and the workspace's
provider credentials.

- ``POST /v1/chat/completions`` (``proxy:use``, a credential of one project): the body is
  OpenAI's; the answer is OpenAI's (JSON, or server-sent events with ``stream: true``),
  with ``x-apiary-event-id`` naming the model event the call is traced as. Optional
  headers place that event: ``x-apiary-session-id``, ``x-apiary-parent-id``,
  ``x-apiary-event-name``, ``x-apiary-source``. Errors:
  :mod:`apiary.dataplane.evaluation.proxy.errors`.
- ``/v1/proxy/credentials``: create, list, rotate and delete the provider keys of the
  caller's workspace. A credential is shared by every project of the workspace, so creating,
  changing and deleting one needs ``proxy:manage`` *on the workspace*
  (``Principal.workspace_permissions``: a workspace admin's token or a workspace key), never
  just on a project (403); listing needs ``proxy:manage`` or ``proxy:use`` (keys masked).
  Keys are write-only: no answer ever contains one
  (:mod:`apiary.dataplane.evaluation.proxy.credentials`). ``api_base`` must pass the outbound-URL
  policy (:mod:`apiary.outbound`, 400 ``outbound_url_refused``) and can only change together with
  ``api_key`` (400, field ``api_key``).

The proxy of a replica (:func:`proxy_of`) is built on first use and shares the replica's
NATS connection (LiteLLM is imported, in a worker thread, by the replica's first proxy
call); this router's lifespan, at shutdown, waits for traces still being published.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from apiary.dataplane.auth import Permission, Principal, bearer_credential
from apiary.dataplane.evaluation.proxy import credentials as vault
from apiary.dataplane.evaluation.proxy._egress import UNGUARDED_PROVIDERS
from apiary.dataplane.evaluation.proxy._litellm import known_providers, warm_up
from apiary.dataplane.evaluation.proxy.envelope import Envelope, envelope_from_settings
from apiary.dataplane.evaluation.proxy.request import ChatCompletionRequest
from apiary.dataplane.evaluation.proxy.schemas import (
    CredentialCreate,
    CredentialDeleted,
    CredentialOut,
    CredentialsResponse,
    CredentialUpdate,
)
from apiary.dataplane.evaluation.proxy.service import Caller, ChatProxy, Completion
from apiary.dataplane.evaluation.proxy.tracing import TraceLink, TraceSink
from apiary.dataplane.events.schemas import ID_PATTERN, PathId
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.dataplane.replica.routing import ERRORS, in_transaction, project_principal
from apiary.errors import InvalidRequest, PermissionDenied
from apiary.outbound import OutboundPolicy
from apiary.web.errors import ErrorResponse

_proxies: weakref.WeakKeyDictionary[DataPlaneContext, ChatProxy] = (
    weakref.WeakKeyDictionary())
_envelopes: weakref.WeakKeyDictionary[DataPlaneContext, Envelope] = (
    weakref.WeakKeyDictionary())
#: How long shutdown waits for traces still on their way to JetStream.
DRAIN_S = 10.0


def envelope_of(context: DataPlaneContext) -> Envelope:
    """The replica's envelope (``APIARY_DP_ENVELOPE_KEY`` or the data dir's key file)."""
    envelope = _envelopes.get(context)
    if envelope is None:
        envelope = _envelopes.setdefault(context, envelope_from_settings(context.settings))
    return envelope


def proxy_of(context: DataPlaneContext) -> ChatProxy:
    """The replica's :class:`ChatProxy`, made on first use, on the replica's dpdb and NATS
    connection."""
    proxy = _proxies.get(context)
    if proxy is None:
        proxy = _proxies.setdefault(context, ChatProxy(
            database=lambda: context.dpdb, envelope=lambda: envelope_of(context),
            sink=TraceSink(context.publisher), timeout_s=context.settings.proxy_timeout_s,
            outbound=OutboundPolicy.from_settings(context.settings)))
    return proxy


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # No LiteLLM warm-up here: its import holds the GIL for seconds, which would slow every
    # request of a starting replica, also of replicas that never proxy. The first proxy
    # call of a replica pays it instead (in a worker thread).
    try:
        yield
    finally:
        context: DataPlaneContext | None = getattr(app.state, "dataplane", None)
        proxy = _proxies.get(context) if context is not None else None
        if proxy is not None:
            await proxy.sink.drain(DRAIN_S)


router = APIRouter(tags=["llm proxy"], lifespan=_lifespan)

_CHAT_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"description": "OpenAI's chat completion object (JSON), or with stream: true "
          "server-sent events of chunks ending with 'data: [DONE]'",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/event-stream": {"schema": {"type": "string"}}}},
    **ERRORS,
    400: {"model": ErrorResponse, "description": "Invalid request, unknown provider, no "
          "credential for it (provider_not_configured), or refused by the provider "
          "(provider_bad_request)"},
    404: {"model": ErrorResponse, "description": "The provider does not know the model"},
    413: {"model": ErrorResponse, "description": "Too large for the provider"},
    424: {"model": ErrorResponse, "description": "The provider refused the workspace's key"},
    429: {"model": ErrorResponse, "description": "The provider is rate limiting; Retry-After"},
    502: {"model": ErrorResponse, "description": "The provider failed or is unreachable"},
    504: {"model": ErrorResponse, "description": "The provider did not answer in time"},
}
LinkHeader = Annotated[str | None, Header(max_length=256, pattern=ID_PATTERN)]


def _caller(principal: Principal) -> Caller:
    return Caller({"org_id": principal.org_id, "workspace_id": principal.workspace_id,
                   "project_id": principal.project_id}, principal.subject)


@router.post("/v1/chat/completions", responses=_CHAT_ERRORS,
             summary="OpenAI-compatible chat completion through the workspace's provider key")
async def chat_completions(
    request: Request, body: ChatCompletionRequest,
    x_apiary_session_id: LinkHeader = None, x_apiary_parent_id: LinkHeader = None,
    x_apiary_event_name: LinkHeader = None, x_apiary_source: LinkHeader = None,
) -> Response:
    context = context_of(request)
    principal = await project_principal(context, request, Permission.PROXY_USE)
    link = TraceLink(session_id=x_apiary_session_id, parent_id=x_apiary_parent_id,
                     event_name=x_apiary_event_name, source=x_apiary_source)
    answer = await proxy_of(context).complete(_caller(principal), body, link)
    headers = {"x-apiary-event-id": answer.event_id}
    if isinstance(answer, Completion):
        return JSONResponse(answer.body, headers=headers)
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    return StreamingResponse(answer.events, media_type="text/event-stream", headers=headers)


# --- credentials ----------------------------------------------------------------------


def _workspace(principal: Principal) -> vault.Workspace:
    return vault.Workspace(principal.org_id, principal.workspace_id)


async def _workspace_manager(context: DataPlaneContext, request: Request) -> Principal:
    """The caller, holding ``proxy:manage`` on its workspace itself (403 otherwise)."""
    principal = await context.principal(request, Permission.PROXY_MANAGE)
    if Permission.PROXY_MANAGE not in principal.workspace_permissions:
        raise PermissionDenied(
            "provider credentials are shared by every project of the workspace: changing "
            "them needs proxy:manage on the workspace, not only on a project",
            project_id=principal.project_id or None)
    return principal


async def _listing_principal(context: DataPlaneContext, request: Request) -> Principal:
    principal = await context.authenticator.authenticate(
        bearer_credential(request.headers.get("authorization")))
    if not {Permission.PROXY_MANAGE, Permission.PROXY_USE} & principal.permissions:
        raise PermissionDenied("this credential may not use or manage the LLM proxy")
    return principal


def _check_known(provider: str) -> str:
    name = vault.check_provider(provider)
    if name not in known_providers():
        raise InvalidRequest(f"unknown provider {name!r}: use a LiteLLM provider name such as "
                             "'openai' or 'anthropic'", field="provider")
    if name in UNGUARDED_PROVIDERS:
        raise InvalidRequest(f"provider {name!r} is not supported: its connections cannot be "
                             "checked against the outbound-URL policy", field="provider")
    return name


@router.post("/v1/proxy/credentials", status_code=201, response_model=CredentialOut,
             responses=ERRORS, summary="Store a provider key for the caller's workspace")
async def create_credential(request: Request, body: CredentialCreate) -> dict[str, Any]:
    context = context_of(request)
    principal = await _workspace_manager(context, request)
    await warm_up()
    provider = await asyncio.to_thread(_check_known, body.provider)
    envelope = envelope_of(context)
    outbound = OutboundPolicy.from_settings(context.settings)

    def work(db: Session) -> dict[str, Any]:
        credential = vault.create_credential(
            db, envelope, _workspace(principal), provider=provider, outbound=outbound,
            api_key=body.api_key.get_secret_value(), api_base=body.api_base,
            api_version=body.api_version, name=body.name, created_by=principal.subject)
        return vault.describe(credential)

    return await in_transaction(context, work)


@router.get("/v1/proxy/credentials", response_model=CredentialsResponse, responses=ERRORS,
            summary="The workspace's provider credentials (keys masked)")
async def list_credentials(request: Request) -> dict[str, Any]:
    context = context_of(request)
    principal = await _listing_principal(context, request)

    def work(db: Session) -> dict[str, Any]:
        return {"credentials": [vault.describe(c)
                                for c in vault.list_credentials(db, _workspace(principal))]}

    return await in_transaction(context, work)


@router.put("/v1/proxy/credentials/{credential_id}", response_model=CredentialOut,
            responses=ERRORS, summary="Rotate a provider key or change its endpoint")
async def update_credential(request: Request, credential_id: PathId,
                            body: CredentialUpdate) -> dict[str, Any]:
    context = context_of(request)
    principal = await _workspace_manager(context, request)
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    if changes.get("api_key") is not None:
        changes["api_key"] = body.api_key.get_secret_value() if body.api_key else None
    envelope = envelope_of(context)
    outbound = OutboundPolicy.from_settings(context.settings)

    def work(db: Session) -> dict[str, Any]:
        credential = vault.get_credential(db, _workspace(principal), credential_id)
        vault.update_credential(db, envelope, credential, changes=changes, outbound=outbound)
        return vault.describe(credential)

    return await in_transaction(context, work)


@router.delete("/v1/proxy/credentials/{credential_id}", response_model=CredentialDeleted,
               responses=ERRORS, summary="Delete a provider credential")
async def delete_credential(request: Request, credential_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await _workspace_manager(context, request)

    def work(db: Session) -> dict[str, Any]:
        credential = vault.get_credential(db, _workspace(principal), credential_id)
        vault.delete_credential(db, credential)
        return {"deleted": True, "id": credential_id}

    return await in_transaction(context, work)
