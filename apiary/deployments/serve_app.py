"""Apiary's Serve applications on Ray clusters: the import paths of their Serve configs.

A deployment is **two Ray clusters**, one per plane, because the planes share no
credentials: every member of a Ray cluster can run code on every other member (tasks,
actors, the job API) and Serve keeps each application's arguments (Apiary's settings,
secrets included) in the head's GCS, so a secret given to any node of a cluster is
readable from all of them. Each plane's cluster gets its plane's secrets only, and the
two talk over HTTP: the data plane trusts the control plane through its JWKS and token
exchange (``APIARY_CONTROL_PLANE_URL``).

- **data plane** (``cluster.yaml``; KubeRay RayService ``apiary``), :func:`serve_config`
  ``("data")``: ``data-plane`` at ``/`` (ingestion and queries, the LLM proxy;
  :func:`data_plane`) and ``pools`` (no HTTP route): one :class:`PoolSupervisor` that
  creates the JetStream streams, migrates ClickHouse and keeps the writer actors running on
  nodes that offer the custom resource :data:`WRITER_RESOURCE`, and the pool scalers that
  size the evaluator pool (on nodes offering :data:`EVALUATOR_RESOURCE`) and the extra
  writers on queue depth (:func:`pools`, :mod:`apiary.actors.scaler`).
- **control plane** (``cluster-cp.yaml``; RayService ``apiary-cp``), :func:`serve_config`
  ``("control")``: ``control-plane`` at ``/cp``: accounts, keys, tokens
  (:func:`control_plane`).

Each builder reads the ``APIARY_*`` environment of the Ray node that builds it, and
:func:`cluster_settings` refuses to build anything unless its plane's stores are servers
named by configuration (no embedded stores on a cluster), no value still holds a template's
``CHANGE-ME``, and no secret of the *other* plane is present (:data:`PLANE_SECRETS`): a
recipe that hands a data-plane node the control plane's database URL or envelope key does
not start. Run ``python -m apiary.deployments.serve_app check --plane data|control`` on a
node to see what is wrong; ``config --plane ...`` prints the plane's Serve config and
``env`` the environment (HAProxy ingress) that every Ray node must start with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import sys
from typing import Any, Literal, get_args

from ray import serve
from ray.serve import Application

from apiary.deployments import serve_environment
from apiary.deployments.control_plane import ROUTE_PREFIX as CP_ROUTE_PREFIX
from apiary.deployments.control_plane import control_plane_app
from apiary.deployments.data_plane import data_plane_app
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings, load_settings

log = logging.getLogger(__name__)

#: Custom Ray resource offered by writer nodes; each writer actor requests one unit.
WRITER_RESOURCE = "writer"
#: Custom Ray resource offered by evaluator nodes; each evaluator actor must request one.
EVALUATOR_RESOURCE = "evaluator"
#: CPUs each writer actor requests (beside one unit of :data:`WRITER_RESOURCE`).
WRITER_NUM_CPUS = 1.0
#: CPUs each evaluator actor requests (beside one unit of :data:`EVALUATOR_RESOURCE`); its
#: sandbox workers and judge calls run within them.
EVALUATOR_NUM_CPUS = 1.0
#: Port of Serve's HTTP ingress (HAProxy) on every node; KubeRay's serve Service targets it.
SERVE_HTTP_PORT = 8000
#: Where HAProxy keeps its files on each node, and its stats and metrics ports.
HAPROXY_DIR = "/tmp/haproxy-serve"
HAPROXY_STATS_PORT = 8404
HAPROXY_METRICS_PORT = 9101
#: Marker of a value that a deployment template leaves for the operator to fill in.
PLACEHOLDER = "CHANGE-ME"

#: The two planes, each deployed as a Ray cluster of its own (module docstring).
Plane = Literal["data", "control"]
PLANES: tuple[Plane, ...] = get_args(Plane)

# Spelled out: under `python -m` this module is __main__, but Serve imports it by name.
_MODULE = "apiary.deployments.serve_app"
APPLICATIONS: dict[Plane, tuple[tuple[str, str | None, str], ...]] = {
    # (application name, HTTP route prefix or None, import path of its builder)
    "data": (
        ("data-plane", "/", f"{_MODULE}:data_plane"),
        ("pools", None, f"{_MODULE}:pools"),
    ),
    "control": (
        ("control-plane", CP_ROUTE_PREFIX, f"{_MODULE}:control_plane"),
    ),
}

#: Settings holding a plane's secrets (credentials in URLs, keys). A node of the other plane
#: must not have them: its cluster refuses to start when it does.
PLANE_SECRETS: dict[Plane, tuple[str, ...]] = {
    "control": ("cp_database_url", "cp_envelope_key", "smtp_url"),
    "data": ("dp_database_url", "dp_envelope_key", "nats_url", "clickhouse_url",
             "evaluator_judge_api_key"),
}
#: Settings each plane's cluster must have (no embedded store, no generated key file).
REQUIRED: dict[Plane, tuple[str, ...]] = {
    "data": ("nats_url", "clickhouse_url", "dp_database_url", "dp_envelope_key",
             "object_store_url", "redis_url", "control_plane_url"),
    "control": ("cp_database_url", "cp_envelope_key", "cp_issuer", "redis_url"),
}


def serve_config(plane: Plane) -> dict[str, Any]:
    """The Serve config (``serve deploy`` file, RayService ``serveConfigV2``) of one plane's
    cluster."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_HTTP_PORT},
        "applications": [
            {"name": name, "route_prefix": prefix, "import_path": path}
            for name, prefix, path in APPLICATIONS[plane]
        ],
    }


def cluster_serve_environment() -> dict[str, str]:
    """Environment every Ray node of a cluster starts with (set before ``ray start``).

    :func:`~apiary.deployments.serve_environment` at fixed per-node paths and ports, with
    two changes for a cluster: replicas keep draining for 30 s (Serve's default) so that a
    load balancer in front can take them out of rotation first, and HAProxy gets 2 threads.
    """
    env = serve_environment(
        haproxy_dir=HAPROXY_DIR, stats_port=HAPROXY_STATS_PORT, metrics_port=HAPROXY_METRICS_PORT
    )
    env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "30"
    env["RAY_SERVE_HAPROXY_NBTHREAD"] = "2"
    return env


def _env(field: str) -> str:
    return f"APIARY_{field.upper()}"


def _value(settings: ApiarySettings, field: str) -> str | None:
    value = getattr(settings, field)
    if value is None:
        return None
    if hasattr(value, "get_secret_value"):
        return str(value.get_secret_value())
    return ",".join(value) if isinstance(value, tuple) else str(value)


def cluster_problems(settings: ApiarySettings, plane: Plane) -> list[str]:
    """What keeps ``settings`` from running ``plane`` on a cluster (empty if nothing).

    Refused: a required setting unset (:data:`REQUIRED`), any ``APIARY_*`` value still
    holding the template placeholder, a secret of the other plane present
    (:data:`PLANE_SECRETS`), a database that is not PostgreSQL, fewer than 3 JetStream
    replicas, a data plane trusting another issuer than the control plane signs as, and an
    envelope key that is not 32 bytes.
    """
    problems: list[str] = []
    for field in REQUIRED[plane]:
        if not _value(settings, field):
            problems.append(f"{_env(field)} is unset: a cluster has no embedded stores or keys")
    for field in ApiarySettings.model_fields:
        value = _value(settings, field)
        if value and PLACEHOLDER in value:
            problems.append(
                f"{_env(field)} still holds the template placeholder {PLACEHOLDER!r}")
    other: Plane = "data" if plane == "control" else "control"
    for field in PLANE_SECRETS[other]:
        if _value(settings, field):
            problems.append(
                f"{_env(field)} is set, but it is a secret of the {other} plane: a {plane}-plane "
                f"node must not hold it (give it only to the {other} plane's cluster)")
    database = "cp_database_url" if plane == "control" else "dp_database_url"
    url = _value(settings, database)
    if url and not url.startswith("postgresql"):
        problems.append(f"{_env(database)} must name PostgreSQL: every replica shares it")
    if plane == "data":
        if settings.nats_replicas < 3:
            problems.append(
                "APIARY_NATS_REPLICAS must be 3 (or 5): streams must survive a node")
        if settings.cp_issuer and settings.trusted_issuer != settings.cp_issuer_url:
            problems.append(
                f"the data plane trusts tokens of {settings.trusted_issuer!r} but the control "
                f"plane signs as {settings.cp_issuer_url!r}: set APIARY_JWT_ISSUER to "
                "APIARY_CP_ISSUER")
    key_field = "cp_envelope_key" if plane == "control" else "dp_envelope_key"
    key = _value(settings, key_field)
    if key and PLACEHOLDER not in key:
        try:
            _check_envelope(settings, plane)
        except ConfigurationError as exc:
            problems.append(exc.message)
    return problems


def _check_envelope(settings: ApiarySettings, plane: Plane) -> None:
    """Open the plane's envelope as its services will (a bad key raises)."""
    if plane == "control":
        from apiary.control.envelope import envelope_from_settings as cp_envelope

        cp_envelope(settings)
    else:
        from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings as dp_envelope

        dp_envelope(settings)


def cluster_settings(plane: Plane) -> ApiarySettings:
    """Settings from this process's environment, checked for ``plane`` on a cluster.

    Raises :class:`ConfigurationError` listing every problem.
    """
    settings = load_settings()
    problems = cluster_problems(settings, plane)
    if problems:
        raise ConfigurationError(
            f"not a {plane}-plane cluster configuration: " + "; ".join(problems))
    return settings


def _no_args(app: str, args: dict[str, Any]) -> None:
    if args:
        raise ConfigurationError(
            f"the {app} application takes no args (got {sorted(args)}); configure it with "
            "APIARY_* environment variables"
        )


def _nats_url(settings: ApiarySettings) -> str:
    if settings.nats_url is None:  # cluster_settings() already refused this
        raise ConfigurationError("APIARY_NATS_URL is unset")
    return settings.nats_url


def data_plane(args: dict[str, Any]) -> Application:
    """Builder of the ``data-plane`` application (keys and tokens checked at the control plane)."""
    from apiary.dataplane.auth import control_plane_authenticator

    _no_args("data-plane", args)
    settings = cluster_settings("data")
    app: Application = data_plane_app(
        settings, _nats_url(settings), control_plane_authenticator(settings)
    )
    return app


def control_plane(args: dict[str, Any]) -> Application:
    """Builder of the ``control-plane`` application (cpdb on PostgreSQL)."""
    _no_args("control-plane", args)
    app: Application = control_plane_app(cluster_settings("control"))
    return app


class PoolSupervisor:
    """Prepares the stores, then starts the writer pool and the pool scalers (evaluators,
    extra writers), and restarts what Ray restarted.

    One replica per cluster. Writers and scalers (which own the evaluators and the extra
    writers) are owned by the replica: if it dies they die with it and JetStream redelivers
    what they held; on a graceful stop they drain first, evaluators before writers.
    """

    # Serve awaits an async constructor; mypy only knows synchronous ones.
    async def __init__(self, settings: ApiarySettings) -> None:  # type: ignore[misc]
        from apiary._private.logs import configure_logging
        from apiary.actors.clickhouse import migrate_server
        from apiary.actors.writer import WriterPool
        from apiary.queue import connect, ensure_topology

        configure_logging(settings)
        nats_url = _nats_url(settings)
        nc = await connect(nats_url, name="apiary-pools")
        try:
            for change in await ensure_topology(nc.jetstream(), settings):
                log.info("jetstream: %s", change)
        finally:
            await nc.close()
        for version in await asyncio.to_thread(migrate_server, settings):
            log.info("clickhouse: applied migration %s", version)
        self._pool = WriterPool(
            settings, nats_url, num_cpus=WRITER_NUM_CPUS, resources={WRITER_RESOURCE: 1},
            get_if_exists=True,
        )
        self._settings, self._nats_url = settings, nats_url
        self._scalers: list[Any] = []
        # Writers may wait for the autoscaler to add a writer node: do not block start-up.
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        from apiary.actors.scaler import start_scalers

        await asyncio.to_thread(self._pool.start)
        # Evaluators (and extra writers) on nodes with their resource: a pool growing past
        # the nodes there are makes the Ray autoscaler add nodes of that type.
        self._scalers = await asyncio.to_thread(
            start_scalers, self._settings, self._nats_url,
            evaluator_options={"num_cpus": EVALUATOR_NUM_CPUS,
                               "resources": {EVALUATOR_RESOURCE: 1}},
            writer_options={"num_cpus": WRITER_NUM_CPUS, "resources": {WRITER_RESOURCE: 1}})
        while True:
            await asyncio.sleep(10.0)
            try:
                await asyncio.to_thread(self._pool.ensure_running)
                for scaler in self._scalers:
                    await scaler.ensure_running.remote()
            except Exception as exc:  # keep supervising; Ray restarts writers itself
                log.warning("writer supervision failed: %s", exc)

    async def check_health(self) -> None:
        if self._task.done():
            self._task.result()  # re-raises why the pool could not start
            raise RuntimeError("the writer pool supervisor stopped")

    async def __del__(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            from apiary.actors.scaler import stop_scalers

            # Evaluators drain first: the scores they publish are stored by the writers.
            await asyncio.to_thread(stop_scalers, getattr(self, "_scalers", []))
            await asyncio.to_thread(self._pool.stop)


def pools(args: dict[str, Any]) -> Application:
    """Builder of the ``pools`` application: one :class:`PoolSupervisor`, no HTTP route."""
    _no_args("pools", args)
    deployment = serve.deployment(
        PoolSupervisor,
        name="PoolSupervisor",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=10,
        # Writers store and acknowledge what they hold before the replica exits.
        graceful_shutdown_timeout_s=120,
    )
    app: Application = deployment.bind(cluster_settings("data"))  # type: ignore[attr-defined]
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apiary.deployments.serve_app",
        description="Apiary on Ray clusters (one per plane): print a plane's Serve config or "
        "the node environment, or check this environment's APIARY_* settings for a plane.",
    )
    parser.add_argument("command", choices=["config", "env", "check"])
    parser.add_argument("--plane", choices=PLANES,
                        help="the plane this cluster runs (required for config and check)")
    args = parser.parse_args(argv)
    if args.command != "env" and args.plane is None:
        parser.error(f"{args.command} needs --plane data or --plane control")
    if args.command == "config":
        print(json.dumps(serve_config(args.plane), indent=2))
    elif args.command == "env":
        for key, value in cluster_serve_environment().items():
            print(f"export {key}={shlex.quote(value)}")
    else:
        try:
            problems = cluster_problems(load_settings(), args.plane)
        except ConfigurationError as exc:
            problems = [exc.message]
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 2
        print(f"{args.plane}-plane cluster configuration OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
