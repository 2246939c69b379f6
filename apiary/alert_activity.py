"""Alert activity, the one model both planes read (docs/alerts.md, "Activity").

The data plane publishes it (:mod:`apiary.dataplane.alerts.events`: the ``alert-activity``
stream, forwarded over the federation stream); the control plane validates what a data plane
reports against it (:mod:`apiary.control.federation`, with its column limits) and stores it
in ``alert_events``. The planes may not import each other, so the model lives here, below
both. Two kinds:

- ``transition``: the evaluator moved an alert to a stage (``warning``, ``critical``) or
  resolved it (``resolution``); published for muted alerts too (``muted=True``, and then no
  notification is sent). Its id is ``transition.<alert_id>.<window_end>.<stage>``;
- ``delivery``: a channel's delivery of an alert notification ended, ``delivered`` or
  ``dead_lettered``. Its id is ``delivery.<delivery_id>.<outcome>``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ActivityKind = Literal["transition", "delivery"]


class AlertActivity(BaseModel):
    """One alert transition or delivery outcome (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Stable: ``transition.<alert_id>.<window_end>.<stage>`` or
    #: ``delivery.<delivery_id>.<outcome>``.
    event_id: str = Field(min_length=1, max_length=512)
    kind: ActivityKind
    org_id: str = Field(min_length=1, max_length=128)
    project_id: str = Field(min_length=1, max_length=128)
    alert_id: str = Field(min_length=1, max_length=128)
    stage: Literal["warning", "critical", "resolution"] | None = None
    #: The alert's state after a transition: ``triggered`` or ``resolved``.
    state: Literal["triggered", "resolved"] | None = None
    value: float | None = None
    threshold: float | None = None
    #: End of the evaluated window, unix seconds.
    window_end: int | None = None
    muted: bool = False
    channel_id: str | None = None
    channel_type: str | None = None
    outcome: Literal["delivered", "dead_lettered"] | None = None
    attempts: int | None = None
    detail: str | None = Field(default=None, max_length=1000)
    #: When it happened, UTC (a naive datetime is taken as UTC).
    at: datetime

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


__all__ = ["ActivityKind", "AlertActivity"]
