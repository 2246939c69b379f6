"""apiary.startup.sequence: the steps `apiary up` and a cluster's `pools` application share, in
order, with what each reports, and a stop that drains evaluators before writers and keeps
going past a failure. The pools are stand-ins (no Ray here); they run on real Ray in
tests/startup/test_node.py."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from apiary import store
from apiary.actors import alert_evaluator, notifier, scaler, writer
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.startup.cluster import cluster_pools
from apiary.startup.sequence import NODE_PLACEMENT, DataPlaneServices


class Recorder:
    """Stands in for the writer pool and the scalers: records calls, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail_stop: set[str]) -> None:
        self.calls: list[str] = []
        recorder = self

        class Pool:
            def __init__(self, settings: ApiarySettings, nats_url: str, **options: Any) -> None:
                recorder.calls.append(f"writers {sorted(options.items())}")

            def start(self) -> None:
                recorder.calls.append("writers start")

            def stop(self) -> None:
                recorder.calls.append("writers stop")
                if "writers" in fail_stop:
                    raise RuntimeError("a writer did not drain")

        def start_scalers(settings: ApiarySettings, nats_url: str, **options: Any) -> list[str]:
            recorder.calls.append("scalers start")
            return ["evaluator-scaler"]

        def stop_scalers(scalers: list[Any]) -> list[Any]:
            recorder.calls.append(f"scalers stop {scalers}")
            if "scalers" in fail_stop:
                raise RuntimeError("an evaluator did not drain")
            return []

        class Notifiers:
            def __init__(self, settings: ApiarySettings, nats_url: str, **options: Any) -> None:
                recorder.calls.append(f"notifiers {sorted(options.items())}")

            def start(self, count: int) -> None:
                recorder.calls.append(f"notifiers start {count}")

            def stop(self) -> None:
                recorder.calls.append("notifiers stop")

        def start_alert_evaluator(settings: ApiarySettings, nats_url: str) -> str:
            recorder.calls.append("alert evaluator start")
            return "alert-evaluator"

        def stop_alert_evaluator(actor: str) -> None:
            recorder.calls.append(f"alert evaluator stop {actor}")

        monkeypatch.setattr(alert_evaluator, "start_alert_evaluator", start_alert_evaluator)
        monkeypatch.setattr(alert_evaluator, "stop_alert_evaluator", stop_alert_evaluator)
        monkeypatch.setattr(writer, "WriterPool", Pool)
        monkeypatch.setattr(notifier, "NotifierPool", Notifiers)
        monkeypatch.setattr(scaler, "start_scalers", start_scalers)
        monkeypatch.setattr(scaler, "stop_scalers", stop_scalers)


async def test_the_steps_run_in_order_and_report_what_they_did(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, fail_stop=set())
    monkeypatch.setattr(store, "migrate_server", lambda s: ["0001", "0002"])
    lines: list[str] = []
    settings = ApiarySettings(data_dir=tmp_path, clickhouse_url="http://ch:8123",
                              writer_count=2, evaluator_min=1, evaluator_max=3)
    services = DataPlaneServices(settings, nats_server.url, NODE_PLACEMENT,
                                 client_name="test", progress=lines.append)
    await services.prepare()
    services.start()
    assert lines[0].startswith("ensuring streams and consumers on ")
    assert lines[-7:] == [
        "applying the ClickHouse schema", "  applied migration 0001",
        "  applied migration 0002", "starting 2 writer actor(s)",
        "starting 1-3 evaluator actor(s) and the pool scaler(s)",
        "starting 1 notifier actor(s)",
        "starting the alert evaluator (every 60 s)",
    ]
    assert recorder.calls == ["writers [('num_cpus', 0.25)]", "writers start", "scalers start",
                              "notifiers [('num_cpus', 0)]", "notifiers start 1",
                              "alert evaluator start"]
    assert services.stop() == []
    assert lines[-4:] == ["stopping the alert evaluator", "stopping notifiers",
                          "draining evaluators (and scaled writers)", "draining writers"]
    # Evaluators drain first: the scores they publish are stored by the writers.
    assert recorder.calls[-4:] == ["alert evaluator stop alert-evaluator", "notifiers stop",
                                   "scalers stop ['evaluator-scaler']", "writers stop"]
    assert services.stop() == []  # safe twice: nothing is left to stop
    assert len(recorder.calls) == 10


def test_stop_keeps_going_past_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch, fail_stop={"scalers", "writers"})
    services = DataPlaneServices(ApiarySettings(data_dir=tmp_path), "nats://unused:4222",
                                 NODE_PLACEMENT, client_name="test", progress=lambda _: None)
    services.start()
    assert services.stop() == ["scalers: an evaluator did not drain",
                               "writers: a writer did not drain"]
    assert recorder.calls[-2:] == ["scalers stop ['evaluator-scaler']", "writers stop"]


def test_a_clusters_sequence_crosses_to_its_replica_unstarted(tmp_path: Path) -> None:
    """Serve pickles the `pools` application's argument into the supervisor's replica."""
    settings = ApiarySettings(data_dir=tmp_path, nats_url="nats://nats:4222",
                              clickhouse_url="http://ch:8123")
    copy = pickle.loads(pickle.dumps(cluster_pools(settings)))
    assert isinstance(copy, DataPlaneServices)
    assert (copy.nats_url, copy.settings) == ("nats://nats:4222", settings)
    assert copy.placement.adopt_writers
    assert copy.writer_stats() == []
