"""The declarative base of cpdb, its naming convention and portable column types.

Constraint names follow one convention so that migrations name them identically on
PostgreSQL and SQLite. :class:`UTCDateTime` stores UTC and always returns aware datetimes
(SQLite has no time zones; PostgreSQL's ``timestamptz`` returns the session's zone).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, MetaData, String
from sqlalchemy.orm import DeclarativeBase, mapped_column

from apiary._private.sqldb import NAMING_CONVENTION, UTCDateTime, utcnow

__all__ = ["NAMING_CONVENTION", "Base", "UTCDateTime", "utcnow"]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


def id_column(**kwargs: Any) -> Any:
    """A text primary key (UUIDs, key ids, kids)."""
    return mapped_column(String(64), primary_key=True, **kwargs)


def tenant_fk(table: str, *, nullable: bool = False) -> Any:
    """A tenant column (org/workspace/project id) referencing its table, indexed."""
    from sqlalchemy import ForeignKey

    return mapped_column(
        String(64), ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=nullable, index=True
    )
