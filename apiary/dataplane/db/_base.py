"""The declarative base of dpdb, its naming convention and portable column types.

dpdb shares no database with the control plane (DESIGN.md), so it has its own metadata.
Constraint names follow one convention so that migrations name them identically on
PostgreSQL and SQLite. :class:`UTCDateTime` stores UTC and always returns aware datetimes
(SQLite has no time zones; PostgreSQL's ``timestamptz`` returns the session's zone).
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
