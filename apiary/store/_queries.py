"""Read queries over the events tables: pure SQL builders and result shaping.

Builders return :class:`Statement` (SQL + bound parameters) and never touch a driver, so
the same text runs on a ClickHouse server and on chDB, and tests can inspect it. Every
builder takes the ``project_id`` as a required argument and puts it in the ``WHERE`` of
every table it reads (tenant isolation); user values only ever travel as parameters.

Exact reads collapse an event's versions (ReplacingMergeTree keeps them until a merge)
with ``FINAL`` by default; ``LIMIT 1 BY`` is available for comparison
(:data:`DEDUP_METHODS`). Conditions on version-invariant columns (project, session and
event ids) are applied before collapsing, every other condition after it, so an old
version can never make an event match.

Finding rows is kept apart from reading them (issue 18): an export collapses versions over
the light columns only (keys, ``start_time``, what its filters read) to find its page and
its total in one pass, then reads the wide columns of the page's events by primary key.
Where the embedded store keeps its register of keys stored twice, the page and total are
found without ``FINAL`` from :class:`ExportParts` (:mod:`apiary.store._export_reads`).
Exports also page by keyset (``cursor``), as cheap on any page. Session reads are in
:mod:`apiary.store._session_queries`.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from apiary.errors import InvalidRequest
from apiary.store._drivers import check_identifier
from apiary.store._filters import (
    CompiledFilter,
    Params,
    attribute_path,
    compile_filter,
    parse_time,
    split_field,
)
from apiary.store._rows import API_FIELDS, COMPUTED_COLUMNS, row_to_event

DedupMethod = Literal["final", "limit_by"]
DEDUP_METHODS: tuple[DedupMethod, ...] = ("final", "limit_by")

DEFAULT_EXPORT_LIMIT = 1000
MAX_EXPORT_LIMIT = 10_000
MAX_SESSION_LIMIT = 1000
MAX_OFFSET = 2**63 - 1
_KEY = "project_id, session_id, event_id"
_TENANT_COLUMNS = ("org_id", "workspace_id", "project_id")
_PROJECTABLE = frozenset(API_FIELDS) | frozenset(COMPUTED_COLUMNS)


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement and its bound parameters."""

    sql: str
    parameters: dict[str, Any]


#: What an export or a session list may be sorted by: the API name -> the page query's
#: expression of it (per event in an export; per session, over the merged rollups, in a
#: session list). The default (start time) keeps its original cursor form and order.
EXPORT_SORTS: dict[str, str] = {
    "start_time": "toUnixTimestamp64Micro(start_time)",
    "duration": "duration",
    "cost": "cost",
    "total_tokens": "total_tokens",
}
SESSION_SORTS: dict[str, str] = {
    "start_time": "first_start_us",
    # As the session list shows it: last end - first start in ms, 0 unless both are known.
    "duration": ("if(first_start_us > 0 AND last_end_us > 0, "
                 "greatest(0, toFloat64(last_end_us - first_start_us) / 1000), 0)"),
    # The rollups' sums: the list shows exact sums (over each event's newest version),
    # which differ from these only while a duplicate row or a re-sent event is unmerged.
    "cost": "rollup_cost",
    "total_tokens": "rollup_tokens",
}
SORT_ORDERS = ("asc", "desc")
_INTEGER_SORTS = frozenset({"start_time", "total_tokens"})


@dataclass(frozen=True, slots=True)
class Sort:
    """A read's order: ``by`` (a key of :data:`EXPORT_SORTS`/:data:`SESSION_SORTS`) and
    ``order``; ``default`` when it is the read's original order (its cursor keeps the
    original form)."""

    by: str
    order: str
    default: bool

    @property
    def direction(self) -> str:
        return "DESC" if self.order == "desc" else "ASC"

    @property
    def comparison(self) -> str:
        """The keyset operator: the rows after the cursor in this order."""
        return "<" if self.order == "desc" else ">"

    def cursor_kind(self, read: str) -> str:
        return read if self.default else f"{read}:{self.by}:{self.order}"


def _sort(by: Any, order: Any, sorts: Mapping[str, str], default_order: str) -> Sort:
    """The validated sort of a request (``None``: the default); InvalidRequest naming the
    field for anything not whitelisted."""
    by = "start_time" if by is None else by
    if not isinstance(by, str) or by not in sorts:
        raise InvalidRequest(f"cannot sort by {str(by)[:40]!r}; supported: "
                             + ", ".join(sorts), field="sort_by")
    order = default_order if order is None else order
    if order not in SORT_ORDERS:
        raise InvalidRequest(f"sort_order must be asc or desc, not {str(order)[:20]!r}",
                             field="sort_order")
    return Sort(by, order, by == "start_time" and order == default_order)


@dataclass(frozen=True, slots=True)
class ExportParts:
    """An export's conditions, apart: ``key_conditions`` (version-invariant columns) and
    ``conditions`` (any column: filters, date range, search), bound in ``parameters``;
    ``value`` the SQL of the sort value per event (start time in µs by default) and
    ``after`` the keyset condition past the cursor, exact (value and event id) and coarse
    (value only, strictly after: what a scan of the value alone can apply)."""

    project_id: str
    parameters: dict[str, Any]
    key_conditions: tuple[str, ...]
    conditions: tuple[str, ...]
    value: str
    descending: bool
    integer_value: bool
    after: tuple[str, str] | None
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The statements of an export and how to shape their rows.

    ``page`` finds the page's events from the light columns only (keys, ``start_time`` and
    what the filters read): ``session_id``, ``event_id`` in export order and ``total``
    (every match, on every row). ``rows``
    (:meth:`rows_for`) then reads the wide columns of just those events, by primary key.
    ``total`` counts every match, for a page past the last one.
    """

    page: Statement
    total: Statement
    projections: tuple[str, ...] | None
    limit: int
    page_number: int
    fetch: Statement
    continued: bool = False  # a cursor was given: an empty page is not an empty result
    sort: Sort = Sort("start_time", "asc", True)
    #: What a read without FINAL needs to find the same page (apiary.store._export_reads).
    parts: ExportParts | None = None

    def rows_for(self, keys: Sequence[Mapping[str, Any]]) -> Statement:
        """The columns of the events ``keys`` (rows of :attr:`page`), in export order.

        The filters are applied again, so an event whose newest version stopped matching
        since :attr:`page` ran (a concurrent update) is left out rather than shown."""
        return Statement(self.fetch.sql, {
            **self.fetch.parameters,
            "page_sessions": sorted({str(k["session_id"]) for k in keys}),
            "page_events": sorted({str(k["event_id"]) for k in keys}),
        })


def _db(database: str) -> str:
    return f"`{check_identifier(database)}`"


def _require_project(project_id: Any) -> str:
    if not isinstance(project_id, str) or not project_id:
        raise InvalidRequest("a project_id is required", field="project_id")
    return project_id


def _positive_int(value: Any, *, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a positive integer", field=name)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.isdigit()
    ):
        number = int(value)
    else:
        raise InvalidRequest(f"{name} must be a positive integer", field=name)
    if number < 1:
        raise InvalidRequest(f"{name} must be a positive integer", field=name)
    return number


def _offset(page: int, limit: int) -> int:
    """The row offset of a 1-based page; InvalidRequest beyond what ClickHouse's UInt64
    OFFSET holds (a larger one would wrap around to an early page)."""
    offset = (page - 1) * limit
    if offset > MAX_OFFSET:
        raise InvalidRequest("page is beyond any result", field="page")
    return offset


def encode_cursor(kind: str, micros: int, key: str) -> str:
    """An opaque keyset cursor: the sort position (time in µs, id) of a page's last row."""
    return base64.urlsafe_b64encode(orjson.dumps([kind, micros, key])).decode().rstrip("=")


def decode_cursor(cursor: Any, kind: str) -> tuple[int, str]:
    """``(micros, key)`` of a cursor from :func:`encode_cursor` for ``kind``;
    InvalidRequest for anything else (another read's cursor included)."""
    try:
        if not isinstance(cursor, str) or len(cursor) > 1024:
            raise ValueError
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        tag, micros, key = decoded
        if tag != kind or type(micros) is not int or not isinstance(key, str):
            raise ValueError
        if not 0 <= micros < 2**63:
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError, binascii.Error):
        raise InvalidRequest("cursor is not one this read returned", field="cursor") from None
    return micros, key


def encode_sort_cursor(sort: Sort, read: str, value: float | int, key: str) -> str:
    """The cursor after a row whose sort value is ``value`` (``key``: its id): the original
    form (:func:`encode_cursor`) for the default order, else tagged with the sort."""
    if sort.default:
        return encode_cursor(read, int(value), key)
    number = int(value) if sort.by in _INTEGER_SORTS else float(value)
    return base64.urlsafe_b64encode(orjson.dumps([sort.cursor_kind(read), number, key])
                                    ).decode().rstrip("=")


def decode_sort_cursor(cursor: Any, read: str, sort: Sort) -> tuple[float | int, str]:
    """``(value, key)`` of a cursor :func:`encode_sort_cursor` made for ``read`` in
    ``sort``; InvalidRequest for anything else (another read's or another sort's)."""
    if sort.default:
        return decode_cursor(cursor, read)
    try:
        if not isinstance(cursor, str) or len(cursor) > 1024:
            raise ValueError
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        tag, value, key = decoded
        if tag != sort.cursor_kind(read) or not isinstance(key, str):
            raise ValueError
        if sort.by in _INTEGER_SORTS:
            if type(value) is not int or not -(2**63) <= value < 2**63:
                raise ValueError
        elif type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError, binascii.Error):
        raise InvalidRequest("cursor is not one this read returned (in this order)",
                             field="cursor") from None
    return value, key


def _cursor_key(sort: Sort) -> str:
    """The SQL of a cursor's sort value: an integer as it is; a float from its IEEE bits,
    so that it is exactly the stored value (parsing decimal text need not round-trip in
    ClickHouse, and the keyset would then skip or repeat the row at the page boundary)."""
    if sort.by in _INTEGER_SORTS:
        return "{after_key:Int64}"
    return "reinterpretAsFloat64({after_key:UInt64})"


def _cursor_param(sort: Sort, value: float | int) -> int:
    if sort.by in _INTEGER_SORTS:
        return int(value)
    return float_bits(value)


def float_bits(value: float) -> int:
    """``value``'s IEEE bits as an unsigned integer, for ``reinterpretAsFloat64`` in SQL: a
    float bound as decimal text need not parse back to the same value in ClickHouse."""
    return int.from_bytes(struct.pack("<d", float(value)), "little")


def _paging(request_page: Any, cursor: Any) -> int:
    page = _positive_int(request_page, name="page", default=1)
    if cursor is not None and page != 1:
        raise InvalidRequest("give either page or cursor, not both", field="cursor")
    return page


def deduplicated_events(database: str, params: Params, project_id: str,
                        key_conditions: Sequence[str], columns: Iterable[str],
                        method: DedupMethod, *, marked: Sequence[int] | None = None) -> str:
    """A FROM-clause source giving the newest version of each event of one project.

    ``key_conditions`` (on version-invariant columns only) are applied before versions
    are collapsed; ``columns`` are the columns the caller reads from the source.
    ``marked``: the ``key_hash`` of every key of the project that may be stored more than
    once (the embedded store's register, :mod:`apiary.store._duplicates`): then no
    ``FINAL``, as every other key has one row; the marked keys' newest versions are taken
    by ``LIMIT 1 BY`` over their rows alone.
    """
    where = " AND ".join([f"project_id = {params.bind(project_id, 'String')}",
                          *key_conditions])
    if marked is not None:
        if not marked:
            return f"{_db(database)}.events PREWHERE {where} WHERE 1"
        wanted = set(columns) | {"project_id", "session_id", "event_id"}
        picked = ", ".join(sorted(wanted))
        inner = ", ".join(sorted(wanted | {"key_hash", "version"}))
        hashes = params.bind(list(marked), "Array(UInt64)")
        return (f"(SELECT {picked} FROM {_db(database)}.events WHERE {where} "
                f"AND NOT (key_hash IN {hashes}) UNION ALL SELECT {picked} FROM "
                f"(SELECT {inner} FROM {_db(database)}.events "
                f"WHERE {where} AND key_hash IN {hashes} "
                f"ORDER BY version DESC LIMIT 1 BY key_hash)) WHERE 1")
    if method == "final":
        # PREWHERE: the key conditions drop rows before versions are merged (exact, as every
        # version of an event has the same key), so FINAL reads the wide JSON columns only
        # for the rows it keeps (bench/query: a session tree 4x faster on 1M events).
        return f"{_db(database)}.events FINAL PREWHERE {where} WHERE 1"
    if method != "limit_by":
        raise ValueError(f"unknown dedup method {method!r}")
    needed = sorted(set(columns) | {"project_id", "session_id", "event_id", "version"})
    return (f"(SELECT {', '.join(needed)} FROM {_db(database)}.events WHERE {where} "
            f"ORDER BY version DESC LIMIT 1 BY {_KEY}) WHERE 1")


def _date_range_conditions(date_range: Any, params: Params,
                           column: str = "start_time") -> list[str]:
    if date_range is None:
        return []
    if not isinstance(date_range, Mapping):
        raise InvalidRequest("dateRange must be an object with $gte and/or $lte",
                             field="dateRange")
    ops = {"$gte": ">=", "$gt": ">", "$lte": "<=", "$lt": "<"}
    out = []
    for key, value in date_range.items():
        if key not in ops:
            raise InvalidRequest(f"unknown dateRange key {str(key)[:20]!r}; use $gte/$lte",
                                 field="dateRange")
        micros = parse_time(value, what=f"dateRange.{key}")
        out.append(f"{column} {ops[key]} fromUnixTimestamp64Micro("
                   f"{params.bind(micros, 'Int64')}, 'UTC')")
    return out


def _projection_columns(projections: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(requested names as given, columns to select) for an export's ``projections``."""
    if not isinstance(projections, list) or not all(isinstance(p, str) for p in projections):
        raise InvalidRequest("projections must be a list of field names", field="projections")
    columns: list[str] = ["event_id"]
    for name in projections:
        if name in _TENANT_COLUMNS or name in COMPUTED_COLUMNS:
            column = name
        else:
            column, _ = split_field(name)
            if column not in _PROJECTABLE:
                raise InvalidRequest(f"unknown projection {name!r}", field="projections")
        if column not in columns:
            columns.append(column)
    return tuple(projections), tuple(columns)


def _select_list(columns: Iterable[str]) -> str:
    return ", ".join(columns)


def plan_opaque_paths(database: str, project_id: str, paths: Sequence[str]) -> Statement:
    """Which of ``paths`` (from :func:`~apiary.store._filters.attribute_path`) some stored
    row of the project holds as an opaque value (object, array, long string): filters on
    those read the JSON text; on the others, the attribute arrays answer alone. Cheap: the
    column is a few bytes a row (LowCardinality paths, mostly empty)."""
    params = Params()
    project = params.bind(_require_project(project_id), "String")
    wanted = params.bind(sorted(set(paths)), "Array(String)")
    return Statement(
        f"SELECT DISTINCT arrayJoin(arrayIntersect(attr_opaque, {wanted})) AS path "
        f"FROM {_db(database)}.events WHERE project_id = {project} "
        f"AND hasAny(attr_opaque, {wanted})",
        params.values,
    )


def plan_export(database: str, project_id: str, request: Mapping[str, Any], *,
                method: DedupMethod = "final",
                indexed_paths: Container[str] | None = None) -> ExportPlan:
    """Statements for ``POST /v1/events/export`` of one project.

    ``request`` holds ``filters``, ``dateRange`` (on start_time), ``projections``,
    ``limit`` (default 1000, at most 10000: larger values are capped) and ``page``
    (1-based) or ``cursor`` (a previous page's ``next_cursor``: the rows after it, keyset
    paging; InvalidRequest with a ``page`` other than 1). Events come in ``start_time``
    order, ties broken by ``event_id``, so pages are stable while new events arrive later
    in time; ``sort_by`` (:data:`EXPORT_SORTS`) and ``sort_order`` (``asc``, the default,
    or ``desc``) choose another order, ties still broken by ``event_id`` (in the same
    direction), and its cursors carry the sort (a cursor of another order is
    InvalidRequest). ``search``: a case-insensitive substring of the name, the inputs or
    the outputs. ``indexed_paths``: nested filter paths the attribute arrays answer
    exactly (:func:`plan_opaque_paths`).
    """
    project_id = _require_project(project_id)
    if not isinstance(request, Mapping):
        raise InvalidRequest("the export request must be an object")
    params = Params()
    filters = request.get("filters") or []
    if not isinstance(filters, list):
        raise InvalidRequest("filters must be a list", field="filters")
    compiled: list[CompiledFilter] = [compile_filter(f, params, indexed_paths)
                                      for f in filters]
    late = [c.sql for c in compiled if not c.key_only]
    late += _date_range_conditions(request.get("dateRange"), params)
    search = request.get("search")
    search_columns: set[str] = set()
    if search is not None and search != "":
        if not isinstance(search, str) or len(search) > 1024:
            raise InvalidRequest("search must be a string of at most 1024 characters",
                                 field="search")
        needle = params.bind(search, "String")
        search_columns = {"event_name", "inputs", "outputs"}
        late.append("(" + " OR ".join(f"positionCaseInsensitiveUTF8({c}, {needle}) > 0"
                                      for c in sorted(search_columns)) + ")")
    sort = _sort(request.get("sort_by"), request.get("sort_order"), EXPORT_SORTS, "asc")
    limit = min(_positive_int(request.get("limit"), name="limit",
                              default=DEFAULT_EXPORT_LIMIT), MAX_EXPORT_LIMIT)
    cursor = request.get("cursor")
    page = _paging(request.get("page"), cursor)
    after = decode_sort_cursor(cursor, "export", sort) if cursor is not None else None
    raw_projections = request.get("projections")
    projections: tuple[str, ...] | None = None
    if raw_projections:
        projections, columns = _projection_columns(raw_projections)
    else:
        columns = API_FIELDS
    filter_columns = {_filter_column(f) for f in filters} | search_columns
    if indexed_paths is not None and any(attribute_path(f) in indexed_paths for f in filters):
        filter_columns |= {"attr_keys", "attr_values", "attr_hashes"}
    key_conditions = [c.sql for c in compiled if c.key_only]
    # Finding the page reads only the columns the filters and the order need: versions
    # are collapsed over those (FINAL merges the key columns of the whole project, which
    # is the cost; the wide JSON columns are read for the page's rows alone, below).
    source = deduplicated_events(
        database, params, project_id, key_conditions,
        filter_columns | {"start_time"} | ({sort.by} - {"start_time"}), method,
    )
    where = "".join(f" AND {cond}" for cond in late)
    values = params.values
    # count() OVER (): the total comes from the same pass as the page (one FINAL merge,
    # not two; bench: 150 ms of CPU against 250 at 1M events).
    found = (f"SELECT session_id, event_id, toUnixTimestamp64Micro(start_time) AS start_us, "
             f"count() OVER () AS total FROM {source}{where}")
    paging: dict[str, Any] = {"limit": limit, "offset": _offset(page, limit)}
    if sort.default:
        if after is not None:
            # Keyset: the rows after the cursor's (start_time, event_id); the window above
            # still counts every match, so the total is the same on every page.
            found = (f"SELECT * FROM ({found}) WHERE (start_us, event_id) > "
                     "({after_us:Int64}, {after_id:String})")
            paging.update(after_us=after[0], after_id=after[1])
        page_sql = (f"{found} ORDER BY start_us, event_id "
                    "LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    else:
        found = (f"SELECT session_id, event_id, toUnixTimestamp64Micro(start_time) AS start_us, "
                 f"{EXPORT_SORTS[sort.by]} AS sort_key, count() OVER () AS total "
                 f"FROM {source}{where}")
        if after is not None:
            # Keyset on (sort key, event_id), in the sort's direction.
            found = (f"SELECT * FROM ({found}) WHERE (sort_key, event_id) {sort.comparison} "
                     f"({_cursor_key(sort)}, {{after_id:String}})")
            paging.update(after_key=_cursor_param(sort, after[0]), after_id=after[1])
        page_sql = (f"{found} ORDER BY sort_key {sort.direction}, event_id {sort.direction} "
                    "LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    page_stmt = Statement(page_sql, {**values, **paging})
    value_sql = EXPORT_SORTS[sort.by]
    after_sql: tuple[str, str] | None = None
    if after is not None:
        bound = "{after_us:Int64}" if sort.default else _cursor_key(sort)
        after_sql = (f"({value_sql}, event_id) {sort.comparison} ({bound}, {{after_id:String}})",
                     f"{value_sql} {sort.comparison} {bound}")
    parts = ExportParts(project_id, {**values, **paging}, tuple(key_conditions), tuple(late),
                        value_sql, sort.order == "desc", sort.by in _INTEGER_SORTS, after_sql,
                        limit, paging["offset"])
    total_stmt = Statement(f"SELECT count() AS n FROM {source}{where}", dict(values))
    fetch_params = Params(dict(values))
    fetch_source = deduplicated_events(
        database, fetch_params, project_id,
        [*key_conditions, "session_id IN {page_sessions:Array(String)}",
         "event_id IN {page_events:Array(String)}"],
        set(columns) | filter_columns | {"start_time"}, method,
    )
    fetch_sql = (f"SELECT {_select_list(columns)} FROM {fetch_source}{where} "
                 "ORDER BY start_time, event_id")
    fetch_stmt = Statement(fetch_sql, {name: value for name, value in fetch_params.values.items()
                                       if "{" + name + ":" in fetch_sql})
    return ExportPlan(page_stmt, total_stmt, projections, limit, page, fetch_stmt,
                      continued=after is not None, sort=sort, parts=parts)


def _filter_column(raw: Any) -> str:
    column, _ = split_field(raw.get("field") if isinstance(raw, Mapping) else None)
    return column


def _pick(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


_MISSING = object()


def shape_export(plan: ExportPlan, rows: list[dict[str, Any]], total: int,
                 keys: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The export response: ``events``, ``totalEvents`` and ``count`` (the SDK reads both),
    and ``next_cursor`` (``keys``: the page's rows of :attr:`ExportPlan.page`): the
    position after this page when it is full, to send back as ``cursor``; None on a
    short (last) page.

    With projections, each event holds ``event_id`` and the projected fields only; a
    nested projection (``metadata.user_id``) keeps just that path of its object.
    """
    if not plan.sort.default and keys:
        # The wide columns come back in start_time order: put them in the page's order.
        position = {(str(k["session_id"]), str(k["event_id"])): i for i, k in enumerate(keys)}
        rows = sorted(rows, key=lambda r: position.get(
            (str(r.get("session_id")), str(r.get("event_id"))), len(position)))
    events = [row_to_event(row) for row in rows]
    if plan.projections is not None:
        events = [_project(event, plan.projections) for event in events]
    next_cursor = None
    if keys and len(keys) >= plan.limit:
        last = keys[-1]
        value = last["start_us"] if plan.sort.default else last["sort_key"]
        next_cursor = encode_sort_cursor(plan.sort, "export", value, str(last["event_id"]))
    return {"events": events, "totalEvents": total, "count": total,
            "next_cursor": next_cursor}


def _project(event: dict[str, Any], projections: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": event.get("event_id")}
    whole = {p for p in projections if "." not in p}
    for name in projections:
        if "." not in name:
            out[name] = event.get(name)
            continue
        column, *path = name.split(".")
        if column in whole:
            continue
        value = _pick(event.get(column), path)
        if value is _MISSING:
            continue
        target = out.setdefault(column, {})
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return out


# --- writer support and counting ---------------------------------------------------------


def plan_existing_versions(database: str, project_id: str, event_ids: Sequence[str],
                           session_ids: Sequence[str] | None = None) -> Statement:
    """Highest stored version of each of ``event_ids`` (absent ids are not returned).

    Passing the events' ``session_ids`` lets ClickHouse use the primary key; without
    them the event_id bloom filter index narrows the scan.
    """
    project_id = _require_project(project_id)
    params = Params()
    conds = [f"project_id = {params.bind(project_id, 'String')}",
             f"event_id IN {params.bind(list(event_ids), 'Array(String)')}"]
    if session_ids:
        conds.append(f"session_id IN {params.bind(sorted(set(session_ids)), 'Array(String)')}")
    return Statement(
        f"SELECT event_id, max(version) AS version FROM {_db(database)}.events "
        f"WHERE {' AND '.join(conds)} GROUP BY event_id",
        params.values,
    )


def plan_count_events(database: str, project_id: str) -> Statement:
    """Distinct events of a project (versions and duplicate rows count once)."""
    params = Params()
    return Statement(
        f"SELECT uniqExact(event_id) AS n FROM {_db(database)}.events "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')}",
        params.values,
    )


def plan_count_rows(database: str, project_id: str) -> Statement:
    """Stored rows of a project, every version and duplicate included: cheap (no merge,
    no hashing), for progress polling; :func:`plan_count_events` is the exact count."""
    params = Params()
    return Statement(
        f"SELECT count() AS n FROM {_db(database)}.events "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')}",
        params.values,
    )


def plan_count_duplicate_rows(database: str, project_id: str) -> Statement:
    """Rows beyond one per event, read without FINAL: 0 once merges (or no dups) leave
    one row per event; positive while versions or redelivered rows coexist."""
    params = Params()
    return Statement(
        f"SELECT count() - uniqExact(event_id) AS n FROM {_db(database)}.events "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')}",
        params.values,
    )


def plan_event_schema(database: str, project_id: str, *, event_type: str | None = None,
                      event_name: str | None = None) -> Statement:
    """Field paths seen in a project's events (from ``event_schemas``)."""
    params = Params()
    conds = [f"project_id = {params.bind(_require_project(project_id), 'String')}"]
    if event_type is not None:
        conds.append(f"event_type = {params.bind(event_type, 'String')}")
    if event_name is not None:
        conds.append(f"event_name = {params.bind(event_name, 'String')}")
    return Statement(
        "SELECT event_type, event_name, path, value_type, sum(occurrences) AS occurrences, "
        "min(first_seen) AS first_seen, max(last_seen) AS last_seen "
        f"FROM {_db(database)}.event_schemas WHERE {' AND '.join(conds)} "
        "GROUP BY event_type, event_name, path, value_type "
        "ORDER BY event_type, event_name, path, value_type",
        params.values,
    )


def plan_event_details(database: str, project_id: str) -> Statement:
    """Event types and names of a project with counts and first/last seen."""
    params = Params()
    return Statement(
        "SELECT event_type, event_name, uniqMerge(event_count) AS event_count, "
        "min(first_seen) AS first_seen, max(last_seen) AS last_seen "
        f"FROM {_db(database)}.project_event_details "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')} "
        "GROUP BY event_type, event_name ORDER BY event_type, event_name",
        params.values,
    )

