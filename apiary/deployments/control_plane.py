"""The control plane as a Ray Serve deployment.

A stateless HTTP face over cpdb: every replica opens its own :class:`ControlPlane`
(engine pool, envelope key, signer cache) in the constructor and builds the FastAPI app
after. Replicas migrate cpdb on start; migrations serialize themselves (advisory lock on
PostgreSQL, the write lock on SQLite), so starting several at once is safe. Mount it at
``route_prefix="/cp"`` so that its URL is the issuer URL (``settings.cp_issuer_url``).

Invitation and verification mail queued in cpdb is sent by the control-plane controller
actor's outbox; with the federation endpoint off (``federation_grpc_port`` 0: no controller
runs) each replica runs the outbox itself (:class:`~apiary.control.outbox.MailOutbox`:
claims are exclusive, so several replicas never send one mail twice).
"""

from __future__ import annotations

from typing import Any

from ray import serve

from apiary.settings import ApiarySettings

APP_NAME = "control-plane"
ROUTE_PREFIX = "/cp"


@serve.ingress()
class ControlPlaneDeployment:
    """One replica: cpdb opened in the constructor, the app built after."""

    # Serve awaits an async constructor; mypy only knows synchronous ones.
    async def __init__(self, settings: ApiarySettings) -> None:  # type: ignore[misc]
        from apiary._private.logs import configure_logging
        from apiary.control.service import ControlPlane

        configure_logging(settings)
        self._ui_dir = settings.ui_dir
        self._control_plane = ControlPlane.open(settings, migrate=True)
        self._outbox: Any = None
        if not settings.federation_grpc_port:  # no controller actor to send the mail
            import asyncio

            from apiary.control.outbox import MailOutbox

            cp = self._control_plane
            self._outbox = asyncio.get_running_loop().create_task(
                MailOutbox(settings, cp.database, cp.envelope).run(), name="cp-mail-outbox")

    def __serve_build_asgi_app__(self) -> Any:
        from apiary.control.api import create_control_plane_app
        from apiary.control.api.routes_ui import UI_DIR

        return create_control_plane_app(self._control_plane, ui_dir=self._ui_dir or UI_DIR)

    async def check_health(self) -> None:
        from sqlalchemy import text

        with self._control_plane.transaction() as db:
            db.execute(text("SELECT 1"))

    async def __del__(self) -> None:
        if self._outbox is not None:
            self._outbox.cancel()
        self._control_plane.close()


def control_plane_app(settings: ApiarySettings, *, num_cpus: float = 0.25) -> Any:
    """The bound Serve application of the control plane (deploy with ``ROUTE_PREFIX``)."""
    deployment = serve.deployment(
        ControlPlaneDeployment,
        name="ControlPlane",
        num_replicas=settings.cp_replicas,
        # Endpoints are synchronous (argon2, database): Serve runs them in a thread pool.
        max_ongoing_requests=32,
        ray_actor_options={"num_cpus": num_cpus},
        health_check_period_s=10,
        logging_config={"enable_access_log": False, "log_level": settings.log_level},
    )
    return deployment.bind(settings)  # type: ignore[attr-defined]  # Deployment at runtime
