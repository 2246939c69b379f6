"""Request and response bodies of experiment runs (HoneyHive ``/v1/runs`` shapes).

The run object carries every field the SDK's ``ExperimentRunObject`` requires (``id,
run_id, metadata, results, event_ids, configuration, is_active, created_at, scope_type,
scope_id``). Results carry what ``evaluate()`` needs beyond its models: ``metrics.details``
is a list, each detail has ``values``, each datapoint ``metrics``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from apiary.dataplane.replica.bodies import StrictRequest

MAX_IDS = 100_000


class _Request(StrictRequest):
    pass


class RunUpdate(_Request):
    """``PUT /v1/runs/{run_id}``: lists replace, objects merge key by key."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=10_000)
    status: str | None = Field(default=None, description="pending, running, completed, "
                               "failed or cancelled")
    metadata: dict[str, Any] | None = None
    results: dict[str, Any] | None = Field(default=None, description="Stored as sent; never "
                                           "used for results, which come from the events.")
    event_ids: list[str] | None = Field(default=None, max_length=MAX_IDS,
                                        description="Session ids of the run (the SDK's "
                                        "evaluate() sends them when it closes the run).")
    configuration: dict[str, Any] | None = None
    evaluators: list[Any] | None = Field(default=None, max_length=1000)
    session_ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
    datapoint_ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
    passing_ranges: dict[str, Any] | None = Field(
        default=None, description='Pass rules by metric name: {"accuracy": {"min": 0.8}}, '
        '{"exact": {"pass_when": true}}, {"label": {"passing_categories": ["good"]}}.')


class RunCreate(RunUpdate):
    """``POST /v1/runs``."""

    run_id: str | None = Field(default=None, min_length=1, max_length=128,
                               description="Chosen by the client (a UUID); generated when "
                               "absent.")
    dataset_id: str | None = Field(default=None, max_length=128,
                                   description="A dataset of the project (its current "
                                   "version is recorded), or an offline one (EXT-...).")


class RunObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    run_id: str
    name: str | None = None
    description: str | None = None
    status: str | None = None
    metadata: dict[str, Any]
    results: dict[str, Any]
    event_ids: list[str]
    configuration: dict[str, Any]
    is_active: bool
    created_at: str
    updated_at: str | None = None
    scope_type: str
    scope_id: str
    dataset_id: str | None = None
    dataset_name: str | None = None
    dataset_version_id: str | None = Field(default=None, description="The immutable dataset "
                                           "version the run was made on.")
    session_ids: list[str] = Field(default_factory=list)
    datapoint_ids: list[str] = Field(default_factory=list)
    evaluators: list[Any] = Field(default_factory=list)
    passing_ranges: dict[str, Any] = Field(default_factory=dict)


class RunCreated(BaseModel):
    run_id: str
    evaluation: RunObject


class RunResponse(BaseModel):
    evaluation: RunObject


class RunUpdated(BaseModel):
    evaluation: RunObject
    warning: str | None = None


class Pagination(BaseModel):
    page: int
    limit: int
    total: int
    total_unfiltered: int
    total_pages: int
    has_next: bool
    has_prev: bool


class RunsResponse(BaseModel):
    evaluations: list[RunObject]
    pagination: Pagination
    metrics: list[str] = Field(description="Evaluator names the listed runs configured.")


class RunDeleted(BaseModel):
    id: str
    deleted: bool


class PassingRange(BaseModel):
    min: float | None = None
    max: float | None = None


class MetricDatapoints(BaseModel):
    passed: list[str]
    failed: list[str]


class MetricDetail(BaseModel):
    metric_name: str
    metric_type: str | None = None
    event_name: str | None = None
    event_type: str | None = None
    aggregate: float | None = None
    values: list[float]
    passing_range: PassingRange | None = None
    datapoints: MetricDatapoints | None = None


class MetricsAggregation(BaseModel):
    aggregation_function: str
    details: list[MetricDetail]


class DatapointMetric(BaseModel):
    name: str
    event_name: str | None = None
    event_type: str | None = None
    value: bool | float | None = None
    passed: bool | None = None
    text: str | None = Field(default=None, description="A value that is no number, as text.")


class DatapointResult(BaseModel):
    session_id: str
    datapoint_id: str | None = None
    passed: bool
    metrics: list[DatapointMetric]


class EventDetail(BaseModel):
    event_name: str
    event_type: str


class RunResult(BaseModel):
    status: str
    success: bool
    error: str | None = None
    passed: list[str]
    failed: list[str]
    metrics: MetricsAggregation
    datapoints: list[DatapointResult]
    event_details: list[EventDetail]
    run_object: RunObject
    warnings: list[str] = Field(default_factory=list)


class DatapointDelta(BaseModel):
    datapoint_id: str
    old_value: float
    new_value: float
    delta: float


class MetricComparison(BaseModel):
    metric_name: str
    event_name: str | None = None
    event_type: str | None = None
    metric_type: str | None = None
    old_aggregate: float | None = None
    new_aggregate: float | None = None
    difference: float | None = None
    percentage_change: float | None = None
    found_count: int
    improved_count: int
    degraded_count: int
    same_count: int
    improved: list[str]
    degraded: list[str]
    same: list[str]
    old_values: list[float]
    new_values: list[float]
    datapoints: list[DatapointDelta]


class EventComparison(BaseModel):
    event_name: str
    event_type: str
    presence: str = Field(description="both, new (only in the new run) or old")


class RunComparison(BaseModel):
    metrics: list[MetricComparison]
    commonDatapoints: list[str]
    event_details: list[EventComparison]
    old_run: RunObject
    new_run: RunObject


class ComparedEvents(BaseModel):
    datapoint_id: str
    event_1: dict[str, Any]
    event_2: dict[str, Any]


class CompareEventsResponse(BaseModel):
    events: list[ComparedEvents]
    totalEvents: int
