"""The statements behind late session facts: a trace moved from its derived session into
the one a late span names, and events given what they inherit from a late session event.

See ``migrations/0007_derived_traces.sql`` and ``0008_uninherited_sessions.sql`` for what
is recorded, and :mod:`apiary.dataplane.writer._relink` and :mod:`apiary.dataplane.writer._backfill`
for what the writers do with it. Every statement is scoped to one project.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from apiary.store._filters import Params
from apiary.store._queries import Statement, _db, _require_project

DERIVED_TRACES_SCHEMA = pa.schema([
    ("project_id", pa.string()), ("trace_id", pa.string()), ("session_id", pa.string()),
])


def _in_project(database: str, project_id: str, head: str, column: str,
                values: Sequence[str], tail: str = "") -> Statement:
    """``head`` (naming its table ``{db}.<table>``), then ``WHERE project_id = <project>
    AND <column> IN <values>``, then ``tail``: one project's rows, a statement."""
    params = Params()
    return Statement(
        head.replace("{db}", _db(database))
        + f" WHERE project_id = {params.bind(_require_project(project_id), 'String')} "
        f"AND {column} IN {params.bind(sorted(set(values)), 'Array(String)')}{tail}",
        params.values,
    )


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
    return _in_project(database, project_id,
                       "SELECT trace_id, any(session_id) AS session_id FROM {db}.derived_traces",
                       "trace_id", trace_ids, " GROUP BY trace_id")


def plan_forget_sessions(database: str, project_id: str, session_ids: Sequence[str],
                         trace_ids: Sequence[str]) -> list[Statement]:
    """Delete the derived sessions' rows, their rollups and the traces' records."""
    return [_in_project(database, project_id, f"DELETE FROM {{db}}.{table}", column, values)
            for table, column, values in (("events", "session_id", session_ids),
                                          ("session_aggregates", "session_id", session_ids),
                                          ("derived_traces", "trace_id", trace_ids))]


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
    return _in_project(database, project_id,
                       "SELECT DISTINCT session_id FROM {db}.uninherited_sessions",
                       "session_id", session_ids)


def plan_forget_uninherited(database: str, project_id: str,
                            session_ids: Sequence[str]) -> Statement:
    """Delete the records of ``session_ids`` (their events were given what they inherit)."""
    return _in_project(database, project_id, "DELETE FROM {db}.uninherited_sessions",
                       "session_id", session_ids)
