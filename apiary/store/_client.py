"""Reaching the event store from anywhere in the cluster, embedded or server, one interface.

Embedded chDB admits one process per data directory, so one Ray actor owns it (named
:data:`CLICKHOUSE_ACTOR_NAME`, in namespace ``apiary``; the class is
:class:`apiary.actors.clickhouse.ClickHouseActor`, which answers :func:`call_remote`):
writers send it Arrow tables (as one Arrow IPC stream buffer each, see
:meth:`ActorStoreClient.insert_arrow`), the query API sends it reads. With a ClickHouse
server configured there is no owner: every caller talks HTTP to the server directly.
Callers see neither; they hold a :class:`StoreClient` from :func:`store_client`, whose
methods are the :func:`~apiary.store._remote.remote` methods of
:class:`~apiary.store.EventStore`, made async.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from apiary._private.files import private_dir, restrict_umask
from apiary.errors import StoreUnavailable
from apiary.settings import ApiarySettings
from apiary.store._client_methods import RemoteStoreMethods
from apiary.store._drivers import open_driver
from apiary.store._remote import call_remote, remote_methods
from apiary.store._store import EventStore
from apiary.store._tracking import FieldTracking, track_fields

#: The name of the actor that owns embedded chDB (namespace ``apiary``).
CLICKHOUSE_ACTOR_NAME = "apiary-clickhouse"

#: The EventStore methods a StoreClient reaches (marked ``@remote`` on EventStore).
REMOTE_METHODS = frozenset(remote_methods(EventStore))


class StoreClient(RemoteStoreMethods):
    """Async access to the event store. Errors are :class:`apiary.errors.StoreError`;
    calling a method that is not remote raises :class:`AttributeError`. Subclasses say
    how a call reaches the store (``_call``)."""


class ActorStoreClient(StoreClient):
    """A :class:`StoreClient` that forwards to the chDB owner actor (``handle``).

    The owner is restarted by Ray after it dies (``max_restarts=-1``) and re-opens the same
    data directory. While it is dead or restarting, every call raises
    :class:`~apiary.errors.StoreUnavailable` (retryable; 503 to an API caller): a writer
    waits and retries, keeping its messages alive, and burns no delivery. A call the owner
    was running when it died is not retried by Ray (``max_task_retries=0``): an insert's
    outcome is unknown then, and the caller decides (the writer retries it).
    """

    def __init__(self, handle: Any) -> None:
        self._actor = handle

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from ray.exceptions import RayActorError

        try:
            return await self._actor.call.remote(method, args, kwargs)
        except RayActorError as exc:  # ActorDiedError, ActorUnavailableError
            raise StoreUnavailable(
                "the ClickHouse owner actor is unavailable (restarting)",
                method=method, error_type=type(exc).__name__,
            ) from exc

    async def insert_arrow(self, table: pa.Table, dedup_token: str | None = None,
                           tracking: FieldTracking | None = None) -> None:
        # Ray pickles an Arrow table chunk by chunk and rebases every string column's
        # offsets with compute kernels: on a writer's flush (a concatenation of one table
        # per request) that was half of the writer's CPU. One IPC buffer crosses as bytes.
        # The schema and detail tracking rows are derived here, in the caller's process
        # (a writer), not by the chDB owner: a few rows per insert cross with the table.
        if tracking is None:
            tracking = track_fields(table)
        await self._call("insert_arrow_ipc", arrow_ipc(table), dedup_token, tracking)


class DirectStoreClient(StoreClient):
    """A :class:`StoreClient` over an :class:`EventStore` in this process (each call runs
    in a worker thread)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(call_remote, self._store, method, args, kwargs)


def arrow_ipc(table: pa.Table) -> pa.Buffer:
    """``table`` as one Arrow IPC stream (its chunks are written as they are, no copy)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def open_event_store(settings: ApiarySettings) -> EventStore:
    """The :class:`EventStore` ``settings`` name: the ClickHouse server at
    ``clickhouse_url``, else embedded chDB in ``<data_dir>/clickhouse`` (owner-only)."""
    path = None if settings.clickhouse_url else settings.data_dir / "clickhouse"
    if path is not None:
        # chDB writes parts for as long as this process lives, with this process's umask:
        # owner-only, even when the process was not started by `apiary up` (a joined or
        # pre-started Ray).
        restrict_umask()
        private_dir(path)
    driver = open_driver(
        url=settings.clickhouse_url, path=path, database=settings.clickhouse_database
    )
    return EventStore(driver, database=settings.clickhouse_database)


def store_client(settings: ApiarySettings) -> StoreClient:
    """The right :class:`StoreClient` for ``settings``, from inside any Ray worker."""
    if settings.embedded_clickhouse:
        import ray

        return ActorStoreClient(ray.get_actor(CLICKHOUSE_ACTOR_NAME, namespace="apiary"))
    return DirectStoreClient(open_event_store(settings))


def migrate_server(settings: ApiarySettings) -> list[str]:
    """Apply the schema to a ClickHouse server (embedded chDB migrates in its actor)."""
    store = open_event_store(settings)
    try:
        return store.migrate()
    finally:
        store.close()


__all__ = [
    "CLICKHOUSE_ACTOR_NAME",
    "REMOTE_METHODS",
    "ActorStoreClient",
    "DirectStoreClient",
    "StoreClient",
    "arrow_ipc",
    "migrate_server",
    "open_event_store",
    "store_client",
]
