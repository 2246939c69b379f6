"""Request and response bodies of the configuration endpoints: prompt templates,
evaluator configurations, alert definitions (``extra="forbid"`` on every request)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_WEEK_S = 7 * 86_400


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


class AlertThreshold(_Request):
    """Fires when ``<value> <op> <threshold value>``."""

    op: Literal[">", ">=", "<", "<="]
    value: float = Field(allow_inf_nan=False)


class AlertCondition(_Request):
    """What a rule measures and when it fires (``docs/alerts.md``). Cross-field rules (at
    least one threshold, critical stricter than warning, drift-only fields, the filters)
    are checked by :func:`apiary.control.config.alerts.check_condition`."""

    type: Literal["aggregate", "drift"]
    #: ``event_count``, ``error_rate``, ``latency_p50|p95|p99``, ``cost``, ``tokens``,
    #: ``metrics.<name>`` or ``feedback.<name>``.
    field: str = Field(min_length=1, max_length=300)
    #: Only for ``metrics.``/``feedback.`` fields: ``mean`` (default) or ``share_true``.
    aggregation: Literal["mean", "share_true"] | None = None
    #: Export filters (``POST /v1/events/export``) selecting the events measured.
    filters: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    window_s: int = Field(ge=60, le=_WEEK_S)
    #: Drift only: the length of the period just before the window it is compared with
    #: (default: ``window_s``).
    comparison_window_s: int | None = Field(default=None, ge=60, le=_WEEK_S)
    #: Drift only: which change counts, ``up``, ``down`` or ``either`` (default).
    direction: Literal["up", "down", "either"] | None = None
    warning: AlertThreshold | None = None
    critical: AlertThreshold | None = None
    #: How long the value must stay past a threshold before the stage fires (flap guard).
    min_duration_s: int = Field(default=0, ge=0, le=86_400)


class AlertChannel(_Request):
    type: Literal["email", "slack", "webhook"]
    target: str = Field(min_length=1, max_length=2000)


class AlertCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    condition: AlertCondition
    channels: list[AlertChannel] = Field(default_factory=list)


class AlertUpdate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    condition: AlertCondition | None = None
    channels: list[AlertChannel] | None = None


class AlertOut(_Response):
    id: str
    project_id: str
    name: str
    description: str
    condition: dict[str, Any]
    channels: list[dict[str, Any]]
    #: ``paused``, ``muted``, else ``evaluation_state`` (``triggered``, ``resolved``), else
    #: ``active``.
    state: Literal["active", "triggered", "resolved", "paused", "muted"]
    paused: bool
    muted: bool
    #: Reported by the data plane (None until it reports): ``triggered`` or ``resolved``.
    evaluation_state: Literal["triggered", "resolved"] | None
    #: With ``triggered``: ``warning`` or ``critical``.
    stage: Literal["warning", "critical"] | None
    state_changed_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class AlertEventOut(_Response):
    """One event of an alert's activity, as the data plane evaluating it reported it."""

    #: The data plane's stable id (``transition.<alert>.<window_end>.<stage>`` or
    #: ``delivery.<delivery>.<outcome>``).
    id: str
    kind: Literal["transition", "delivery"]
    #: Transitions: ``warning``, ``critical`` or ``resolution``, and the alert's ``state``
    #: after it (``triggered``, ``resolved``), the measured ``value`` against the stage's
    #: ``threshold`` over the window ending at ``window_end`` (unix seconds); ``muted``:
    #: evaluated while muted (nothing was sent).
    stage: str | None
    state: str | None
    value: float | None
    threshold: float | None
    window_end: int | None
    muted: bool
    #: Deliveries: the channel, ``delivered`` or ``dead_lettered``, after how many
    #: attempts, and a short detail (the last error of a dead letter).
    channel_id: str | None
    channel_type: str | None
    outcome: str | None
    attempts: int | None
    detail: str | None
    data_plane_id: str | None
    #: When it happened (the data plane's clock), and when the control plane stored it.
    at: datetime
    received_at: datetime


class PreviewThreshold(BaseModel):
    op: str
    value: float


class PreviewPoint(BaseModel):
    #: The end of the window measured (unix seconds).
    t: int
    #: The rule's value over the window ending at ``t`` (drift: the relative change);
    #: None: no data.
    value: float | None


class AlertPreviewOut(BaseModel):
    """The series of an alert rule's measured value over a period, with its thresholds,
    computed by the data plane serving the project."""

    model_config = ConfigDict(populate_by_name=True)

    alert_id: str
    field: str
    type: str
    window_s: int
    from_: int = Field(alias="from")
    to: int
    series: list[PreviewPoint]
    warning: PreviewThreshold | None = None
    critical: PreviewThreshold | None = None
