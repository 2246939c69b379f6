"""Reaching the event store from anywhere in the cluster, embedded or server, one interface.

Embedded chDB admits one process per data directory, so one actor, :class:`ClickHouseActor`,
owns it: writers send it Arrow tables (as one Arrow IPC stream buffer each, see
:meth:`ActorStoreClient.insert_arrow`), the query API sends it reads. With a ClickHouse
server configured there is no owner: every caller talks HTTP to the server directly.
Callers see neither; they hold a :class:`StoreClient` from :func:`store_client`, whose
methods are those of :class:`~apiary.store.EventStore`, made async.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import ray

from apiary._private.files import private_dir, restrict_umask
from apiary.event import EventPatch, Tenant
from apiary.settings import ApiarySettings
from apiary.store import EventStore, open_driver

CLICKHOUSE_ACTOR_NAME = "apiary-clickhouse"

#: The EventStore methods reachable through a StoreClient.
_METHODS = frozenset({
    "insert_arrow", "insert_arrow_ipc", "existing_versions", "export", "get_event", "session_tree",
    "session_events", "list_sessions", "event_schema", "event_details", "count_events",
    "count_duplicate_rows", "count_rows", "query_rows",
    # traces a writer linked to a derived session (apiary.dataplane.writer._relink)
    "record_derived_traces", "derived_traces", "forget_sessions",
    # sessions whose events were stored before the session event (apiary.dataplane.writer._backfill)
    "record_uninherited_sessions", "uninherited_sessions", "forget_uninherited",
    # updates (PUT /events): the patch log and the writer's merge
    "insert_patches", "event_patches", "latest_events", "latest_events_in_sessions",
    "recently_patched",
    # experiment runs: results, comparisons
    "run_result_rows", "run_events",
    # charts
    "chart_data",
})


def open_event_store(settings: ApiarySettings) -> EventStore:
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


def arrow_ipc(table: pa.Table) -> pa.Buffer:
    """``table`` as one Arrow IPC stream (its chunks are written as they are, no copy)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class _Store(EventStore):
    def insert_arrow_ipc(self, data: pa.Buffer | bytes) -> None:
        """Insert the table encoded by :func:`arrow_ipc` (read without copying it)."""
        self.insert_arrow(pa.ipc.open_stream(data).read_all())

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[
            dict[str, Any]]:
        return self.driver.query_rows(sql, parameters)


class StoreClient:
    """Async access to the event store. Errors are :class:`apiary.errors.StoreError`."""

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def insert_arrow(self, table: pa.Table) -> None:
        await self._call("insert_arrow", table)

    async def existing_versions(self, project_id: str, event_ids: Sequence[str],
                                session_ids: Sequence[str] | None = None) -> dict[str, int]:
        found: dict[str, int] = await self._call("existing_versions", project_id, event_ids,
                                                 session_ids)
        return found

    async def export(self, project_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("export", project_id, request)
        return result

    async def session_tree(self, project_id: str, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("session_tree", project_id, session_id)
        return result

    async def list_sessions(
        self, project_id: str, *, limit: int, page: int,
        date_range: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "list_sessions", project_id, limit=limit, page=page, date_range=date_range
        )
        return result

    async def count_events(self, project_id: str) -> int:
        return int(await self._call("count_events", project_id))

    async def count_rows(self, project_id: str) -> int:
        return int(await self._call("count_rows", project_id))

    async def run_result_rows(
        self, project_id: str, run_id: str, session_ids: Sequence[str], aggregate: str,
        filters: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = await self._call(
            "run_result_rows", project_id, run_id, session_ids, aggregate, filters
        )
        return result

    async def run_events(
        self, project_id: str, run_id: str, session_ids: Sequence[str],
        filters: Sequence[Mapping[str, Any]] = (), limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = await self._call(
            "run_events", project_id, run_id, session_ids, filters, limit
        )
        return events

    async def chart_data(self, project_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("chart_data", project_id, request)
        return result

    async def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call("query_rows", sql, parameters)
        return rows

    async def get_event(self, project_id: str, event_id: str) -> dict[str, Any]:
        event: dict[str, Any] = await self._call("get_event", project_id, event_id)
        return event

    async def event_schema(self, project_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call("event_schema", project_id)
        return rows

    async def event_details(self, project_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call("event_details", project_id)
        return rows

    # -- updates (PUT /events) --------------------------------------------------------------

    async def insert_patches(self, tenant: Tenant, patches: Sequence[EventPatch]) -> int:
        return int(await self._call("insert_patches", tenant, patches))

    async def event_patches(
        self, project_id: str, event_ids: Sequence[str]
    ) -> dict[str, list[EventPatch]]:
        found: dict[str, list[EventPatch]] = await self._call(
            "event_patches", project_id, event_ids)
        return found

    async def latest_events(
        self, project_id: str, event_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call("latest_events", project_id, event_ids)
        return rows

    async def latest_events_in_sessions(
        self, project_id: str, session_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call("latest_events_in_sessions",
                                                      project_id, list(session_ids))
        return rows

    # -- traces linked to a derived session ----------------------------------------------

    async def record_derived_traces(self, project_id: str, traces: Mapping[str, str]) -> None:
        await self._call("record_derived_traces", project_id, dict(traces))

    async def derived_traces(self, project_id: str, trace_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = await self._call("derived_traces", project_id, list(trace_ids))
        return found

    async def forget_sessions(self, project_id: str, session_ids: Sequence[str],
                              trace_ids: Sequence[str]) -> None:
        await self._call("forget_sessions", project_id, list(session_ids), list(trace_ids))

    async def record_uninherited_sessions(self, project_id: str,
                                          session_ids: Sequence[str]) -> None:
        await self._call("record_uninherited_sessions", project_id, list(session_ids))

    async def uninherited_sessions(self, project_id: str,
                                   session_ids: Sequence[str]) -> list[str]:
        found: list[str] = await self._call("uninherited_sessions", project_id,
                                            list(session_ids))
        return found

    async def forget_uninherited(self, project_id: str, session_ids: Sequence[str]) -> None:
        await self._call("forget_uninherited", project_id, list(session_ids))

    async def recently_patched(self, *, hours: int, limit: int) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = await self._call(
            "recently_patched", hours=hours, limit=limit)
        return found


@ray.remote(max_concurrency=8)  # type: ignore[call-overload]  # Ray's stubs omit it
class ClickHouseActor:
    """Owns the embedded chDB engine. Threaded: reads run while an insert is in progress."""

    def __init__(self, settings: ApiarySettings) -> None:
        store = open_event_store(settings)
        self._store = _Store(store.driver, database=store.database)
        self.migrations = self._store.migrate()

    def applied_migrations(self) -> list[str]:
        return list(self.migrations)

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if method not in _METHODS:
            raise AttributeError(f"EventStore has no remote method {method!r}")
        return getattr(self._store, method)(*args, **kwargs)

    def close(self) -> None:
        self._store.close()


class ActorStoreClient(StoreClient):
    """A :class:`StoreClient` that forwards to the :class:`ClickHouseActor`."""

    def __init__(self, handle: Any) -> None:
        self._actor = handle

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._actor.call.remote(method, args, kwargs)

    async def insert_arrow(self, table: pa.Table) -> None:
        # Ray pickles an Arrow table chunk by chunk and rebases every string column's
        # offsets with compute kernels: on a writer's flush (a concatenation of one table
        # per request) that was half of the writer's CPU. One IPC buffer crosses as bytes.
        await self._call("insert_arrow_ipc", arrow_ipc(table))


class DirectStoreClient(StoreClient):
    """A :class:`StoreClient` over an :class:`EventStore` in this process."""

    def __init__(self, store: EventStore) -> None:
        self._store = _Store(store.driver, database=store.database)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in _METHODS:
            raise AttributeError(f"EventStore has no method {method!r}")
        return await asyncio.to_thread(getattr(self._store, method), *args, **kwargs)


def store_client(settings: ApiarySettings) -> StoreClient:
    """The right :class:`StoreClient` for ``settings``, from inside any Ray worker."""
    if settings.embedded_clickhouse:
        return ActorStoreClient(ray.get_actor(CLICKHOUSE_ACTOR_NAME, namespace="apiary"))
    return DirectStoreClient(open_event_store(settings))


def migrate_server(settings: ApiarySettings) -> list[str]:
    """Apply the schema to a ClickHouse server (embedded chDB migrates in its actor)."""
    store = open_event_store(settings)
    try:
        return store.migrate()
    finally:
        store.close()
