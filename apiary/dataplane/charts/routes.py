"""Charts over HTTP: saved chart definitions (HoneyHive ``/v1/charts``) and chart data.

Saved charts live in dpdb, in the caller's project, under two sets of paths that behave
alike: ``/v1/charts[/{id}]`` (the SDK's project-key calls) and
``/v1/projects/{project_id}/charts[/{id}]`` (its data-plane-key calls), where
``project_id`` must be the caller's own project (else 403). Updates are accepted as
``PUT`` and ``PATCH`` on both.

Data is computed from ClickHouse on every read, never stored: ``POST /v1/charts/query``
for an ad-hoc chart, ``GET /v1/charts/{id}/data`` for a saved one (optionally over another
``dateRange``). What a chart may ask for is :mod:`apiary.store._chart_spec`; a saved chart
is validated against it when created or changed, so its data can always be computed.

Permissions: reading charts and their data needs ``events:read`` (it is event data);
creating, changing and deleting them ``events:write``. Every answer is
``{"success": true, "data": ...}`` (a delete: ``{"success", "message"}``).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from sqlalchemy.orm import Session
from starlette.requests import Request

from apiary.dataplane.auth import Permission, Principal
from apiary.dataplane.charts import saved as ops
from apiary.dataplane.charts.schemas import (
    ChartCreate,
    ChartDataResponse,
    ChartDeleted,
    ChartPlot,
    ChartQuery,
    ChartResponse,
    ChartsResponse,
    ChartUpdate,
)
from apiary.dataplane.db import Chart
from apiary.dataplane.events.schemas import PathId
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import (
    ERRORS,
    in_transaction,
    iso,
    owner_of,
    project_principal,
)
from apiary.errors import InvalidRequest, PermissionDenied
from apiary.store import parse_chart_request

router = APIRouter(tags=["charts"])

READ, WRITE = Permission.EVENTS_READ, Permission.EVENTS_WRITE
LEGACY, PROJECT = "/v1/charts", "/v1/projects/{project_id}/charts"
_DATE_RANGE = Query(description='Overrides the saved range: JSON {"$gte": ..., "$lte": ...} '
                    "(ISO or epoch ms), or a relative window such as 7d, 24h, 30m",
                    max_length=200)


def chart_out(chart: Chart) -> dict[str, Any]:
    """A chart as the HoneyHive SDK reads it (plus its ``project_id``)."""
    return {
        "id": chart.id, "name": chart.name, "description": chart.description,
        "metric": chart.metric, "func": chart.func, "groupBy": chart.group_by,
        "bucketing": chart.bucketing, "dateRange": chart.date_range, "query": chart.query,
        "owner_id": chart.owner_id, "owner_profile": None, "is_active": chart.is_active,
        "created_at": iso(chart.created_at), "updated_at": iso(chart.updated_at),
        "project_id": chart.project_id,
    }


def plot_request(fields: dict[str, Any]) -> dict[str, Any]:
    """A saved chart's fields (dpdb names) as a chart query."""
    return {"metric": fields["metric"], "func": fields.get("func"),
            "groupBy": fields.get("group_by"), "bucketing": fields.get("bucketing"),
            "dateRange": fields.get("date_range"), "query": fields.get("query")}


def _plot_fields(body: ChartPlot, present: set[str]) -> dict[str, Any]:
    """The plotting fields of ``body`` that were sent, in dpdb names."""
    out: dict[str, Any] = {}
    if "func" in present:
        out["func"] = body.func
    if "groupBy" in present:
        out["group_by"] = body.groupBy or None
    if "bucketing" in present:
        out["bucketing"] = (body.bucketing or "day").strip().lower()
    if "dateRange" in present:
        out["date_range"] = None if body.dateRange is None else body.dateRange.to_range()
    if "query" in present:
        out["query"] = None if body.query is None else [
            f.model_dump(exclude_none=True) for f in body.query if f is not None]
    return out


def _name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidRequest("a chart name must not be blank", field="name")
    return name


async def _principal(request: Request, project_id: str | None,
                     permission: Permission) -> Principal:
    principal = await project_principal(context_of(request), request, permission)
    if project_id is not None and project_id != principal.project_id:
        raise PermissionDenied("this credential works in another project; charts are "
                               "reached in the credential's own project")
    return principal


# --- saved charts -----------------------------------------------------------------------


async def _list(request: Request, project_id: str | None) -> dict[str, Any]:
    principal = await _principal(request, project_id, READ)
    charts = await in_transaction(context_of(request), lambda db: [
        chart_out(c) for c in ops.list_charts(db, principal.project_id)])
    return {"success": True, "data": charts}


async def _create(request: Request, project_id: str | None, body: ChartCreate
                  ) -> dict[str, Any]:
    principal = await _principal(request, project_id, WRITE)
    fields = {"name": _name(body.name), "description": body.description,
              "metric": body.metric.strip(), "owner_id": body.owner_id, "bucketing": "day",
              **_plot_fields(body, body.model_fields_set)}
    parse_chart_request(plot_request(fields))

    def work(db: Session) -> dict[str, Any]:
        return chart_out(ops.create_chart(db, owner_of(principal), fields))
    return {"success": True, "data": await in_transaction(context_of(request), work)}


async def _get(request: Request, project_id: str | None, chart_id: str) -> dict[str, Any]:
    principal = await _principal(request, project_id, READ)
    chart = await in_transaction(context_of(request), lambda db: chart_out(
        ops.get_chart(db, principal.project_id, chart_id)))
    return {"success": True, "data": chart}


async def _update(request: Request, project_id: str | None, chart_id: str,
                  body: ChartUpdate) -> dict[str, Any]:
    principal = await _principal(request, project_id, WRITE)
    present = set(body.model_fields_set)
    changes = _plot_fields(body, present)
    for name in ("description", "owner_id"):
        if name in present:
            changes[name] = getattr(body, name)
    for name in ("name", "metric", "is_active"):
        if name in present:
            value = getattr(body, name)
            if value is None:
                raise InvalidRequest(f"{name} cannot be null", field=name)
            changes[name] = _name(value) if name == "name" else (
                value.strip() if isinstance(value, str) else value)

    def work(db: Session) -> dict[str, Any]:
        chart = ops.get_chart(db, principal.project_id, chart_id)
        merged = {"metric": chart.metric, "func": chart.func, "group_by": chart.group_by,
                  "bucketing": chart.bucketing, "date_range": chart.date_range,
                  "query": chart.query, **changes}
        parse_chart_request(plot_request(merged))
        return chart_out(ops.update_chart(db, chart, changes))
    return {"success": True, "data": await in_transaction(context_of(request), work)}


async def _delete(request: Request, project_id: str | None, chart_id: str
                  ) -> dict[str, Any]:
    principal = await _principal(request, project_id, WRITE)

    def work(db: Session) -> None:
        ops.delete_chart(db, ops.get_chart(db, principal.project_id, chart_id))
    await in_transaction(context_of(request), work)
    return {"success": True, "message": "chart deleted"}


# --- data ---------------------------------------------------------------------------------


def _range_override(raw: str | None) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.startswith("{"):
        return {"relative": text}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest('dateRange must be JSON {"$gte": ..., "$lte": ...} or like 7d',
                             field="dateRange")
    return parsed


async def _query(request: Request, project_id: str | None, body: ChartQuery
                 ) -> dict[str, Any]:
    principal = await _principal(request, project_id, READ)
    fields = {"metric": body.metric, **_plot_fields(body, body.model_fields_set)}
    query = plot_request(fields)
    if body.filters:
        if query["query"]:
            raise InvalidRequest("give filters in query or in filters, not both",
                                 field="filters")
        query["query"] = [f.model_dump(exclude_none=True) for f in body.filters]
    query["max_groups"] = body.max_groups
    data = await context_of(request).store.chart_data(principal.project_id, query)
    return {"success": True, "data": data}


async def _data(request: Request, project_id: str | None, chart_id: str,
                date_range: str | None, max_groups: int | None) -> dict[str, Any]:
    principal = await _principal(request, project_id, READ)
    override = _range_override(date_range)
    chart = await in_transaction(context_of(request), lambda db: chart_out(
        ops.get_chart(db, principal.project_id, chart_id)))
    query = plot_request({"metric": chart["metric"], "func": chart["func"],
                          "group_by": chart["groupBy"], "bucketing": chart["bucketing"],
                          "date_range": override or chart["dateRange"],
                          "query": chart["query"]})
    query["max_groups"] = max_groups
    data = await context_of(request).store.chart_data(principal.project_id, query)
    return {"success": True, "data": data}


# --- routes: both path families -------------------------------------------------------

_MaxGroups = Annotated[int | None, Query(ge=1, le=100, description="Groups returned "
                                         "(most events first); default 10.")]
_DateRange = Annotated[str | None, _DATE_RANGE]


@router.get(LEGACY, response_model=ChartsResponse, responses=ERRORS,
            summary="The project's saved charts, newest first")
async def list_charts(request: Request) -> dict[str, Any]:
    return await _list(request, None)


@router.post(LEGACY, response_model=ChartResponse, responses=ERRORS,
             summary="Save a chart (validated: its data can be computed)")
async def create_chart(request: Request, body: ChartCreate) -> dict[str, Any]:
    return await _create(request, None, body)


@router.post(f"{LEGACY}/query", response_model=ChartDataResponse, responses=ERRORS,
             summary="Compute a chart: a metric per time bucket and group")
async def query_chart(request: Request, body: ChartQuery) -> dict[str, Any]:
    return await _query(request, None, body)


@router.get(f"{LEGACY}/{{chart_id}}", response_model=ChartResponse, responses=ERRORS,
            summary="One saved chart")
async def get_chart(request: Request, chart_id: PathId) -> dict[str, Any]:
    return await _get(request, None, chart_id)


@router.put(f"{LEGACY}/{{chart_id}}", response_model=ChartResponse, responses=ERRORS,
            summary="Change a saved chart (fields present replace the saved ones)")
@router.patch(f"{LEGACY}/{{chart_id}}", response_model=ChartResponse, responses=ERRORS,
              summary="Same as PUT")
async def update_chart(request: Request, chart_id: PathId, body: ChartUpdate
                       ) -> dict[str, Any]:
    return await _update(request, None, chart_id, body)


@router.delete(f"{LEGACY}/{{chart_id}}", response_model=ChartDeleted, responses=ERRORS,
               summary="Delete a saved chart")
async def delete_chart(request: Request, chart_id: PathId) -> dict[str, Any]:
    return await _delete(request, None, chart_id)


@router.get(f"{LEGACY}/{{chart_id}}/data", response_model=ChartDataResponse,
            responses=ERRORS, summary="A saved chart's data, computed now")
async def chart_data(request: Request, chart_id: PathId, dateRange: _DateRange = None,
                     max_groups: _MaxGroups = None) -> dict[str, Any]:
    return await _data(request, None, chart_id, dateRange, max_groups)


@router.get(PROJECT, response_model=ChartsResponse, responses=ERRORS,
            summary="The project's saved charts (project_id: the caller's)")
async def list_project_charts(request: Request, project_id: PathId) -> dict[str, Any]:
    return await _list(request, project_id)


@router.post(PROJECT, response_model=ChartResponse, responses=ERRORS,
             summary="Save a chart in the caller's project")
async def create_project_chart(request: Request, project_id: PathId, body: ChartCreate
                               ) -> dict[str, Any]:
    return await _create(request, project_id, body)


@router.post(f"{PROJECT}/query", response_model=ChartDataResponse, responses=ERRORS,
             summary="Compute a chart in the caller's project")
async def query_project_chart(request: Request, project_id: PathId, body: ChartQuery
                              ) -> dict[str, Any]:
    return await _query(request, project_id, body)


@router.get(f"{PROJECT}/{{chart_id}}", response_model=ChartResponse, responses=ERRORS,
            summary="One saved chart of the caller's project")
async def get_project_chart(request: Request, project_id: PathId, chart_id: PathId
                            ) -> dict[str, Any]:
    return await _get(request, project_id, chart_id)


@router.patch(f"{PROJECT}/{{chart_id}}", response_model=ChartResponse, responses=ERRORS,
              summary="Change a saved chart of the caller's project")
@router.put(f"{PROJECT}/{{chart_id}}", response_model=ChartResponse, responses=ERRORS,
            summary="Same as PATCH")
async def update_project_chart(request: Request, project_id: PathId, chart_id: PathId,
                               body: ChartUpdate) -> dict[str, Any]:
    return await _update(request, project_id, chart_id, body)


@router.delete(f"{PROJECT}/{{chart_id}}", response_model=ChartDeleted, responses=ERRORS,
               summary="Delete a saved chart of the caller's project")
async def delete_project_chart(request: Request, project_id: PathId, chart_id: PathId
                               ) -> dict[str, Any]:
    return await _delete(request, project_id, chart_id)


@router.get(f"{PROJECT}/{{chart_id}}/data", response_model=ChartDataResponse,
            responses=ERRORS, summary="A saved chart's data in the caller's project")
async def project_chart_data(request: Request, project_id: PathId, chart_id: PathId,
                             dateRange: _DateRange = None, max_groups: _MaxGroups = None
                             ) -> dict[str, Any]:
    return await _data(request, project_id, chart_id, dateRange, max_groups)
