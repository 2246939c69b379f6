"""Request and response bodies of charts (HoneyHive ``/v1/charts``) and chart queries.

Saved charts follow the HoneyHive SDK's models (``honeyhive/_generated/models/*Chart*``):
``CreateChartRequest`` (``name`` and ``metric`` required; ``description``, ``func``,
``groupBy``, ``bucketing``, ``dateRange``, ``query``, ``owner_id``) and
``UpdateChartRequest`` (the same, all optional). The SDK serializes ``dateRange`` with
python field names, so ``{"gte", "lte"}`` is read like ``{"$gte", "$lte"}``. A chart in
answers carries every field the SDK requires (``id, name, description, metric, func,
groupBy, bucketing, dateRange, query, owner_id, is_active, created_at, updated_at``).

A chart query (``POST /v1/charts/query``) takes the same plotting fields plus
``max_groups``; :mod:`apiary.store._chart_spec` documents their values.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from apiary.dataplane.events.schemas_read import EventFilter


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ChartDateRange(_Request):
    """``{"$gte", "$lte"}`` (ISO-8601 or epoch ms; ``gte``/``lte`` accepted too) or
    ``{"relative": "7d"}`` (``<n>m|h|d|w`` back from now)."""

    gte_: str | float | None = Field(default=None, alias="$gte")
    lte_: str | float | None = Field(default=None, alias="$lte")
    gte: str | float | None = None
    lte: str | float | None = None
    relative: str | None = Field(default=None, max_length=16, examples=["7d"])

    def to_range(self) -> dict[str, Any]:
        """The range in one spelling: ``$gte``/``$lte`` and/or ``relative``."""
        out: dict[str, Any] = {}
        gte = self.gte_ if self.gte_ is not None else self.gte
        lte = self.lte_ if self.lte_ is not None else self.lte
        if gte is not None:
            out["$gte"] = gte
        if lte is not None:
            out["$lte"] = lte
        if self.relative is not None:
            out["relative"] = self.relative
        return out


_METRIC = Field(min_length=1, max_length=300, description=(
    "event_count, error_count, error_rate, duration, cost, prompt_tokens, "
    "completion_tokens, total_tokens, session_count, session_duration, session_cost, "
    "session_tokens, session_events, session_errors, or a numeric JSON path such as "
    "metrics.<name> or metadata.<key>"), examples=["duration"])
_FUNC = Field(default=None, max_length=32, description=(
    "avg, sum, min, max, count, median or a percentile (p50, p90, p95, p99, ...)"),
    examples=["p95"])
_GROUP_BY = Field(default=None, max_length=300, description=(
    "model, provider, event_name, event_type, source or a JSON path such as "
    "metadata.user_id"), examples=["model"])
_BUCKETING = Field(default=None, max_length=16, description="minute, hour, day or all",
                   examples=["hour"])
_QUERY = Field(default=None, max_length=50,
               description="Filters (the export filter language); null entries are ignored.")


class ChartPlot(_Request):
    """The fields that say what a chart plots (shared by saved charts and queries)."""

    func: str | None = _FUNC
    groupBy: str | None = _GROUP_BY
    bucketing: str | None = _BUCKETING
    dateRange: ChartDateRange | None = None
    query: list[EventFilter | None] | None = _QUERY


class ChartCreate(ChartPlot):
    """``POST /v1/charts`` (HoneyHive ``CreateChartRequest``)."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    metric: str = _METRIC
    owner_id: str | None = Field(default=None, max_length=200)
    project: str | None = Field(default=None, description="Ignored: the key names the project.")


class ChartUpdate(ChartPlot):
    """``PUT|PATCH /v1/charts/{id}`` (HoneyHive ``UpdateChartRequest``): fields present
    replace the saved ones (``null`` clears an optional one)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    metric: str | None = Field(default=None, min_length=1, max_length=300)
    owner_id: str | None = Field(default=None, max_length=200)
    is_active: bool | None = None
    project: str | None = Field(default=None, description="Ignored: the key names the project.")


class ChartQuery(ChartPlot):
    """``POST /v1/charts/query``: what to compute, as in a saved chart."""

    metric: str = _METRIC
    filters: list[EventFilter] | None = Field(default=None, max_length=50,
                                              description="Same as query.")
    max_groups: int | None = Field(default=None, ge=1, le=100,
                                   description="Groups returned (most events first); "
                                   "default 10.")


class ChartOut(BaseModel):
    id: str
    name: str
    description: str | None
    metric: str
    func: str | None
    groupBy: str | None
    bucketing: str
    dateRange: dict[str, Any] | None
    query: list[Any] | None
    owner_id: str | None
    owner_profile: dict[str, Any] | None = None
    is_active: bool
    created_at: str
    updated_at: str | None
    project_id: str


class ChartResponse(BaseModel):
    success: bool
    data: ChartOut


class ChartsResponse(BaseModel):
    success: bool
    data: list[ChartOut]


class ChartDeleted(BaseModel):
    success: bool
    message: str


class ChartSeries(BaseModel):
    group: str | None = Field(description="The dimension's value (null: no groupBy, or the "
                              "events without a value for it).")
    values: list[float | None] = Field(description="The aggregate per bucket: 0 where a "
                                       "count or sum has no events, null for other "
                                       "aggregates.")
    counts: list[int] = Field(description="Values behind each aggregate (events, or "
                              "sessions for session metrics).")


class ChartData(BaseModel):
    """A chart's data: the request as resolved, the buckets and one series per group."""

    metric: str
    func: str
    bucketing: str
    groupBy: str | None
    dateRange: dict[str, float] | None = Field(description="Resolved bounds, epoch ms "
                                               "($gte, $lte); null: all time.")
    source: str = Field(description="The table that answered: events, session_aggregates "
                        "or project_event_details.")
    exact: bool = Field(description="False when read from the approximate per-name rollup.")
    buckets: list[int | None] = Field(description="Start of each bucket, epoch ms (one "
                                      "bucket, the range start or null, for bucketing all).")
    series: list[ChartSeries]
    truncated: bool = Field(description="More groups exist than max_groups.")


class ChartDataResponse(BaseModel):
    success: bool
    data: ChartData
