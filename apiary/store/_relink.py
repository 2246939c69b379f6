"""The statements behind late session facts: a trace moved from its derived session into
the one a late span names, and events given what they inherit from a late session event.

See ``migrations/0007_derived_traces.sql`` and ``0008_uninherited_sessions.sql`` for what
is recorded, and :mod:`apiary.actors._relink` and :mod:`apiary.actors._backfill` for what
the writers do with it. Every statement is scoped to one project.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from apiary.store._filters import Params
from apiary.store._queries import Statement, _db, _require_project

DERIVED_TRACES_SCHEMA = pa.schema([
    ("project_id", pa.string()), ("trace_id", pa.string()), ("session_id", pa.string()),
])


def derived_traces_to_arrow(project_id: str, traces: Mapping[str, str]) -> pa.Table:
    """Rows of ``derived_traces``: ``traces`` maps a trace id to its derived session."""
    ids = sorted(traces)
    return pa.Table.from_arrays(
        [pa.array([project_id] * len(ids), pa.string()), pa.array(ids, pa.string()),
         pa.array([traces[t] for t in ids], pa.string())],
        schema=DERIVED_TRACES_SCHEMA,
    )


def plan_derived_traces(database: str, project_id: str, trace_ids: Sequence[str]) -> Statement:
    """Which of ``trace_ids`` were linked to a derived session, and to which."""
    params = Params()
    return Statement(
        f"SELECT trace_id, any(session_id) AS session_id FROM {_db(database)}.derived_traces "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')} "
        f"AND trace_id IN {params.bind(sorted(set(trace_ids)), 'Array(String)')} "
        "GROUP BY trace_id",
        params.values,
    )


def plan_session_event_ids(database: str, project_id: str,
                           session_ids: Sequence[str]) -> Statement:
    """The ids of the events stored under ``session_ids`` (a primary-key range each)."""
    params = Params()
    return Statement(
        f"SELECT DISTINCT event_id FROM {_db(database)}.events "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')} "
        f"AND session_id IN {params.bind(sorted(set(session_ids)), 'Array(String)')}",
        params.values,
    )


def plan_forget_sessions(database: str, project_id: str, session_ids: Sequence[str],
                         trace_ids: Sequence[str]) -> list[Statement]:
    """Delete the derived sessions' rows, their rollups and the traces' records."""
    db = _db(database)
    project = _require_project(project_id)
    statements = []
    for table, column, values in (("events", "session_id", session_ids),
                                  ("session_aggregates", "session_id", session_ids),
                                  ("derived_traces", "trace_id", trace_ids)):
        params = Params()
        statements.append(Statement(
            f"DELETE FROM {db}.{table} WHERE project_id = {params.bind(project, 'String')} "
            f"AND {column} IN {params.bind(sorted(set(values)), 'Array(String)')}",
            params.values,
        ))
    return statements


UNINHERITED_SESSIONS_SCHEMA = pa.schema([("project_id", pa.string()), ("session_id", pa.string())])


def uninherited_sessions_to_arrow(project_id: str, session_ids: Sequence[str]) -> pa.Table:
    """Rows of ``uninherited_sessions``."""
    ids = sorted(set(session_ids))
    return pa.Table.from_arrays(
        [pa.array([project_id] * len(ids), pa.string()), pa.array(ids, pa.string())],
        schema=UNINHERITED_SESSIONS_SCHEMA,
    )


def plan_uninherited_sessions(database: str, project_id: str,
                              session_ids: Sequence[str]) -> Statement:
    """Which of ``session_ids`` have events stored before their session event."""
    params = Params()
    return Statement(
        f"SELECT DISTINCT session_id FROM {_db(database)}.uninherited_sessions "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')} "
        f"AND session_id IN {params.bind(sorted(set(session_ids)), 'Array(String)')}",
        params.values,
    )


def plan_forget_uninherited(database: str, project_id: str,
                            session_ids: Sequence[str]) -> Statement:
    """Delete the records of ``session_ids`` (their events were given what they inherit)."""
    params = Params()
    return Statement(
        f"DELETE FROM {_db(database)}.uninherited_sessions "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')} "
        f"AND session_id IN {params.bind(sorted(set(session_ids)), 'Array(String)')}",
        params.values,
    )
