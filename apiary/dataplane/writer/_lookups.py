"""The reads a writer makes before it inserts: parameterised SQL, scoped to one project."""

from __future__ import annotations

from typing import Any

Query = tuple[str, dict[str, Any]]


def trace_sessions(database: str, project_id: str, trace_ids: list[str]) -> Query:
    """The session each trace was stored under (any one event of the trace tells)."""
    return (
        f"SELECT trace_id, any(session_id) AS linked_session FROM {database}.events "
        "WHERE project_id = {project_id:String} AND trace_id IN {trace_ids:Array(String)} "
        "AND session_id != '' GROUP BY trace_id",
        {"project_id": project_id, "trace_ids": trace_ids},
    )


def session_contexts(database: str, project_id: str, session_ids: list[str]) -> Query:
    """Metadata and user properties of the session events of ``session_ids``."""
    return (
        "SELECT session_id, argMax(metadata, version) AS metadata, "
        f"argMax(user_properties, version) AS user_properties FROM {database}.events "
        "WHERE project_id = {project_id:String} AND session_id IN {session_ids:Array(String)} "
        "AND event_type = 'session' GROUP BY session_id",
        {"project_id": project_id, "session_ids": session_ids},
    )

