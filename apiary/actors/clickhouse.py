"""The actor that owns embedded chDB, which admits one process per data directory.

Started once per node that holds the data directory, named :data:`CLICKHOUSE_ACTOR_NAME`
in namespace ``apiary``; every other process reaches it through
:func:`apiary.store.store_client` (an :class:`~apiary.store.ActorStoreClient`). The client,
the remote methods and how a call is answered live in :mod:`apiary.store`.

Supervised: Ray restarts the owner whenever it dies (``max_restarts=-1``), on the same node
(its start-up pins it there), and the new process re-opens the same data directory and
re-applies any missing migration. Calls are not retried by Ray (``max_task_retries=0``: an
insert interrupted by the death may or may not have committed); callers see the gap as
:class:`~apiary.errors.StoreUnavailable` (:class:`~apiary.store.ActorStoreClient`) and
retry. ``restarts`` counts this process's predecessors.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray

from apiary._private import metrics
from apiary.settings import ApiarySettings
from apiary.store import CLICKHOUSE_ACTOR_NAME, call_remote, open_event_store


@ray.remote(max_concurrency=8, max_restarts=-1,  # type: ignore[call-overload]
            max_task_retries=0)  # Ray's stubs omit max_concurrency
class ClickHouseActor:
    """Owns the embedded chDB engine. Threaded: reads run while an insert is in progress."""

    def __init__(self, settings: ApiarySettings) -> None:
        self._store = open_event_store(settings)
        self.migrations = self._store.migrate()
        # This actor makes every insert into embedded chDB: it can keep the register of
        # keys stored twice, and exports read without FINAL once it is loaded.
        self._store.track_duplicates()
        self._restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def applied_migrations(self) -> list[str]:
        return list(self.migrations)

    def status(self) -> dict[str, Any]:
        """``pid`` of the owning process, ``restarted`` (True after Ray restarted it), and
        how exports are read (:meth:`~apiary.store.EventStore.read_state`)."""
        return {"pid": os.getpid(), "restarted": bool(self._restarted),
                **self._store.read_state()}

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``EventStore.<method>(*args, **kwargs)`` for a remote method (else AttributeError)."""
        started = time.perf_counter()
        try:
            return call_remote(self._store, method, args, kwargs)
        finally:
            metrics.observe(metrics.STORE_CALL_SECONDS, time.perf_counter() - started,
                            method=method)

    def close(self) -> None:
        self._store.close()


__all__ = ["CLICKHOUSE_ACTOR_NAME", "ClickHouseActor"]
