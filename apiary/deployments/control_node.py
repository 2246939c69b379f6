"""Health of a control-plane-only node (``apiary up --plane control``) as a Serve deployment.

Such a node serves no data plane at ``/``, so this small deployment answers there:

- ``GET /healthz``: liveness (the replica answers).
- ``GET /readyz``: readiness, 200 only when every check passes, else 503 naming the failing
  ones, in the shape of the data plane's ``/readyz``
  (``{"ready", "not_ready", "checks": {name: {"ok", "error", "detail"}}}``):

  - ``control_plane``: the control plane's own ``/healthz`` answers 200 within the bound,
    which it does only after its database answered ``SELECT 1``;
  - ``federation``: the control-plane controller actor (found by name) answers with its
    gRPC port, and that port accepts a TCP connection: the federation endpoint listens.
    A node whose federation endpoint is off (port 0) reports it ``ok`` with ``"off"``.

Nothing is cached: each call asks again. Every check is bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

APP_NAME = "control-node"


class ControlNodeHealth:
    """One replica answering ``/healthz`` and ``/readyz`` of a control-plane-only node."""

    def __init__(self, control_plane_url: str, controller: tuple[str, str, str] | None,
                 timeout_s: float = 2.0) -> None:
        #: ``<base URL>/cp`` as this node serves it (not the public issuer URL).
        self._cp_url = control_plane_url.rstrip("/")
        #: ``(actor name, namespace, host its port is reached at)`` of the control-plane
        #: controller; ``None``: the federation endpoint is off.
        self._controller = controller
        self._timeout_s = timeout_s

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if path.endswith("/healthz"):
            return JSONResponse({"status": "ok", "plane": "control"})
        if path.endswith("/readyz"):
            body = await self.readiness()
            return JSONResponse(body, status_code=200 if body["ready"] else 503)
        return JSONResponse(
            {"message": f"this node runs the control plane only, at {self._cp_url}/ (its API "
                        "under /cp/v1); send data to a data plane's URL",
             "errorCode": "not_found"}, status_code=404)

    async def readiness(self) -> dict[str, Any]:
        checks = dict(zip(
            ("control_plane", "federation"),
            await asyncio.gather(self._check_control_plane(), self._check_federation()),
            strict=True,
        ))
        not_ready = [name for name, check in checks.items() if not check["ok"]]
        return {"ready": not not_ready, "not_ready": not_ready, "checks": checks}

    async def _check_control_plane(self) -> dict[str, Any]:
        import httpx

        url = f"{self._cp_url}/healthz"
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                answer = await client.get(url)
        except httpx.HTTPError as exc:
            return _failed(f"{url} did not answer: {exc or type(exc).__name__}")
        if answer.status_code != 200:
            return _failed(f"{url} answered HTTP {answer.status_code} (its database?)")
        return {"ok": True, "error": "", "detail": {"version": answer.json().get("version")}}

    async def _check_federation(self) -> dict[str, Any]:
        if self._controller is None:
            return {"ok": True, "error": "", "detail": {"endpoint": "off"}}
        import ray

        name, namespace, host = self._controller
        try:
            async with asyncio.timeout(self._timeout_s):
                actor = ray.get_actor(name, namespace=namespace)
                port = int(await actor.port.remote())
        except TimeoutError:
            return _failed(f"the control-plane controller did not answer within "
                           f"{self._timeout_s:g} s")
        except Exception as exc:  # not started, dead, restarting
            return _failed(f"the control-plane controller is not running: {exc!r}")
        if port == 0:
            return _failed("the control-plane controller is not listening")
        try:
            async with asyncio.timeout(self._timeout_s):
                _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            return _failed(f"the federation port {port} does not accept connections: {exc!r}")
        return {"ok": True, "error": "", "detail": {"port": port}}


def _failed(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error, "detail": {}}


def control_node_app(control_plane_url: str, controller: tuple[str, str, str] | None, *,
                     timeout_s: float = 2.0, log_level: str = "WARNING") -> Any:
    """The bound Serve application of :class:`ControlNodeHealth` (deploy it at ``/``)."""
    deployment = serve.deployment(
        ControlNodeHealth,
        name="ControlNodeHealth",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        logging_config={"enable_access_log": False, "log_level": log_level},
    )
    return deployment.bind(control_plane_url, controller,  # type: ignore[attr-defined]
                           timeout_s)
