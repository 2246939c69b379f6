"""Request and response bodies of metric definitions (``/v1/metrics``) and prompt
configurations (``/v1/configurations``), in HoneyHive's shapes (``MetricItem``,
``MetricVersion``, ``ConfigurationItem``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from apiary.dataplane.replica.bodies import StrictRequest


class _Request(StrictRequest):
    pass


class SingleFilter(BaseModel):
    """One condition of the export filter language."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=256)
    operator: str = Field(min_length=1, max_length=64)
    value: str | float | bool | None = None
    type: str = Field(default="string", max_length=20)


class MetricFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filterArray: list[SingleFilter] = Field(default_factory=list, max_length=50)


class Threshold(BaseModel):
    """The pass rule: inclusive ``min``/``max``, or ``pass_when``, or
    ``passing_categories``."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    pass_when: bool | float | None = None
    passing_categories: list[str] | None = Field(default=None, max_length=1000)


class _MetricFields(_Request):
    description: str | None = Field(default=None, max_length=10_000)
    return_type: str | None = Field(default=None, description="float (default), boolean, "
                                    "string or categorical")
    enabled_in_prod: bool | None = None
    sampling_percentage: float | None = Field(default=None, ge=0, le=100)
    model_provider: str | None = Field(default=None, max_length=200)
    model_name: str | None = Field(default=None, max_length=200)
    scale: int | None = None
    threshold: Threshold | None = None
    categories: list[Any] | None = Field(default=None, max_length=1000)
    needs_ground_truth: bool | None = None
    child_metrics: list[Any] | None = Field(default=None, max_length=1000)
    filters: MetricFilters | None = None


class MetricCreate(_MetricFields):
    """``POST /v1/metrics``: ``criteria`` is the code of a PYTHON metric, the judge prompt
    of an LLM one, the rubric of a HUMAN one."""

    name: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=20, description="PYTHON, LLM or HUMAN")
    criteria: str = Field(min_length=1, max_length=100_000)


class MetricUpdate(_MetricFields):
    """``PUT /v1/metrics/{id}``: the fields given replace the metric's; a changed
    definition becomes a new, deployed version."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    type: str | None = Field(default=None, max_length=20)
    criteria: str | None = Field(default=None, min_length=1, max_length=100_000)


class LegacyMetricUpdate(MetricUpdate):
    """``PUT /v1/metrics`` (the id in the body)."""

    id: str = Field(min_length=1, max_length=128)


class MetricVersionCreate(_Request):
    message: str = Field(max_length=1000)
    content: MetricCreate
    deploy_immediately: bool | None = None


class MetricBreakerOut(BaseModel):
    """A metric's circuit breaker in this project (``apiary.dataplane.evaluation.breakers``)."""

    state: str = Field(description="closed (the metric runs) or paused (its evaluations "
                       "fail in a row: its tasks are skipped until resumed).")
    consecutive_failures: int
    last_error: str | None = None
    paused_at: float | None = Field(default=None, description="Unix seconds.")
    resumed_at: float | None = Field(default=None, description="Unix seconds.")
    skipped: int = Field(default=0, description="Tasks acknowledged without running while "
                         "paused.")


class MetricResumed(BaseModel):
    resumed: bool
    breaker: MetricBreakerOut


class MetricOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    type: str
    criteria: str
    description: str | None
    return_type: str
    enabled_in_prod: bool
    sampling_percentage: float
    needs_ground_truth: bool
    filters: dict[str, Any]
    model_provider: str | None = None
    model_name: str | None = None
    scale: int | None = None
    threshold: dict[str, Any] | None = None
    categories: list[Any] | None = None
    child_metrics: list[Any] | None = None
    created_at: str
    updated_at: datetime | None
    version: str | None = Field(default=None, description="The version shown (the "
                                "deployed one, else the latest).")
    breaker: MetricBreakerOut | None = Field(default=None, description="Its circuit breaker "
                                             "(absent: it never tripped, or unreadable).")


class MetricsResponse(BaseModel):
    metrics: list[MetricOut]


class MetricCreated(BaseModel):
    inserted: bool
    metric_id: str


class MetricUpdated(BaseModel):
    updated: bool


class MetricDeleted(BaseModel):
    deleted: bool


class MetricVersionOut(BaseModel):
    name: str
    full_sha: str
    message: str
    date: str
    deployed: bool
    content: dict[str, Any]


class MetricVersionResponse(BaseModel):
    success: bool
    data: MetricVersionOut


class MetricVersionsResponse(BaseModel):
    success: bool
    data: list[MetricVersionOut]


# --- configurations ----------------------------------------------------------------------


class ConfigurationParameters(BaseModel):
    """Model call settings; ``template`` is a prompt string or a list of messages. Other
    keys (hyperparameters, responseFormat, selectedFunctions, ...) are kept as sent."""

    model_config = ConfigDict(extra="allow")

    call_type: str = Field(min_length=1, max_length=50)
    model: str = Field(min_length=1, max_length=200)
    template: str | list[dict[str, Any]] | None = None


class ConfigurationCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    provider: str = Field(min_length=1, max_length=200)
    parameters: ConfigurationParameters
    type: str | None = Field(default=None, max_length=50, description="LLM (default) or "
                             "pipeline")
    env: list[str] | None = Field(default=None, max_length=3, description="dev, staging, "
                                  "prod: the environments that serve this configuration")
    tags: list[str] | None = Field(default=None, max_length=50)
    user_properties: dict[str, Any] | None = None


class ConfigurationUpdate(_Request):
    name: str = Field(min_length=1, max_length=200)
    provider: str | None = Field(default=None, min_length=1, max_length=200)
    parameters: ConfigurationParameters | None = None
    type: str | None = Field(default=None, max_length=50)
    env: list[str] | None = Field(default=None, max_length=3)
    tags: list[str] | None = Field(default=None, max_length=50)
    user_properties: dict[str, Any] | None = None


class ConfigurationOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    type: str
    provider: str
    parameters: dict[str, Any]
    env: list[str]
    tags: list[str]
    user_properties: dict[str, Any] | None = None
    created_at: str
    updated_at: datetime | None = None
    version: int = Field(description="The control plane's version of the prompt template.")


class ConfigurationsResponse(BaseModel):
    configurations: list[ConfigurationOut]


class ConfigurationCreated(BaseModel):
    acknowledged: bool
    insertedId: str


class ConfigurationUpdated(BaseModel):
    acknowledged: bool
    modifiedCount: int
    upsertedId: str | None
    upsertedCount: int
    matchedCount: int


class ConfigurationDeleted(BaseModel):
    acknowledged: bool
    deletedCount: int
