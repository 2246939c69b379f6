"""``GET /v1/ingest/stats`` (a project's) and ``GET /v1/admin/ingest/stats`` (every
project's): the exact ingest accounting of :mod:`apiary.dataplane.accounting.stats`.

- ``/v1/ingest/stats`` answers for the caller's project: a project key or a token for a
  project, with ``events:read``. ``project_id`` may be given and must then be the caller's
  own; any other project is 403 (no counts of another project, not even whether it exists).
  A workspace-scoped credential is 403 too: the data plane cannot tell which projects its
  workspace holds, so it is given none (use a token for the project, or the admin route).
- ``/v1/admin/ingest/stats`` takes only the data plane's admin token
  (:func:`~apiary.dataplane.auth.require_operator`) and lists every project with any message
  (or the one ``project_id`` names), with the totals over them.

Both are computed when asked (a headers-only read of the stream and one ledger query);
503 with ``Retry-After`` while JetStream or the store is unavailable.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request

from apiary.dataplane.accounting.stats import Accounting, ingest_stats
from apiary.dataplane.auth import Permission, require_operator
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import ERRORS, project_principal
from apiary.errors import PermissionDenied

router = APIRouter(tags=["operations"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: ERRORS[code] for code in (400, 401, 403, 503)}
_PROJECT = r"^[A-Za-z0-9_-]{1,200}$"
ProjectFilter = Annotated[str | None, Query(pattern=_PROJECT, description="A project id")]


class IngestTally(BaseModel):
    messages: int = Field(description="JetStream messages (one request may span several)")
    rows: int = Field(description="Events, spans or patches they hold")


class IngestCounts(BaseModel):
    """accepted = stored + dead_lettered + in_flight, in messages and in rows."""

    accepted: IngestTally = Field(
        description="Acknowledged to the client (durable in JetStream)")
    stored: IngestTally = Field(
        description="Written to the event store (a message partly dead-lettered counts as a "
        "dead-lettered message)")
    dead_lettered: IngestTally = Field(
        description="Dead-lettered (also once replayed or purged)")
    in_flight: IngestTally = Field(
        description="Still in the queue, waiting for a writer")


class ProjectIngestCounts(IngestCounts):
    project_id: str
    by_kind: dict[str, IngestCounts] = Field(
        description="The same counts by batch kind (spans, api, updates, ...)")


class IngestStats(ProjectIngestCounts):
    as_of: float = Field(description="When the counts were read (Unix seconds)")


class AllIngestStats(BaseModel):
    projects: list[ProjectIngestCounts] = Field(
        description="Every project with any message, by id")
    totals: IngestCounts
    as_of: float = Field(description="When the counts were read (Unix seconds)")


@router.get("/v1/ingest/stats", response_model=IngestStats, responses=_ERRORS,
            summary="The project's ingest accounting: accepted, stored, dead-lettered, "
            "in flight")
async def project_ingest_stats(request: Request,
                               project_id: ProjectFilter = None) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, Permission.EVENTS_READ)
    if project_id is not None and project_id != principal.project_id:
        raise PermissionDenied("this credential may read its own project's ingest stats "
                               "only", project_id=principal.project_id)
    as_of = time.time()
    stats = await ingest_stats(context.js, context.store, principal.project_id)
    return {**stats[principal.project_id].as_dict(), "as_of": as_of}


@router.get("/v1/admin/ingest/stats", response_model=AllIngestStats, responses=_ERRORS,
            summary="Every project's ingest accounting (operator only)")
async def all_ingest_stats(request: Request,
                           project_id: ProjectFilter = None) -> dict[str, Any]:
    context = context_of(request)
    require_operator(context.settings.admin_token, request.headers.get("authorization"))
    as_of = time.time()
    stats = await ingest_stats(context.js, context.store, project_id)
    totals = Accounting()
    for project in stats.values():
        totals.merge(project.total)
    return {"projects": [stats[p].as_dict() for p in sorted(stats)],
            "totals": totals.as_dict(), "as_of": as_of}


__all__ = ["AllIngestStats", "IngestStats", "router"]
