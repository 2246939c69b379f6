"""One Apiary installation brought up on Ray: what ``apiary up`` starts, supervises and stops.

Which planes it runs is ``settings.plane`` (``apiary up --plane``):

- ``both`` (the default): everything below, the control plane embedded at ``<base URL>/cp``
  (unless ``APIARY_CONTROL_PLANE_URL`` names an external one). Its data plane is a
  federated data plane of that control plane (unless ``federation_grpc_port`` is 0, which
  keeps it a legacy audience): at the first start the control plane makes its record and
  bootstrap token in-process, marks it as serving new projects and assigns it every
  unassigned project; the data plane then registers like a remote one and its controller
  keeps the stream over loopback (:meth:`ApiaryNode._federate_own_data_plane`).
- ``control``: Ray, Serve, the control-plane application at ``/cp``, its bootstrap admin
  account and its federation controller (the gRPC endpoint data planes dial), and a small
  application at ``/`` answering ``/healthz`` and ``/readyz``
  (:mod:`apiary.deployments.control_node`). No nats-server, no ClickHouse, no writers; a
  data-plane secret in the settings is refused before anything starts.
- ``data``: the data plane only, trusting the control plane at ``APIARY_CONTROL_PLANE_URL``.
  With ``APIARY_BOOTSTRAP_TOKEN`` (and no identity yet in the data directory) it registers
  its own key pair there first, before anything else starts, so a refused token fails
  ``apiary up`` with nothing left running; a federated data plane then runs its controller
  (the stream to the control plane). A control-plane secret in the settings is refused
  before anything starts: this node never holds one.

In ``both`` and ``data`` modes :class:`ApiaryNode` starts, in order: the embedded
nats-server (unless ``APIARY_NATS_URL``), the JetStream streams and consumers, Ray (local,
or joining ``APIARY_RAY_ADDRESS``), the ClickHouse schema (in the chDB owner actor, or on
the server), the writer pool, the evaluator pool under its scaler (and a scaler of extra
writers with ``APIARY_WRITER_MAX``), the control-plane Serve application at ``/cp`` (unless
``APIARY_CONTROL_PLANE_URL`` names an external one, or ``--plane data``) with its bootstrap
tenant and its controller, and the data-plane Serve application, which trusts
the control plane only through its JWKS and token exchange. The streams, the schema, the
pools and the data-plane application come from the start-up sequence that a cluster's
Serve applications run too (:mod:`apiary.startup.sequence`); what is the node's own is the
process around them (lock, umask, nats-server, Ray, Serve, the bootstrap tenant).

When :meth:`ApiaryNode.start` returns, the API answers and ``<data-dir>/connection.json``
names its URL, a project API key, the project id, the admin account's email and the
OTLP/gRPC endpoint (``otlp_grpc_endpoint``; off with ``otlp_grpc_port`` 0) (never its
password: that is shown once, when the account is created, and only a hash is kept). A
control-plane-only node's ``connection.json`` names its URL, the control plane's URL, the
admin account's email and the federation endpoint (``federation_endpoint``, ``host:port``);
a data-plane-only node's its URL, the control plane's URL, the OTLP/gRPC endpoint and its
data plane id (``data_plane_id``, when federated).

Files: everything under the data directory is owner-only (directory 0700, files 0600).
Before anything is started the process umask becomes 0o077 (inherited by nats-server and a
locally started Ray, whose workers host chDB and the writers), and a data directory left
with looser modes is tightened, with a line in the start-up log saying how many paths
changed (:mod:`apiary._private.files`).

:meth:`ApiaryNode.stop` reverses it: the API stops taking requests, evaluators drain
(publish the scores of the tasks they hold), writers drain (store and acknowledge what
they hold), Ray and nats-server shut down. Everything acknowledged to a client is in
JetStream's fsync'ed store, so a stop at any point (even ``kill -9``) loses nothing; the
next start on the same data directory resumes from there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from apiary._private.files import private_dir, restrict_umask, tighten_tree, write_private
from apiary._private.logs import configure_logging
from apiary._private.ports import port_in_use, spare_port
from apiary.errors import ApiaryError, ConfigurationError
from apiary.queue import NatsServer, describe_url
from apiary.settings import ApiarySettings, Plane, plane_secrets
from apiary.startup.bootstrap import (
    Bootstrap,
    bootstrap_control_plane,
    read_connection,
    write_connection,
    write_control_connection,
    write_data_connection,
)
from apiary.startup.sequence import (
    NAMESPACE,
    NODE_PLACEMENT,
    DataPlaneServices,
    Progress,
    data_plane_application,
)

#: What Apiary keeps in a data directory (glob patterns): tightened at start. Anything else
#: there is not Apiary's, and is left as it is.
DATA_DIR_ENTRIES = (
    "nats", "clickhouse", "objects", "cp.sqlite*", "dp.sqlite*", "*.key", ".*.key.*",
    "connection.json", "state.json", "apiary.lock", ".*.tmp", "dp-identity.json",
)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connection:
    """How a client reaches this installation (``connection.json`` holds all but
    ``admin_password``).

    ``admin_password`` is set only by the start that created the admin account, so that
    ``apiary up`` can show it that once; it is never written anywhere.
    """

    url: str
    api_key: str
    project_id: str
    control_plane_url: str
    admin_email: str | None = None
    admin_password: str | None = None
    #: ``host:port`` of the OTLP/gRPC receiver, ``None`` when ``otlp_grpc_port`` is 0.
    otlp_grpc_endpoint: str | None = None
    #: The planes this node runs (``settings.plane``).
    plane: str = "both"
    #: ``host:port`` data planes dial (the control plane's federation endpoint), ``None``
    #: when this node runs no control plane or its endpoint is off.
    federation_endpoint: str | None = None
    #: A federated data plane's id (its registered identity), else ``None``.
    data_plane_id: str | None = None


class ApiaryNode:
    """Starts, supervises and stops one installation. Not re-entrant; one per data dir."""

    def __init__(self, settings: ApiarySettings, progress: Progress | None = None) -> None:
        own_cp = f"{settings.base_url}/cp"
        self.plane = settings.plane
        #: Whether this node runs the data plane (nats-server, ClickHouse, writers, the API).
        self.runs_data_plane = settings.plane != "control"
        self._external_control_plane = settings.control_plane_url not in (None, own_cp)
        # A control plane URL naming this node's own /cp is the embedded one, too.
        self.embedded_control_plane = (settings.plane != "data"
                                       and not self._external_control_plane)
        if settings.control_plane_url is None and settings.plane != "data":
            # The data plane trusts the control plane this node runs, at <base URL>/cp.
            settings = settings.model_copy(
                update={"control_plane_url": own_cp}
            )
        #: ``--plane both`` with the federation endpoint on: this node's data plane is a
        #: federated data plane of its own control plane, streaming over loopback.
        self.self_federated = (self.embedded_control_plane and settings.plane == "both"
                               and bool(settings.federation_grpc_port))
        if self.self_federated and settings.federation_endpoint is None:
            host = settings.host
            local = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
            local = f"[{local}]" if ":" in local else local
            settings = settings.model_copy(update={
                "federation_endpoint": f"{local}:{settings.federation_grpc_port}"})
        self.settings = settings
        self._progress = progress or (lambda _msg: None)
        self._lock_file: IO[str] | None = None
        self._previous_umask: int | None = None
        self._nats: NatsServer | None = None
        self._nats_url: str | None = None
        self._started_ray = False
        self._haproxy_dir: Path | None = None
        self._services: DataPlaneServices | None = None
        self._cp_controller: Any = None
        self._serve_running = False
        #: Whether this node's data plane is federated: registered (or to register, with
        #: ``APIARY_BOOTSTRAP_TOKEN``) with an external control plane, with which its
        #: controller keeps a stream.
        self.federated = (self.runs_data_plane and not self.embedded_control_plane
                          and settings.federated)
        self.bootstrap: Bootstrap | None = None
        self.data_plane_id: str | None = None
        self.connection: Connection | None = None

    # -- start ----------------------------------------------------------------------------

    def start(self) -> Connection:
        """Bring everything up; on failure, stop what was started and re-raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _check_plane(self) -> None:
        """Refuse a plane's configuration that cannot work, before anything starts: a
        control-only node naming another control plane, a data-only node without one, and a
        node holding a secret of a plane it does not run."""
        s = self.settings
        if s.plane == "control" and self._external_control_plane:
            raise ConfigurationError(
                f"--plane control runs the control plane on this node, but "
                f"APIARY_CONTROL_PLANE_URL names another ({s.control_plane_url}); unset it")
        if s.plane == "data" and not self._external_control_plane:
            raise ConfigurationError(
                "--plane data needs the control plane's URL: pass --control-plane URL (or set "
                "APIARY_CONTROL_PLANE_URL), and --bootstrap-token T from `apiary data-planes "
                "create` to register this data plane")
        if s.bootstrap_token is not None and self.embedded_control_plane:
            raise ConfigurationError(
                "APIARY_BOOTSTRAP_TOKEN registers this data plane with another control plane, "
                "but this node runs its own (--plane both): run `apiary up --plane data "
                "--control-plane URL --bootstrap-token T`, or unset the token")
        if s.plane == "both":
            return
        other: Plane = "data" if s.plane == "control" else "control"
        held = [f"APIARY_{field.upper()}" for field in plane_secrets(other)
                if getattr(s, field) is not None]
        if held:
            raise ConfigurationError(
                f"--plane {s.plane} must hold no secret of the {other} plane, but "
                f"{', '.join(held)} {'is' if len(held) == 1 else 'are'} set; give "
                f"{'it' if len(held) == 1 else 'them'} only to the {other} plane's node")

    def _start(self) -> Connection:
        s = self.settings
        self._check_plane()
        configure_logging(s)
        # Before any server starts: everything they create inherits it.
        self._previous_umask = restrict_umask()
        self._tighten_data_dir()
        private_dir(s.data_dir)
        self._lock()
        if port_in_use(s.host, s.port):
            raise ConfigurationError(
                f"port {s.port} on {s.host} is in use; choose another with --port or "
                "APIARY_PORT"
            )
        if self.runs_data_plane and s.otlp_grpc_port and port_in_use(s.host, s.otlp_grpc_port):
            # The replicas bind it with SO_REUSEPORT: without this check, a second
            # installation on the host would silently share the first one's connections.
            raise ConfigurationError(
                f"port {s.otlp_grpc_port} on {s.host} (OTLP/gRPC) is in use; choose another "
                "with APIARY_OTLP_GRPC_PORT, or 0 to turn the receiver off"
            )

        if (self.embedded_control_plane and s.federation_grpc_port
                and port_in_use(s.host, s.federation_grpc_port)):
            raise ConfigurationError(
                f"port {s.federation_grpc_port} on {s.host} (the federation endpoint) is in "
                "use; choose another with APIARY_FEDERATION_GRPC_PORT, or 0 to turn it off")
        if not self.runs_data_plane:
            return self._start_control_only()
        if self.federated:
            # First of all: a refused token fails `apiary up` with nothing started.
            from apiary.dataplane.federation import ensure_identity

            self._progress(f"checking this data plane's identity at {s.control_plane_url}")
            identity = ensure_identity(s)
            self.data_plane_id = identity.data_plane_id
            self._progress(f"  data plane {identity.data_plane_id} ({identity.name or '-'}), "
                           f"federation endpoint {identity.federation_endpoint}")
        if s.embedded_nats:
            self._progress("starting nats-server with JetStream (fsync on every write, encrypted "
                           "at rest)")
            self._nats = NatsServer(s.data_dir, store_key=s.jetstream_key)
            self._nats_url = self._nats.start()
        else:
            self._nats_url = s.nats_url
        if self._nats_url is None:
            raise RuntimeError("no NATS URL")
        # The start-up sequence (apiary.startup.sequence), with Ray started after its first
        # step: the streams need no Ray, the embedded ClickHouse owner does.
        services = self._services = DataPlaneServices(
            s, self._nats_url, NODE_PLACEMENT, client_name="apiary-up", progress=self._progress)
        asyncio.run(services.ensure_streams())

        self._progress(
            f"joining Ray cluster at {s.ray_address}" if s.ray_address else "starting Ray"
        )
        self._start_ray()

        services.prepare_clickhouse()
        services.start_writers()
        services.start_scalers()
        services.start_notifiers()
        services.start_alert_evaluator()

        self._start_serve()
        if self.embedded_control_plane:
            self._progress("bootstrapping the control plane (admin, org, project, key)")
            self.bootstrap = bootstrap_control_plane(s)
            self._progress("deploying the control-plane Serve application at /cp")
            self._deploy_control_plane()
            self._start_cp_controller()
            if self.self_federated:
                self._federate_own_data_plane()
        self._progress("deploying the data-plane Serve application")
        self._deploy_data_plane()
        if self.federated or self.self_federated:
            # The stream to the control plane; ingestion never waits for it.
            services.start_controller()

        self._progress("waiting for the API to answer")
        self._wait_ready("/healthz")
        if self.embedded_control_plane:
            self._wait_ready("/cp/healthz")

        cp_url = s.control_plane_url or ""
        if self.bootstrap is not None:
            if "admin_password" in read_connection(s.data_dir):
                self._progress("removing the admin password an earlier version kept in "
                               "connection.json")
            write_connection(s, self.bootstrap)
            connection = Connection(
                s.base_url, self.bootstrap.api_key, self.bootstrap.project_id, cp_url,
                self.bootstrap.admin_email, self.bootstrap.admin_password,
                otlp_grpc_endpoint=s.otlp_grpc_endpoint, plane=s.plane,
                federation_endpoint=self.federation_endpoint(), data_plane_id=self.data_plane_id,
            )
        else:
            write_data_connection(s, self.data_plane_id)
            connection = Connection(s.base_url, "", "", cp_url,
                                    otlp_grpc_endpoint=s.otlp_grpc_endpoint, plane=s.plane,
                                    data_plane_id=self.data_plane_id)
        self._write_state(connection)
        self.connection = connection
        return connection

    def _federate_own_data_plane(self) -> None:
        """Make this node's data plane a federated data plane of its own control plane, as
        a remote one is (docs/architecture.md, "Federation"): on the first start (no
        ``dp-identity.json``; an older data directory's legacy audience included) the
        control plane makes its record and bootstrap token in-process, marks it as serving
        new projects and assigns it every unassigned project
        (:func:`~apiary.startup.bootstrap.prepare_own_data_plane`, committed first), and
        the data plane registers its key with that token over HTTP
        (:func:`~apiary.dataplane.federation.ensure_identity`). A later start finds the
        identity and only connects. A crash in between leaves no identity, and the next
        start issues a new token and registers the kept key again."""
        from pydantic import SecretStr

        from apiary.dataplane.federation import ensure_identity, load_identity, write_identity
        from apiary.startup.bootstrap import move_own_data_plane, prepare_own_data_plane

        s = self.settings
        identity = load_identity(s.data_dir)
        if identity is None:
            self._progress("registering this node's data plane with its own control plane")
            self._wait_ready("/cp/healthz")  # the registration is the HTTP call a remote makes
            token = prepare_own_data_plane(s)
            identity = ensure_identity(
                s.model_copy(update={"bootstrap_token": SecretStr(token)}))
        else:
            # Started on another port or issuer: its own control plane moved with it (the
            # identity JWTs' audience, the tokens' issuer, the URL the web UI reaches).
            cp_url, issuer = (s.control_plane_url or "").rstrip("/"), s.cp_issuer_url
            if (identity.control_plane_url, identity.issuer) != (cp_url, issuer):
                identity = dataclasses.replace(identity, control_plane_url=cp_url,
                                               issuer=issuer)
                write_identity(identity)
            move_own_data_plane(s, identity.data_plane_id)
        self.data_plane_id = identity.data_plane_id
        self._progress(f"  data plane {identity.data_plane_id} ({identity.name or '-'}), "
                       f"federation endpoint {s.federation_endpoint}")

    def _start_control_only(self) -> Connection:
        """``--plane control``: Ray, Serve, the control plane, its controller and the
        node's health application; no queue, no store, no writers."""
        s = self.settings
        self._progress("starting Ray (control plane only)")
        self._start_ray()
        self._start_serve()
        self._progress("bootstrapping the control plane (admin account, org)")
        self.bootstrap = bootstrap_control_plane(s, local_data_plane=False)
        self._progress("deploying the control-plane Serve application at /cp")
        self._deploy_control_plane()
        self._start_cp_controller()
        self._progress("deploying the node's health application at /")
        self._deploy_control_node()
        self._progress("waiting for the control plane to answer")
        self._wait_ready("/cp/healthz")
        self._wait_ready("/healthz")
        federation = self.federation_endpoint()
        write_control_connection(s, self.bootstrap, federation)
        connection = Connection(
            s.base_url, "", "", s.control_plane_url or "", self.bootstrap.admin_email,
            self.bootstrap.admin_password, plane="control", federation_endpoint=federation)
        self._write_state(connection)
        self.connection = connection
        return connection

    def _tighten_data_dir(self) -> None:
        """Take group and other permissions away from everything in the data directory
        (an older version, a copy or an archive may have left them)."""
        data_dir = self.settings.data_dir
        changed = tighten_tree(data_dir, only=DATA_DIR_ENTRIES)
        if changed:
            message = (f"tightened the modes of {len(changed)} path(s) in {data_dir} that "
                       "its group or others could access (now owner-only)")
            log.warning(message, extra={"paths": [str(p) for p in changed[:20]]})
            self._progress(message)

    def _lock(self) -> None:
        fd = os.open(self.settings.data_dir / "apiary.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        lock = os.fdopen(fd, "w")  # held until stop
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigurationError(
                f"another Apiary is running on {self.settings.data_dir}; stop it with "
                "`apiary down` or choose another --data-dir"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock_file = lock

    def _start_ray(self) -> None:
        import ray

        from apiary.deployments import serve_environment

        # HAProxy's admin socket lives under this directory plus a 64-character hash, and
        # Unix socket paths are limited to ~100 bytes: keep the base short and per-install.
        digest = hashlib.sha256(str(self.settings.data_dir).encode()).hexdigest()[:10]
        haproxy_dir = Path("/tmp") / f"aph-{digest}"
        haproxy_dir.mkdir(mode=0o700, exist_ok=True)
        self._haproxy_dir = haproxy_dir
        env = (
            serve_environment(
                haproxy_dir=str(haproxy_dir), stats_port=spare_port(),
                metrics_port=spare_port()
            )
            if self.settings.serve_ingress == "haproxy"
            else {}
        )
        # Local Ray processes inherit this process's environment; on a joined cluster the
        # Serve controller reads it from the job's runtime environment.
        os.environ.update(env)
        if ray.is_initialized():
            return
        common: dict[str, Any] = {
            "namespace": NAMESPACE,
            "logging_level": "WARNING",
            "log_to_driver": False,
            "configure_logging": False,
        }
        if self.settings.ray_address:
            ray.init(address=self.settings.ray_address, runtime_env={"env_vars": env}, **common)
        else:
            ray.init(num_cpus=self.settings.ray_num_cpus, include_dashboard=False,
                     object_store_memory=self.settings.ray_object_store_bytes, **common)
            self._started_ray = True

    def _start_serve(self) -> None:
        from ray import serve

        serve.start(
            http_options={"host": self.settings.host, "port": self.settings.port},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )
        self._serve_running = True

    def _deploy_control_plane(self) -> None:
        from ray import serve

        from apiary.deployments.control_plane import APP_NAME, ROUTE_PREFIX, control_plane_app

        serve.run(control_plane_app(self.settings), name=APP_NAME, route_prefix=ROUTE_PREFIX,
                  blocking=False)

    def _start_cp_controller(self) -> None:
        """The control plane's federation controller (the gRPC endpoint data planes dial),
        unless ``federation_grpc_port`` is 0; returns once it listens."""
        from apiary.startup.federation import start_control_plane_controller

        s = self.settings
        if not s.federation_grpc_port:
            self._progress("federation endpoint off (APIARY_FEDERATION_GRPC_PORT is 0)")
            return
        self._progress(f"starting the control-plane controller (federation endpoint on "
                       f"{s.host}:{s.federation_grpc_port})")
        self._cp_controller = start_control_plane_controller(s)

    def federation_endpoint(self) -> str | None:
        """``host:port`` data planes dial (as advertised to them at registration), ``None``
        when this node runs no control-plane controller."""
        if self._cp_controller is None:
            return None
        return self.settings.federation_endpoint_advertised

    def _deploy_control_node(self) -> None:
        from ray import serve

        from apiary.deployments.control_node import APP_NAME, control_node_app

        serve.run(control_node_app(f"{self.settings.base_url}/cp", self._controller_ref(),
                                   log_level=self.settings.log_level),
                  name=APP_NAME, route_prefix="/", blocking=False)

    def _controller_ref(self) -> tuple[str, str, str] | None:
        """What the health application finds the controller by: name, namespace, host."""
        if self._cp_controller is None:
            return None
        from apiary.actors.cp_controller import CP_CONTROLLER_NAME

        host = self.settings.host
        return (CP_CONTROLLER_NAME, NAMESPACE,
                "127.0.0.1" if host in ("0.0.0.0", "::") else host)

    def _deploy_data_plane(self) -> None:
        from ray import serve

        from apiary.deployments import APP_NAME

        if self._nats_url is None:
            raise RuntimeError("no NATS URL")
        app = data_plane_application(self.settings, self._nats_url)
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)

    def _wait_ready(self, path: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.settings.base_url}{path}"
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(url, timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ApiaryError(f"Apiary did not become ready ({path}): {last}", url=url)

    def _write_state(self, connection: Connection) -> None:
        state = {
            "pid": os.getpid(),
            "url": connection.url,
            "plane": connection.plane,
            "control_plane_url": connection.control_plane_url,
            "federation_endpoint": connection.federation_endpoint,
            "data_plane_id": connection.data_plane_id,
            "project_id": connection.project_id,
            "nats": describe_url(self._nats_url) if self._nats_url else None,
            "nats_pid": self._nats.pid if self._nats else None,
            "clickhouse": (None if not self.runs_data_plane
                           else self.settings.clickhouse_url or "embedded chDB"),
            "ray_address": self._ray_address(),
            "started_at": time.time(),
        }
        write_private(self.settings.data_dir / "state.json", json.dumps(state, indent=2))

    @staticmethod
    def _ray_address() -> str:
        import ray

        return str(ray.get_runtime_context().gcs_address)

    # -- run ------------------------------------------------------------------------------

    def supervise_once(self) -> None:
        """Restart writers Ray restarted after a crash, and make a restarted control-plane
        controller listen again; called periodically by ``apiary up``."""
        if self._services is not None:
            self._services.ensure_running()
        if self._cp_controller is not None:
            import ray

            try:
                ray.get(self._cp_controller.ensure_running.remote(), timeout=60)
            except Exception as exc:  # restarting: the next round starts it
                log.warning("control-plane controller not running yet",
                            extra={"error": repr(exc)})

    def writer_stats(self) -> list[dict[str, Any]]:
        return [] if self._services is None else self._services.writer_stats()

    @property
    def nats_url(self) -> str | None:
        """The URL (with its credentials) of the NATS server this node's data plane uses."""
        return self._nats_url

    def controller_status(self) -> dict[str, Any] | None:
        """The data plane's federation controller's state (connected, applied config
        version, ...); None when this node's data plane is not federated."""
        return None if self._services is None else self._services.controller_status()

    def pool_status(self) -> list[dict[str, Any]]:
        """What each pool scaler (evaluators, extra writers) sees and has."""
        return [] if self._services is None else self._services.pool_status()

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything that was started, in reverse order. Safe to call twice."""
        errors: list[str] = []

        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:  # keep stopping the rest
                errors.append(f"{what}: {exc}")

        if self._serve_running:
            self._progress("stopping the data plane")
            from ray import serve

            attempt("serve", serve.shutdown)
            self._serve_running = False
        if self._cp_controller is not None:
            from apiary.startup.federation import stop_control_plane_controller

            self._progress("stopping the control-plane controller")
            controller, self._cp_controller = self._cp_controller, None
            attempt("control-plane controller",
                    lambda: stop_control_plane_controller(controller))
        if self._services is not None:
            # Evaluators, then writers, then the chDB owner (apiary.startup.sequence).
            services, self._services = self._services, None
            errors.extend(services.stop())
        if self._started_ray:
            import ray

            self._progress("stopping Ray")
            attempt("ray", ray.shutdown)
            self._started_ray = False
        if self._nats is not None:
            self._progress("stopping nats-server")
            attempt("nats", self._nats.stop)
            self._nats = None
        if self._haproxy_dir is not None:
            shutil.rmtree(self._haproxy_dir, ignore_errors=True)
            self._haproxy_dir = None
        state = self.settings.data_dir / "state.json"
        if state.exists():
            state.unlink()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self._previous_umask is not None:
            os.umask(self._previous_umask)
            self._previous_umask = None
        if errors:
            self._progress("stopped with errors: " + "; ".join(errors))


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The ``state.json`` of a running installation, or ``None``."""
    path = data_dir / "state.json"
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    return state


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process; one that exited but was not yet reaped by
    its parent (a zombie) is not: it holds nothing, and waiting for it never ends."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no procfs (macOS): signal 0 is all there is
    # The state follows the parenthesised command name, which may itself hold ") ".
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"
