"""Dataset files for the web UI: an import that keeps the good lines and reports the bad
ones (``on_error=skip``), and the CSV export, which imports back as it is."""

from __future__ import annotations

import csv
import io
import json
import uuid

from _product_plane import (
    Product,
    product_fixture,  # noqa: F401  (the `product` fixture)
)


async def _dataset(product: Product, who: str = "a") -> str:
    created = await product.ok("POST", "/v1/datasets", who,
                               json={"name": f"ds-{uuid.uuid4().hex[:8]}"})
    return str(created["result"]["insertedId"])


async def _inputs(product: Product, dataset_id: str) -> list[object]:
    listed = await product.ok("GET", "/v1/datapoints", params={"dataset_id": dataset_id})
    return [p["inputs"] for p in listed["datapoints"]]


async def test_skip_keeps_the_good_lines_and_names_the_bad_ones(product: Product) -> None:
    dataset_id = await _dataset(product)
    body = (b'{"inputs": {"q": 1}}\nnot json\n\n[1, 2]\n{"inputs": {"q": 2}}\n'
            b'{"inputs": {"q": 3}, "ground_truth": "not an object"}\n')
    ndjson = {"content-type": "application/x-ndjson"}
    result = await product.ok("POST", f"/v1/datasets/{dataset_id}/import", content=body,
                              headers=ndjson, params={"on_error": "skip"})
    assert len(result["datapoint_ids"]) == 2
    assert result["inserted"] is True
    assert [e["line"] for e in result["errors"]] == [2, 4, 6]
    assert "line 2 is not valid JSON" in result["errors"][0]["message"]
    assert "not a JSON object" in result["errors"][1]["message"]
    assert "ground_truth must be an object" in result["errors"][2]["message"]
    assert await _inputs(product, dataset_id) == [{"q": 1}, {"q": 2}]

    # The default stays all or nothing: the first bad line is a 400, nothing is stored.
    failed = await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import",
                                 content=body, headers=ndjson)
    assert "line 2" in failed["message"]
    assert await _inputs(product, dataset_id) == [{"q": 1}, {"q": 2}]
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import", content=body,
                        headers=ndjson, params={"on_error": "sometimes"})

    # Nothing good at all: nothing inserted, every line reported.
    none = await product.ok("POST", f"/v1/datasets/{dataset_id}/import", content=b"x\ny\n",
                            headers=ndjson, params={"on_error": "skip"})
    assert none["inserted"] is False
    assert none["datapoint_ids"] == []
    assert [e["line"] for e in none["errors"]] == [1, 2]

    # CSV: a row with the wrong number of cells is reported, the others imported.
    csv_result = await product.ok(
        "POST", f"/v1/datasets/{dataset_id}/import", content=b"q,a\n1,2\n1,2,3\n4,5\n",
        headers={"content-type": "text/csv"},
        params={"on_error": "skip", "inputs": "q", "ground_truth": "a"})
    assert len(csv_result["datapoint_ids"]) == 2
    assert [e["line"] for e in csv_result["errors"]] == [3]
    # A bad header cannot be skipped: it is the whole file's.
    await product.fails(400, "POST", f"/v1/datasets/{dataset_id}/import",
                        content=b"q,q\n1,2\n", headers={"content-type": "text/csv"},
                        params={"on_error": "skip"})
    # Tenancy holds for the lenient import too.
    await product.fails(404, "POST", f"/v1/datasets/{dataset_id}/import", "b",
                        content=body, headers=ndjson, params={"on_error": "skip"})
    await product.fails(403, "POST", f"/v1/datasets/{dataset_id}/import", "a_read",
                        content=body, headers=ndjson, params={"on_error": "skip"})


async def test_csv_export_round_trips(product: Product) -> None:
    dataset_id = await _dataset(product)
    lines = [
        {"inputs": {"question": "how, exactly?", "n": 2}, "ground_truth": {"answer": "so"},
         "metadata": {"source": "ui"}, "history": [{"role": "user", "content": "hi"}],
         "linked_event": "ev-1"},
        {"inputs": {"question": 'a "quoted"\nline'}},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    await product.ok("POST", f"/v1/datasets/{dataset_id}/import", content=body,
                     headers={"content-type": "application/x-ndjson"})
    exported = await product.call("GET", f"/v1/datasets/{dataset_id}/export",
                                  params={"format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == ["id", "inputs", "ground_truth", "history", "metadata",
                             "linked_event"]
    assert [json.loads(r["inputs"]) for r in rows] == [line["inputs"] for line in lines]
    assert json.loads(rows[0]["ground_truth"]) == {"answer": "so"}
    assert rows[0]["linked_event"] == "ev-1"
    assert rows[1]["ground_truth"] == ""
    assert rows[1]["linked_event"] == ""

    # The file imports back into another dataset as the same datapoints.
    copy_id = await _dataset(product)
    back = await product.ok("POST", f"/v1/datasets/{copy_id}/import",
                            content=exported.content, headers={"content-type": "text/csv"})
    assert len(back["datapoint_ids"]) == 2
    copied = (await product.ok("GET", "/v1/datapoints",
                               params={"dataset_id": copy_id}))["datapoints"]
    assert [p["inputs"] for p in copied] == [line["inputs"] for line in lines]
    assert copied[0]["ground_truth"] == {"answer": "so"}
    assert copied[0]["history"] == [{"role": "user", "content": "hi"}]
    assert copied[0]["metadata"] == {"source": "ui"}
    assert copied[0]["linked_event"] == "ev-1"
    assert copied[1]["ground_truth"] is None

    jsonl = await product.call("GET", f"/v1/datasets/{dataset_id}/export")
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    await product.fails(400, "GET", f"/v1/datasets/{dataset_id}/export",
                        params={"format": "xlsx"})
    await product.fails(404, "GET", f"/v1/datasets/{dataset_id}/export", "b",
                        params={"format": "csv"})
