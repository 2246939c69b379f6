"""Datasets and datapoints over HTTP: the HoneyHive shapes (checked with the SDK's own
models), versions, import/export, datapoints from events, tenancy and every 4xx."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from _product_plane import (
    Product,
    event,
    honeyhive_body,
    product_fixture,  # noqa: F401  (the `product` fixture)
)
from honeyhive._generated.models import (
    AddDatapointsResponse,
    BatchCreateDatapointsResponse,
    CreateDatapointResponse,
    CreateDatasetResponse,
    DeleteDatapointResponse,
    DeleteDatasetResponse,
    GetDatapointResponse,
    GetDatapointsResponse,
    GetDatasetsResponse,
    RemoveDatapointResponse,
    UpdateDatapointResponse,
    UpdateDatasetResponse,
)

from apiary.dataplane.db import DataPlaneDatabase


def _name() -> str:
    return f"ds-{uuid.uuid4().hex[:8]}"


async def _dataset(product: Product, who: str = "a", **body: Any) -> str:
    body.setdefault("name", _name())
    created = await product.ok("POST", "/v1/datasets", who, json=body)
    CreateDatasetResponse(**created)
    return str(created["result"]["insertedId"])


async def _datapoint(product: Product, who: str = "a", **body: Any) -> str:
    created = await product.ok("POST", "/v1/datapoints", who, json=body)
    CreateDatapointResponse(**created)
    (point,) = created["result"]["insertedIds"]
    return str(point)


async def test_the_sdk_client_round(product: Product) -> None:
    """What `HoneyHive(...).datasets/datapoints` send, answered as their models require."""
    created = await product.ok("POST", "/v1/datasets",
                               json=honeyhive_body("rest_datasets_create") | {"name": _name()})
    dataset_id = created["result"]["insertedId"]
    dp_body = honeyhive_body("rest_datapoints_create") | {"linked_datasets": [dataset_id]}
    point = await _datapoint(product, **dp_body)

    listed = await product.ok("GET", "/v1/datasets", params={"dataset_id": dataset_id})
    GetDatasetsResponse(**listed)
    (dataset,) = listed["datasets"]
    assert dataset["datapoints"] == [point]
    assert dataset["description"] == "d"

    got = await product.ok("GET", f"/v1/datapoints/{point}")
    GetDatapointResponse(**got)
    (item,) = got["datapoint"]
    assert item["inputs"] == {"q": "hi"}
    assert item["ground_truth"] == {"a": "hello"}
    assert item["history"] == [{"role": "user", "content": "x"}]
    assert item["metadata"] == {"src": "wire"}
    assert item["linked_event"] is None
    assert item["linked_datasets"] == [dataset_id]

    added = await product.ok("POST", f"/v1/datasets/{dataset_id}/datapoints",
                             json=honeyhive_body("rest_datasets_add_datapoints"))
    AddDatapointsResponse(**added)
    (mapped,) = added["datapoint_ids"]
    (row,) = (await product.ok("GET", f"/v1/datapoints/{mapped}"))["datapoint"]
    assert (row["inputs"], row["ground_truth"], row["metadata"]) == (
        {"q": "what?"}, {"a": "that"}, {"extra": 1})

    by_ids = await product.ok("GET", "/v1/datapoints",
                              params=[("datapoint_ids[]", mapped), ("datapoint_ids[]", point),
                                      ("dataset_name", dataset["name"])])
    GetDatapointsResponse(**by_ids)
    assert [d["id"] for d in by_ids["datapoints"]] == [point, mapped]  # dataset order
    by_name = await product.ok("GET", "/v1/datapoints", params={"dataset_name": dataset["name"]})
    assert len(by_name["datapoints"]) == 2

    update = honeyhive_body("rest_datapoints_update")
    updated = await product.ok("PUT", f"/v1/datapoints/{point}", json=update)
    UpdateDatapointResponse(**updated)
    assert updated["result"]["modifiedCount"] == 1
    again = await product.ok("PUT", f"/v1/datapoints/{point}", json=update)
    assert again["result"]["modifiedCount"] == 0

    legacy = honeyhive_body("rest_datasets_update") | {"dataset_id": dataset_id,
                                                        "datapoints": [mapped]}
    legacy["name"] = _name()
    changed = await product.ok("PUT", "/v1/datasets", json=legacy)
    UpdateDatasetResponse(**changed)
    assert changed["result"]["datapoints"] == [mapped]
    assert changed["result"]["name"] == legacy["name"]

    removed = await product.ok("DELETE", f"/v1/datasets/{dataset_id}/{mapped}")
    RemoveDatapointResponse(**removed)
    assert removed["dereferenced"] is True
    await product.fails(404, "DELETE", f"/v1/datasets/{dataset_id}/{mapped}")

    deleted = await product.ok("DELETE", f"/v1/datapoints/{point}")
    DeleteDatapointResponse(**deleted)
    await product.fails(404, "GET", f"/v1/datapoints/{point}")
    gone = await product.ok("DELETE", "/v1/datasets", params={"dataset_id": dataset_id})
    DeleteDatasetResponse(**gone)
    assert gone["result"]["id"] == dataset_id
    assert (await product.ok("GET", "/v1/datasets",
                             params={"dataset_id": dataset_id}))["datasets"] == []


async def test_path_addressed_forms(product: Product) -> None:
    point = await _datapoint(product, inputs={"x": 1})
    dataset_id = await _dataset(product, datapoints=[point])
    updated = await product.ok("PUT", f"/v1/datasets/{dataset_id}",
                               json={"description": "new"})
    assert updated["result"]["description"] == "new"
    assert updated["result"]["datapoints"] == [point]
    await product.ok("DELETE", f"/v1/datasets/{dataset_id}/datapoints/{point}")
    await product.ok("DELETE", f"/v1/datasets/{dataset_id}")
    # The datapoint outlives its dataset.
    assert (await product.ok("GET", f"/v1/datapoints/{point}"))["datapoint"][0]["id"] == point


async def test_versions_freeze_the_dataset(product: Product) -> None:
    point = await _datapoint(product, inputs={"q": "v1"}, ground_truth={"a": 1})
    dataset_id = await _dataset(product, datapoints=[point])
    first = await product.ok("POST", f"/v1/datasets/{dataset_id}/versions",
                             json={"message": "baseline"})
    assert first["created"] is True
    assert first["version"]["version"] == 1
    same = await product.ok("POST", f"/v1/datasets/{dataset_id}/versions", json={})
    assert same["created"] is False
    assert same["version"]["id"] == first["version"]["id"]
    await product.ok("PUT", f"/v1/datapoints/{point}", json={"inputs": {"q": "v2"}})
    second = await product.ok("POST", f"/v1/datasets/{dataset_id}/versions", json={})
    assert second["version"]["version"] == 2
    old = await product.ok("GET", f"/v1/datasets/{dataset_id}/versions/v1")
    assert [d["inputs"] for d in old["datapoints"]] == [{"q": "v1"}]
    by_id = await product.ok("GET",
                             f"/v1/datasets/{dataset_id}/versions/{second['version']['id']}")
    assert [d["inputs"] for d in by_id["datapoints"]] == [{"q": "v2"}]
    listed = await product.ok("GET", f"/v1/datasets/{dataset_id}/versions")
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    exported = await product.call("GET", f"/v1/datasets/{dataset_id}/export",
                                  params={"version": "1"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line)["inputs"] for line in exported.text.splitlines()] == [{"q": "v1"}]
    await product.fails(404, "GET", f"/v1/datasets/{dataset_id}/versions/v7")
    await product.fails(404, "GET", f"/v1/datasets/{dataset_id}/versions", "b")


async def test_import_csv_and_jsonl_then_export(product: Product) -> None:
    dataset_id = await _dataset(product)
    csv_body = 'question,answer,chat\nhow?,"like, this","[{""role"": ""user""}]"\n'
    imported = await product.ok(
        "POST", f"/v1/datasets/{dataset_id}/import", content=csv_body.encode(),
        headers={"content-type": "text/csv"},
        params={"inputs": "question", "ground_truth": "answer", "history": "chat"})
    assert len(imported["datapoint_ids"]) == 1
    lines = b'{"inputs": {"q": 1}, "ground_truth": {"a": 2}}\n\n{"inputs": {"q": 3}}\n'
    more = await product.ok("POST", f"/v1/datasets/{dataset_id}/import", content=lines,
                            headers={"content-type": "application/x-ndjson"})
    assert len(more["datapoint_ids"]) == 2
    exported = await product.call("GET", f"/v1/datasets/{dataset_id}/export")
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert [r["inputs"] for r in rows] == [{"question": "how?"}, {"q": 1}, {"q": 3}]
    assert rows[0]["ground_truth"] == {"answer": "like, this"}
    assert rows[0]["history"] == [{"role": "user"}]
    assert rows[1]["ground_truth"] == {"a": 2}
    assert rows[2]["ground_truth"] is None

    bad_jsonl = await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import",
                                    content=b'{"ok": 1}\nnot json\n',
                                    headers={"content-type": "application/x-ndjson"})
    assert "line 2" in bad_jsonl["message"]
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import",
                        content=b"a,b\n1,2,3\n", headers={"content-type": "text/csv"})
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import", content=b"x",
                        headers={"content-type": "image/png"})
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import", content=b"\xff\xfe",
                        params={"format": "csv"})
    await product.fails(403, "POST", f"/v1/datasets/{dataset_id}/import", "a_read",
                        content=lines)
    await product.fails(404, "POST", f"/v1/datasets/{dataset_id}/import", "b", content=lines)


async def test_datapoints_from_events(product: Product) -> None:
    project = product.projects["a"]
    marker = uuid.uuid4().hex
    events = [event(event_type="model", event_name="answer", inputs={"question": f"q{i}"},
                    outputs={"content": f"a{i}"}, metadata={"marker": marker, "i": i},
                    feedback={"rating": i})
              for i in range(3)]
    product.insert(project, events)
    dataset_id = await _dataset(product)
    made = await product.ok("POST", "/v1/datapoints/batch", json={
        "filters": [{"field": "metadata.marker", "operator": "is", "value": marker,
                     "type": "string"},
                    {"field": "metadata.i", "operator": "greater than", "value": "0",
                     "type": "number"}],
        "mapping": {"inputs": ["inputs.question"], "ground_truth": ["outputs"]},
        "dataset_id": dataset_id})
    BatchCreateDatapointsResponse(**made)
    assert made["events_matched"] == 2
    assert len(made["insertedIds"]) == 2
    points = (await product.ok("GET", "/v1/datapoints",
                               params={"dataset_id": dataset_id}))["datapoints"]
    assert sorted((p["inputs"]["question"], p["ground_truth"]["content"], p["linked_event"])
                  for p in points) == sorted(
        (f"q{i}", f"a{i}", events[i]["event_id"]) for i in (1, 2))
    by_id = await product.ok("POST", "/v1/datapoints/batch",
                             json={"events": [events[0]["event_id"]]})
    (point,) = by_id["insertedIds"]
    (item,) = (await product.ok("GET", f"/v1/datapoints/{point}"))["datapoint"]
    assert item["inputs"] == {"question": "q0"}
    assert item["ground_truth"] == {"content": "a0"}
    assert item["metadata"]["event_name"] == "answer"
    # Another project's events are not found; bad filters and mappings are 400.
    foreign = await product.ok("POST", "/v1/datapoints/batch", "b",
                               json={"events": [events[0]["event_id"]]})
    assert foreign == {"inserted": False, "insertedIds": [], "events_matched": 0}
    await product.fails(400, "POST", "/v1/datapoints/batch", json={
        "filters": [{"field": "nope", "operator": "is", "value": "x", "type": "string"}]})
    await product.fails(400, "POST", "/v1/datapoints/batch",
                        json={"events": ["x"], "mapping": {"inputs": ["password.hash"]}})
    await product.fails(400, "POST", "/v1/datapoints/batch", json={})
    # Reading events needs events:read as well as datasets:write.
    await product.fails(403, "POST", "/v1/datapoints/batch", "a_read", json={"events": ["x"]})


async def test_tenants_never_see_each_other(product: Product) -> None:
    point = await _datapoint(product, inputs={"secret": True})
    name = _name()
    dataset_id = await _dataset(product, name=name, datapoints=[point])
    assert (await product.ok("GET", "/v1/datasets", "b",
                             params={"dataset_id": dataset_id}))["datasets"] == []
    assert dataset_id not in {d["id"] for d in
                              (await product.ok("GET", "/v1/datasets", "b"))["datasets"]}
    assert (await product.ok("GET", "/v1/datapoints", "b",
                             params={"dataset_name": name}))["datapoints"] == []
    assert (await product.ok("GET", "/v1/datapoints", "b",
                             params={"datapoint_ids[]": point}))["datapoints"] == []
    for method, path, body in (
        ("GET", f"/v1/datapoints/{point}", None),
        ("PUT", f"/v1/datapoints/{point}", {"inputs": {}}),
        ("DELETE", f"/v1/datapoints/{point}", None),
        ("PUT", f"/v1/datasets/{dataset_id}", {"name": "stolen"}),
        ("DELETE", f"/v1/datasets/{dataset_id}", None),
        ("POST", f"/v1/datasets/{dataset_id}/datapoints", {"data": [{"x": 1}]}),
        ("DELETE", f"/v1/datasets/{dataset_id}/{point}", None),
        ("POST", f"/v1/datasets/{dataset_id}/versions", {}),
        ("GET", f"/v1/datasets/{dataset_id}/export", None),
    ):
        await product.fails(404, method, path, "b", json=body)
    # Project B may reuse the name; B cannot link A's datapoint or dataset.
    await _dataset(product, "b", name=name)
    await product.fails(400, "POST", "/v1/datasets", "b",
                        json={"name": _name(), "datapoints": [point]})
    await product.fails(400, "POST", "/v1/datapoints", "b",
                        json={"inputs": {}, "linked_datasets": [dataset_id]})
    # A still has everything.
    (dataset,) = (await product.ok("GET", "/v1/datasets",
                                   params={"dataset_id": dataset_id}))["datasets"]
    assert dataset["name"] == name
    assert dataset["datapoints"] == [point]


@pytest.mark.parametrize(("method", "path", "body", "params"), [
    ("POST", "/v1/datasets", {"name": ""}, None),
    ("POST", "/v1/datasets", {"name": "x", "typo": 1}, None),
    ("POST", "/v1/datasets", {"datapoints": "not-a-list"}, None),
    ("PUT", "/v1/datasets", {"name": "missing id"}, None),
    ("DELETE", "/v1/datasets", None, None),
    ("POST", "/v1/datapoints", {"history": [1, 2]}, None),
    ("POST", "/v1/datapoints", {"inputs": "text"}, None),
    ("PUT", "/v1/datapoints/x", {"inputs": None}, None),
    ("GET", "/v1/datapoints", None, {"limit": "0"}),
])
async def test_bad_input_is_400(product: Product, method: str, path: str,
                                body: dict[str, Any] | None,
                                params: dict[str, str] | None) -> None:
    failed = await product.fails(400, method, path, json=body, params=params)
    assert failed["errorCode"] == "invalid_request"


async def test_add_datapoints_validates_rows(product: Product) -> None:
    dataset_id = await _dataset(product)
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/datapoints",
                        json={"data": [{"h": "nope"}], "mapping": {"history": ["h"]}})
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/datapoints",
                        json={"data": [{"a": 1}], "mapping": {"inputs": "a"}})
    await product.fails(404, "POST", f"/v1/datasets/{uuid.uuid4()}/datapoints",
                        json={"data": [{"a": 1}], "mapping": {}})
    duplicate = await product.fails(409, "PUT", f"/v1/datasets/{dataset_id}",
                                    json={"name": (await product.ok(
                                        "GET", "/v1/datasets",
                                        params={"dataset_id": await _dataset(product)}
                                    ))["datasets"][0]["name"]})
    assert duplicate["errorCode"] == "conflict"


async def test_credentials_and_permissions(product: Product) -> None:
    response = await product.http.get("/v1/datasets")
    assert response.status_code == 401
    assert response.json()["errorCode"] == "unauthenticated"
    bogus = await product.http.get("/v1/datasets", headers={"authorization": "Bearer nope"})
    assert bogus.status_code == 401
    await product.ok("GET", "/v1/datasets", "a_read")
    await product.fails(403, "POST", "/v1/datasets", "a_read", json={"name": _name()})
    await product.fails(403, "POST", "/v1/datapoints", "a_read", json={})
    await product.fails(403, "GET", "/v1/datasets", "a_events")
    await product.fails(403, "GET", "/v1/datapoints", "a_events")
    await product.fails(403, "GET", "/v1/datasets", "ws")


async def test_dpdb_is_a_file_of_its_own(product: Product) -> None:
    database = product.context.dpdb
    assert isinstance(database, DataPlaneDatabase)
    assert str(database.engine.url).endswith("/dp.sqlite")
    assert (product.context.settings.data_dir / "dp.sqlite").exists()


async def test_the_openapi_spec_describes_the_product_endpoints(product: Product) -> None:
    response = await product.http.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    expected = {
        "/v1/datasets": {"get", "post", "put", "delete"},
        "/v1/datasets/{dataset_id}": {"put", "delete"},
        "/v1/datasets/{dataset_id}/datapoints": {"post"},
        "/v1/datasets/{dataset_id}/{datapoint_id}": {"delete"},
        "/v1/datasets/{dataset_id}/versions": {"get", "post"},
        "/v1/datasets/{dataset_id}/import": {"post"},
        "/v1/datasets/{dataset_id}/export": {"get"},
        "/v1/datapoints": {"get", "post"},
        "/v1/datapoints/{datapoint_id}": {"get", "put", "delete"},
        "/v1/datapoints/batch": {"post"},
        "/v1/runs": {"get", "post"},
        "/v1/runs/{run_id}": {"get", "put", "delete"},
        "/v1/runs/{run_id}/result": {"get"},
        "/v1/runs/{new_run_id}/compare-with/{old_run_id}": {"get"},
        "/v1/runs/compare/events": {"get"},
        "/v1/metrics": {"get", "post", "put", "delete"},
        "/v1/metrics/{metric_id}": {"put", "delete"},
        "/v1/metrics/{metric_id}/versions": {"get", "post"},
        "/v1/metrics/{metric_id}/versions/{version_name}/deploy": {"post"},
        "/v1/configurations": {"get", "post"},
        "/v1/configurations/{config_id}": {"put", "delete"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            operation = paths[path][method]
            assert operation["summary"], (path, method)
            assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
            error = operation["responses"]["404"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorResponse"}
            if method in ("post", "put") and not path.endswith(("/import", "/deploy")):
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert "$ref" in body, (path, method)
    schemas = spec["components"]["schemas"]
    assert {"RunResult", "RunObject", "DatasetOut", "DatapointOut", "MetricOut",
            "ConfigurationOut"} <= set(schemas)
    result_schema = paths["/v1/runs/{run_id}/result"]["get"]["responses"]["200"]
    assert result_schema["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RunResult"}


async def test_unstorable_values_are_400(product: Product) -> None:
    for raw in (b'{"inputs": {"x": NaN}}', b'{"inputs": {"x": Infinity}}',
                b'{"inputs": {"x": "a\\u0000b"}}',
                b'{"inputs": ' + b'{"a": ' * 70 + b"1" + b"}" * 71):
        failed = await product.fails(400, "POST", "/v1/datapoints", content=raw,
                                     headers={"content-type": "application/json"})
        assert failed["errorCode"] == "invalid_request"
    await product.fails(400, "POST", "/v1/runs",
                        json={"name": "nul\u0000name"})
    await product.fails(400, "POST", "/v1/datasets", json={"name": "a\u0000b"})
