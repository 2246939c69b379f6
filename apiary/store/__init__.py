"""Event storage in ClickHouse (DESIGN.md, "ClickHouse tables").

- :func:`open_driver` → a :class:`ClickHouseDriver`: :class:`ClickHouseServer` (HTTP) when a
  URL is configured, else :class:`EmbeddedClickHouse` (chDB in-process). Same SQL for both;
  thread-safe; errors are :class:`~apiary.errors.StoreUnavailable` (retryable) or
  :class:`~apiary.errors.StoreRejected`.
- :func:`apply_migrations` creates and upgrades the schema (``migrations/*.sql``):
  ``events`` and the rollups fed by materialized views (``session_aggregates``,
  ``event_schemas``, ``project_event_details``).
- :func:`events_to_arrow` / :func:`row_to_event` convert between events and rows.
- :class:`EventStore` inserts events and runs the read queries (export, session tree,
  session list, existing versions, counts), always scoped to one project, and keeps the
  log of event updates (``event_updates``) the writers merge into events, the traces a
  writer linked to a derived session (``derived_traces``) until a late root names one,
  and the sessions whose events were stored before their session event
  (``uninherited_sessions``).
"""

from apiary.store._drivers import (
    ClickHouseDriver,
    ClickHouseServer,
    EmbeddedClickHouse,
    map_driver_error,
    open_driver,
)
from apiary.store._filters import ALIASES, OPERATORS, TYPES
from apiary.store._migrations import apply_migrations, load_migrations
from apiary.store._queries import (
    DEDUP_METHODS,
    DEFAULT_EXPORT_LIMIT,
    MAX_EXPORT_LIMIT,
    DedupMethod,
    Statement,
    build_session_tree,
    plan_export,
)
from apiary.store._rows import (
    API_FIELDS,
    EVENTS_ARROW_SCHEMA,
    ComputedFields,
    arrow_to_events,
    events_to_arrow,
    row_to_event,
)
from apiary.store._store import EventStore
from apiary.store._updates import ROLLUP_COLUMNS, ROLLUP_SOURCES, patch_id

__all__ = [
    "ALIASES",
    "API_FIELDS",
    "DEDUP_METHODS",
    "DEFAULT_EXPORT_LIMIT",
    "EVENTS_ARROW_SCHEMA",
    "MAX_EXPORT_LIMIT",
    "OPERATORS",
    "ROLLUP_COLUMNS",
    "ROLLUP_SOURCES",
    "TYPES",
    "ClickHouseDriver",
    "ClickHouseServer",
    "ComputedFields",
    "DedupMethod",
    "EmbeddedClickHouse",
    "EventStore",
    "Statement",
    "apply_migrations",
    "arrow_to_events",
    "build_session_tree",
    "events_to_arrow",
    "load_migrations",
    "map_driver_error",
    "open_driver",
    "patch_id",
    "plan_export",
    "row_to_event",
]
