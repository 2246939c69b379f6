"""Datapoints in and out: JSONL/CSV import and export, rows and events → datapoints.

Rows become datapoints through a **mapping** (the HoneyHive ``DatapointMapping``): lists
of field names for ``inputs``, ``ground_truth`` and ``history``.

- ``inputs``/``ground_truth``: ``{field: row[field]}`` for each named field present.
- ``history``: each named field holds a list of message objects (or one object, or a JSON
  string of either, as CSV cells are); they are concatenated.
- Fields the mapping does not name go to ``metadata``.
- Without any mapping, a row shaped like a datapoint (an ``inputs`` object, optionally
  ``ground_truth``, ``history``, ``metadata``, ``linked_event``) is taken as it is; any
  other row becomes the ``inputs`` of its datapoint.

Events (``POST /v1/datapoints/batch``) map the same way, except that mapping entries are
event field paths (``inputs.question``, ``outputs``, ``metadata.user_id``): a whole object
(``inputs``) is merged in, a nested path is stored under its last key. Without a mapping an
event gives ``inputs`` ← its inputs and ``ground_truth`` ← its outputs. The datapoint is
linked to its event (``linked_event``).

:func:`import_file` and :func:`export_file` do the same as the upload/download endpoints,
for scripts and the command line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from apiary.dataplane.datasets.catalog import (
    DatapointSpec,
    create_datapoints,
    get_dataset,
    list_datapoints,
)
from apiary.dataplane.db import Owner
from apiary.dataplane.db.engine import DataPlaneDatabase
from apiary.dataplane.db.models import Datapoint, DatasetVersionItem
from apiary.errors import InvalidRequest

FORMATS = ("jsonl", "csv")
_DATAPOINT_KEYS = frozenset({"inputs", "ground_truth", "history", "metadata", "linked_event",
                             "id"})
_EVENT_COLUMNS = frozenset({"inputs", "outputs", "metadata", "config", "feedback", "metrics",
                            "user_properties", "event_name", "event_type", "source",
                            "session_id", "event_id", "error", "duration"})


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Which fields of a row (or event) go to inputs, ground truth and history."""

    inputs: tuple[str, ...] | None = None
    ground_truth: tuple[str, ...] | None = None
    history: tuple[str, ...] | None = None

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> FieldMapping:
        if not raw:
            return cls()
        def names(key: str) -> tuple[str, ...] | None:
            value = raw.get(key)
            if value is None:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidRequest(f"mapping.{key} must be a list of field names",
                                     field=f"mapping.{key}")
            return tuple(value)
        return cls(names("inputs"), names("ground_truth"), names("history"))

    @property
    def empty(self) -> bool:
        return not (self.inputs or self.ground_truth or self.history)


# --- parsing -----------------------------------------------------------------------------


def detect_format(content_type: str | None, declared: str | None = None) -> str:
    """``jsonl`` or ``csv`` from an explicit choice or a Content-Type."""
    if declared:
        fmt = declared.strip().lower()
        if fmt in ("ndjson", "json"):
            fmt = "jsonl"
        if fmt not in FORMATS:
            raise InvalidRequest("format must be jsonl or csv", field="format")
        return fmt
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return "csv"
    if media in ("application/x-ndjson", "application/jsonl", "application/x-jsonlines",
                 "application/json", "text/plain", ""):
        return "jsonl"
    raise InvalidRequest(f"cannot import Content-Type {media!r}; send text/csv or "
                         "application/x-ndjson, or say ?format=", field="format")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the file is not UTF-8 text") from None


def _jsonl_lines(data: bytes) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, row)`` per non-blank line, or ``(line number, what is wrong)``."""
    for number, line in enumerate(_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, f"line {number} is not valid JSON: {exc}"
            continue
        if not isinstance(row, dict):
            yield number, f"line {number} is not a JSON object"
            continue
        yield number, row


def _csv_lines(data: bytes) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, row)`` per CSV row (cells are strings), or ``(line number, what is
    wrong)``; a malformed header is an InvalidRequest (no row can be read without it)."""
    reader = csv.reader(io.StringIO(_text(data), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InvalidRequest(f"the CSV header is malformed: {exc}", field="body") from None
    names = [h.strip() for h in header]
    if not all(names) or len(set(names)) != len(names):
        raise InvalidRequest("the CSV header needs distinct, non-empty column names",
                             field="body")
    number = 1
    try:
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                yield number, (f"CSV line {number} has {len(cells)} cells; the header has "
                               f"{len(names)}")
                continue
            yield number, dict(zip(names, cells, strict=True))
    except csv.Error as exc:  # the reader cannot go on after this
        yield number + 1, f"the CSV is malformed: {exc}"


def parse_lines(data: bytes, fmt: str) -> list[tuple[int, dict[str, Any] | str]]:
    """Every row with its line number, or what is wrong with that line (for imports that
    keep the good lines and report the others)."""
    return list(_csv_lines(data) if fmt == "csv" else _jsonl_lines(data))


def _strict(lines: Iterable[tuple[int, dict[str, Any] | str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _number, row in lines:
        if isinstance(row, str):
            raise InvalidRequest(row, field="body")
        rows.append(row)
    return rows


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    """One JSON object per non-blank line; InvalidRequest names the first bad line."""
    return _strict(_jsonl_lines(data))


def parse_csv(data: bytes) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header line; cells are strings."""
    return _strict(_csv_lines(data))


def parse(data: bytes, fmt: str) -> list[dict[str, Any]]:
    return parse_csv(data) if fmt == "csv" else parse_jsonl(data)


_JSON_CELLS = ("inputs", "ground_truth", "history", "metadata")


def csv_datapoint_row(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A CSV row as :func:`to_csv` writes it (the columns are datapoint fields, the object
    cells JSON) decoded into a datapoint-shaped row; any other row as it is."""
    if "inputs" not in row or not set(row) <= _DATAPOINT_KEYS:
        return row
    out: dict[str, Any] = {}
    for key, cell in row.items():
        if cell in (None, ""):
            continue
        if key in _JSON_CELLS:
            try:
                out[key] = orjson.loads(cell)
            except orjson.JSONDecodeError:
                raise InvalidRequest(f"the {key} cell is not valid JSON", field=key) from None
        else:
            out[key] = cell
    out.setdefault("inputs", {})
    return out


# --- rows → datapoints -------------------------------------------------------------------


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidRequest(f"{where}: history must be a list of message objects",
                                 field="mapping.history") from None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return list(value)
    raise InvalidRequest(f"{where}: history must be a list of message objects",
                         field="mapping.history")


def _object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{field} must be an object", field=field)
    return value


def row_to_spec(row: Mapping[str, Any], mapping: FieldMapping, where: str) -> DatapointSpec:
    if mapping.empty:
        if isinstance(row.get("inputs"), dict) and set(row) <= _DATAPOINT_KEYS:
            linked = row.get("linked_event")
            return DatapointSpec(
                inputs=dict(row["inputs"]),
                history=_messages(row.get("history") or [], where),
                ground_truth=_object(row.get("ground_truth"), "ground_truth"),
                metadata=_object(row.get("metadata"), "metadata"),
                linked_event=str(linked) if linked is not None else None,
            )
        return DatapointSpec(inputs=dict(row))
    used = set((mapping.inputs or ()) + (mapping.ground_truth or ()) + (mapping.history or ()))
    history: list[Any] = []
    for name in mapping.history or ():
        if name in row and row[name] not in (None, ""):
            history.extend(_messages(row[name], where))
    rest = {k: v for k, v in row.items() if k not in used}
    return DatapointSpec(
        inputs={k: row[k] for k in mapping.inputs or () if k in row},
        history=history,
        ground_truth=({k: row[k] for k in mapping.ground_truth if k in row}
                      if mapping.ground_truth is not None else None),
        metadata=rest or None,
    )


def rows_to_specs(rows: Sequence[Mapping[str, Any]], mapping: FieldMapping
                  ) -> list[DatapointSpec]:
    return [row_to_spec(row, mapping, f"row {n}") for n, row in enumerate(rows, start=1)]


def rows_to_specs_skipping(lines: Sequence[tuple[int, dict[str, Any] | str]],
                           mapping: FieldMapping, *, csv_rows: bool = False
                           ) -> tuple[list[DatapointSpec], list[dict[str, Any]]]:
    """The datapoints of the good lines, and ``{line, message}`` for each bad one."""
    specs: list[DatapointSpec] = []
    errors: list[dict[str, Any]] = []
    for number, row in lines:
        if isinstance(row, str):
            errors.append({"line": number, "message": row})
            continue
        try:
            shaped = csv_datapoint_row(row) if csv_rows and mapping.empty else row
            specs.append(row_to_spec(shaped, mapping, f"line {number}"))
        except InvalidRequest as exc:
            errors.append({"line": number, "message": f"line {number}: {exc.message}"})
    return specs, errors


# --- events → datapoints -----------------------------------------------------------------


def _check_event_paths(mapping: FieldMapping) -> None:
    for group in (mapping.inputs, mapping.ground_truth, mapping.history):
        for path in group or ():
            head = path.split(".", 1)[0]
            if head not in _EVENT_COLUMNS or not all(path.split(".")):
                raise InvalidRequest(f"mapping entry {path[:80]!r} is not an event field",
                                     field="mapping")


def _pick(event: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = event
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _gather(event: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        found, value = _pick(event, path)
        if not found:
            continue
        if "." not in path and isinstance(value, dict):
            out.update(value)
        else:
            out[path.rsplit(".", 1)[-1]] = value
    return out


def events_to_specs(events: Sequence[Mapping[str, Any]], mapping: FieldMapping
                    ) -> list[DatapointSpec]:
    """One datapoint per event (see the module docstring)."""
    _check_event_paths(mapping)
    inputs = mapping.inputs if mapping.inputs is not None else (
        ("inputs",) if mapping.empty else ())
    truth = mapping.ground_truth if mapping.ground_truth is not None else (
        ("outputs",) if mapping.empty else None)
    specs = []
    for event in events:
        history: list[Any] = []
        for path in mapping.history or ():
            found, value = _pick(event, path)
            if found and value not in (None, ""):
                history.extend(_messages(value, f"event {event.get('event_id')}"))
        specs.append(DatapointSpec(
            inputs=_gather(event, inputs),
            history=history,
            ground_truth=_gather(event, truth) if truth is not None else None,
            metadata={k: event[k] for k in ("event_name", "event_type", "session_id",
                                            "source") if event.get(k)},
            linked_event=event.get("event_id"),
        ))
    return specs


# --- export ------------------------------------------------------------------------------


def datapoint_record(datapoint: Datapoint | DatasetVersionItem) -> dict[str, Any]:
    """The JSONL export line of a datapoint (re-importable as it is)."""
    return {
        "id": datapoint.datapoint_id if isinstance(datapoint, DatasetVersionItem)
        else datapoint.id,
        "inputs": datapoint.inputs,
        "history": datapoint.history,
        "ground_truth": datapoint.ground_truth,
        "metadata": datapoint.meta,
        "linked_event": datapoint.linked_event,
    }


def to_jsonl(datapoints: Iterable[Datapoint | DatasetVersionItem]) -> bytes:
    return b"".join(orjson.dumps(datapoint_record(d)) + b"\n" for d in datapoints)


CSV_COLUMNS = ("id", "inputs", "ground_truth", "history", "metadata", "linked_event")


def to_csv(datapoints: Iterable[Datapoint | DatasetVersionItem]) -> bytes:
    """One row per datapoint under :data:`CSV_COLUMNS`; object cells are JSON (an import
    of the file with no mapping gives the same datapoints back)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for datapoint in datapoints:
        record = datapoint_record(datapoint)
        writer.writerow(["" if record[c] is None else
                         orjson.dumps(record[c]).decode() if c in _JSON_CELLS else
                         str(record[c]) for c in CSV_COLUMNS])
    return out.getvalue().encode()


# --- for scripts and the command line ------------------------------------------------------


def import_file(database: DataPlaneDatabase, owner: Owner, dataset_id: str, path: Path,
                *, fmt: str | None = None, mapping: Mapping[str, Any] | None = None
                ) -> list[str]:
    """Import a JSONL or CSV file (format from ``fmt`` or the suffix) into a dataset of
    ``owner``'s project; returns the new datapoint ids, in file order."""
    path = Path(path)
    chosen = detect_format(None, fmt or path.suffix.lstrip(".") or "jsonl")
    specs = rows_to_specs(parse(path.read_bytes(), chosen), FieldMapping.of(mapping))
    with database.transaction() as db:
        get_dataset(db, owner.project_id, dataset_id)
        return [d.id for d in create_datapoints(db, owner, specs, [dataset_id])]


def export_file(database: DataPlaneDatabase, project_id: str, dataset_id: str, path: Path
                ) -> int:
    """Write a dataset's datapoints to ``path`` as JSONL; returns how many."""
    with database.transaction() as db:
        get_dataset(db, project_id, dataset_id)
        datapoints = list_datapoints(db, project_id, dataset_id=dataset_id, limit=None)
        Path(path).write_bytes(to_jsonl(datapoints))
    return len(datapoints)
