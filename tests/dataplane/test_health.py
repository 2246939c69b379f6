"""``/healthz`` (alive), ``/readyz`` (NATS, the event store, every writer loop, the lag) and the
pipeline's Prometheus metrics, against real components: a nats-server of the test's own that
is SIGSTOPped and continued, the chDB owner actor killed under Ray and restarted by it, a
writer loop that stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import ray
from _dataplane import KeySpec, Plane, open_plane

from apiary.actors.clickhouse import ClickHouseActor
from apiary.dataplane.auth import Permission
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect
from apiary.settings import ApiarySettings
from apiary.store import ActorStoreClient, EventStore

BOTH = (Permission.EVENTS_WRITE, Permission.EVENTS_READ)
GRAFANA = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "apiary.json"


async def readyz(plane: Plane) -> tuple[int, dict[str, Any]]:
    response = await plane.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A nats-server of this module's own (it shadows the session's): readiness counts every
    writer that beats on the server, and a served data plane another module started on the
    session's server (its writer ``served-dp-writer``) kept /readyz at 200 after this
    module's writer stopped (the CI failure "/readyz never answered 503")."""
    server = NatsServer(tmp_path_factory.mktemp("health-nats"))
    server.start()
    yield server
    server.stop()


async def ready_becomes(plane: Plane, status: int, wait_s: float = 30.0) -> dict[str, Any]:
    """``/readyz``'s body once it answers ``status`` (bounded by ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    last: Any = None
    while time.monotonic() < deadline:
        code, body = await readyz(plane)
        if code == status:
            return body
        last = (code, body)
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}; last: {last}")


@contextlib.asynccontextmanager
async def plane_on(server: NatsServer, store: EventStore, data_dir: Path,
                   **settings: Any) -> AsyncIterator[Plane]:
    project = f"proj-{uuid.uuid4().hex[:10]}"
    async with open_plane(server, store, data_dir, {"a": KeySpec(project, BOTH)},
                          ready_check_timeout_s=1.0, **settings) as plane:
        yield plane


async def test_healthz_is_alive_and_readyz_ready_with_every_check(
        nats_server: NatsServer, store: EventStore, tmp_path: Path) -> None:
    async with plane_on(nats_server, store, tmp_path) as plane:
        body = await ready_becomes(plane, 200)
        assert body["ready"] is True
        assert body["not_ready"] == []
        assert set(body["checks"]) == {"nats", "store", "writers", "lag"}
        assert "plane-test-writer" in body["checks"]["writers"]["detail"]["running"]
        assert body["checks"]["lag"]["detail"]["limit"] == 20_000
        health = await plane.http.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"


async def test_readyz_turns_503_while_nats_server_is_stopped_and_200_after(
        store: EventStore, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        async with plane_on(server, store, tmp_path / "plane") as plane:
            await ready_becomes(plane, 200)
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                body = await ready_becomes(plane, 503)
                assert "nats" in body["not_ready"], body
                assert "did not answer" in body["checks"]["nats"]["error"]
                # Liveness is the process: it stays up.
                assert (await plane.http.get("/healthz")).status_code == 200
            finally:
                os.kill(server.pid, signal.SIGCONT)
            body = await ready_becomes(plane, 200)
            assert body["checks"]["nats"]["ok"] is True
    finally:
        server.stop()


async def test_readyz_names_a_writer_loop_that_stopped_and_the_lag_over_its_limit(
        nats_server: NatsServer, store: EventStore, tmp_path: Path) -> None:
    async with plane_on(nats_server, store, tmp_path, ready_backlog_limit=1) as plane:
        await ready_becomes(plane, 200)
        plane.writer.stop()
        body = await ready_becomes(plane, 503)
        assert "writers" in body["not_ready"], body
        assert "0 of 1 writers running" in body["checks"]["writers"]["error"]
        for i in range(3):  # nobody writes them: the lag grows past the limit
            await plane.ok("POST", "/v1/events", json={"event_type": "tool",
                                                       "event_name": f"t{i}", "inputs": {}})
        # Already 503 (the writer): wait for the lag check itself to see the backlog.
        deadline = time.monotonic() + 30.0
        body = await ready_becomes(plane, 503)
        while body["checks"]["lag"]["ok"] is not False and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            body = await ready_becomes(plane, 503)
        assert body["checks"]["lag"]["ok"] is False
        assert body["checks"]["lag"]["detail"]["messages"] >= 2
        assert "lag" in body["not_ready"]
        # A new writer under the same name drains the lag: ready again.
        config = plane.context.settings
        again = WriterLoop(js=plane.context.js, store=plane.context.store,
                           objects=LocalObjectStore(tmp_path / "objects"), settings=config,
                           name="plane-test-writer")
        task = asyncio.create_task(again.run())
        try:
            body = await ready_becomes(plane, 200)
            assert body["checks"]["lag"]["detail"]["messages"] <= 1
        finally:
            again.stop()
            await task


async def test_metrics_are_exported_after_traffic(
        nats_server: NatsServer, store: EventStore, tmp_path: Path) -> None:
    async with plane_on(nats_server, store, tmp_path) as plane:
        for i in range(2):
            await plane.ok("POST", "/v1/events", json={"event_type": "tool",
                                                       "event_name": f"m{i}", "inputs": {}})
        # One undecodable message on the events stream: dead-lettered, counted by reason.
        await plane.context.js.publish("events.spans.proj-poison", b"not a batch",
                                       stream="events")
        await plane.settled()
        text = (await plane.http.get("/metrics")).text
        for name in ("apiary_writer_flush_rows_count", "apiary_writer_flush_seconds_bucket",
                     'apiary_consumer_lag_messages{stream="events"}',
                     'apiary_consumer_lag_messages{stream="evaluation"}',
                     "apiary_circuit_breakers_open", "apiary_events_backlog_messages"):
            assert name in text, name
        dead = [line for line in text.splitlines()
                if line.startswith("apiary_dead_letters_total{")
                and 'reason="PoisonMessage"' in line and 'stream="events"' in line]
        assert dead
        assert float(dead[0].rsplit(" ", 1)[1]) >= 1, dead


# -- the chDB owner under Ray ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace="apiary-health-test",
                 log_to_driver=False)
    yield
    if started:
        ray.shutdown()


async def test_readyz_turns_503_while_the_store_owner_is_dead_and_200_after_its_restart(
        ray_cluster: Any, nats_server: NatsServer, store: EventStore, tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path / "owner")
    owner = ClickHouseActor.options(  # type: ignore[attr-defined]
        name=f"owner-{uuid.uuid4().hex[:8]}", num_cpus=0).remote(settings)
    client = ActorStoreClient(owner)
    assert await client.query_rows("SELECT 1 AS ok", None) == [{"ok": 1}]
    async with plane_on(nats_server, store, tmp_path / "plane") as plane:
        plane.context.store = client  # reads and readiness go to the owner actor
        await ready_becomes(plane, 200)
        ray.kill(owner, no_restart=False)  # Ray restarts it (max_restarts=-1)
        body = await ready_becomes(plane, 503)
        assert body["not_ready"] == ["store"], body
        assert body["checks"]["store"]["error"]
        body = await ready_becomes(plane, 200, wait_s=90.0)
        assert body["checks"]["store"]["ok"] is True
    ray.kill(owner, no_restart=True)


async def test_a_writer_heartbeat_reports_a_loop_that_ended_by_an_exception(
        nats_server: NatsServer, store: EventStore, tmp_path: Path) -> None:
    async with plane_on(nats_server, store, tmp_path) as plane:
        await ready_becomes(plane, 200)
        nc = await connect(nats_server.url, name="health-test")
        try:
            doomed = WriterLoop(js=nc.jetstream(), store=plane.context.store,
                                objects=LocalObjectStore(tmp_path / "objects"),
                                settings=plane.context.settings, name="doomed-writer")
            task = asyncio.create_task(doomed.run())
            body = await _until_listed(plane, "doomed-writer")
            task.cancel()  # the loop ends without being asked to stop
            with contextlib.suppress(asyncio.CancelledError):
                await task
            body = await ready_becomes(plane, 503)
            down = body["checks"]["writers"]["detail"]["down"]
            assert [d["name"] for d in down] == ["doomed-writer"], body
        finally:
            from apiary.queue.heartbeats import heartbeats_bucket

            await (await heartbeats_bucket(nc.jetstream())).delete("writer.doomed-writer")
            await nc.close()
        await ready_becomes(plane, 200)


async def _until_listed(plane: Plane, name: str, wait_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        _, body = await readyz(plane)
        if name in body["checks"]["writers"]["detail"].get("running", []):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never beat")



def test_the_grafana_dashboard_charts_every_metric_apiary_exports() -> None:
    from apiary._private import metrics

    dashboard = json.loads(GRAFANA.read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    names = {family.name for family in metrics.REGISTRY.collect()}
    assert "apiary_dead_letters" in names
    missing = sorted(n for n in names if n not in queries)
    assert missing == [], missing
    for panel in dashboard["panels"]:  # each query matches replicas and Ray's exporter alike
        for target in panel["targets"]:
            assert "(ray_)?apiary_" in target["expr"], target


def test_pipeline_metrics_recorded_in_a_ray_actor_become_ray_metrics(ray_cluster: Any) -> None:
    @ray.remote(num_cpus=0)
    class Recorder:
        def record(self) -> list[str]:
            from apiary._private import metrics

            metrics.inc(metrics.DEAD_LETTERS, stream="events", reason="StoreRejected")
            metrics.observe(metrics.FLUSH_SECONDS, 0.2)
            metrics.set_gauge(metrics.BREAKERS_OPEN, 1)
            return metrics.mirrored_to_ray()

    recorder = Recorder.remote()  # type: ignore[attr-defined]
    made = ray.get(recorder.record.remote(), timeout=60)
    assert made == ["apiary_circuit_breakers_open", "apiary_dead_letters",
                    "apiary_writer_flush_seconds"]
    ray.kill(recorder)
