"""Connections to dpdb (see :mod:`apiary._private.sqldb` for the discipline)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine

from apiary._private import sqldb


def open_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a dpdb URL (``postgresql+psycopg://...`` or ``sqlite:///path``)."""
    return sqldb.open_engine(url, what="dpdb", **kwargs)


class DataPlaneDatabase(sqldb.SqlDatabase):
    """dpdb: an engine and its sessions. :meth:`transaction` is the one way code writes;
    an unreachable database is :class:`~apiary.errors.StoreUnavailable` (503)."""

    what = "the data plane's metadata database"

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> DataPlaneDatabase:
        """Connect to dpdb at ``url``, bringing its schema up to date unless told not to."""
        database = cls(open_engine(url))
        if migrate:
            from apiary.dataplane.db.migrate import upgrade

            upgrade(database.engine)
        return database


class LazyDatabase:
    """Opens (and migrates) dpdb on first use, once, from any thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._database: DataPlaneDatabase | None = None
        self._lock = threading.Lock()

    def get(self) -> DataPlaneDatabase:
        if self._database is None:
            with self._lock:
                if self._database is None:
                    self._database = DataPlaneDatabase.open(self.url)
        return self._database

    def dispose(self) -> None:
        if self._database is not None:
            self._database.dispose()
