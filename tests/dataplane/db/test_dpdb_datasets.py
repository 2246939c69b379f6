"""Datasets, datapoints, versions, import/export and runs on dpdb (PostgreSQL and SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apiary.dataplane.datasets import catalog as ops
from apiary.dataplane.datasets import files
from apiary.dataplane.datasets.catalog import DatapointSpec
from apiary.dataplane.db import DataPlaneDatabase, Owner
from apiary.dataplane.experiments import runs
from apiary.errors import Conflict, InvalidRequest, NotFound

A = Owner("org-1", "ws-1", "proj-a", "key:a")
B = Owner("org-2", "ws-2", "proj-b", "key:b")


def _points(db: DataPlaneDatabase, owner: Owner, n: int) -> list[str]:
    with db.transaction() as s:
        created = ops.create_datapoints(s, owner, [
            DatapointSpec(inputs={"i": i}, ground_truth={"o": i * 2}) for i in range(n)])
        return [d.id for d in created]


def test_datasets_keep_order_names_and_tenants(dp: DataPlaneDatabase) -> None:
    ids = _points(dp, A, 3)
    with dp.transaction() as s:
        dataset = ops.create_dataset(s, A, name="qa", description="d",
                                     datapoint_ids=[ids[2], ids[0]])
        dataset_id = dataset.id
        assert ops.add_members(s, dataset, [ids[0], ids[1]]) == [ids[1]]  # no duplicate
    with dp.transaction() as s:
        assert ops.member_ids(s, [dataset_id])[dataset_id] == [ids[2], ids[0], ids[1]]
        with pytest.raises(Conflict):
            ops.create_dataset(s, A, name="qa", description=None)
    with dp.transaction() as s:  # the same name in another project is another dataset
        other = ops.create_dataset(s, B, name="qa", description=None)
        assert other.id != dataset_id
        with pytest.raises(NotFound):
            ops.get_dataset(s, B.project_id, dataset_id)
        with pytest.raises(InvalidRequest, match="unknown datapoint"):
            ops.add_members(s, other, [ids[0]])  # project A's datapoint
        assert ops.find_datasets(s, B.project_id) == [other]
        assert [d.id for d in ops.find_datasets(s, A.project_id, name="qa")] == [dataset_id]


def test_removing_and_deleting(dp: DataPlaneDatabase) -> None:
    ids = _points(dp, A, 2)
    with dp.transaction() as s:
        dataset = ops.create_dataset(s, A, name=None, description=None, datapoint_ids=ids)
        assert dataset.name.startswith("dataset-")
        assert ops.remove_member(s, dataset, ids[0]) is True
        assert ops.remove_member(s, dataset, ids[0]) is False
        ops.snapshot(s, A, dataset)
        ops.delete_dataset(s, dataset)
    with dp.transaction() as s:
        assert ops.find_datasets(s, A.project_id) == []
        # Datapoints outlive the dataset.
        assert {d.id for d in ops.list_datapoints(s, A.project_id)} == set(ids)


def test_versions_are_immutable_snapshots(dp: DataPlaneDatabase) -> None:
    ids = _points(dp, A, 2)
    with dp.transaction() as s:
        dataset = ops.create_dataset(s, A, name="v", description=None, datapoint_ids=ids)
        first, created = ops.snapshot(s, A, dataset, message="initial")
        assert created
        assert first.version == 1
        assert first.datapoint_count == 2
        again, created = ops.snapshot(s, A, dataset)
        assert (again.id, created) == (first.id, False)  # unchanged: same snapshot
    with dp.transaction() as s:
        point = ops.get_datapoint(s, A.project_id, ids[0])
        assert ops.update_datapoint(s, point, {"inputs": {"i": 100}}) is True
        assert ops.update_datapoint(s, point, {"inputs": {"i": 100}}) is False
    with dp.transaction() as s:
        dataset = ops.get_dataset(s, A.project_id, dataset.id)
        second, created = ops.snapshot(s, A, dataset)
        assert created
        assert second.version == 2
        assert second.content_hash != first.content_hash
        ops.delete_datapoint(s, ops.get_datapoint(s, A.project_id, ids[1]))
    with dp.transaction() as s:
        dataset = ops.get_dataset(s, A.project_id, dataset.id)
        frozen = ops.version_items(s, ops.get_version(s, dataset, "v1"))
        assert [(i.datapoint_id, i.inputs, i.ground_truth) for i in frozen] == [
            (ids[0], {"i": 0}, {"o": 0}), (ids[1], {"i": 1}, {"o": 2})]
        assert ops.get_version(s, dataset, second.id).version == 2
        assert [v.version for v in ops.list_versions(s, dataset)] == [1, 2]
        third, created = ops.snapshot(s, A, dataset)
        assert created
        assert third.datapoint_count == 1
        with pytest.raises(NotFound):
            ops.get_version(s, dataset, "v9")


def test_linked_datasets_follow_updates(dp: DataPlaneDatabase) -> None:
    with dp.transaction() as s:
        one = ops.create_dataset(s, A, name="one", description=None)
        two = ops.create_dataset(s, A, name="two", description=None)
        (point,) = ops.create_datapoints(s, A, [DatapointSpec(inputs={"q": 1})], [one.id])
        assert ops.linked_datasets(s, [point.id])[point.id] == [one.id]
        assert ops.update_datapoint(s, point, {"linked_datasets": [two.id]}) is True
        assert ops.linked_datasets(s, [point.id])[point.id] == [two.id]
        with pytest.raises(InvalidRequest):
            ops.create_datapoints(s, A, [DatapointSpec(history=[1])])


def test_rows_map_like_honeyhive() -> None:
    body = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "honeyhive" /
                       "rest_datasets_add_datapoints.json").read_text())
    (spec,) = files.rows_to_specs(body["data"], files.FieldMapping.of(body["mapping"]))
    assert spec.inputs == {"q": "what?"}
    assert spec.ground_truth == {"a": "that"}
    assert spec.history == [{"role": "user", "content": "hi"}]
    assert spec.metadata == {"extra": 1}
    (plain,) = files.rows_to_specs([{"x": 1}], files.FieldMapping())
    assert plain.inputs == {"x": 1}
    assert plain.ground_truth is None
    with pytest.raises(InvalidRequest, match="history"):
        files.rows_to_specs([{"h": "not json"}], files.FieldMapping(history=("h",)))


def test_import_and_export_files_round_trip(dp: DataPlaneDatabase, tmp_path: Path) -> None:
    """The CLI-callable functions: a CSV in, JSONL out, the JSONL back in."""
    with dp.transaction() as s:
        first = ops.create_dataset(s, A, name="from-csv", description=None).id
        second = ops.create_dataset(s, A, name="from-jsonl", description=None).id
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text('question,answer,note\n"what, exactly?",42,x\nwhy,because,\n')
    ids = files.import_file(dp, A, first, csv_file,
                            mapping={"inputs": ["question"], "ground_truth": ["answer"]})
    assert len(ids) == 2
    out = tmp_path / "out.jsonl"
    assert files.export_file(dp, A.project_id, first, out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["inputs"] for line in lines] == [{"question": "what, exactly?"},
                                                  {"question": "why"}]
    assert lines[0]["ground_truth"] == {"answer": "42"}
    assert lines[0]["metadata"] == {"note": "x"}
    again = files.import_file(dp, A, second, out)  # datapoint-shaped lines, no mapping
    with dp.transaction() as s:
        copies = ops.list_datapoints(s, A.project_id, dataset_id=second)
        assert [c.id for c in copies] == again
        assert [(c.inputs, c.ground_truth, c.meta) for c in copies] == [
            (line["inputs"], line["ground_truth"], line["metadata"]) for line in lines]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InvalidRequest, match="line 2"):
        files.import_file(dp, A, second, bad)
    with pytest.raises(NotFound):
        files.import_file(dp, B, second, out)  # another project's dataset


def test_runs_are_per_project_and_list_with_filters(dp: DataPlaneDatabase) -> None:
    with dp.transaction() as s:
        for i in range(5):
            runs.create_run(
                s, A, run_id=f"run-{i}", name=f"exp {i}", description=None,
                status="completed" if i % 2 else "pending", dataset_id="ds-1" if i < 3 else None,
                dataset_version_id=None, metadata={"i": i}, results=None, configuration=None,
                event_ids=None, session_ids=None, datapoint_ids=None, evaluators=None,
                passing_ranges=None)
        with pytest.raises(Conflict):
            runs.create_run(s, A, run_id="run-0", name=None, description=None, status=None,
                            dataset_id=None, dataset_version_id=None, metadata=None,
                            results=None, configuration=None, event_ids=None,
                            session_ids=None, datapoint_ids=None, evaluators=None,
                            passing_ranges=None)
    with dp.transaction() as s:  # the same run id in another project is another run
        other = runs.create_run(s, B, run_id="run-0", name=None, description=None,
                                status=None, dataset_id=None, dataset_version_id=None,
                                metadata=None, results=None, configuration=None,
                                event_ids=None, session_ids=None, datapoint_ids=None,
                                evaluators=None, passing_ranges=None)
        assert other.name == "experiment-run-0"
    with dp.transaction() as s:
        page = runs.list_runs(s, A.project_id, page=1, limit=2, sort_by="name",
                              sort_order="asc")
        assert [r.id for r in page.runs] == ["run-0", "run-1"]
        assert (page.total, page.total_unfiltered, page.total_pages) == (5, 5, 3)
        done = runs.list_runs(s, A.project_id, status="completed", dataset_id="ds-1")
        assert [r.id for r in done.runs] == ["run-1"]
        assert (done.total, done.total_unfiltered) == (1, 5)
        assert [r.id for r in runs.list_runs(s, A.project_id, name="EXP 4").runs] == ["run-4"]
        assert runs.list_runs(s, B.project_id).total == 1
        run = runs.get_run(s, A.project_id, "run-2")
        runs.update_run(s, run, {"status": "completed", "metadata": {"extra": True},
                                 "event_ids": ["s1", "s2"]})
        with pytest.raises(InvalidRequest):
            runs.update_run(s, run, {"status": "exploded"})
        with pytest.raises(InvalidRequest):
            runs.list_runs(s, A.project_id, sort_by="password")
    with dp.transaction() as s:
        run = runs.get_run(s, A.project_id, "run-2")
        assert run.meta == {"i": 2, "extra": True}
        assert run.event_ids == ["s1", "s2"]
        assert run.status == "completed"
        runs.delete_run(s, run)
        with pytest.raises(NotFound):
            runs.get_run(s, A.project_id, "run-2")
        assert runs.get_run(s, B.project_id, "run-0").project_id == B.project_id
