"""Datasets, datapoints and dataset versions: the operations on dpdb.

Every function takes an open session and works inside the caller's transaction; every
lookup is scoped to one project (another project's ids are simply "not found"). Errors are
:mod:`apiary.errors` (400 bad input, 404 unknown id, 409 duplicate name).

A dataset is an ordered list of datapoints; a datapoint may belong to several datasets.
:func:`snapshot` freezes a dataset into an immutable :class:`DatasetVersion` (ids and
contents copied), reusing the latest snapshot when nothing changed since.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from apiary.dataplane.db import Owner, utcnow
from apiary.dataplane.db.models import (
    Datapoint,
    Dataset,
    DatasetDatapoint,
    DatasetVersion,
    DatasetVersionItem,
)
from apiary.errors import Conflict, InvalidRequest, NotFound

MAX_NAME = 200
#: Datapoints one request may create or reference.
MAX_BATCH = 10_000




@dataclass(slots=True)
class DatapointSpec:
    """The content of a datapoint to create."""

    inputs: dict[str, Any] = field(default_factory=dict)
    history: list[Any] = field(default_factory=list)
    ground_truth: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    linked_event: str | None = None


def new_id() -> str:
    return str(uuid.uuid4())


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidRequest(f"a dataset name must have 1 to {MAX_NAME} characters",
                             field="name")
    return name


def _unique_ids(ids: Sequence[str], what: str) -> list[str]:
    if len(ids) > MAX_BATCH:
        raise InvalidRequest(f"at most {MAX_BATCH} {what} per request", field=what,
                             limit=MAX_BATCH)
    return list(dict.fromkeys(ids))


# --- datasets --------------------------------------------------------------------------


def create_dataset(db: Session, owner: Owner, *, name: str | None, description: str | None,
                   datapoint_ids: Sequence[str] = ()) -> Dataset:
    """A new dataset (named ``dataset-<id prefix>`` when no name is given)."""
    dataset_id = new_id()
    name = _check_name(name) if name is not None else f"dataset-{dataset_id[:8]}"
    _require_unique_name(db, owner.project_id, name)
    now = utcnow()
    dataset = Dataset(
        id=dataset_id, org_id=owner.org_id, workspace_id=owner.workspace_id,
        project_id=owner.project_id, name=name, description=description,
        created_by=owner.subject, created_at=now, updated_at=now,
    )
    db.add(dataset)
    db.flush()
    if datapoint_ids:
        add_members(db, dataset, datapoint_ids)
    return dataset


def _require_unique_name(db: Session, project_id: str, name: str,
                         exclude: str | None = None) -> None:
    statement = select(Dataset.id).where(Dataset.project_id == project_id,
                                         Dataset.name == name)
    if exclude is not None:
        statement = statement.where(Dataset.id != exclude)
    if db.execute(statement).first() is not None:
        raise Conflict("a dataset with this name exists in the project", field="name")


def get_dataset(db: Session, project_id: str, dataset_id: str) -> Dataset:
    dataset = db.get(Dataset, dataset_id)
    if dataset is None or dataset.project_id != project_id:
        raise NotFound("dataset not found", project_id=project_id)
    return dataset


def find_datasets(db: Session, project_id: str, *, dataset_id: str | None = None,
                  name: str | None = None) -> list[Dataset]:
    """The project's datasets (oldest first), optionally narrowed by id and/or name."""
    statement = select(Dataset).where(Dataset.project_id == project_id)
    if dataset_id is not None:
        statement = statement.where(Dataset.id == dataset_id)
    if name is not None:
        statement = statement.where(Dataset.name == name)
    return list(db.scalars(statement.order_by(Dataset.created_at, Dataset.id)))


def member_ids(db: Session, dataset_ids: Sequence[str]) -> dict[str, list[str]]:
    """``{dataset_id: [datapoint ids in dataset order]}`` for each of ``dataset_ids``."""
    found: dict[str, list[str]] = {d: [] for d in dataset_ids}
    if not dataset_ids:
        return found
    rows = db.execute(
        select(DatasetDatapoint.dataset_id, DatasetDatapoint.datapoint_id)
        .where(DatasetDatapoint.dataset_id.in_(list(dataset_ids)))
        .order_by(DatasetDatapoint.dataset_id, DatasetDatapoint.position,
                  DatasetDatapoint.added_at, DatasetDatapoint.datapoint_id)
    )
    for dataset_id, datapoint_id in rows:
        found[dataset_id].append(datapoint_id)
    return found


def update_dataset(db: Session, dataset: Dataset, *, name: str | None,
                   description: str | None, datapoint_ids: Sequence[str] | None) -> None:
    """Rename, describe, and/or replace the datapoint list (in the order given)."""
    if name is not None:
        name = _check_name(name)
        _require_unique_name(db, dataset.project_id, name, exclude=dataset.id)
        dataset.name = name
    if description is not None:
        dataset.description = description
    if datapoint_ids is not None:
        ids = _unique_ids(datapoint_ids, "datapoints")
        require_datapoints(db, dataset.project_id, ids)
        db.execute(delete(DatasetDatapoint).where(DatasetDatapoint.dataset_id == dataset.id))
        _insert_members(db, dataset.id, ids, start=0)
    dataset.updated_at = utcnow()
    db.flush()


def delete_dataset(db: Session, dataset: Dataset) -> None:
    """Delete the dataset, its memberships and its versions (datapoints stay)."""
    versions = select(DatasetVersion.id).where(DatasetVersion.dataset_id == dataset.id)
    db.execute(delete(DatasetVersionItem).where(DatasetVersionItem.version_id.in_(versions)))
    db.execute(delete(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id))
    db.execute(delete(DatasetDatapoint).where(DatasetDatapoint.dataset_id == dataset.id))
    db.delete(dataset)
    db.flush()


# --- membership --------------------------------------------------------------------------


def require_datapoints(db: Session, project_id: str, ids: Sequence[str]) -> None:
    """InvalidRequest naming the ids that are not datapoints of the project."""
    if not ids:
        return
    known: set[str] = set()
    chunk = 500
    for start in range(0, len(ids), chunk):
        known.update(db.scalars(select(Datapoint.id).where(
            Datapoint.project_id == project_id, Datapoint.id.in_(ids[start:start + chunk]))))
    missing = [i for i in ids if i not in known]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InvalidRequest(f"unknown datapoint id(s): {shown}", field="datapoints")


def _insert_members(db: Session, dataset_id: str, ids: Iterable[str], *, start: int) -> None:
    now = utcnow()
    for offset, datapoint_id in enumerate(ids):
        db.add(DatasetDatapoint(dataset_id=dataset_id, datapoint_id=datapoint_id,
                                position=start + offset, added_at=now))


def add_members(db: Session, dataset: Dataset, datapoint_ids: Sequence[str]) -> list[str]:
    """Append datapoints (of the dataset's project) not yet in it; returns those added."""
    ids = _unique_ids(datapoint_ids, "datapoints")
    require_datapoints(db, dataset.project_id, ids)
    present = set(member_ids(db, [dataset.id])[dataset.id])
    new = [i for i in ids if i not in present]
    last = db.execute(select(func.max(DatasetDatapoint.position))
                      .where(DatasetDatapoint.dataset_id == dataset.id)).scalar_one()
    _insert_members(db, dataset.id, new, start=(last if last is not None else -1) + 1)
    dataset.updated_at = utcnow()
    db.flush()
    return new


def remove_member(db: Session, dataset: Dataset, datapoint_id: str) -> bool:
    """Take a datapoint out of the dataset (the datapoint stays); False if it was not in."""
    removed = db.execute(delete(DatasetDatapoint).where(
        DatasetDatapoint.dataset_id == dataset.id,
        DatasetDatapoint.datapoint_id == datapoint_id,
    ))
    if removed.rowcount:  # type: ignore[attr-defined]
        dataset.updated_at = utcnow()
        return True
    return False


def linked_datasets(db: Session, datapoint_ids: Sequence[str]) -> dict[str, list[str]]:
    """``{datapoint_id: [ids of the datasets holding it]}``."""
    found: dict[str, list[str]] = {d: [] for d in datapoint_ids}
    if not datapoint_ids:
        return found
    rows = db.execute(
        select(DatasetDatapoint.datapoint_id, DatasetDatapoint.dataset_id)
        .where(DatasetDatapoint.datapoint_id.in_(list(datapoint_ids)))
        .order_by(DatasetDatapoint.added_at, DatasetDatapoint.dataset_id)
    )
    for datapoint_id, dataset_id in rows:
        found[datapoint_id].append(dataset_id)
    return found


def _datasets_of_project(db: Session, project_id: str, dataset_ids: Sequence[str]
                         ) -> list[Dataset]:
    datasets = []
    for dataset_id in dict.fromkeys(dataset_ids):
        dataset = db.get(Dataset, dataset_id)
        if dataset is None or dataset.project_id != project_id:
            raise InvalidRequest(f"unknown dataset id {dataset_id[:64]!r}",
                                 field="linked_datasets")
        datasets.append(dataset)
    return datasets


# --- datapoints --------------------------------------------------------------------------


def _check_spec(spec: DatapointSpec) -> None:
    if not isinstance(spec.history, list) or not all(isinstance(h, dict) for h in spec.history):
        raise InvalidRequest("history must be a list of objects", field="history")


def create_datapoints(db: Session, owner: Owner, specs: Sequence[DatapointSpec],
                      dataset_ids: Sequence[str] = ()) -> list[Datapoint]:
    """Create datapoints and append them to the datasets ``dataset_ids`` (in order)."""
    if len(specs) > MAX_BATCH:
        raise InvalidRequest(f"at most {MAX_BATCH} datapoints per request", field="data",
                             limit=MAX_BATCH)
    datasets = _datasets_of_project(db, owner.project_id, dataset_ids)
    now = utcnow()
    created = []
    for spec in specs:
        _check_spec(spec)
        datapoint = Datapoint(
            id=new_id(), org_id=owner.org_id, workspace_id=owner.workspace_id,
            project_id=owner.project_id, inputs=spec.inputs, history=spec.history,
            ground_truth=spec.ground_truth, meta=spec.metadata,
            linked_event=spec.linked_event, created_by=owner.subject, created_at=now,
            updated_at=now,
        )
        db.add(datapoint)
        created.append(datapoint)
    db.flush()
    ids = [d.id for d in created]
    for dataset in datasets:
        add_members(db, dataset, ids)
    return created


def get_datapoint(db: Session, project_id: str, datapoint_id: str) -> Datapoint:
    datapoint = db.get(Datapoint, datapoint_id)
    if datapoint is None or datapoint.project_id != project_id:
        raise NotFound("datapoint not found", project_id=project_id)
    return datapoint


def list_datapoints(db: Session, project_id: str, *, ids: Sequence[str] | None = None,
                    dataset_name: str | None = None, dataset_id: str | None = None,
                    limit: int | None = MAX_BATCH) -> list[Datapoint]:
    """The project's datapoints, narrowed to ``ids`` and/or a dataset's members.

    A dataset's datapoints come in dataset order, others in creation order.
    """
    if dataset_name is not None or dataset_id is not None:
        datasets = find_datasets(db, project_id, dataset_id=dataset_id, name=dataset_name)
        if not datasets:
            return []
        statement = (
            select(Datapoint).join(DatasetDatapoint,
                                   DatasetDatapoint.datapoint_id == Datapoint.id)
            .where(DatasetDatapoint.dataset_id == datasets[0].id)
            .order_by(DatasetDatapoint.position, DatasetDatapoint.added_at, Datapoint.id)
        )
    else:
        statement = select(Datapoint).order_by(Datapoint.created_at, Datapoint.id)
    statement = statement.where(Datapoint.project_id == project_id)
    if ids is not None:
        statement = statement.where(Datapoint.id.in_(_unique_ids(ids, "datapoint_ids")))
    if limit is not None:
        statement = statement.limit(limit)
    return list(db.scalars(statement))


def update_datapoint(db: Session, datapoint: Datapoint, changes: dict[str, Any]) -> bool:
    """Apply the given fields (``inputs``, ``history``, ``ground_truth``, ``metadata``,
    ``linked_event``, ``linked_datasets``); True if anything changed."""
    modified = False
    columns = {"inputs": "inputs", "history": "history", "ground_truth": "ground_truth",
               "metadata": "meta", "linked_event": "linked_event"}
    if "history" in changes:
        _check_spec(DatapointSpec(history=changes["history"]))
    for name, attribute in columns.items():
        if name in changes and getattr(datapoint, attribute) != changes[name]:
            setattr(datapoint, attribute, changes[name])
            modified = True
    if "linked_datasets" in changes and changes["linked_datasets"] is not None:
        wanted = _datasets_of_project(db, datapoint.project_id, changes["linked_datasets"])
        current = set(linked_datasets(db, [datapoint.id])[datapoint.id])
        for dataset in wanted:
            if dataset.id not in current:
                add_members(db, dataset, [datapoint.id])
                modified = True
        for dataset_id in current - {d.id for d in wanted}:
            held = db.get(Dataset, dataset_id)
            if held is not None and remove_member(db, held, datapoint.id):
                modified = True
    if modified:
        datapoint.updated_at = utcnow()
        db.flush()
    return modified


def delete_datapoint(db: Session, datapoint: Datapoint) -> None:
    """Delete the datapoint and its memberships (versions keep their frozen copy)."""
    db.execute(delete(DatasetDatapoint).where(DatasetDatapoint.datapoint_id == datapoint.id))
    db.delete(datapoint)
    db.flush()


# --- versions ----------------------------------------------------------------------------


def _content(datapoint: Datapoint | DatasetVersionItem, datapoint_id: str) -> list[Any]:
    return [datapoint_id, datapoint.inputs, datapoint.history, datapoint.ground_truth,
            datapoint.meta, datapoint.linked_event]


def _hash(contents: list[list[Any]]) -> str:
    return hashlib.sha256(orjson.dumps(contents, option=orjson.OPT_SORT_KEYS)).hexdigest()


def latest_version(db: Session, dataset: Dataset) -> DatasetVersion | None:
    return db.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
                      .order_by(DatasetVersion.version.desc()).limit(1)).first()


def snapshot(db: Session, owner: Owner, dataset: Dataset, *, message: str | None = None,
             force: bool = False) -> tuple[DatasetVersion, bool]:
    """The immutable version of the dataset as it is now, and whether it was created now.

    Unless ``force``, a dataset whose datapoints (ids, order and contents) are unchanged
    since its latest version gets that version back. Two concurrent snapshots cannot
    take the same number: the unique (dataset, version) constraint refuses the second
    (409, retry).
    """
    ids = member_ids(db, [dataset.id])[dataset.id]
    by_id = {d.id: d for d in list_datapoints(db, dataset.project_id, dataset_id=dataset.id,
                                              limit=None)}
    members = [by_id[i] for i in ids if i in by_id]
    contents = [_content(d, d.id) for d in members]
    digest = _hash(contents)
    latest = latest_version(db, dataset)
    if latest is not None and latest.content_hash == digest and not force:
        return latest, False
    version = DatasetVersion(
        id=new_id(), dataset_id=dataset.id, project_id=dataset.project_id,
        version=(latest.version if latest else 0) + 1, content_hash=digest,
        datapoint_count=len(members), message=message, created_by=owner.subject,
        created_at=utcnow(),
    )
    db.add(version)
    for position, datapoint in enumerate(members):
        db.add(DatasetVersionItem(
            version_id=version.id, position=position, datapoint_id=datapoint.id,
            inputs=datapoint.inputs, history=datapoint.history,
            ground_truth=datapoint.ground_truth, meta=datapoint.meta,
            linked_event=datapoint.linked_event,
        ))
    try:
        db.flush()
    except IntegrityError:
        raise Conflict("another version of this dataset was taken at the same time; retry"
                       ) from None
    return version, True


def list_versions(db: Session, dataset: Dataset) -> list[DatasetVersion]:
    return list(db.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
                           .order_by(DatasetVersion.version)))


def get_version(db: Session, dataset: Dataset, ref: str) -> DatasetVersion:
    """A version of the dataset by id, or by number (``3`` or ``v3``)."""
    statement = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    number = ref[1:] if ref[:1] in ("v", "V") else ref
    if number.isdigit() and len(number) < 10:
        statement = statement.where(DatasetVersion.version == int(number))
    else:
        statement = statement.where(DatasetVersion.id == ref)
    version = db.scalars(statement).first()
    if version is None:
        raise NotFound("dataset version not found", project_id=dataset.project_id)
    return version


def version_items(db: Session, version: DatasetVersion) -> list[DatasetVersionItem]:
    return list(db.scalars(select(DatasetVersionItem)
                           .where(DatasetVersionItem.version_id == version.id)
                           .order_by(DatasetVersionItem.position)))
