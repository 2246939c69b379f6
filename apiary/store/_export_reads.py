"""An export page and its total without ``FINAL`` over the project (issue 18).

With ``FINAL``, an export merged the key columns of every row of the project to collapse
versions: 1.2-1.5 s of CPU at 10M events whatever the page. The embedded store knows the
keys that may be stored more than once (a :class:`~apiary.store._duplicates.
DuplicateSnapshot`, ``D``, by their ``key_hash``); every other key has one row. So:

1. **One scan** of the columns the filters and the order read (``key_hash`` among them,
   8 bytes a row), without ``FINAL``: ``n``, the matches outside ``D``; the ``m``-th
   smallest sort value among those past the cursor (``groupArraySorted``, ``m = offset +
   limit``); and every row of ``D``'s keys, matching or not, as (key hash, version,
   matches, past the cursor, sort value). The newest version of each of ``D``'s keys is
   the one with the largest version (as ``FINAL`` chooses), so ``total = n + `` the newest
   versions that match, exactly.
2. **The page**: the rows outside ``D`` that match, are past the cursor and have a sort
   value no later than the ``m``-th (a bound a few hundred rows pass, so the keys are read
   for those alone), with the newest versions of ``D``'s keys that match and come no later,
   in export order, ``LIMIT limit OFFSET offset``. No event of the page comes after the
   ``m``-th value outside ``D``: ``offset + limit`` rows come before or with it.

The cursor bounds the scan strictly past the cursor's sort value; the page adds the rows
tied with it after its event id, which come before any row past the value, so the bound
still holds. When two rows of a key share the largest version and disagree (never written
by Apiary: a new version is always a larger one) the caller reads with ``FINAL``; a page
deeper than :data:`MAX_SCAN_ROWS` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apiary.store._duplicates import DuplicateSnapshot
from apiary.store._filters import Params
from apiary.store._queries import ExportParts, Statement, float_bits

#: The largest ``offset + limit`` the scan keeps in memory; a deeper page uses FINAL.
MAX_SCAN_ROWS = 100_000

Rows = Callable[[Statement], list[dict[str, Any]]]
#: What the page reads of a marked key's newest version: its key and every sort value's
#: column (:data:`~apiary.store._queries.EXPORT_SORTS`), not the wide JSON columns.
_SORTABLE = ("session_id, event_id, start_time, duration, cost, total_tokens, version, "
             "key_hash")


@dataclass(frozen=True, slots=True)
class ExportPage:
    """The page's keys (``session_id``, ``event_id``, ``start_us``, and ``sort_key`` in
    another order than the default) and the total of matches."""

    keys: list[dict[str, Any]]
    total: int


def read_export_page(database: str, parts: ExportParts, duplicates: DuplicateSnapshot,
                     rows: Rows, *, default_sort: bool) -> ExportPage | None:
    """The page and total of ``parts`` read without FINAL over the project (module
    docstring), or None when this read cannot vouch for them (the caller uses FINAL)."""
    wanted = parts.offset + parts.limit
    if wanted > MAX_SCAN_ROWS:
        return None
    db = f"`{database}`"
    params = Params(dict(parts.parameters))
    keyed = " AND ".join([f"project_id = {params.bind(parts.project_id, 'String')}",
                          *parts.key_conditions])
    matches = " AND ".join(f"({c})" for c in parts.conditions) or "1"
    signed = _signed(parts)
    past = parts.after[1] if parts.after else "1"
    exact = parts.after[0] if parts.after else "1"
    marked = ""
    if len(duplicates):
        marked = f"key_hash IN {params.bind(list(duplicates.hashes), 'Array(UInt64)')}"
        outside = f"({matches}) AND NOT ({marked})"
        scan_sql = (
            f"SELECT countIf({outside}) AS n, "
            f"groupArraySortedIf({{scan_rows:UInt32}})({signed}, {outside} AND {past}) "
            f"AS firsts, groupArrayIf((key_hash, version, toUInt8({matches}), "
            f"toUInt8({exact}), {signed}), {marked}) AS marked "
            f"FROM {db}.events WHERE {keyed} AND (({matches}) OR {marked})")
    else:
        scan_sql = (f"SELECT count() AS n, groupArraySortedIf({{scan_rows:UInt32}})"
                    f"({signed}, {past}) AS firsts FROM {db}.events WHERE {keyed} "
                    f"AND {matches}")
    scanned = rows(_statement(scan_sql, {**params.values, "scan_rows": wanted}))[0]
    firsts = scanned["firsts"]
    last = firsts[wanted - 1] if len(firsts) >= wanted else None  # else no bound needed
    total = int(scanned["n"])
    chosen: list[int] = []
    if marked:
        newest = _newest_versions(scanned["marked"])
        if newest is None:
            return None
        total += sum(1 for row in newest if row[2])
        chosen = [int(row[0]) for row in newest
                  if row[2] and row[3] and (last is None or row[4] <= last)]
    bound = "1" if last is None else f"{signed} <= {_bound(params, parts, last)}"
    columns = ("session_id, event_id, toUnixTimestamp64Micro(start_time) AS start_us"
               + ("" if default_sort else f", {parts.value} AS sort_key"))
    branches = [f"SELECT {columns} FROM {db}.events WHERE {keyed} AND {matches} "
                f"AND {exact} AND {bound}" + (f" AND NOT ({marked})" if marked else "")]
    if chosen:
        picked = params.bind(chosen, "Array(UInt64)")
        branches.append(
            f"SELECT {columns} FROM (SELECT {_SORTABLE} FROM {db}.events WHERE {keyed} "
            f"AND key_hash IN {picked} ORDER BY version DESC LIMIT 1 BY key_hash)")
    direction = "DESC" if parts.descending else "ASC"
    by = "start_us" if default_sort else "sort_key"
    page = rows(_statement(
        f"SELECT * FROM ({' UNION ALL '.join(branches)}) "
        f"ORDER BY {by} {direction}, event_id {direction} "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}", params.values))
    return ExportPage(page, total)


def _newest_versions(rows: list[Any]) -> list[tuple[Any, ...]] | None:
    """Per key hash, its row of the largest version; None when two rows share it and
    disagree (matching, cursor or sort value)."""
    newest: dict[int, tuple[Any, ...]] = {}
    disagree: set[int] = set()  # keys whose rows at the largest version seen differ
    for row in map(tuple, rows):
        seen = newest.get(row[0])
        if seen is None or row[1] > seen[1]:
            newest[row[0]] = row
            disagree.discard(row[0])
        elif row[1] == seen[1] and row[2:] != seen[2:]:
            disagree.add(row[0])
    return None if disagree else list(newest.values())


def _bound(params: Params, parts: ExportParts, value: Any) -> str:
    if parts.integer_value:
        return params.bind(int(value), "Int64")
    # A float crosses as its IEEE bits: decimal text need not parse back to the value.
    return f"reinterpretAsFloat64({params.bind(float_bits(value), 'UInt64')})"


def _signed(parts: ExportParts) -> str:
    value = (f"toInt64({parts.value})" if parts.integer_value
             else f"toFloat64({parts.value})")
    return f"-({value})" if parts.descending else value


def _statement(sql: str, values: dict[str, Any]) -> Statement:
    """``sql`` with the parameters it names (the driver refuses others)."""
    return Statement(sql, {k: v for k, v in values.items() if "{" + k + ":" in sql})


__all__ = ["MAX_SCAN_ROWS", "ExportPage", "read_export_page"]
