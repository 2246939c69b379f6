"""Request and response bodies of the configuration endpoints: prompt templates,
evaluator configurations, alert definitions (``extra="forbid"`` on every request)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- prompts ------------------------------------------------------------------------


class PromptCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=1_000_000)
    model_params: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    message: str | None = Field(default=None, max_length=1000)


class PromptVersionCreate(_Request):
    body: str = Field(min_length=1, max_length=1_000_000)
    model_params: dict[str, Any] = Field(default_factory=dict)
    message: str | None = Field(default=None, max_length=1000)


class PromptVersionOut(_Response):
    version: int
    body: str
    model_params: dict[str, Any]
    message: str | None
    created_by: str | None
    created_at: datetime


class PromptTemplateOut(_Response):
    id: str
    project_id: str
    name: str
    tags: list[str]
    versions: list[PromptVersionOut]
    environments: dict[str, int]
    created_at: datetime
    updated_at: datetime


class EnvironmentSet(_Request):
    version: int = Field(ge=1)


class TagsSet(_Request):
    tags: list[str]


class PromptUpdate(_Request):
    name: str = Field(min_length=1, max_length=200)


# --- evaluators ---------------------------------------------------------------------


class EvaluatorVersionCreate(_Request):
    criteria: str | None = Field(default=None, max_length=100_000)
    code: str | None = Field(default=None, max_length=100_000)
    return_type: Literal["float", "boolean", "string", "categorical"] = "float"
    pass_min: float | None = None
    pass_max: float | None = None
    sampling_pct: float = Field(default=100.0, ge=0, le=100)
    filters: dict[str, Any] = Field(default_factory=dict)
    model_params: dict[str, Any] = Field(default_factory=dict)
    message: str | None = Field(default=None, max_length=1000)


class EvaluatorCreate(EvaluatorVersionCreate):
    name: str = Field(min_length=1, max_length=200)
    type: Literal["python", "llm", "human"]
    description: str = Field(default="", max_length=10_000)


class EvaluatorVersionOut(_Response):
    version: int
    criteria: str | None
    code: str | None
    return_type: str
    pass_min: float | None
    pass_max: float | None
    sampling_pct: float
    filters: dict[str, Any]
    model_params: dict[str, Any]
    message: str | None = None
    created_by: str | None
    created_at: datetime


class EvaluatorOut(_Response):
    id: str
    project_id: str
    name: str
    type: str
    description: str
    enabled: bool
    deployed_version: int | None
    versions: list[EvaluatorVersionOut]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class EvaluatorUpdate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=10_000)


class DeployRequest(_Request):
    version: int = Field(ge=1)


# --- alerts -------------------------------------------------------------------------


class AlertCondition(_Request):
    metric: str = Field(min_length=1, max_length=200)
    aggregation: Literal["avg", "sum", "min", "max", "count", "p50", "p95", "p99"]
    operator: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
    window_s: int = Field(ge=60, le=30 * 86_400)
    filters: dict[str, Any] = Field(default_factory=dict)


class AlertChannel(_Request):
    type: Literal["email", "slack", "webhook"]
    target: str = Field(min_length=1, max_length=2000)


class AlertCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    condition: AlertCondition
    channels: list[AlertChannel] = Field(default_factory=list)
    enabled: bool = True


class AlertUpdate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    condition: AlertCondition | None = None
    channels: list[AlertChannel] | None = None
    enabled: bool | None = None


class AlertOut(_Response):
    id: str
    project_id: str
    name: str
    description: str
    condition: dict[str, Any]
    channels: list[dict[str, Any]]
    enabled: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
