"""What the product routers (datasets, datapoints, runs, metrics, configurations) share:
the caller's project, dpdb transactions off the event loop, error documentation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import Request

from apiary.dataplane.auth import Permission, Principal, bearer_credential
from apiary.dataplane.db import Owner
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.errors import Conflict, InvalidRequest, PermissionDenied
from apiary.web.errors import ErrorResponse

T = TypeVar("T")

#: Highest page of a list paged in dpdb: the SQL row offset overflows beyond 2^63.
MAX_PAGE = 1_000_000
#: A 1-based page number of a list paged in dpdb.
DbPage = Annotated[int, Query(ge=1, le=MAX_PAGE)]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request (names the field)"},
    401: {"model": ErrorResponse, "description": "Missing or unknown credentials"},
    403: {"model": ErrorResponse, "description": "Credentials lack the permission"},
    404: {"model": ErrorResponse, "description": "Not found in the caller's project"},
    409: {"model": ErrorResponse, "description": "Clashes with existing state"},
    503: {"model": ErrorResponse, "description": "A store (or the control plane) is "
          "unavailable; retry"},
}


async def project_principal(context: DataPlaneContext, request: Request,
                            *permissions: Permission) -> Principal:
    """The caller, holding every one of ``permissions``, acting in one project."""
    principal = await context.principal(request, permissions[0])
    for permission in permissions[1:]:
        principal.require(permission)
    if principal.workspace_scoped:
        raise PermissionDenied(
            "this endpoint works in one project; use a project key (or a token for a project)")
    return principal


def credential_of(request: Request) -> str:
    """The caller's bearer credential, to forward to the control plane."""
    return bearer_credential(request.headers.get("authorization"))


def owner_of(principal: Principal) -> Owner:
    return Owner(principal.org_id, principal.workspace_id, principal.project_id,
                 principal.subject)


async def in_transaction(context: DataPlaneContext, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one dpdb transaction, in a worker thread.

    A constraint the database enforces (a name or id taken by a concurrent request) is a
    409; a value the database refuses is a 400 — never a 500.
    """
    def run() -> T:
        with context.dpdb.transaction() as db:
            return work(db)
    try:
        return await asyncio.to_thread(run)
    except IntegrityError:
        raise Conflict("the change conflicts with a concurrent one; retry") from None
    except DataError as exc:
        raise InvalidRequest(f"a value cannot be stored: {str(exc.orig)[:200]}") from None


def iso(moment: datetime | None) -> str | None:
    """A time as the HoneyHive API writes it: ISO 8601 in UTC with ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
