"""Planes served over real HTTP for tests that need a URL (schemathesis).

:func:`served_data_plane` runs the data plane in a thread of its own with its own event
loop: a real :class:`DataPlaneContext` (NATS from the session's ``nats_server``, a
:class:`DirectStoreClient` over the session's chDB ``store``, dpdb in a SQLite file, the
authenticator the test chooses), a real :class:`WriterLoop`, and the app under uvicorn on
127.0.0.1 (with its lifespan, as in production). Everything asynchronous is created
inside that loop, so synchronous test code (hypothesis) can call it over HTTP. Ray is not
started.

:func:`served_control_plane` serves the control plane's app over its own SQLite cpdb with
``tests/_servers.py``'s :func:`http_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from _servers import free_port, http_server

from apiary.control import ControlPlane
from apiary.control.api import create_control_plane_app
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import Authenticator
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

_STARTUP_S = 60.0


@contextlib.contextmanager
def served_data_plane(nats_url: str, store: EventStore, config: ApiarySettings,
                      authenticator: Callable[[ApiarySettings], Authenticator],
                      ) -> Iterator[str]:
    """The data plane at ``http://127.0.0.1:<port>`` until the block ends; its
    authenticator is made by ``authenticator(config)`` in the plane's own loop."""
    data_dir = config.data_dir
    state: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> None:
        nc = await connect(nats_url, name="served-dp-setup")
        js = nc.jetstream()
        await ensure_topology(js, config)
        client = DirectStoreClient(store)
        context = await DataPlaneContext.open(config, nats_url, authenticator(config),
                                              store=client)
        writer = WriterLoop(js=js, store=client, objects=LocalObjectStore(data_dir / "objects"),
                            settings=config, name="served-dp-writer")
        task = asyncio.create_task(writer.run())
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            create_app(context), host="127.0.0.1", port=port, log_level="warning",
            access_log=False))
        state.update(server=server, url=f"http://127.0.0.1:{port}")
        ready.set()
        try:
            await server.serve()
        finally:
            writer.stop()
            await task
            await context.close()
            await nc.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the waiting test below
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="served-data-plane", daemon=True)
    thread.start()
    ready.wait(_STARTUP_S)
    server = state.get("server")
    deadline = time.monotonic() + _STARTUP_S
    while server is not None and not server.started and thread.is_alive() \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    if server is None or not server.started:
        raise RuntimeError(f"the data plane did not start: {state.get('error')!r}")
    try:
        yield str(state["url"])
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def served_control_plane(settings: ApiarySettings) -> Iterator[str]:
    """The control plane at ``http://127.0.0.1:<port>`` (its app's own paths, no /cp)."""
    control_plane = ControlPlane.open(settings)
    try:
        with http_server(create_control_plane_app(control_plane)) as url:
            yield url
    finally:
        control_plane.close()
