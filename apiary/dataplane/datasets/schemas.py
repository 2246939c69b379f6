"""Request and response bodies of datasets and datapoints (HoneyHive shapes).

Requests forbid unknown fields (a typo is a 400 naming it). Responses carry every field the
HoneyHive SDK's models require (``Dataset``: ``id, name, datapoints``; ``Datapoint``:
``id, inputs, history, ground_truth, metadata, linked_event, created_at``) plus a few more.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from apiary.dataplane.replica.bodies import StrictRequest

MAX_IDS = 10_000


class _Request(StrictRequest):
    pass


# --- requests -------------------------------------------------------------------------


class DatasetCreate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200,
                             description="Unique in the project; generated when absent.")
    description: str | None = Field(default=None, max_length=10_000)
    datapoints: list[str] | None = Field(default=None, max_length=MAX_IDS,
                                         description="Ids of existing datapoints, in order.")


class DatasetUpdate(_Request):
    """``PUT /v1/datasets/{id}``: ``datapoints`` replaces the list (in the order given)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    datapoints: list[str] | None = Field(default=None, max_length=MAX_IDS)


class LegacyDatasetUpdate(DatasetUpdate):
    """``PUT /v1/datasets`` (the id in the body)."""

    dataset_id: str = Field(min_length=1, max_length=64)


class DatapointMapping(_Request):
    """Which fields of each row become inputs, ground truth and history (the rest:
    metadata)."""

    inputs: list[str] | None = Field(default=None, max_length=1000)
    ground_truth: list[str] | None = Field(default=None, max_length=1000)
    history: list[str] | None = Field(default=None, max_length=1000)


class AddDatapoints(_Request):
    """``POST /v1/datasets/{id}/datapoints``: rows mapped to new datapoints."""

    data: list[dict[str, Any]] = Field(max_length=MAX_IDS)
    mapping: DatapointMapping | None = None


class DatapointCreate(_Request):
    inputs: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = Field(default=None, max_length=100_000)
    ground_truth: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    linked_event: str | None = Field(default=None, max_length=128)
    linked_datasets: list[str] | None = Field(default=None, max_length=1000,
                                              description="Datasets to append it to.")


class DatapointUpdate(DatapointCreate):
    """``PUT /v1/datapoints/{id}``: the fields given replace the stored ones;
    ``linked_datasets`` sets the datasets holding the datapoint."""


class DateBounds(_Request):
    gte: str | float | None = Field(default=None, alias="$gte")
    lte: str | float | None = Field(default=None, alias="$lte")


class DatapointsFromEvents(_Request):
    """``POST /v1/datapoints/batch``: datapoints from stored events — the ``events`` named,
    or those matching ``filters`` (the export filter language) within ``dateRange`` —,
    appended to ``dataset_id`` when given. ``mapping`` entries are event field paths
    (``inputs.question``, ``outputs``); without one, inputs ← inputs and ground truth ←
    outputs."""

    events: list[str] | None = Field(default=None, max_length=MAX_IDS)
    mapping: DatapointMapping | None = None
    filters: dict[str, Any] | list[dict[str, Any]] | None = None
    dateRange: DateBounds | None = None
    checkState: dict[str, Any] | None = Field(default=None, description="Accepted, unused.")
    selectAll: bool | None = Field(default=None, description="Take every matching event "
                                   "(up to 10000); implied when filters are given.")
    dataset_id: str | None = Field(default=None, max_length=64)
    limit: int | None = Field(default=None, ge=1, le=MAX_IDS,
                              description="Most events to take (default and maximum 10000).")


class VersionCreate(_Request):
    message: str | None = Field(default=None, max_length=1000)
    force: bool = Field(default=False, description="Snapshot even if nothing changed.")


# --- responses ------------------------------------------------------------------------


class DatasetOut(BaseModel):
    id: str
    name: str
    description: str | None = None
    datapoints: list[str]
    num_points: int
    created_at: str | None = None
    updated_at: str | None = None


class DatasetsResponse(BaseModel):
    datasets: list[DatasetOut]


class InsertedId(BaseModel):
    insertedId: str


class DatasetCreated(BaseModel):
    inserted: bool
    result: InsertedId


class DatasetUpdated(BaseModel):
    result: DatasetOut


class DeletedId(BaseModel):
    id: str


class DatasetDeleted(BaseModel):
    result: DeletedId


class DatapointsAdded(BaseModel):
    inserted: bool
    datapoint_ids: list[str]


class DatapointRemoved(BaseModel):
    dereferenced: bool
    message: str


# No docstrings on these two: a model's docstring becomes its OpenAPI description.
# A datapoint as a dataset version holds it: its content, frozen.
class VersionItemOut(BaseModel):
    id: str
    inputs: dict[str, Any]
    history: list[dict[str, Any]]
    ground_truth: dict[str, Any] | None
    metadata: dict[str, Any] | None
    linked_event: str | None


# A datapoint now: its content, when it changed, and the datasets that hold it.
class DatapointOut(VersionItemOut):
    created_at: str
    updated_at: str | None = None
    linked_datasets: list[str] = Field(default_factory=list)


class InsertedIds(BaseModel):
    insertedIds: list[str]


class DatapointCreated(BaseModel):
    inserted: bool
    result: InsertedIds


class DatapointResponse(BaseModel):
    datapoint: list[DatapointOut] = Field(description="One datapoint, in a list (HoneyHive).")


class DatapointsResponse(BaseModel):
    datapoints: list[DatapointOut]


class ModifiedCount(BaseModel):
    modifiedCount: int


class DatapointUpdated(BaseModel):
    updated: bool
    result: ModifiedCount


class DatapointDeleted(BaseModel):
    deleted: bool


class DatapointsFromEventsCreated(BaseModel):
    inserted: bool
    insertedIds: list[str]
    events_matched: int


class DatasetVersionOut(BaseModel):
    id: str = Field(description="The snapshot id runs record.")
    dataset_id: str
    version: int
    content_hash: str
    datapoint_count: int
    message: str | None = None
    created_at: str


class VersionCreated(BaseModel):
    version: DatasetVersionOut
    created: bool = Field(description="False when the dataset was unchanged since its "
                          "latest version, which is returned instead.")


class VersionsResponse(BaseModel):
    versions: list[DatasetVersionOut]


class VersionResponse(BaseModel):
    version: DatasetVersionOut
    datapoints: list[VersionItemOut]


class ImportLineError(BaseModel):
    line: int = Field(description="The line (JSONL) or row's line (CSV) of the file, from 1.")
    message: str


class ImportResult(BaseModel):
    inserted: bool
    datapoint_ids: list[str]
    errors: list[ImportLineError] = Field(
        default_factory=list, description="The lines not imported (with on_error=skip).")
