"""Apiary's Serve applications on Ray clusters: the import paths of their Serve configs.

A deployment is **two Ray clusters**, one per plane, because the planes share no
credentials (:mod:`apiary.startup.plane_checks`). Each plane's cluster gets its plane's
secrets only, and the two talk over HTTP: the data plane trusts the control plane through
its JWKS and token exchange (``APIARY_CONTROL_PLANE_URL``).

- **data plane** (``cluster.yaml``; KubeRay RayService ``apiary``), :func:`serve_config`
  ``("data")``: ``data-plane`` at ``/`` (ingestion and queries, the LLM proxy;
  :func:`data_plane`) and ``pools`` (no HTTP route; :func:`pools`): a
  :class:`~apiary.deployments.pools.PoolSupervisor` running the start-up sequence
  (:mod:`apiary.startup.sequence`, the one ``apiary up`` runs): it creates the JetStream
  streams, migrates ClickHouse and keeps the writer actors running on nodes that offer the
  custom resource :data:`WRITER_RESOURCE`, and the pool scalers that size the evaluator pool
  (on nodes offering :data:`EVALUATOR_RESOURCE`) and the extra writers on queue depth.
- **control plane** (``cluster-cp.yaml``; RayService ``apiary-cp``), :func:`serve_config`
  ``("control")``: ``control-plane`` at ``/cp``: accounts, keys, tokens
  (:func:`control_plane`), and ``federation`` (no HTTP route; :func:`federation`): a
  :class:`~apiary.deployments.pools.PoolSupervisor` running :class:`ControlPlaneServices`,
  which keeps the control plane's federation controller (the gRPC endpoint federated data
  planes dial, ``APIARY_FEDERATION_GRPC_PORT``) running.

A **dedicated data plane** (``kuberay/rayservice-data-plane.yaml``) is a data-plane cluster
federated with a shared control plane elsewhere: the same applications, with a federation
identity in ``APIARY_DATA_DIR`` (a volume every Ray pod mounts). ``python -m
apiary.startup.cluster identity`` creates it before Ray starts (the head's init container):
it registers the data plane's new public key with ``APIARY_BOOTSTRAP_TOKEN`` once, and finds
the identity on every later start. The data-plane builders refuse to build a federated data
plane without its identity.

Each builder reads the ``APIARY_*`` environment of the Ray node that builds it and refuses
to build anything that :func:`~apiary.startup.plane_checks.cluster_settings` refuses (stores
not named by configuration, a template's ``CHANGE-ME``, a secret of the other plane). Run
``python -m apiary.startup.cluster check --plane data|control`` on a node to see what is
wrong; ``config --plane ...`` prints the plane's Serve config and ``env`` the environment
(HAProxy ingress) that every Ray node must start with.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from ray.serve import Application

from apiary.deployments import serve_environment
from apiary.deployments.control_plane import APP_NAME as CP_APP_NAME
from apiary.deployments.control_plane import ROUTE_PREFIX as CP_ROUTE_PREFIX
from apiary.deployments.control_plane import control_plane_app
from apiary.deployments.data_plane import APP_NAME as DP_APP_NAME
from apiary.deployments.pools import pools_app
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings, load_settings
from apiary.startup.federation import (
    start_control_plane_controller,
    stop_control_plane_controller,
)
from apiary.startup.plane_checks import PLANES, Plane, cluster_problems, cluster_settings
from apiary.startup.sequence import DataPlaneServices, Placement, data_plane_application

#: Custom Ray resource offered by writer nodes; each writer actor requests one unit.
WRITER_RESOURCE = "writer"
#: Custom Ray resource offered by evaluator nodes; each evaluator actor must request one.
EVALUATOR_RESOURCE = "evaluator"
#: CPUs each writer actor requests (beside one unit of :data:`WRITER_RESOURCE`).
WRITER_NUM_CPUS = 1.0
#: CPUs each evaluator actor requests (beside one unit of :data:`EVALUATOR_RESOURCE`); its
#: sandbox workers and judge calls run within them.
EVALUATOR_NUM_CPUS = 1.0
#: Where the pools' actors run on a cluster: on the nodes that offer their resource (a pool
#: growing past those nodes makes the Ray autoscaler add nodes of that type).
CLUSTER_PLACEMENT = Placement(
    writer={"num_cpus": WRITER_NUM_CPUS, "resources": {WRITER_RESOURCE: 1}},
    evaluator={"num_cpus": EVALUATOR_NUM_CPUS, "resources": {EVALUATOR_RESOURCE: 1}},
    adopt_writers=True,
)
#: Port of Serve's HTTP ingress (HAProxy) on every node; KubeRay's serve Service targets it.
SERVE_HTTP_PORT = 8000
#: Where HAProxy keeps its files on each node, and its stats and metrics ports.
HAPROXY_DIR = "/tmp/haproxy-serve"
HAPROXY_STATS_PORT = 8404
HAPROXY_METRICS_PORT = 9101

# Spelled out: under `python -m` this module is __main__, but Serve imports it by name.
_MODULE = "apiary.startup.cluster"
APPLICATIONS: dict[Plane, tuple[tuple[str, str | None, str], ...]] = {
    # (application name, HTTP route prefix or None, import path of its builder)
    "data": (
        (DP_APP_NAME, "/", f"{_MODULE}:data_plane"),
        ("pools", None, f"{_MODULE}:pools"),
    ),
    "control": (
        (CP_APP_NAME, CP_ROUTE_PREFIX, f"{_MODULE}:control_plane"),
        ("federation", None, f"{_MODULE}:federation"),
    ),
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


class ControlPlaneServices:
    """The control plane's services behind its HTTP face, as a cluster's ``federation``
    application's supervisor runs them (the protocol of
    :class:`~apiary.deployments.pools.Pools`): its federation controller actor, started
    (listening) by :meth:`start`, made to listen again after Ray restarted it by
    :meth:`ensure_running`, and stopped (every stream closed) by :meth:`stop`. Nothing with
    ``federation_grpc_port`` 0. Picklable until started."""

    def __init__(self, settings: ApiarySettings) -> None:
        self.settings = settings
        self._controller: Any = None

    async def prepare(self) -> None:
        """Nothing to prepare: the controller migrates cpdb itself as it starts."""

    def start(self) -> None:
        """Start the controller; returns once it listens."""
        self._controller = start_control_plane_controller(self.settings)

    def ensure_running(self) -> None:
        if self._controller is not None:
            import ray

            ray.get(self._controller.ensure_running.remote(), timeout=60)

    def stop(self) -> list[str]:
        if self._controller is None:
            return []
        controller, self._controller = self._controller, None
        try:
            stop_control_plane_controller(controller)
        except Exception as exc:  # reported by the supervisor, which keeps stopping
            return [f"federation controller: {exc}"]
        return []


def cluster_pools(settings: ApiarySettings) -> DataPlaneServices:
    """The start-up sequence of a data-plane cluster's pools, not yet started."""
    return DataPlaneServices(settings, _nats_url(settings), CLUSTER_PLACEMENT,
                             client_name="apiary-pools")


def data_plane_settings() -> ApiarySettings:
    """The settings of a data-plane cluster's node (:func:`cluster_settings`), with its
    federation identity in place when it is federated (a bootstrap token or an identity
    file): the identity is loaded, or registered with the bootstrap token if the head's
    ``identity`` step has not run. Raises :class:`ConfigurationError` when it cannot be."""
    settings = cluster_settings("data")
    if settings.federated:
        from apiary.dataplane.federation import ensure_identity

        ensure_identity(settings)
    return settings


def data_plane(args: dict[str, Any]) -> Application:
    """Builder of the ``data-plane`` application (keys and tokens checked at the control plane)."""
    _no_args("data-plane", args)
    settings = data_plane_settings()
    app: Application = data_plane_application(settings, _nats_url(settings))
    return app


def control_plane(args: dict[str, Any]) -> Application:
    """Builder of the ``control-plane`` application (cpdb on PostgreSQL)."""
    _no_args("control-plane", args)
    app: Application = control_plane_app(cluster_settings("control"))
    return app


def federation(args: dict[str, Any]) -> Application:
    """Builder of the ``federation`` application: one supervisor of
    :class:`ControlPlaneServices` (the control plane's federation controller)."""
    _no_args("federation", args)
    app: Application = pools_app(ControlPlaneServices(cluster_settings("control")))
    return app


def pools(args: dict[str, Any]) -> Application:
    """Builder of the ``pools`` application: one supervisor of :func:`cluster_pools`."""
    _no_args("pools", args)
    app: Application = pools_app(cluster_pools(data_plane_settings()))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {_MODULE}",
        description="Apiary on Ray clusters (one per plane): print a plane's Serve config or "
        "the node environment, or check this environment's APIARY_* settings for a plane.",
    )
    parser.add_argument("command", choices=["config", "env", "check", "identity"],
                        help="identity: register this data plane with APIARY_BOOTSTRAP_TOKEN "
                        "unless its identity exists in APIARY_DATA_DIR (a dedicated data "
                        "plane's head runs it before Ray starts)")
    parser.add_argument("--plane", choices=PLANES,
                        help="the plane this cluster runs (required for config and check)")
    args = parser.parse_args(argv)
    if args.command == "identity":
        return _identity()
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


def _identity() -> int:
    """``identity``: the data plane's federation identity, registered if it is not yet.
    Exit 0 with the data plane's id, 2 when the configuration or the token is refused (the
    reason on stderr), 1 when the control plane cannot be reached (retryable: an init
    container that exits 1 is started again)."""
    from apiary.dataplane.federation import ensure_identity
    from apiary.errors import ApiaryError

    try:
        identity = ensure_identity(cluster_settings("data"))
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except ApiaryError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"data plane {identity.data_plane_id} ({identity.name or '-'}) of "
          f"{identity.control_plane_url}; federation endpoint {identity.federation_endpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
