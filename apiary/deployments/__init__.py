"""Ray Serve deployments: thin Serve wrappers that hold no business logic. What they run
comes from the planes' packages; when and with what settings they are deployed is decided by
:mod:`apiary.startup` (``apiary up`` and the clusters' Serve configs), which this package
never imports.

- :func:`data_plane_app`: ingestion and queries (:mod:`apiary.deployments.data_plane`).
- :func:`control_plane_app`: accounts, keys, tokens at ``/cp``
  (:mod:`apiary.deployments.control_plane`).
- :func:`pools_app`: a cluster's writer and evaluator pools under one
  :class:`PoolSupervisor`, which runs the start-up sequence it is handed
  (:mod:`apiary.deployments.pools`).
- :func:`control_node_app`: ``/healthz`` and ``/readyz`` of a control-plane-only node
  (:mod:`apiary.deployments.control_node`).
- :func:`serve_environment`: the environment Serve must start with for throughput.
"""

from __future__ import annotations

from apiary.deployments.control_node import ControlNodeHealth, control_node_app
from apiary.deployments.control_plane import ControlPlaneDeployment, control_plane_app
from apiary.deployments.data_plane import APP_NAME, DataPlane, data_plane_app
from apiary.deployments.pools import Pools, PoolSupervisor, pools_app


def serve_environment(*, haproxy_dir: str, stats_port: int, metrics_port: int) -> dict[str, str]:
    """Environment variables for Ray processes, set before Ray starts.

    Serve's HAProxy ingress with direct ingress to replicas measured 5.5x the default
    proxy's throughput for 150 KB OTLP bodies on 2 cores (docs/benchmarks.md). HAProxy's
    state files and ports are made per-installation so that two Apiary instances (or a test
    and a running instance) on one machine do not collide.
    """
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_NBTHREAD": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{haproxy_dir}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{haproxy_dir}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": haproxy_dir,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{haproxy_dir}/server-state",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        # One machine, no external load balancer to drain: stop replicas promptly.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        # Serve's uvicorn servers believe X-Forwarded-For from 127.0.0.1 by default and
        # rewrite the ASGI client address from it; HAProxy (on loopback) passes the
        # client's header through unchanged, so any client could choose the address the
        # control plane throttles logins by. Trust no peer here: the control plane reads
        # the header itself, only from APIARY_CP_TRUSTED_PROXIES.
        "FORWARDED_ALLOW_IPS": "",
    }


__all__ = [
    "APP_NAME",
    "ControlNodeHealth",
    "ControlPlaneDeployment",
    "DataPlane",
    "PoolSupervisor",
    "Pools",
    "control_node_app",
    "control_plane_app",
    "data_plane_app",
    "pools_app",
    "serve_environment",
]
