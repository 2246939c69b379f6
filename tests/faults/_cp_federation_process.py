"""The control plane's federation server alone, in a process of its own, so that a fault
test can ``kill -9`` it mid-stream: ``python _cp_federation_process.py`` with the control
plane's settings in the environment (``APIARY_DATA_DIR``, ``APIARY_CP_ISSUER``,
``APIARY_CP_ENVELOPE_KEY``, ``APIARY_FEDERATION_GRPC_PORT``, ``APIARY_HOST``). Prints
``listening <port>`` once it serves, then serves until killed."""

from __future__ import annotations

import asyncio

from apiary.control import ControlPlane
from apiary.control.federation.server import FederationServer
from apiary.settings import ApiarySettings


async def main() -> None:
    settings = ApiarySettings()
    cp = ControlPlane.open(settings, migrate=False)
    server = FederationServer(settings, cp.database, poll_interval_s=0.1)
    port = await server.start()
    print(f"listening {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
