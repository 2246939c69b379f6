"""apiary.startup.cluster: what a cluster's Serve config builds, and what it refuses; the
`pools` application's supervisor running the start-up sequence (apiary.startup.sequence)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ray.serve import Application

from apiary import store
from apiary.actors import alert_evaluator, notifier, scaler, writer
from apiary.deployments.pools import PoolSupervisor
from apiary.errors import ConfigurationError
from apiary.queue import EVENTS_STREAM, NatsServer, connect
from apiary.settings import ApiarySettings, load_settings
from apiary.startup import cluster
from apiary.startup.cluster import cluster_serve_environment, serve_config
from apiary.startup.plane_checks import PLANE_SECRETS, PLANES, Plane, cluster_problems

#: The ``set_env`` fixture (conftest.py): replaces this process's APIARY_* environment.
SetEnv = Callable[[dict[str, str]], None]
CP = "http://apiary-cp-serve-svc:8000/cp"
#: What a data-plane node of a cluster has: its stores, its envelope key, the CP's URL.
DP_ENV = {
    "APIARY_NATS_URL": "nats://apiary:pw@nats:4222",
    "APIARY_NATS_REPLICAS": "3",
    "APIARY_CLICKHOUSE_URL": "http://apiary:pw@clickhouse:8123",
    "APIARY_DP_DATABASE_URL": "postgresql+psycopg://apiary_dp:pw@postgres:5432/dpdb",
    "APIARY_OBJECT_STORE_URL": "s3://apiary/objects",
    "APIARY_REDIS_URL": "redis://:pw@redis:6379/0",
    "APIARY_CONTROL_PLANE_URL": CP,
    "APIARY_CP_ISSUER": CP,
    "APIARY_DP_ENVELOPE_KEY": base64.urlsafe_b64encode(b"d" * 32).decode(),
}
#: What the control plane's node has: cpdb, its envelope key, its Redis, its issuer URL.
CP_ENV = {
    "APIARY_CP_DATABASE_URL": "postgresql+psycopg://apiary_cp:pw@postgres:5432/cpdb",
    "APIARY_REDIS_URL": "redis://:pw2@redis-cp:6379/0",
    "APIARY_CP_ISSUER": CP,
    "APIARY_CP_ENVELOPE_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
}
REQUIRED = {
    "data": ["APIARY_NATS_URL", "APIARY_CLICKHOUSE_URL", "APIARY_DP_DATABASE_URL",
             "APIARY_DP_ENVELOPE_KEY", "APIARY_OBJECT_STORE_URL", "APIARY_REDIS_URL",
             "APIARY_CONTROL_PLANE_URL"],
    "control": ["APIARY_CP_DATABASE_URL", "APIARY_CP_ENVELOPE_KEY", "APIARY_CP_ISSUER",
                "APIARY_REDIS_URL"],
}


def test_each_planes_environment_builds_its_applications(set_env: SetEnv) -> None:
    set_env(DP_ENV)
    assert cluster_problems(load_settings(), "data") == []
    for builder in (cluster.data_plane, cluster.pools):
        assert isinstance(builder({}), Application)
    set_env(CP_ENV)
    assert cluster_problems(load_settings(), "control") == []
    assert isinstance(cluster.control_plane({}), Application)
    assert isinstance(cluster.federation({}), Application)
    names = {plane: [app["import_path"].rpartition(":")[2]
                     for app in serve_config(plane)["applications"]]
             for plane in PLANES}
    assert names == {"data": ["data_plane", "pools"],
                     "control": ["control_plane", "federation"]}


def test_one_planes_environment_does_not_build_the_other_plane(set_env: SetEnv) -> None:
    set_env(DP_ENV)
    with pytest.raises(ConfigurationError, match="APIARY_CP_DATABASE_URL is unset"):
        cluster.control_plane({})
    set_env(CP_ENV)
    with pytest.raises(ConfigurationError, match="APIARY_NATS_URL is unset"):
        cluster.data_plane({})


@pytest.mark.parametrize("plane", ["data", "control"])
def test_embedded_defaults_are_refused_naming_every_missing_variable(
    set_env: SetEnv, plane: Plane
) -> None:
    set_env({})
    problems = cluster_problems(load_settings(), plane)
    for env in REQUIRED[plane]:
        assert any(p.startswith(f"{env} is unset") for p in problems), env
    if plane == "data":
        assert any(p.startswith("APIARY_NATS_REPLICAS") for p in problems)
        with pytest.raises(ConfigurationError, match="APIARY_NATS_URL is unset"):
            cluster.data_plane({})
    else:
        with pytest.raises(ConfigurationError, match="APIARY_CP_DATABASE_URL is unset"):
            cluster.control_plane({})


@pytest.mark.parametrize(
    ("plane", "override", "message"),
    [
        ("control", {"APIARY_CP_DATABASE_URL": "sqlite:////tmp/cp.sqlite"},
         "must name PostgreSQL"),
        ("data", {"APIARY_DP_DATABASE_URL": "sqlite:////tmp/dp.sqlite"}, "must name PostgreSQL"),
        ("data", {"APIARY_NATS_REPLICAS": "1"}, "APIARY_NATS_REPLICAS must be 3"),
        ("data", {"APIARY_CP_ISSUER": "https://apiary.example.com/cp"},
         "set APIARY_JWT_ISSUER"),
        ("control", {"APIARY_CP_ENVELOPE_KEY": "too-short"}, "exactly 32 bytes"),
        ("data", {"APIARY_DP_ENVELOPE_KEY": "too-short"}, "exactly 32 bytes"),
        ("data", {"APIARY_REDIS_URL": "redis://:CHANGE-ME-redis-password@redis:6379/0"},
         "APIARY_REDIS_URL still holds the template placeholder"),
        # A placeholder in an optional setting is refused too.
        ("data", {"APIARY_EVALUATOR_JUDGE_URL": "https://CHANGE-ME-judge"},
         "APIARY_EVALUATOR_JUDGE_URL still holds the template placeholder"),
        # A secret of the other plane on a node: the recipe leaks it, so nothing starts.
        ("data", {"APIARY_CP_DATABASE_URL": CP_ENV["APIARY_CP_DATABASE_URL"]},
         "APIARY_CP_DATABASE_URL is set, but it is a secret of the control plane"),
        ("data", {"APIARY_CP_ENVELOPE_KEY": CP_ENV["APIARY_CP_ENVELOPE_KEY"]},
         "APIARY_CP_ENVELOPE_KEY is set, but it is a secret of the control plane"),
        ("control", {"APIARY_DP_ENVELOPE_KEY": DP_ENV["APIARY_DP_ENVELOPE_KEY"]},
         "APIARY_DP_ENVELOPE_KEY is set, but it is a secret of the data plane"),
        ("control", {"APIARY_NATS_URL": DP_ENV["APIARY_NATS_URL"]},
         "APIARY_NATS_URL is set, but it is a secret of the data plane"),
    ],
)
def test_a_cluster_configuration_that_cannot_work_is_refused(
    set_env: SetEnv, plane: Plane, override: dict[str, str], message: str
) -> None:
    set_env({**(DP_ENV if plane == "data" else CP_ENV), **override})
    problems = cluster_problems(load_settings(), plane)
    assert len(problems) == 1, problems
    assert message in problems[0]
    builder = cluster.data_plane if plane == "data" else cluster.control_plane
    with pytest.raises(ConfigurationError, match=message):
        builder({})


def test_a_public_issuer_works_when_the_data_plane_trusts_it(set_env: SetEnv) -> None:
    public = "https://apiary.example.com/cp"
    set_env({**DP_ENV, "APIARY_CP_ISSUER": public, "APIARY_JWT_ISSUER": public})
    assert cluster_problems(load_settings(), "data") == []


def test_builders_take_no_args(set_env: SetEnv) -> None:
    set_env(DP_ENV)
    with pytest.raises(ConfigurationError, match="takes no args"):
        cluster.pools({"writer_count": 3})


def test_serve_environment_turns_on_haproxy_for_a_cluster() -> None:
    env = cluster_serve_environment()
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == str(cluster.HAPROXY_STATS_PORT)
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "30"
    assert all(v.startswith(cluster.HAPROXY_DIR) for k, v in env.items()
               if k.endswith(("_LOC", "_PATH", "_BASE", "_FILE")))


@pytest.mark.parametrize("plane", ["data", "control"])
def test_cli_config_run_as_a_module_names_importable_paths(plane: Plane) -> None:
    # Under `python -m` the module is __main__: the printed import paths must not say so.
    base = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
    run = subprocess.run(
        [sys.executable, "-m", "apiary.startup.cluster", "config", "--plane", plane],
        capture_output=True, text=True, env=base, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == serve_config(plane)
    assert "__main__" not in run.stdout


def test_cli_config_needs_a_plane(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cluster.main(["config"])
    assert exited.value.code == 2
    assert "--plane" in capsys.readouterr().err


def test_cli_env_exports_the_serve_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.main(["env"]) == 0
    exports = capsys.readouterr().out
    shown = subprocess.run(["bash", "-c", f"{exports}\nenv"], capture_output=True, text=True,
                           env={}, timeout=30).stdout.splitlines()
    expected = cluster_serve_environment()
    assert {k: v for k, _, v in (line.partition("=") for line in shown) if k in expected} == (
        expected)


def test_cli_check(
    set_env: SetEnv, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(DP_ENV)
    assert cluster.main(["check", "--plane", "data"]) == 0
    assert capsys.readouterr().out.strip() == "data-plane cluster configuration OK"
    assert cluster.main(["check", "--plane", "control"]) == 2
    assert "APIARY_CP_DATABASE_URL is unset" in capsys.readouterr().err
    monkeypatch.delenv("APIARY_NATS_URL")
    assert cluster.main(["check", "--plane", "data"]) == 2
    assert "APIARY_NATS_URL is unset" in capsys.readouterr().err
    monkeypatch.setenv("APIARY_NATS_URL", "http://nats:4222")
    assert cluster.main(["check", "--plane", "data"]) == 2
    assert "nats_url (env APIARY_NATS_URL)" in capsys.readouterr().err


class FakePool:
    """Stands in for WriterPool: records what the supervisor asks of it.

    The supervisor is the cluster configuration, whose writers and migrations need a
    ClickHouse server, and none can run here (chDB is embedded only); so these tests fake
    the server's migration and the pools, and check the supervisor's order of work against
    a real NATS. The pools themselves run on real Ray in tests/startup/test_node.py (writers under
    ``apiary up``) and tests/dataplane/evaluation/test_autoscaling.py (scalers).
    """

    instances: ClassVar[list[FakePool]] = []
    fail_start: ClassVar[bool] = False

    def __init__(self, settings: ApiarySettings, nats_url: str, **options: Any) -> None:
        self.nats_url, self.options = nats_url, options
        self.started = self.stopped = False
        FakePool.instances.append(self)

    def start(self) -> None:
        if FakePool.fail_start:
            raise RuntimeError("no writer fits")
        self.started = True

    def ensure_running(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


class FakeScalers:
    """Stands in for the pool scalers (see FakePool): what the supervisor starts and stops."""

    started: ClassVar[list[dict[str, Any]]] = []
    stopped: ClassVar[list[list[Any]]] = []

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(cls, "started", [])
        monkeypatch.setattr(cls, "stopped", [])

        def start(settings: ApiarySettings, nats_url: str, **options: Any) -> list[Any]:
            cls.started.append({"nats_url": nats_url, **options})
            return ["evaluator-scaler"]

        def stop(scalers: list[Any]) -> list[Any]:
            assert not FakePool.instances[-1].stopped  # evaluators drain before writers
            cls.stopped.append(list(scalers))
            return []
        monkeypatch.setattr(scaler, "start_scalers", start)
        monkeypatch.setattr(scaler, "stop_scalers", stop)
        # The real notifier pool would create actors, and a Ray API called in the
        # supervisor's thread starts a local Ray of its own (auto-init) that outlives the
        # test: the next test's ray.init then found a connected worker.
        monkeypatch.setattr(notifier, "NotifierPool", FakeNotifiers)
        monkeypatch.setattr(FakeNotifiers, "counts", [])
        # The alert evaluator likewise (a real one runs in tests/faults/).
        monkeypatch.setattr(FakeNotifiers, "evaluators", [])
        monkeypatch.setattr(alert_evaluator, "start_alert_evaluator",
                            lambda settings, nats_url: FakeNotifiers.evaluators.append(
                                nats_url) or "alert-evaluator")
        monkeypatch.setattr(alert_evaluator, "ensure_alert_evaluator", lambda actor: None)
        monkeypatch.setattr(alert_evaluator, "stop_alert_evaluator", lambda actor: None)


class FakeNotifiers:
    """Stands in for NotifierPool (they run on real Ray in tests/startup/test_node.py)."""

    counts: ClassVar[list[int]] = []
    #: The NATS URL of each alert evaluator started (see FakeScalers.install).
    evaluators: ClassVar[list[str]] = []

    def __init__(self, settings: ApiarySettings, nats_url: str, **options: Any) -> None:
        pass

    def start(self, count: int) -> None:
        FakeNotifiers.counts.append(count)

    def ensure_running(self) -> list[str]:
        return []

    def stop(self) -> list[str]:
        return []


class _Supervisor(PoolSupervisor):
    def __del__(self) -> None:  # type: ignore[override]
        """Garbage collection must not start the async shutdown; tests await it."""


async def _supervisor(settings: ApiarySettings) -> PoolSupervisor:
    supervisor = object.__new__(_Supervisor)
    # What the `pools` builder binds: the cluster's start-up sequence, not yet started.
    pools = cluster.cluster_pools(settings)
    await PoolSupervisor.__init__(supervisor, pools)  # type: ignore[misc]
    for _ in range(100):
        # The pool is made in the background task, with the writers it starts.
        if supervisor._task.done() or (FakePool.instances and FakePool.instances[-1].started):
            break
        await asyncio.sleep(0.01)
    return supervisor


async def test_pool_supervisor_prepares_stores_then_runs_writers(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrated: list[str] = []
    monkeypatch.setattr(store, "migrate_server",
                        lambda s: migrated.append(s.clickhouse_url) or ["0001"])
    monkeypatch.setattr(writer, "WriterPool", FakePool)
    monkeypatch.setattr(FakePool, "instances", [])
    FakeScalers.install(monkeypatch)
    settings = ApiarySettings(data_dir=tmp_path, nats_url=nats_server.url,
                              clickhouse_url="http://ch:8123")
    supervisor = await _supervisor(settings)
    for _ in range(200):
        if FakeScalers.started:
            break
        await asyncio.sleep(0.01)

    nc = await connect(nats_server.url, name="test")
    try:
        info = await nc.jetstream().stream_info(EVENTS_STREAM)
    finally:
        await nc.close()
    assert info.config.name == EVENTS_STREAM
    assert migrated == ["http://ch:8123"]
    pool = FakePool.instances[-1]
    assert pool.started
    assert pool.nats_url == nats_server.url
    assert pool.options == {"num_cpus": cluster.WRITER_NUM_CPUS,
                            "resources": {cluster.WRITER_RESOURCE: 1}, "get_if_exists": True}
    # Evaluators (and extra writers) on the nodes that offer their resource.
    assert FakeScalers.started == [{
        "nats_url": nats_server.url,
        "evaluator_options": {"num_cpus": cluster.EVALUATOR_NUM_CPUS,
                              "resources": {cluster.EVALUATOR_RESOURCE: 1}},
        "writer_options": {"num_cpus": cluster.WRITER_NUM_CPUS,
                           "resources": {cluster.WRITER_RESOURCE: 1}}}]
    assert FakeNotifiers.counts == [settings.notifier_count]
    assert FakeNotifiers.evaluators == [nats_server.url]
    await supervisor.check_health()
    await PoolSupervisor.__del__(supervisor)
    assert FakeScalers.stopped == [["evaluator-scaler"]]
    assert pool.stopped


async def test_pool_supervisor_reports_a_pool_that_cannot_start(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "migrate_server", lambda s: [])
    monkeypatch.setattr(writer, "WriterPool", FakePool)
    monkeypatch.setattr(FakePool, "instances", [])
    monkeypatch.setattr(FakePool, "fail_start", True)
    FakeScalers.install(monkeypatch)
    # A cluster's ClickHouse is a server (plane_checks refuses an embedded one).
    settings = ApiarySettings(data_dir=tmp_path, nats_url=nats_server.url,
                              clickhouse_url="http://ch:8123")
    supervisor = await _supervisor(settings)
    with pytest.raises(RuntimeError, match="no writer fits"):
        await supervisor.check_health()
    await PoolSupervisor.__del__(supervisor)
    assert FakeScalers.started == []  # no evaluators without the writers that store scores


def test_every_secret_setting_belongs_to_exactly_one_plane() -> None:
    """A new secret setting must be classified, or a cluster would not keep it from the
    other plane's nodes."""
    secret_fields = {name for name, field in ApiarySettings.model_fields.items()
                     if "SecretStr" in str(field.annotation)}
    data, control = set(PLANE_SECRETS["data"]), set(PLANE_SECRETS["control"])
    assert secret_fields
    assert secret_fields <= data | control
    assert not data & control
    assert (data | control) <= set(ApiarySettings.model_fields)
