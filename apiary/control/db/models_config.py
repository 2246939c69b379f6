"""Configuration tables: prompt templates, evaluator configurations, alert definitions
(alert rules: the condition in ``condition``, see :mod:`apiary.control.config.alerts`).

All live in a project and carry org, workspace and project ids. Versions are immutable
rows numbered from 1 per template or evaluator; what changes is which version an
environment (prompts) or the project (evaluators: ``deployed_version``) uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from apiary.control.db._base import Base, UTCDateTime, id_column, tenant_fk


class PromptTemplate(Base):
    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str] = tenant_fk("workspaces")
    project_id: Mapped[str] = tenant_fk("projects")
    name: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromptVersion(Base):
    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[str] = id_column()
    template_id: Mapped[str] = tenant_fk("prompt_templates")
    org_id: Mapped[str] = tenant_fk("organizations")
    project_id: Mapped[str] = tenant_fk("projects")
    version: Mapped[int] = mapped_column()
    body: Mapped[str] = mapped_column(Text)
    model_params: Mapped[dict[str, Any]] = mapped_column()
    message: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromptEnvironment(Base):
    """Which version of a template an environment (dev, staging, prod) serves."""

    __tablename__ = "prompt_environments"

    template_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("prompt_templates.id", ondelete="CASCADE"), primary_key=True
    )
    environment: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = tenant_fk("organizations")
    project_id: Mapped[str] = tenant_fk("projects")
    version_id: Mapped[str] = mapped_column(String(64), ForeignKey("prompt_versions.id"))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EvaluatorConfig(Base):
    __tablename__ = "evaluator_configs"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        CheckConstraint("type IN ('python', 'llm', 'human')", name="type"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str] = tenant_fk("workspaces")
    project_id: Mapped[str] = tenant_fk("projects")
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    # The version the project's evaluators run; None until one is deployed.
    deployed_version: Mapped[int | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EvaluatorVersion(Base):
    __tablename__ = "evaluator_versions"
    __table_args__ = (UniqueConstraint("evaluator_id", "version"),)

    id: Mapped[str] = id_column()
    evaluator_id: Mapped[str] = tenant_fk("evaluator_configs")
    org_id: Mapped[str] = tenant_fk("organizations")
    project_id: Mapped[str] = tenant_fk("projects")
    version: Mapped[int] = mapped_column()
    criteria: Mapped[str | None] = mapped_column(Text)  # llm judge prompt / human rubric
    code: Mapped[str | None] = mapped_column(Text)  # python metric source
    return_type: Mapped[str] = mapped_column(String(16))
    pass_min: Mapped[float | None] = mapped_column(Float)
    pass_max: Mapped[float | None] = mapped_column(Float)
    sampling_pct: Mapped[float] = mapped_column(Float)
    filters: Mapped[dict[str, Any]] = mapped_column()
    model_params: Mapped[dict[str, Any]] = mapped_column()
    message: Mapped[str | None] = mapped_column(String(1000))  # what changed (migration 0003)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertDefinition(Base):
    __tablename__ = "alert_definitions"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str] = tenant_fk("workspaces")
    project_id: Mapped[str] = tenant_fk("projects")
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    condition: Mapped[dict[str, Any]] = mapped_column()
    channels: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: Set by the control plane (``POST .../pause|resume``): a paused rule is not evaluated.
    paused: Mapped[bool] = mapped_column(default=False)
    #: Set by the control plane (``POST .../mute|unmute``): evaluated, nothing sent.
    muted: Mapped[bool] = mapped_column(default=False)
    #: Reported by the data plane that evaluates the rule: ``triggered`` or ``resolved``;
    #: None until it reports. The control plane only sets ``resolved`` (``POST .../resolve``
    #: of a triggered alert).
    evaluation_state: Mapped[str | None] = mapped_column(String(16))
    #: Reported by the data plane with ``triggered``: ``warning`` or ``critical``.
    stage: Mapped[str | None] = mapped_column(String(16))
    #: When ``evaluation_state`` last changed (data plane report or a manual resolve).
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def state(self) -> str:
        """What a person sees: ``paused``, ``muted``, else the data plane's
        ``evaluation_state`` (``triggered``, ``resolved``), else ``active``."""
        if self.paused:
            return "paused"
        if self.muted:
            return "muted"
        return self.evaluation_state or "active"
