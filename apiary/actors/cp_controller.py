"""The control plane's federation controller as a Ray actor (docs/architecture.md,
"Federation"): one per installation, named :data:`CP_CONTROLLER_NAME`, restarted by Ray if
its process dies (``max_restarts=-1``). It serves the federation endpoint
(:class:`~apiary.control.federation.server.FederationServer`) on cpdb; every call starts the
server if it is not running yet, so a restarted actor serves again at the first call
(the supervisor's :meth:`ControlPlaneController.ensure_running`).

It also runs the control plane's mail outbox (:class:`~apiary.control.outbox.MailOutbox`:
invitation and verification mail queued in cpdb, sent with retries), started with the
server; a restarted actor resumes it, and mail queued meanwhile waits in cpdb."""

from __future__ import annotations

from typing import Any

import ray

from apiary.settings import ApiarySettings

CP_CONTROLLER_NAME = "apiary-cp-controller"


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class ControlPlaneController:
    """Serves data planes' federation streams (auth, config push, health, commands)."""

    def __init__(self, settings: ApiarySettings) -> None:
        self._settings = settings
        self._server: Any = None
        self._port: int | None = None
        self._outbox: Any = None

    async def start(self) -> int:
        """Listen on ``federation_grpc_port``; the port. Idempotent."""
        if self._server is None:
            import asyncio

            from apiary._private.logs import configure_logging
            from apiary.control.db import Database, upgrade
            from apiary.control.federation.server import FederationServer

            configure_logging(self._settings)
            database = Database.open(self._settings.cp_database)
            await asyncio.to_thread(upgrade, database.engine)
            server = FederationServer(self._settings, database)
            await asyncio.to_thread(server.forget_connections)
            outbox = self._outbox_on(database)  # before listening: a bad key raises here
            self._port = await server.start()
            self._server = server
            self._outbox = asyncio.get_running_loop().create_task(outbox.run(),
                                                                  name="cp-mail-outbox")
        assert self._port is not None
        return self._port

    def _outbox_on(self, database: Any) -> Any:
        from apiary.control.envelope import envelope_from_settings
        from apiary.control.outbox import MailOutbox

        return MailOutbox(self._settings, database, envelope_from_settings(self._settings))

    async def ensure_running(self) -> int:
        return await self.start()

    async def port(self) -> int:
        return await self.start()

    async def status(self) -> dict[str, Any]:
        """Its port, its process (a restart changes it) and the data planes connected."""
        import os

        port = await self.start()
        return {"port": port, "pid": os.getpid(), "connected": self._server.connected()}

    async def stop(self) -> None:
        if self._outbox is not None:
            self._outbox.cancel()
            self._outbox = None
        if self._server is not None:
            await self._server.stop()
            self._server.database.dispose()
            self._server = None


__all__ = ["CP_CONTROLLER_NAME", "ControlPlaneController"]
