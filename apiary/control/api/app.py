"""The control plane's HTTP application.

Routes (relative to where the app is mounted, which is the issuer URL; ``apiary up``
mounts it at ``<base_url>/cp``):

- ``GET /.well-known/jwks.json`` — public keys of the token signer
- ``POST /v1/auth/token`` — API key or session → access token (for a data plane, or a
  control-plane token: the only token this app accepts)
- ``/v1/auth/*``, ``/v1/me*`` — sign-up, login, logout, password, TOTP, email
  verification and change, linked SSO identities, the SSO second factor
- ``/v1/orgs*``, ``/v1/workspaces*``, ``/v1/projects*`` — tenancy, members, invitations,
  roles, API keys, SSO providers, prompt templates, evaluators, alerts
- ``/v1/sso/oidc/*`` — browser SSO redirects
- ``/v1/data-planes*`` — data planes: creation, registration, status and health,
  commands; ``PUT /v1/projects/{id}/data-plane`` (:mod:`.routes_federation`);
  ``/healthz`` — liveness
- any other ``GET`` of a page (``Accept: text/html``) — the web UI (:mod:`.routes_ui`)

Errors are ``{"message", "errorCode"}`` with a precise status (:mod:`apiary.errors`).
"""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import apiary
from apiary.control.api import (
    routes_auth,
    routes_config,
    routes_email,
    routes_federation,
    routes_keys,
    routes_notifications,
    routes_sso,
    routes_tenancy,
)
from apiary.control.api.routes_ui import UI_DIR, install_ui
from apiary.control.service import ControlPlane
from apiary.errors import TooManyAttempts
from apiary.web.errors import install_error_handlers
from apiary.web.openapi import COMMON_ERRORS, describe_errors


def create_control_plane_app(control_plane: ControlPlane, *,
                             ui_dir: Path = UI_DIR) -> FastAPI:
    """The FastAPI app of one control-plane replica, serving with ``control_plane``, and
    the web UI built into ``ui_dir`` (:mod:`.routes_ui`)."""
    app = FastAPI(
        title="Apiary control plane",
        version=apiary.__version__,
        description="Identity, tenancy, roles, API keys, signed tokens and configuration.",
    )
    app.state.control_plane = control_plane
    install_error_handlers(app)
    describe_errors(app, errors=COMMON_ERRORS)

    @app.exception_handler(TooManyAttempts)
    async def _locked(request: Request, exc: TooManyAttempts) -> Response:
        return JSONResponse(exc.to_body(), status_code=exc.status,
                            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    for module in (routes_auth, routes_email, routes_tenancy, routes_keys, routes_sso,
                   routes_config, routes_federation, routes_notifications):
        app.include_router(module.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness: cpdb answers")
    def healthz() -> JSONResponse:
        with control_plane.transaction() as db:
            db.execute(text("SELECT 1"))
        return JSONResponse({"status": "ok", "version": apiary.__version__})

    install_ui(app, control_plane, ui_dir)
    return app
