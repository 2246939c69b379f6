"""Connections to cpdb (see :mod:`apiary._private.sqldb` for the discipline)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from apiary._private import sqldb


def open_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a cpdb URL (``postgresql+psycopg://...`` or ``sqlite:///path``)."""
    return sqldb.open_engine(url, what="cpdb", **kwargs)


class Database(sqldb.SqlDatabase):
    """cpdb: an engine and its sessions. :meth:`transaction` is the one way code writes."""

    what = "cpdb"

    @classmethod
    def open(cls, url: str) -> Database:
        return cls(open_engine(url))
