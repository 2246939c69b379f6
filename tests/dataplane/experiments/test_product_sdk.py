"""The unmodified HoneyHive SDK against the data plane over real HTTP: its client's
datasets, datapoints and experiments calls, and ``evaluate()`` on an Apiary dataset with
evaluators, whose result the data plane computes from the spans the SDK exported.

The data plane runs under uvicorn on a free port; its context (NATS, chDB through a
:class:`DirectStoreClient`, dpdb) and a real writer loop are opened in the server's own
event loop (ASGI lifespan), so the SDK's synchronous HTTP calls go through the whole path:
REST → dpdb, OTLP → JetStream → writer → ClickHouse → run results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from _product_plane import ALL, _key
from _servers import free_port
from honeyhive import HoneyHive
from honeyhive._generated.models import (
    AddDatapointsToDatasetRequest,
    CreateDatapointRequest,
    CreateDatasetRequest,
    DatapointMapping,
    PostExperimentRunRequest,
    PutExperimentRunRequest,
)
from nats.js.errors import NotFoundError

from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore


class _DataPlaneServer:
    """An ASGI app that opens the data plane (and a writer) at lifespan startup."""

    def __init__(self, settings: ApiarySettings, nats_url: str, store: EventStore,
                 authenticator: ApiKeyAuthenticator) -> None:
        self.settings, self.nats_url, self.store = settings, nats_url, store
        self.authenticator = authenticator
        self.app: Any = None

    async def _start(self) -> None:
        self._nc = await connect(self.nats_url, name="sdk-test-setup")
        js = self._nc.jetstream()
        for stream in ("events", "evaluation", "notifications"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
        await ensure_topology(js, self.settings)
        client = DirectStoreClient(self.store)
        self.context = await DataPlaneContext.open(self.settings, self.nats_url,
                                                   self.authenticator, store=client)
        self.writer = WriterLoop(js=js, store=client, settings=self.settings,
                                 objects=LocalObjectStore(self.settings.data_dir / "objects"),
                                 name="sdk-test-writer")
        self._task = asyncio.create_task(self.writer.run())
        self.app = create_app(self.context)

    async def _stop(self) -> None:
        self.writer.stop()
        await self._task
        await self.context.close()
        await self._nc.close()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self._start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self._stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)


@dataclass
class Served:
    url: str
    keys: dict[str, str]
    projects: dict[str, str]

    def client(self, who: str = "a") -> HoneyHive:
        return HoneyHive(api_key=self.keys[who], server_url=self.url)


@pytest.fixture(scope="module")
def served(nats_server: NatsServer, store: EventStore,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir: Path = tmp_path_factory.mktemp("sdk")
    settings = ApiarySettings(data_dir=data_dir, writer_flush_interval_s=0.1)
    suffix = uuid.uuid4().hex[:8]
    projects = {"a": f"proj-sdk-a-{suffix}", "b": f"proj-sdk-b-{suffix}"}
    keys, stored = {}, []
    for who in ("a", "b"):
        keys[who], key = _key(projects[who], *ALL)
        stored.append(key)
    app = _DataPlaneServer(settings, nats_server.url, store, ApiKeyAuthenticator(stored))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="sdk-dp", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield Served(f"http://127.0.0.1:{port}", keys, projects)
    server.should_exit = True
    thread.join(30)


def test_the_sdk_client_manages_datasets_datapoints_and_runs(served: Served) -> None:
    client = served.client()
    name = f"sdk-{uuid.uuid4().hex[:6]}"
    dataset_id = client.datasets.create(
        CreateDatasetRequest(name=name, description="made by the SDK")).result.insertedId
    point = client.datapoints.create(CreateDatapointRequest(
        inputs={"q": "hello"}, ground_truth={"a": "world"},
        linked_datasets=[dataset_id])).result.insertedIds[0]
    added = client.datasets.add_datapoints(dataset_id, AddDatapointsToDatasetRequest(
        data=[{"question": "q2", "answer": "a2"}],
        mapping=DatapointMapping(inputs=["question"], ground_truth=["answer"])))
    assert added.inserted is True
    (dataset,) = client.datasets.list(dataset_id=dataset_id).datasets
    assert dataset.name == name
    assert dataset.datapoints == [point, *added.datapoint_ids]
    (got,) = client.datapoints.get(point).datapoint
    assert got.inputs == {"q": "hello"}
    assert got.ground_truth == {"a": "world"}
    listed = client.datapoints.list(datapoint_ids=[point, *added.datapoint_ids])
    assert {d.id for d in listed.datapoints} == {point, *added.datapoint_ids}

    run_id = str(uuid.uuid4())
    created = client.experiments.create_run(PostExperimentRunRequest(
        run_id=run_id, name="sdk run", status="pending", dataset_id=dataset_id,
        datapoint_ids=[point], event_ids=[], configuration={}, metadata={}))
    assert created.run_id == run_id
    assert created.evaluation.dataset_id == dataset_id
    client.experiments.update_run(run_id, PutExperimentRunRequest(status="completed",
                                                                  event_ids=[]))
    assert client.experiments.get_run(run_id).evaluation.status == "completed"
    runs = client.experiments.list_runs(dataset_id=dataset_id, run_ids=[run_id])
    assert [r.run_id for r in runs.evaluations] == [run_id]
    result = client.experiments.get_result(run_id, aggregate_function="average")
    assert result["success"] is True
    assert result["datapoints"] == []
    assert client.experiments.delete_run(run_id).deleted is True

    # The other project's key sees none of it.
    other = served.client("b")
    assert other.datasets.list(dataset_id=dataset_id).datasets == []
    assert client.datasets.remove_datapoint(dataset_id, point).dereferenced is True
    assert client.datapoints.delete(point).deleted is True
    assert client.datasets.delete(dataset_id).result.id == dataset_id


_EVALUATE = """
import json, sys
from honeyhive.experiments import evaluate

def answer(datapoint):
    question = datapoint["inputs"]["question"]
    return {"answer": "a" + question[1:] if question != "q3" else "wrong"}

def exact(outputs, inputs, ground_truth):
    return outputs["answer"] == ground_truth["expected"]

def length(outputs, inputs, ground_truth):
    return float(len(outputs["answer"]))

summary = evaluate(answer, dataset_id=sys.argv[1], evaluators=[exact, length],
                   api_key=sys.argv[2], server_url=sys.argv[3], name="apiary-eval",
                   max_workers=2, print_results=False)
print(json.dumps({"run_id": summary.run_id, "passed": summary.passed,
                  "failed": summary.failed}))
"""


def test_evaluate_on_an_apiary_dataset(served: Served, tmp_path: Path) -> None:
    """``evaluate()`` runs in a process of its own: its tracer instruments the process it
    runs in, and must not trace the data plane serving it."""
    client = served.client()
    dataset_id = client.datasets.create(
        CreateDatasetRequest(name=f"eval-{uuid.uuid4().hex[:6]}")).result.insertedId
    rows = [{"question": f"q{i}", "expected": f"a{i}"} for i in range(4)]
    point_ids = client.datasets.add_datapoints(dataset_id, AddDatapointsToDatasetRequest(
        data=rows, mapping=DatapointMapping(inputs=["question"], ground_truth=["expected"]))
    ).datapoint_ids
    script = tmp_path / "run_evaluate.py"
    script.write_text(_EVALUATE)
    done = subprocess.run(
        [sys.executable, str(script), dataset_id, served.keys["a"], served.url],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "HH_API_URL": served.url})
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    # Results are computed from the exported spans: wait until the writer stored them.
    deadline = time.monotonic() + 60
    while True:
        result = client.experiments.get_result(run_id, aggregate_function="average")
        details = {d["metric_name"]: d for d in result["metrics"]["details"]}
        if {"exact", "length"} <= set(details) and len(details["exact"]["values"]) == 4:
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.2)
    assert details["exact"]["aggregate"] == pytest.approx(0.75)
    assert details["length"]["aggregate"] == pytest.approx((2 + 2 + 2 + 5) / 4)
    assert set(result["failed"]) == {point_ids[3]}
    assert set(result["passed"]) == set(point_ids[:3])
    run = client.experiments.get_run(run_id).evaluation
    assert run.status == "completed"
    assert run.dataset_id == dataset_id
    assert len(run.event_ids) == 4
    assert getattr(run, "dataset_version_id", None)
