"""Apiary planes as separate ``apiary up`` processes on one machine: the harness of the
federation test (``tests/federation``) and of ``bench/federation``.

:class:`Plane` is one installation: ``apiary up`` in a child process with its own data
directory (so its own nats-server, chDB, secrets and local Ray: each ``apiary up`` starts
a Ray cluster of its own, with a session directory of its own under ``/tmp/ray``, and Ray
picks free ports for it), its own HTTP, OTLP/gRPC and (control plane) federation ports,
and its output in ``<data-dir>.log``. ``control_plane(...)`` makes one that runs the
control plane (``apiary up --plane control``), ``data_plane(...)`` one that runs only a
data plane dialing a control plane (``apiary up --plane data --control-plane URL
--bootstrap-token T``). When the installed ``apiary up`` has no ``--plane`` flag yet, the
same planes are started the way that already works: the control plane as a whole
installation, the data plane with ``APIARY_CONTROL_PLANE_URL`` and ``APIARY_BOOTSTRAP_TOKEN``.

Every wait is bounded. :meth:`Plane.stop` sends SIGTERM to the ``apiary up`` process and,
when it has not stopped in time, SIGKILL to it and every process it started (found by
parentage in ``/proc``, never by name); :meth:`Plane.pause` / :meth:`Plane.resume` send
SIGSTOP / SIGCONT to the same tree, a hang of the whole installation. Nothing here runs
``ray stop``.

:class:`ControlPlaneAdmin` is the installation admin's HTTP session on a control plane:
data planes (create, list, revoke), projects and keys, evaluators.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from apiary._private.ports import spare_port

ROOT = Path(__file__).resolve().parents[1]
APIARY = [sys.executable, "-m", "apiary.cli"]
T = TypeVar("T")


def free_port() -> int:
    return spare_port()


def federation_serves(endpoint: str, timeout: float = 2.0) -> bool:
    """Whether the control plane's federation endpoint (``host:port``) serves the stream:
    a ``Connect`` with no valid identity is refused with UNAUTHENTICATED (an open port is
    not enough: the servicer must answer)."""
    import grpc

    from apiary.federation_wire import pb2, pb2_grpc

    messages = pb2()
    hello = messages.DataPlaneMessage(hello=messages.Hello(data_plane_id="dp-probe"))
    with grpc.insecure_channel(endpoint) as channel:
        answers = pb2_grpc().FederationStub(channel).Connect(
            iter([hello]), timeout=timeout, metadata=(("authorization", "Bearer probe"),))
        try:
            next(answers)
        except grpc.RpcError as exc:
            return bool(exc.code() is grpc.StatusCode.UNAUTHENTICATED)
        finally:
            answers.cancel()
    return False


def until(what: str, ready: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """``ready()``'s first truthy value, polled; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@functools.cache
def has_plane_flags() -> bool:
    """Whether ``apiary up`` takes ``--plane`` (``apiary up --plane control|data``)."""
    out = subprocess.run([*APIARY, "up", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=_base_env())
    return "--plane" in out.stdout


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first), by parentage in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _base_env() -> dict[str, str]:
    # The caller's APIARY_* settings are not the planes'; APIARY_FROM_SOURCE is how to run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APIARY_") or k == "APIARY_FROM_SOURCE"}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", APIARY_LOG_FORMAT="text")
    return env


class Plane:
    """One ``apiary up`` process and what it serves. Not thread-safe."""

    def __init__(self, kind: str, name: str, data_dir: Path, *, env: dict[str, str],
                 args: list[str], port: int, otlp_grpc_port: int,
                 federation_port: int | None = None) -> None:
        self.kind, self.name, self.data_dir = kind, name, data_dir
        self.port, self.otlp_grpc_port, self.federation_port = port, otlp_grpc_port, federation_port
        self.env, self.args = env, args
        self.log_path = data_dir.with_name(data_dir.name + ".log")
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cp_url(self) -> str:
        """The control plane's base URL (this plane's ``/cp``)."""
        return f"{self.url}/cp"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    # -- life ---------------------------------------------------------------------------

    def start(self) -> Plane:
        """Start ``apiary up`` (returns at once; :meth:`wait_ready` waits)."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lines = []
        self.process = subprocess.Popen(
            [*APIARY, "up", "--data-dir", str(self.data_dir), "--port", str(self.port),
             *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
            cwd=ROOT)
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with self.log_path.open("a") as log:
            for line in process.stdout:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    def wait_ready(self, timeout: float = 240.0) -> Plane:
        """Until ``apiary up`` finished starting (it printed that it is ready) and the
        plane's health endpoint answers 200; AssertionError with its output otherwise."""
        health = f"{self.cp_url}/healthz" if self.kind == "control" else f"{self.url}/healthz"

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                if self._reader is not None:
                    self._reader.join(5)
                raise AssertionError(f"{self.name}: apiary up exited "
                                     f"{self.process.returncode}:\n{self.output[-6000:]}")
            if not any(line.startswith("Press Ctrl-C to stop") for line in self.lines):
                return False  # what `apiary up` prints last, once it is ready
            try:
                return httpx.get(health, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            until(f"{self.name} to start", ready, timeout, interval=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output[-6000:]}") from None
        return self

    def tree(self) -> list[int]:
        """This plane's processes: ``apiary up`` and everything it started."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *descendants(self.process.pid)]

    def pids_running(self, fragment: str) -> list[int]:
        """The processes of this plane whose command line contains ``fragment`` (a Ray
        actor shows as ``ray::<ClassName>``)."""
        found = []
        for pid in self.tree():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if fragment.encode() in cmdline:
                found.append(pid)
        return found

    def pause(self) -> None:
        """SIGSTOP every process of the installation: it hangs (connections stay open)."""
        for pid in self.tree():
            _signal(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        for pid in reversed(self.tree()):
            _signal(pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 90.0) -> None:
        """SIGTERM ``apiary up`` (it stops everything it started), then SIGKILL the
        whole tree if it has not exited within ``timeout`` seconds. Safe to call twice."""
        process = self.process
        if process is None:
            return
        if self.paused:
            self.resume()
        if process.poll() is None:
            tree = self.tree()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.lines.append(f"[harness] {self.name} did not stop in {timeout:.0f} s: "
                                  "SIGKILL")
                for pid in [*descendants(process.pid), process.pid]:
                    _signal(pid, signal.SIGKILL)
                process.wait(30)
            # What it started and did not stop (a hung Ray worker): by pid, never by name.
            for pid in tree[1:]:
                _signal(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(10)

    def kill(self) -> None:
        """SIGKILL ``apiary up`` and everything it started: a crash of the installation."""
        if self.process is None or self.process.poll() is not None:
            return
        tree = self.tree()
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        self.process.wait(30)
        if self._reader is not None:
            self._reader.join(10)

    def down(self, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        """``apiary down --data-dir`` (the CLI's way to stop it)."""
        result = subprocess.run(
            [*APIARY, "down", "--data-dir", str(self.data_dir), "--timeout", str(timeout)],
            capture_output=True, text=True, timeout=timeout + 30, env=self.env, cwd=ROOT)
        if self.process is not None:
            self.process.wait(30)
        return result

    # -- what it says -------------------------------------------------------------------

    def connection(self) -> dict[str, Any]:
        """``connection.json`` as ``apiary up`` wrote it."""
        data: dict[str, Any] = json.loads((self.data_dir / "connection.json").read_text())
        return data

    def admin_password(self) -> str:
        """The admin password ``apiary up`` printed once (first start only)."""
        for line in self.lines:
            match = re.match(r"\s*admin:\s+(\S+) / (\S+)", line)
            if match:
                return match.group(2)
        raise AssertionError(f"{self.name}: no admin password in the output:\n{self.output}")

    def readyz(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readyz", timeout=10.0)

    def federation(self) -> dict[str, Any] | None:
        """A federated data plane's controller state as its ``/readyz`` shows it
        (``applied_config_version``, ``connection``, ``revoked``, ``draining``); ``None``
        when it does not answer or shows none."""
        try:
            body = self.readyz().json()
        except (httpx.HTTPError, ValueError):
            return None
        check = (body.get("checks") or {}).get("federation")
        if not isinstance(check, dict):
            return None
        detail: dict[str, Any] = check.get("detail") or {}
        return detail

    def applied_config_version(self) -> int:
        """The highest config version this data plane applied (0: none, or unknown)."""
        state = self.federation() or {}
        return int(state.get("applied_config_version") or 0)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _plane_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = _base_env()
    env.update(APIARY_RAY_NUM_CPUS="2", APIARY_WRITER_FLUSH_INTERVAL_S="0.2",
               APIARY_EVALUATOR_MIN="1", APIARY_EVALUATOR_MAX="1")
    env.update(extra or {})
    return env


def control_plane(base: Path, name: str = "cp", *, env: dict[str, str] | None = None) -> Plane:
    """A control plane at ``base/name`` on free ports (HTTP, OTLP/gRPC, federation)."""
    port, grpc_port, federation_port = free_port(), free_port(), free_port()
    plane_env = _plane_env({"APIARY_OTLP_GRPC_PORT": str(grpc_port),
                            "APIARY_FEDERATION_GRPC_PORT": str(federation_port), **(env or {})})
    args = ["--plane", "control"] if has_plane_flags() else []
    return Plane("control", name, base / name, env=plane_env, args=args, port=port,
                 otlp_grpc_port=grpc_port, federation_port=federation_port)


def data_plane(base: Path, name: str, control_plane_url: str, bootstrap_token: str, *,
               port: int | None = None, env: dict[str, str] | None = None) -> Plane:
    """A data plane at ``base/name`` on ``port`` (else a free one), bootstrapping at the
    control plane ``control_plane_url`` (its ``/cp`` URL) with ``bootstrap_token``."""
    port, grpc_port = port or free_port(), free_port()
    plane_env = _plane_env({"APIARY_OTLP_GRPC_PORT": str(grpc_port), **(env or {})})
    if has_plane_flags():
        args = ["--plane", "data", "--control-plane", control_plane_url,
                "--bootstrap-token", bootstrap_token]
    else:
        args = []
        plane_env.update(APIARY_CONTROL_PLANE_URL=control_plane_url,
                         APIARY_BOOTSTRAP_TOKEN=bootstrap_token)
    return Plane("data", name, base / name, env=plane_env, args=args, port=port,
                 otlp_grpc_port=grpc_port)


def start_all(planes: list[Plane], timeout: float = 300.0) -> None:
    """Start the planes together and wait until every one is ready."""
    for plane in planes:
        plane.start()
    deadline = time.monotonic() + timeout
    for plane in planes:
        plane.wait_ready(max(1.0, deadline - time.monotonic()))


class ControlPlaneAdmin:
    """The installation admin's session on a control plane (``/cp`` API)."""

    def __init__(self, cp_url: str, email: str, password: str) -> None:
        self.http = httpx.Client(base_url=cp_url, timeout=30.0)
        self.email, self.password = email, password
        self.login()

    def login(self) -> None:
        response = self.http.post("/v1/auth/login",
                                  json={"email": self.email, "password": self.password})
        assert response.status_code == 200, response.text
        self.http.headers["authorization"] = f"Bearer {response.json()['session_token']}"

    def close(self) -> None:
        self.http.close()

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        assert response.status_code == status, (method, path, response.status_code,
                                                response.text)
        return response.json() if response.content else None

    # data planes
    def create_data_plane(self, name: str, url: str, ttl_s: int | None = None
                          ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "url": url}
        if ttl_s is not None:
            body["bootstrap_ttl_s"] = ttl_s
        created: dict[str, Any] = self.ok("POST", "/v1/data-planes", 201, json=body)
        return created

    def data_planes(self) -> dict[str, dict[str, Any]]:
        """Every data plane by id."""
        return {p["id"]: p for p in self.ok("GET", "/v1/data-planes")}

    def data_plane(self, dp_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.ok("GET", f"/v1/data-planes/{dp_id}")
        return found

    def revoke(self, dp_id: str) -> None:
        self.ok("POST", f"/v1/data-planes/{dp_id}/revoke")

    def assign(self, project_id: str, dp_id: str) -> None:
        self.ok("PUT", f"/v1/projects/{project_id}/data-plane", json={"data_plane_id": dp_id})

    # tenancy
    def first_workspace(self) -> str:
        (org, *_) = self.ok("GET", "/v1/orgs")
        (workspace, *_) = self.ok("GET", f"/v1/orgs/{org['id']}/workspaces")
        return str(workspace["id"])

    def create_project(self, workspace_id: str, name: str) -> str:
        made = self.ok("POST", f"/v1/workspaces/{workspace_id}/projects", 201,
                       json={"name": name})
        return str(made["id"])

    def create_key(self, project_id: str, name: str) -> tuple[str, str]:
        """A new project key: ``(key id, the whole key)``."""
        issued = self.ok("POST", f"/v1/projects/{project_id}/keys", 201, json={"name": name})
        return str(issued["key"]["id"]), str(issued["api_key"])

    def revoke_key(self, project_id: str, key_id: str) -> None:
        self.ok("DELETE", f"/v1/projects/{project_id}/keys/{key_id}")

    # configuration
    def create_python_evaluator(self, project_id: str, name: str, code: str,
                                deploy: bool = True, **spec: Any) -> dict[str, Any]:
        """A Python metric, its version 1 deployed (what runs online) unless ``deploy`` is
        false."""
        made: dict[str, Any] = self.ok(
            "POST", f"/v1/projects/{project_id}/evaluators", 201,
            json={"name": name, "type": "python", "code": code, **spec})
        if deploy:
            made = self.ok("POST", f"/v1/projects/{project_id}/evaluators/{made['id']}/deploy",
                           json={"version": 1})
        return made

    def update_evaluator(self, project_id: str, evaluator_id: str, **fields: Any
                         ) -> dict[str, Any]:
        updated: dict[str, Any] = self.ok(
            "PATCH", f"/v1/projects/{project_id}/evaluators/{evaluator_id}", json=fields)
        return updated

    def add_evaluator_version(self, project_id: str, evaluator_id: str, code: str,
                              deploy: bool = True, **spec: Any) -> int:
        version = self.ok("POST", f"/v1/projects/{project_id}/evaluators/{evaluator_id}/versions",
                          201, json={"code": code, **spec})
        if deploy:
            self.ok("POST", f"/v1/projects/{project_id}/evaluators/{evaluator_id}/deploy",
                    json={"version": version["version"]})
        return int(version["version"])
