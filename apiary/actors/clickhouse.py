"""The actor that owns embedded chDB, which admits one process per data directory.

Started once per node that holds the data directory, named :data:`CLICKHOUSE_ACTOR_NAME`
in namespace ``apiary``; every other process reaches it through
:func:`apiary.store.store_client` (an :class:`~apiary.store.ActorStoreClient`). The client,
the remote methods and how a call is answered live in :mod:`apiary.store`.
"""

from __future__ import annotations

from typing import Any

import ray

from apiary.settings import ApiarySettings
from apiary.store import CLICKHOUSE_ACTOR_NAME, call_remote, open_event_store


@ray.remote(max_concurrency=8)  # type: ignore[call-overload]  # Ray's stubs omit it
class ClickHouseActor:
    """Owns the embedded chDB engine. Threaded: reads run while an insert is in progress."""

    def __init__(self, settings: ApiarySettings) -> None:
        self._store = open_event_store(settings)
        self.migrations = self._store.migrate()

    def applied_migrations(self) -> list[str]:
        return list(self.migrations)

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``EventStore.<method>(*args, **kwargs)`` for a remote method (else AttributeError)."""
        return call_remote(self._store, method, args, kwargs)

    def close(self) -> None:
        self._store.close()


__all__ = ["CLICKHOUSE_ACTOR_NAME", "ClickHouseActor"]
