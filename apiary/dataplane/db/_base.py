"""The declarative base of dpdb, its naming convention and portable column types.

dpdb shares no database with the control plane (docs/architecture.md, "Two planes, one
seam"), so it has its own metadata; the naming convention and :class:`UTCDateTime` are
:mod:`apiary._private.sqldb`'s, as cpdb's are (see :mod:`apiary.control.db._base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, MetaData
from sqlalchemy.orm import DeclarativeBase

from apiary._private.sqldb import NAMING_CONVENTION, UTCDateTime, utcnow

__all__ = ["NAMING_CONVENTION", "Base", "UTCDateTime", "utcnow"]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}

@dataclass(frozen=True, slots=True)
class Owner:
    """The tenant a write happens in, and who makes it (``key:...``/``user:...``)."""

    org_id: str
    workspace_id: str
    project_id: str
    subject: str | None = None
