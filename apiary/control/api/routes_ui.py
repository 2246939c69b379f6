"""The web UI, served by the control plane at its root (``<issuer>/``; ``apiary up``: ``/cp/``).

The UI is a single-page app built from ``ui/`` (``make ui``: ``npm ci`` + ``vite build``)
into :data:`UI_DIR`, inside this package and never committed. Nothing here is a route:
:func:`install_ui` hooks the app's 404 answer, so every API path keeps exactly what it
answered before (its routes, its 405s, its JSON 404s). Only a ``GET``/``HEAD`` that no
route matched is considered, and then:

- a file of the build (``assets/...``, ``favicon.svg``) is sent as is; the hashed
  ``assets/`` for a year (``immutable``), anything else revalidated;
- a request that accepts ``text/html`` and whose first path segment is not an API prefix
  (:data:`API_PREFIXES`) gets ``index.html``, so a deep link (a session's URL pasted in a
  new tab) opens the app, which routes it; the page carries ``<base href>`` at the mount
  point (the ASGI ``root_path``) and a Content-Security-Policy that lets its script talk
  only to this origin and the registered data planes;
- anything else is the JSON 404 it was.

When the UI was not built, an HTML request gets a 404 page that says so and how to build it,
except the mailed email-verification link (``/verify-email?token=``), which is redirected
to the API's own confirmation page.
"""

from __future__ import annotations

import html
import inspect
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from apiary.control.dataplanes import list_data_planes
from apiary.control.identity.verification import UI_VERIFY_PATH, VERIFY_PATH
from apiary.control.service import ControlPlane

#: Where ``make ui`` writes the build (gitignored).
UI_DIR = Path(__file__).resolve().parent.parent / "webui"
#: First path segments that belong to the API: never answered with the app.
API_PREFIXES = frozenset({"v1", ".well-known", "healthz", "openapi.json", "docs", "redoc"})
_NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Apiary: the web UI is not built</title></head><body><main>
<h1>The web UI is not built</h1><p>{reason}</p>
<p>Build it with <code>make ui</code> (Node 20 and npm), or run <code>make up</code>,
which builds it when Node is installed. The API works without it.</p></main></body></html>"""


def _relative_path(request: Request) -> str:
    """The request's path below the app's mount point, without the leading slash."""
    path: str = request.scope.get("path", "")
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path.lstrip("/")


def _accepts_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _build_file(ui_dir: Path, relative: str) -> Path | None:
    """The file of the build at ``relative``, if it is one (never outside ``ui_dir``)."""
    if not relative or relative == "index.html":
        return None
    root = ui_dir.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _content_security_policy(cp: ControlPlane) -> str:
    """Scripts and styles from this origin only; API calls to this origin and the data
    planes' origins; no framing (clickjacking)."""
    with cp.transaction() as db:
        origins = sorted({o for p in list_data_planes(db, None) if (o := _origin(p.url))})
    connect = " ".join(["'self'", *origins])
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src {connect}; frame-ancestors 'none'; "
            "base-uri 'self'; form-action 'self'; object-src 'none'")


def index_page(ui_dir: Path, root_path: str) -> str | None:
    """``index.html`` of the build with ``<base href>`` at ``root_path``; None if unbuilt."""
    index = ui_dir / "index.html"
    if not index.is_file():
        return None
    base = html.escape(root_path.rstrip("/") + "/", quote=True)
    return index.read_text(encoding="utf-8").replace(
        "<head>", f'<head>\n    <base href="{base}">', 1)


def install_ui(app: FastAPI, control_plane: ControlPlane, ui_dir: Path = UI_DIR) -> None:
    """Serve the UI from ``ui_dir`` for GETs no route matched (see the module docstring)."""
    app.state.ui_dir = ui_dir  # where the UI is (routes_sso sends browsers back into it)
    previous = app.exception_handlers[StarletteHTTPException]

    async def json_404(request: Request, exc: Exception) -> Response:
        """What the app answered before (:mod:`apiary.web.errors`: JSON)."""
        answer = previous(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    async def not_found_or_ui(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code != 404 or request.method not in ("GET", "HEAD"):
            return await json_404(request, exc)
        relative = _relative_path(request)
        found = _build_file(ui_dir, relative)
        if found is not None:
            immutable = relative.startswith("assets/")
            return FileResponse(found, headers={
                "Cache-Control": "public, max-age=31536000, immutable" if immutable
                else "no-cache", "X-Content-Type-Options": "nosniff"})
        if relative == UI_VERIFY_PATH.lstrip("/") and not (ui_dir / "index.html").is_file():
            # The mailed verification link names the UI's page; without the UI, the API's
            # own page (a button that POSTs the token) does the same.
            query = request.url.query
            return RedirectResponse(
                request.scope.get("root_path", "") + VERIFY_PATH + (f"?{query}" if query else ""),
                302, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
        first = relative.split("/", 1)[0]
        if first in API_PREFIXES or not _accepts_html(request):
            return await json_404(request, exc)
        page = index_page(ui_dir, request.scope.get("root_path", ""))
        if page is None:
            reason = html.escape(f"{ui_dir} has no index.html.")
            return HTMLResponse(_NOT_BUILT.format(reason=reason), status_code=404)
        return HTMLResponse(page, headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": _content_security_policy(control_plane),
            "Referrer-Policy": "same-origin"})

    app.add_exception_handler(StarletteHTTPException, not_found_or_ui)
