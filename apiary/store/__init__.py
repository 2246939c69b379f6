"""Event storage in ClickHouse (docs/architecture.md, "The event model").

- :func:`open_driver` → a :class:`ClickHouseDriver`: :class:`ClickHouseServer` (HTTP) when a
  URL is configured, else :class:`EmbeddedClickHouse` (chDB in-process). Same SQL for both;
  thread-safe; errors are :class:`~apiary.errors.StoreUnavailable` (retryable) or
  :class:`~apiary.errors.StoreRejected`.
- :func:`apply_migrations` creates and upgrades the schema (``migrations/*.sql``):
  ``events``, the session rollups fed by a materialized view (``session_aggregates``) and
  the schema and detail rollups (``event_schemas``, ``project_event_details``), whose rows
  :func:`track_fields` derives in the inserting process (:class:`FieldTracking`).
- :func:`events_to_arrow` / :func:`row_to_event` convert between events and rows;
  :data:`JSON_COLUMNS` are the columns stored as JSON text, :func:`epoch_ms` reads a
  stored time back.
- The export filter language (:data:`OPERATORS`, :data:`TYPES`, :data:`ALIASES`):
  :func:`check_filters` validates a filter list, :func:`parse_time` reads a time bound,
  :func:`compile_predicates` compiles it to a Python :data:`Predicate` that answers as the
  SQL would on the stored row (the writers select online evaluations with it).
  :func:`aggregate_expression` names a metric aggregate; :func:`parse_chart_request`
  validates a chart request.
- :class:`EventStore` inserts events and runs the read queries (export, session tree,
  session list, existing versions, counts), always scoped to one project, and keeps the
  log of event updates (``event_updates``) the writers merge into events, the traces a
  writer linked to a derived session (``derived_traces``) until a late root names one,
  and the sessions whose events were stored before their session event
  (``uninherited_sessions``). Its ingest ledger (``ingest_ledger``) records how each
  message of the ``events`` stream was settled (``record_settled``, ``ledger_totals``;
  :func:`cover_sequences` names the sequences a totals read returns one by one). In the
  one process that inserts into embedded chDB, :meth:`EventStore.track_duplicates` keeps a
  :class:`DuplicateRegister` of the keys stored twice, and exports read without FINAL.
- :class:`StoreClient` reaches the store from any process of the cluster, async:
  :func:`store_client` gives an :class:`ActorStoreClient` (to the actor that owns embedded
  chDB, :data:`CLICKHOUSE_ACTOR_NAME`) or a :class:`DirectStoreClient` (a ClickHouse server,
  or a store in this process). Its methods are the EventStore methods marked
  :func:`remote` (:data:`REMOTE_METHODS`), the one place they are declared;
  :func:`call_remote` is how the owner answers. :func:`open_event_store` opens the store
  the settings name; :func:`migrate_server` applies the schema to a server.
"""

from apiary.store._attributes import EVENTS_ARROW_SCHEMA, events_to_arrow, with_attributes
from apiary.store._chart_spec import parse_chart_request
from apiary.store._client import (
    CLICKHOUSE_ACTOR_NAME,
    REMOTE_METHODS,
    ActorStoreClient,
    DirectStoreClient,
    StoreClient,
    arrow_ipc,
    migrate_server,
    open_event_store,
    store_client,
)
from apiary.store._drivers import (
    ClickHouseDriver,
    ClickHouseServer,
    EmbeddedClickHouse,
    map_driver_error,
    open_driver,
)
from apiary.store._duplicates import DuplicateRegister
from apiary.store._experiments import aggregate_expression, check_filters
from apiary.store._filters import ALIASES, OPERATORS, TYPES, parse_time
from apiary.store._ingest_ledger import cover_sequences
from apiary.store._migrations import apply_migrations, load_migrations
from apiary.store._predicates import Predicate, compile_predicate, compile_predicates
from apiary.store._queries import (
    DEDUP_METHODS,
    DEFAULT_EXPORT_LIMIT,
    MAX_EXPORT_LIMIT,
    DedupMethod,
    Statement,
    plan_export,
)
from apiary.store._remote import call_remote, remote
from apiary.store._rows import (
    API_FIELDS,
    JSON_COLUMNS,
    ComputedFields,
    arrow_to_events,
    epoch_ms,
    insert_dedup_token,
    row_to_event,
)
from apiary.store._session_queries import build_session_tree
from apiary.store._store import EventStore
from apiary.store._tracking import FieldTracking, track_fields
from apiary.store._updates import ROLLUP_COLUMNS, ROLLUP_SOURCES, patch_id

__all__ = [
    "ALIASES",
    "API_FIELDS",
    "CLICKHOUSE_ACTOR_NAME",
    "DEDUP_METHODS",
    "DEFAULT_EXPORT_LIMIT",
    "EVENTS_ARROW_SCHEMA",
    "JSON_COLUMNS",
    "MAX_EXPORT_LIMIT",
    "OPERATORS",
    "REMOTE_METHODS",
    "ROLLUP_COLUMNS",
    "ROLLUP_SOURCES",
    "TYPES",
    "ActorStoreClient",
    "ClickHouseDriver",
    "ClickHouseServer",
    "ComputedFields",
    "DedupMethod",
    "DirectStoreClient",
    "DuplicateRegister",
    "EmbeddedClickHouse",
    "EventStore",
    "FieldTracking",
    "Predicate",
    "Statement",
    "StoreClient",
    "aggregate_expression",
    "apply_migrations",
    "arrow_ipc",
    "arrow_to_events",
    "build_session_tree",
    "call_remote",
    "check_filters",
    "compile_predicate",
    "compile_predicates",
    "cover_sequences",
    "epoch_ms",
    "events_to_arrow",
    "insert_dedup_token",
    "load_migrations",
    "map_driver_error",
    "migrate_server",
    "open_driver",
    "open_event_store",
    "parse_chart_request",
    "parse_time",
    "patch_id",
    "plan_export",
    "remote",
    "row_to_event",
    "store_client",
    "track_fields",
    "with_attributes",
]
