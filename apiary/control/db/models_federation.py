"""Federation tables: the config log data planes follow, their health history and the
commands waiting for their stream (docs/architecture.md, "Federation").

``config_changes`` is append-only: each row is the complete state of one object (or its
deletion) after one change, written in the same transaction as the change, so a
committed change always has its entry and a rolled-back one never does. ``version`` is
strictly increasing over the whole log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from apiary.control.db._base import Base, UTCDateTime

# SQLite autoincrements only an INTEGER PRIMARY KEY.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


class ConfigChange(Base):
    """One entry of the config log.

    ``data_plane_id`` is the data plane that served ``project_id`` when the entry was
    written (None: unassigned then, or no project): the entry is sent to it. An entry
    without a project (a workspace key's revocation) goes to every data plane serving a
    project of ``workspace_id``.
    """

    __tablename__ = "config_changes"

    version: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    org_id: Mapped[str | None] = mapped_column(String(64), index=True)
    workspace_id: Mapped[str | None] = mapped_column(String(64), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), index=True)
    data_plane_id: Mapped[str | None] = mapped_column(String(200), index=True)
    object_id: Mapped[str] = mapped_column(String(200))
    deleted: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any] | None] = mapped_column()
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DataPlaneHealth(Base):
    """One health report of a data plane (kept for the last hour)."""

    __tablename__ = "data_plane_health"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    data_plane_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("data_planes.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    report: Mapped[dict[str, Any]] = mapped_column()


class DataPlaneCommand(Base):
    """A command for a data plane's stream (``drain``, ``rotate_key``, ``revoke``) and its
    result. ``sent_at`` is set when the controller wrote it on a stream; ``completed_at``
    when the data plane's CommandResult arrived."""

    __tablename__ = "data_plane_commands"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data_plane_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("data_planes.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ok: Mapped[bool | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
