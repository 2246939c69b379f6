"""Datasets (HoneyHive ``/v1/datasets``): CRUD, adding mapped rows, removing datapoints,
immutable versions, JSONL/CSV import (all or nothing, or keeping the good lines) and
JSONL/CSV export.

Everything lives in dpdb, in the caller's project (``datasets:read`` to read,
``datasets:write`` to change). Both the legacy shapes the SDK's client uses (the id in the
body or the query: ``PUT``/``DELETE /v1/datasets``, ``DELETE /v1/datasets/{id}/{dp}``) and
the newer path-addressed ones are served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from apiary.dataplane.auth import Permission
from apiary.dataplane.datasets import catalog as ops
from apiary.dataplane.datasets import files
from apiary.dataplane.datasets.schemas import (
    AddDatapoints,
    DatapointRemoved,
    DatapointsAdded,
    DatasetCreate,
    DatasetCreated,
    DatasetDeleted,
    DatasetOut,
    DatasetsResponse,
    DatasetUpdate,
    DatasetUpdated,
    DatasetVersionOut,
    ImportResult,
    LegacyDatasetUpdate,
    VersionCreate,
    VersionCreated,
    VersionResponse,
    VersionsResponse,
)
from apiary.dataplane.db import Dataset, DatasetVersion
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import (
    ERRORS,
    in_transaction,
    iso,
    owner_of,
    project_principal,
)
from apiary.errors import InvalidRequest, NotFound
from apiary.web.body import read_body

router = APIRouter(tags=["datasets"])

READ, WRITE = Permission.DATASETS_READ, Permission.DATASETS_WRITE
_JSONL = "application/x-ndjson"
_IMPORT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            _JSONL: {"schema": {"type": "string", "description": "one JSON object per line"}},
            "text/csv": {"schema": {"type": "string", "description": "a header line, then "
                                    "one row per datapoint"}},
        },
    },
}


def dataset_out(db: Session, datasets: Sequence[Dataset]) -> list[dict[str, Any]]:
    members = ops.member_ids(db, [d.id for d in datasets])
    return [{"id": d.id, "name": d.name, "description": d.description,
             "datapoints": members[d.id], "num_points": len(members[d.id]),
             "created_at": iso(d.created_at), "updated_at": iso(d.updated_at)}
            for d in datasets]


def version_out(version: DatasetVersion) -> dict[str, Any]:
    return {"id": version.id, "dataset_id": version.dataset_id, "version": version.version,
            "content_hash": version.content_hash, "datapoint_count": version.datapoint_count,
            "message": version.message, "created_at": iso(version.created_at)}


@router.get("/v1/datasets", response_model=DatasetsResponse, responses=ERRORS,
            summary="The project's datasets, optionally one by id or by name")
async def list_datasets(
    request: Request,
    dataset_id: Annotated[str | None, Query(max_length=64)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)

    def work(db: Session) -> list[dict[str, Any]]:
        found = ops.find_datasets(db, principal.project_id, dataset_id=dataset_id, name=name)
        return dataset_out(db, found)
    return {"datasets": await in_transaction(context, work)}


@router.post("/v1/datasets", response_model=DatasetCreated, responses=ERRORS,
             summary="Create a dataset (optionally with existing datapoints)")
async def create_dataset(request: Request, body: DatasetCreate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> str:
        dataset = ops.create_dataset(db, owner_of(principal), name=body.name,
                                     description=body.description,
                                     datapoint_ids=body.datapoints or ())
        return dataset.id
    return {"inserted": True, "result": {"insertedId": await in_transaction(context, work)}}


async def _update(request: Request, dataset_id: str, body: DatasetUpdate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> dict[str, Any]:
        dataset = ops.get_dataset(db, principal.project_id, dataset_id)
        ops.update_dataset(db, dataset, name=body.name, description=body.description,
                           datapoint_ids=body.datapoints)
        return dataset_out(db, [dataset])[0]
    return {"result": await in_transaction(context, work)}


@router.put("/v1/datasets", response_model=DatasetUpdated, responses=ERRORS,
            summary="Update a dataset named in the body (datapoints replace the list)")
async def update_dataset_legacy(request: Request, body: LegacyDatasetUpdate) -> dict[str, Any]:
    return await _update(request, body.dataset_id, body)


@router.put("/v1/datasets/{dataset_id}", response_model=DatasetUpdated, responses=ERRORS,
            summary="Update a dataset (datapoints replace the list)")
async def update_dataset(request: Request, dataset_id: str, body: DatasetUpdate
                         ) -> dict[str, Any]:
    return await _update(request, dataset_id, body)


async def _delete(request: Request, dataset_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> None:
        ops.delete_dataset(db, ops.get_dataset(db, principal.project_id, dataset_id))
    await in_transaction(context, work)
    return {"result": {"id": dataset_id}}


@router.delete("/v1/datasets", response_model=DatasetDeleted, responses=ERRORS,
               summary="Delete a dataset (its datapoints stay in the project)")
async def delete_dataset_legacy(
    request: Request, dataset_id: Annotated[str, Query(min_length=1, max_length=64)]
) -> dict[str, Any]:
    return await _delete(request, dataset_id)


@router.delete("/v1/datasets/{dataset_id}", response_model=DatasetDeleted, responses=ERRORS,
               summary="Delete a dataset (its datapoints stay in the project)")
async def delete_dataset(request: Request, dataset_id: str) -> dict[str, Any]:
    return await _delete(request, dataset_id)


@router.post("/v1/datasets/{dataset_id}/datapoints", response_model=DatapointsAdded,
             responses=ERRORS, summary="Add rows to a dataset as new datapoints (mapped)")
async def add_datapoints(request: Request, dataset_id: str, body: AddDatapoints
                         ) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    mapping = files.FieldMapping.of(body.mapping.model_dump() if body.mapping else None)
    specs = files.rows_to_specs(body.data, mapping)

    def work(db: Session) -> list[str]:
        ops.get_dataset(db, principal.project_id, dataset_id)
        created = ops.create_datapoints(db, owner_of(principal), specs, [dataset_id])
        return [d.id for d in created]
    return {"inserted": True, "datapoint_ids": await in_transaction(context, work)}


async def _remove(request: Request, dataset_id: str, datapoint_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> None:
        dataset = ops.get_dataset(db, principal.project_id, dataset_id)
        if not ops.remove_member(db, dataset, datapoint_id):
            raise NotFound("the datapoint is not in this dataset")
    await in_transaction(context, work)
    return {"dereferenced": True,
            "message": f"datapoint {datapoint_id} removed from dataset {dataset_id}"}


@router.delete("/v1/datasets/{dataset_id}/datapoints/{datapoint_id}",
               response_model=DatapointRemoved, responses=ERRORS,
               summary="Take a datapoint out of a dataset (the datapoint stays)")
async def remove_datapoint(request: Request, dataset_id: str, datapoint_id: str
                           ) -> dict[str, Any]:
    return await _remove(request, dataset_id, datapoint_id)


@router.delete("/v1/datasets/{dataset_id}/{datapoint_id}", response_model=DatapointRemoved,
               responses=ERRORS, summary="Take a datapoint out of a dataset (legacy path)")
async def remove_datapoint_legacy(request: Request, dataset_id: str, datapoint_id: str
                                  ) -> dict[str, Any]:
    return await _remove(request, dataset_id, datapoint_id)


# --- versions --------------------------------------------------------------------------


@router.post("/v1/datasets/{dataset_id}/versions", response_model=VersionCreated,
             responses=ERRORS, summary="Freeze the dataset as an immutable version")
async def create_version(request: Request, dataset_id: str, body: VersionCreate
                         ) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> dict[str, Any]:
        dataset = ops.get_dataset(db, principal.project_id, dataset_id)
        version, created = ops.snapshot(db, owner_of(principal), dataset,
                                        message=body.message, force=body.force)
        return {"version": version_out(version), "created": created}
    return await in_transaction(context, work)


@router.get("/v1/datasets/{dataset_id}/versions", response_model=VersionsResponse,
            responses=ERRORS, summary="The dataset's versions, oldest first")
async def list_versions(request: Request, dataset_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)

    def work(db: Session) -> list[dict[str, Any]]:
        dataset = ops.get_dataset(db, principal.project_id, dataset_id)
        return [version_out(v) for v in ops.list_versions(db, dataset)]
    return {"versions": await in_transaction(context, work)}


@router.get("/v1/datasets/{dataset_id}/versions/{version}", response_model=VersionResponse,
            responses=ERRORS, summary="One version (by snapshot id or number) with its "
            "datapoints as they were")
async def get_version(request: Request, dataset_id: str, version: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)

    def work(db: Session) -> dict[str, Any]:
        dataset = ops.get_dataset(db, principal.project_id, dataset_id)
        found = ops.get_version(db, dataset, version)
        items = [files.datapoint_record(i) for i in ops.version_items(db, found)]
        return {"version": version_out(found), "datapoints": items}
    return await in_transaction(context, work)


# --- import / export ---------------------------------------------------------------------


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


@router.post("/v1/datasets/{dataset_id}/import", response_model=ImportResult,
             responses={**ERRORS, 413: ERRORS[400] | {"description": "File too large"}},
             openapi_extra=_IMPORT_OPENAPI,
             summary="Import a JSONL or CSV file (the request body) as new datapoints")
async def import_datapoints(
    request: Request,
    dataset_id: str,
    format: Annotated[str | None, Query(description="jsonl or csv; default from the "
                                        "Content-Type")] = None,
    inputs: Annotated[str | None, Query(description="Comma-separated fields → inputs")] = None,
    ground_truth: Annotated[str | None, Query(description="Comma-separated fields → "
                                              "ground_truth")] = None,
    history: Annotated[str | None, Query(description="Comma-separated fields → "
                                         "history")] = None,
    on_error: Annotated[Literal["fail", "skip"], Query(
        description="fail: a bad line is a 400 and nothing is imported; skip: the good "
                    "lines are imported and each bad one is reported in errors")] = "fail",
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    fmt = files.detect_format(request.headers.get("content-type"), format)
    data = await read_body(request, context.settings.ingest_max_body_bytes)
    mapping = files.FieldMapping.of({"inputs": _names(inputs),
                                     "ground_truth": _names(ground_truth),
                                     "history": _names(history)})
    specs, errors = files.rows_to_specs_skipping(files.parse_lines(data, fmt), mapping,
                                                 csv_rows=fmt == "csv")
    if errors and on_error == "fail":
        raise InvalidRequest(errors[0]["message"], field="body", line=errors[0]["line"])

    def work(db: Session) -> list[str]:
        ops.get_dataset(db, principal.project_id, dataset_id)
        created = ops.create_datapoints(db, owner_of(principal), specs, [dataset_id])
        return [d.id for d in created]
    ids = await in_transaction(context, work)
    return {"inserted": bool(ids) or not errors, "datapoint_ids": ids, "errors": errors}


_EXPORTS = {"jsonl": (_JSONL, files.to_jsonl), "csv": ("text/csv", files.to_csv)}


@router.get("/v1/datasets/{dataset_id}/export", responses={
    **ERRORS, 200: {"content": {_JSONL: {}, "text/csv": {}},
                    "description": "One datapoint per line (JSONL) or per row (CSV)"}},
    response_class=Response, summary="The dataset (or one of its versions) as JSONL or CSV")
async def export_datapoints(
    request: Request, dataset_id: str,
    version: Annotated[str | None, Query(description="A version id or number; default: "
                                         "the dataset as it is now")] = None,
    format: Annotated[Literal["jsonl", "csv"], Query(
        description="jsonl: one JSON object per line; csv: the columns id, inputs, "
                    "ground_truth, history, metadata, linked_event (objects as JSON), "
                    "importable as it is")] = "jsonl",
) -> Response:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    media_type, encode = _EXPORTS[format]

    def work(db: Session) -> bytes:
        dataset = ops.get_dataset(db, principal.project_id, dataset_id)
        if version is not None:
            return encode(ops.version_items(db, ops.get_version(db, dataset, version)))
        return encode(ops.list_datapoints(db, principal.project_id,
                                          dataset_id=dataset.id, limit=None))
    body = await in_transaction(context, work)
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="dataset-{dataset_id[:64]}.{format}"'})


__all__ = ["DatasetOut", "DatasetVersionOut", "dataset_out", "router", "version_out"]
