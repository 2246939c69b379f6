"""Session reads: a session's events and tree, the session list and its sums.

Pure SQL builders and result shaping, as :mod:`apiary.store._queries` (whose helpers they
share): every builder takes the ``project_id`` and binds user values as parameters. The
session list finds its page from one merged rollup column of ``session_aggregates``, then
merges the rest for those sessions only; it pages by keyset (``cursor``) or ``page``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from apiary.errors import InvalidRequest, NotFound
from apiary.store._filters import Params
from apiary.store._queries import (
    MAX_SESSION_LIMIT,
    SESSION_SORTS,
    DedupMethod,
    Sort,
    Statement,
    _cursor_key,
    _cursor_param,
    _date_range_conditions,
    _db,
    _offset,
    _paging,
    _positive_int,
    _require_project,
    _select_list,
    _sort,
    decode_sort_cursor,
    deduplicated_events,
    encode_cursor,
    encode_sort_cursor,
)
from apiary.store._rows import API_FIELDS, epoch_ms, row_to_event


def plan_session_events(database: str, project_id: str, session_id: str, *,
                        method: DedupMethod = "final") -> Statement:
    """Every event (newest version) of one session, in API shape columns."""
    project_id = _require_project(project_id)
    if not isinstance(session_id, str) or not session_id:
        raise InvalidRequest("a session_id is required", field="session_id")
    params = Params()
    source = deduplicated_events(
        database, params, project_id, [f"session_id = {params.bind(session_id, 'String')}"],
        API_FIELDS, method,
    )
    return Statement(f"SELECT {_select_list(API_FIELDS)} FROM {source} "
                     "ORDER BY start_time, event_id", params.values)


def build_session_tree(session_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Nest a session's events under their parents; every node gets ``children``.

    The root is the session event (``event_type`` ``session``, preferring the one whose
    ``event_id`` is the session id); without one, a synthetic root (``"synthetic": true``,
    not an event) spans the events.
    Events whose parent is missing, or that sit on a parent cycle, hang under the root.
    Siblings are ordered by ``start_time``, then ``event_id``.
    """
    if not rows:
        raise NotFound("session not found", session_id=session_id)
    nodes = [row_to_event(row) for row in rows]
    nodes.sort(key=lambda e: (e.get("start_time") or 0.0, e.get("event_id") or ""))
    for node in nodes:
        node["children"] = []
    root = next((n for n in nodes if n["event_id"] == session_id
                 and n.get("event_type") == "session"), None)
    root = root or next((n for n in nodes if n.get("event_type") == "session"), None)
    if root is None:
        root = _synthetic_root(session_id, nodes)
    by_id = {n["event_id"]: n for n in nodes}
    by_id[root["event_id"]] = root
    kids: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        if node is not root:
            kids.setdefault(node.get("parent_id") or "", []).append(node)
    placed = {id(root)}

    def attach(parent: dict[str, Any]) -> None:
        stack = [parent]
        while stack:
            current = stack.pop()
            for child in kids.get(current["event_id"], ()):
                if id(child) not in placed:
                    placed.add(id(child))
                    current["children"].append(child)
                    stack.append(child)

    def adopt(node: dict[str, Any]) -> None:
        placed.add(id(node))
        root["children"].append(node)
        attach(node)

    attach(root)
    for node in nodes:  # subtrees whose top has no parent in the session
        parent = node.get("parent_id") or ""
        if id(node) not in placed and (parent not in by_id or parent == node["event_id"]):
            adopt(node)
    for node in nodes:  # what is left hangs on a parent cycle: break it at its earliest
        if id(node) not in placed:
            adopt(node)
    _sort_children(root)
    return root


def _synthetic_root(session_id: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    first = nodes[0]
    start = min(n.get("start_time") or 0.0 for n in nodes)
    end = max(n.get("end_time") or 0.0 for n in nodes)
    source = next((n["source"] for n in nodes if n.get("source")), "")
    return {
        "event_id": session_id, "session_id": session_id, "parent_id": None,
        "children_ids": [], "event_type": "session", "event_name": "", "source": source,
        "org_id": first.get("org_id"),
        "workspace_id": first.get("workspace_id"), "project_id": first.get("project_id"),
        "config": {}, "inputs": {}, "outputs": {}, "error": None, "start_time": start,
        "end_time": end, "duration": max(0.0, end - start), "metadata": {}, "metrics": {},
        "feedback": {}, "user_properties": {}, "trace_id": "", "span_id": "",
        "children": [], "synthetic": True,
    }


def _sort_children(root: dict[str, Any]) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        node["children"].sort(key=lambda e: (e.get("start_time") or 0.0,
                                             e.get("event_id") or ""))
        stack.extend(node["children"])


_SESSION_COLUMNS = """
    session_id,
    argMaxIfMerge(session_name) AS name,
    argMaxIfMerge(source) AS session_source,
    argMaxIfMerge(user_properties) AS session_user_properties,
    minIfMerge(start_time) AS first_start,
    maxIfMerge(end_time) AS last_end,
    uniqExactMerge(event_count) AS events,
    uniqExactIfMerge(error_count) AS errors,
    uniqExactIfMerge(model_call_count) AS model_calls,
    sum(cost) AS total_cost,
    sum(prompt_tokens) AS prompt,
    sum(completion_tokens) AS completion,
    sum(total_tokens) AS tokens,
    max(last_update) AS updated
"""


def plan_session_list(database: str, project_id: str, *, limit: Any = 50, page: Any = 1,
                      date_range: Any = None, cursor: Any = None, sort_by: Any = None,
                      sort_order: Any = None) -> tuple[Statement, Statement]:
    """(page, total) statements listing a project's sessions, newest first.

    The page reads one light column of ``session_aggregates`` (the first start time, merged
    per session): ``session_id``, ``first_start_us`` and ``total`` (every session in range)
    for the page's sessions; :func:`plan_session_rows` then merges every rollup of those
    sessions only. ``date_range`` (``$gte``/``$lte`` ...) applies to the session's first
    start time; ``cursor`` (from :func:`session_page_cursor`) continues after a page.
    ``sort_by`` (:data:`SESSION_SORTS`) and ``sort_order`` (``desc``, the default, or
    ``asc``) choose another order, ties broken by ``session_id`` in the same direction;
    the other sorts read a few more rollup columns, and their cursors carry the sort.
    """
    project_id = _require_project(project_id)
    params = Params()
    project = params.bind(project_id, "String")
    having = _date_range_conditions(date_range, params, column="first_start")
    having_sql = f" HAVING {' AND '.join(having)}" if having else ""
    limit = min(_positive_int(limit, name="limit", default=50), MAX_SESSION_LIMIT)
    page = _paging(page, cursor)
    sort = _sort(sort_by, sort_order, SESSION_SORTS, "desc")
    before = decode_sort_cursor(cursor, "sessions", sort) if cursor is not None else None
    grouped = (f"SELECT session_id, minIfMerge(start_time) AS first_start "
               f"FROM {_db(database)}.session_aggregates "
               f"WHERE project_id = {project} GROUP BY session_id{having_sql}")
    paging: dict[str, Any] = {"limit": limit, "offset": _offset(page, limit)}
    if sort.default:
        found = (f"SELECT session_id, toUnixTimestamp64Micro(first_start) AS first_start_us, "
                 f"count() OVER () AS total FROM ({grouped})")
        if before is not None:
            found = (f"SELECT * FROM ({found}) WHERE (first_start_us, session_id) < "
                     "({before_us:Int64}, {before_id:String})")
            paging.update(before_us=before[0], before_id=before[1])
        page_sql = (f"{found} ORDER BY first_start_us DESC, session_id DESC "
                    "LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    else:
        sorted_group = (
            "SELECT session_id, minIfMerge(start_time) AS first_start, "
            "maxIfMerge(end_time) AS last_end, sum(cost) AS rollup_cost, "
            f"sum(total_tokens) AS rollup_tokens FROM {_db(database)}.session_aggregates "
            f"WHERE project_id = {project} GROUP BY session_id{having_sql}")
        keyed = (f"SELECT session_id, toUnixTimestamp64Micro(first_start) AS first_start_us, "
                 "toUnixTimestamp64Micro(last_end) AS last_end_us, rollup_cost, rollup_tokens "
                 f"FROM ({sorted_group})")
        found = (f"SELECT session_id, first_start_us, {SESSION_SORTS[sort.by]} AS sort_key, "
                 f"count() OVER () AS total FROM ({keyed})")
        if before is not None:
            found = (f"SELECT * FROM ({found}) WHERE (sort_key, session_id) {sort.comparison} "
                     f"({_cursor_key(sort)}, {{after_id:String}})")
            paging.update(after_key=_cursor_param(sort, before[0]), after_id=before[1])
        page_sql = (f"{found} ORDER BY sort_key {sort.direction}, "
                    f"session_id {sort.direction} LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}")
    page_stmt = Statement(page_sql, {**params.values, **paging})
    total_stmt = Statement(f"SELECT count() AS n FROM ({grouped})", dict(params.values))
    return page_stmt, total_stmt


def plan_session_rows(database: str, project_id: str, session_ids: Sequence[str]) -> Statement:
    """Every rollup of ``session_ids`` (merged states), read by primary key."""
    params = Params()
    project = params.bind(_require_project(project_id), "String")
    sessions = params.bind(sorted(set(session_ids)), "Array(String)")
    return Statement(
        f"SELECT {_SESSION_COLUMNS} FROM {_db(database)}.session_aggregates "
        f"WHERE project_id = {project} AND session_id IN {sessions} GROUP BY session_id",
        params.values,
    )


def session_page_cursor(keys: Sequence[Mapping[str, Any]], limit: int,
                        sort: Sort | None = None) -> str | None:
    """The cursor after a full page of sessions (``keys``: rows of the page statement,
    listed in ``sort``, by default newest first); None after a short (last) page."""
    if not keys or len(keys) < limit:
        return None
    last = keys[-1]
    if sort is None or sort.default:
        return encode_cursor("sessions", int(last["first_start_us"]), str(last["session_id"]))
    return encode_sort_cursor(sort, "sessions", last["sort_key"], str(last["session_id"]))


def session_sort(sort_by: Any = None, sort_order: Any = None) -> Sort:
    """The validated order of a session list (see :func:`plan_session_list`)."""
    return _sort(sort_by, sort_order, SESSION_SORTS, "desc")


def plan_session_sums(database: str, project_id: str, session_ids: Sequence[str],
                      dedup_method: DedupMethod = "final") -> Statement:
    """Exact cost and token sums of ``session_ids``: over the newest version of each
    non-session event (``FINAL``, or ``LIMIT 1 BY``), so neither a duplicate row nor a
    second version of an event counts twice, as it can in ``session_aggregates``' plain
    sums. Reads only those sessions (the primary key's prefix)."""
    params = Params()
    project = params.bind(_require_project(project_id), "String")
    sessions = params.bind(sorted(set(session_ids)), "Array(String)")
    where = f"project_id = {project} AND session_id IN {sessions}"
    columns = "session_id, event_type, cost, prompt_tokens, completion_tokens, total_tokens"
    if dedup_method == "final":
        newest = f"SELECT {columns} FROM {_db(database)}.events FINAL WHERE {where}"
    else:
        newest = (f"SELECT {columns} FROM {_db(database)}.events WHERE {where} "
                  "ORDER BY version DESC LIMIT 1 BY project_id, session_id, event_id")
    return Statement(
        "SELECT session_id, sum(cost) AS total_cost, sum(prompt_tokens) AS prompt, "
        "sum(completion_tokens) AS completion, sum(total_tokens) AS tokens "
        f"FROM ({newest}) WHERE event_type != 'session' GROUP BY session_id",
        params.values,
    )


def shape_session(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``session_aggregates`` row as the session-list API item (times in epoch ms)."""
    start, end = epoch_ms(row["first_start"]), epoch_ms(row["last_end"])
    return {
        "session_id": row["session_id"],
        "session_name": row["name"],
        "source": row["session_source"],
        "user_properties": orjson.loads(row["session_user_properties"] or "{}"),
        "start_time": start,
        "end_time": end,
        "duration": max(0.0, end - start) if start and end else 0.0,
        "event_count": int(row["events"]),
        "error_count": int(row["errors"]),
        "model_call_count": int(row["model_calls"]),
        "cost": float(row["total_cost"]),
        "prompt_tokens": int(row["prompt"]),
        "completion_tokens": int(row["completion"]),
        "total_tokens": int(row["tokens"]),
        "last_update": epoch_ms(row["updated"]),
    }
