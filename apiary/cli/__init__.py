"""The ``apiary`` command: ``up``, ``status`` (health, and each project's ingest accounting:
accepted, stored, dead-lettered, in flight), ``down``, administration of the control
plane (``users``, ``projects``, ``keys``, ``data-planes``; see :mod:`apiary.control.cli`), and
the dead letters (``dlq``; see :mod:`apiary.cli.dlq`).

``apiary up`` runs in the foreground until Ctrl-C (or ``apiary down``), showing progress
while it starts and printing the API's URL and a project API key when it is ready. The
admin account's password is printed once, by the start that creates the account; later
starts say how to reset it (``apiary users reset-password``).

Every command runs with umask 0o077, set before anything else happens: the data directory
and all it holds (databases, queue, keys, ``connection.json``) are owner-only, and so is
whatever the servers ``apiary up`` starts create (:mod:`apiary._private.files`).
Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 (``status``) not running.

Public surface: :func:`main` (the console script) and :func:`build_parser`. The top of the
import layers: it may import anything in :mod:`apiary`; nothing imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import apiary
from apiary._private.files import restrict_umask
from apiary.errors import ApiaryError, ConfigurationError
from apiary.settings import ApiarySettings, flag_help, load_settings

if TYPE_CHECKING:
    from apiary.startup.node import Connection

# Ray 2.60 authenticates every connection with a token (~/.ray/auth_token), and reads the
# mode once, when it is imported: say so explicitly, before anything imports Ray, so that
# starting a local cluster and joining one (--address) behave the same.
os.environ.setdefault("RAY_AUTH_MODE", "token")


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "address", None):
        overrides["ray_address"] = args.address
    if getattr(args, "plane", None):
        overrides["plane"] = args.plane
    if getattr(args, "control_plane", None):
        overrides["control_plane_url"] = args.control_plane
    if getattr(args, "bootstrap_token", None):
        overrides["bootstrap_token"] = args.bootstrap_token
    return overrides


class _Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    settings = load_settings(**_settings_overrides(args))
    from apiary.startup.node import ApiaryNode

    progress = _Progress()
    progress(f"Apiary starting on data dir {settings.data_dir}")
    progress("ingest hot path: " + (
        f"compiled ({len(apiary.COMPILED_MODULES)} modules)" if apiary.COMPILED_MODULES
        else "from source (`make compile` compiles it: faster ingestion)"))
    node = ApiaryNode(settings, progress)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    try:
        connection = node.start()
    except BaseException as exc:
        # The admin account may have been created before start-up failed: its password
        # exists nowhere else, so show it now rather than lose it.
        if node.bootstrap is not None and node.bootstrap.admin_password:
            print(_admin_line(node.bootstrap.admin_email, node.bootstrap.admin_password),
                  flush=True)
        if isinstance(exc, KeyboardInterrupt):
            print("interrupted during start-up; stopped", file=sys.stderr)
            return 1
        raise
    # After start: Ray installs handlers of its own while it starts.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if connection.plane == "control":
        print(_control_ready_text(connection, settings.data_dir), flush=True)
    else:
        print(_ready_text(connection, settings), flush=True)
    try:
        while not stop.wait(5.0):
            try:
                node.supervise_once()
            except Exception as exc:  # keep serving; report and retry next round
                progress(f"supervision: {exc}")
    finally:
        progress("stopping")
        node.stop()
        progress("stopped")
    return 0


def _ready_text(connection: Connection, settings: ApiarySettings) -> str:
    """What ``apiary up`` prints when a node running the data plane is ready."""
    admin = ""
    if connection.admin_email:
        admin = "  " + _admin_line(connection.admin_email, connection.admin_password) + "\n"
    federation = (f"  federation:    {connection.federation_endpoint}\n"
                  if connection.federation_endpoint else "")
    if connection.data_plane_id:
        federation += (f"  data plane:    {connection.data_plane_id} (federated: projects "
                       "assigned to it at the control plane)\n")
    return (
        "\nApiary is ready.\n"
        f"  URL:           {connection.url}\n"
        f"  web UI:        {_web_ui_line(connection.control_plane_url, settings.ui_dir)}\n"
        f"  control plane: {connection.control_plane_url}\n"
        f"  API key:       {connection.api_key or '(use a key of your control plane)'}\n"
        f"  project id:    {connection.project_id or '-'}\n"
        f"  OTLP/gRPC:     {connection.otlp_grpc_endpoint or 'off'}\n"
        f"{federation}"
        f"{admin}"
        f"  written to:    {settings.data_dir / 'connection.json'}\n\n"
        f"Send OTLP/HTTP traces to {connection.url}/v1/traces"
        + (f" or OTLP/gRPC to {connection.otlp_grpc_endpoint}"
           if connection.otlp_grpc_endpoint else "")
        + " with 'Authorization: Bearer <API key>'.\nPress Ctrl-C to stop."
    )


def _control_ready_text(connection: Connection, data_dir: Path) -> str:
    """What ``apiary up --plane control`` prints when it is ready: where the control plane
    and its federation endpoint are, and how to add a data plane."""
    admin = ""
    if connection.admin_email:
        admin = "  " + _admin_line(connection.admin_email, connection.admin_password) + "\n"
    federation = connection.federation_endpoint or "off (APIARY_FEDERATION_GRPC_PORT is 0)"
    return (
        "\nApiary's control plane is ready (no data plane on this node).\n"
        f"  control plane: {connection.control_plane_url}\n"
        f"  web UI:        {_web_ui_line(connection.control_plane_url)}\n"
        f"  federation:    {federation}\n"
        f"{admin}"
        f"  written to:    {data_dir / 'connection.json'}\n\n"
        "Add a data plane: on this host run\n"
        "    apiary data-planes create NAME --url https://<the data plane's URL>\n"
        "which prints a one-time bootstrap token; on the data plane's host run\n"
        f"    apiary up --plane data --control-plane {connection.control_plane_url} "
        "--bootstrap-token <token>\n"
        "Press Ctrl-C to stop."
    )


def _web_ui_line(control_plane_url: str, ui_dir: Path | None = None) -> str:
    """Where the control plane serves the web UI, or why it does not (not built)."""
    from apiary.control.api.routes_ui import UI_DIR

    if not control_plane_url:
        return "-"
    if not ((ui_dir or UI_DIR) / "index.html").is_file():
        return "not built (Node 20 and npm are needed: `make ui`; the API works without it)"
    return f"{control_plane_url.rstrip('/')}/  (sign in with the admin account)"


def _admin_line(email: str, password: str | None) -> str:
    """What ``apiary up`` says of the admin account: its new password on the start that
    created it, else where the password went and how to replace it."""
    if password:
        return (f"admin:         {email} / {password}\n"
                "                (shown this once and stored nowhere: note it now; "
                f"`apiary users reset-password {email}` replaces it)")
    return (f"admin: {email} (password shown when it was created; reset with "
            f"`apiary users reset-password {email}`)")


def cmd_status(args: argparse.Namespace) -> int:
    from apiary.startup.node import process_alive, read_state

    settings = load_settings(**_settings_overrides(args))
    if args.all:
        return _status_all(args, settings)
    state = read_state(settings.data_dir)
    report: dict[str, Any] = {"data_dir": str(settings.data_dir), "running": False}
    if state and process_alive(int(state["pid"])):
        report.update(running=True, **state)
        try:
            health = httpx.get(f"{state['url']}/healthz", timeout=3.0)
            report["api"] = health.json() if health.status_code in (200, 503) else {
                "status": f"HTTP {health.status_code}"}
        except httpx.HTTPError as exc:
            report["api"] = {"status": f"unreachable: {exc}"}
        report["readiness"] = _readiness(state["url"])
        if state.get("plane") != "control":
            report["ingest"] = _ingest_stats(state["url"], settings)
    if args.json:
        print(json.dumps(report, indent=2))
    elif report["running"] and report.get("plane") == "control":
        print(f"Apiary's control plane is running (pid {report['pid']}) on "
              f"{report['data_dir']}; no data plane on this node")
        print(f"  control plane: {report['control_plane_url']}")
        print(f"  federation:    {report.get('federation_endpoint') or 'off'}")
        print(f"  ready:         {_describe_readiness(report['readiness'])}")
        print("  data planes:   `apiary status --all`")
    elif report["running"]:
        api = report.get("api", {})
        print(f"Apiary is running (pid {report['pid']}) on {report['data_dir']}")
        print(f"  URL:        {report['url']}")
        if report.get("data_plane_id"):
            print(f"  data plane: {report['data_plane_id']} (federated with "
                  f"{report.get('control_plane_url')})")
        print(f"  project id: {report['project_id']}")
        print(f"  queue:      {report['nats']}")
        print(f"  store:      {report['clickhouse']}")
        print(f"  API:        {api.get('status')}, backlog {api.get('events_backlog', '?')} "
              "messages")
        print(f"  ready:      {_describe_readiness(report['readiness'])}")
        _print_ingest(report["ingest"])
    else:
        print(f"Apiary is not running on {report['data_dir']}")
    return 0 if report["running"] else 3


def _status_all(args: argparse.Namespace, settings: ApiarySettings) -> int:
    """``apiary status --all``: every data plane the control plane knows (``GET
    {cp}/v1/data-planes``), with ``--control-plane URL --token T`` from anywhere, or on the
    control plane's host (its data directory's ``state.json``/``connection.json`` name the
    URL) reading cpdb directly when no token is given."""
    from apiary.startup.bootstrap import read_connection
    from apiary.startup.node import read_state

    url = args.control_plane or (read_state(settings.data_dir) or {}).get(
        "control_plane_url") or read_connection(settings.data_dir).get("control_plane_url")
    if args.token:
        if not url:
            raise ConfigurationError("--token needs --control-plane URL (no control plane "
                                     f"is recorded in {settings.data_dir})")
        planes = _data_planes_over_http(str(url), args.token)
    elif args.control_plane:
        raise ConfigurationError(
            "--control-plane needs --token: an installation admin's session token (POST "
            "/cp/v1/auth/login), or run `apiary status --all` on the control plane's host")
    elif url:
        planes = _data_planes_here(settings, str(url))
    else:
        raise ConfigurationError(
            f"no control plane runs on {settings.data_dir}: pass --data-dir of the control "
            "plane's node, or --control-plane URL --token T")
    if args.json:
        print(json.dumps({"control_plane_url": url, "data_planes": planes}, indent=2))
    else:
        _print_data_planes(str(url or settings.data_dir), planes, time.time())
    return 0


def _data_planes_over_http(url: str, token: str) -> list[dict[str, Any]]:
    from apiary.errors import AuthenticationFailed, ControlPlaneUnavailable, PermissionDenied

    endpoint = f"{url.rstrip('/')}/v1/data-planes"
    try:
        answer = httpx.get(endpoint, headers={"authorization": f"Bearer {token}"},
                           timeout=30.0)
    except httpx.HTTPError as exc:
        raise ControlPlaneUnavailable("the control plane did not answer", url=endpoint,
                                      error=str(exc) or type(exc).__name__) from None
    if answer.status_code == 200:
        planes: list[dict[str, Any]] = answer.json()
        return planes
    try:
        message = str(answer.json().get("message", ""))
    except ValueError:
        message = answer.text[:200]
    error = {401: AuthenticationFailed, 403: PermissionDenied}.get(answer.status_code)
    if error is not None:
        raise error(f"the control plane refused the token: {message}", url=endpoint)
    raise ControlPlaneUnavailable(f"the control plane answered HTTP {answer.status_code}: "
                                  f"{message}", url=endpoint)


def _data_planes_here(settings: ApiarySettings, url: str) -> list[dict[str, Any]]:
    """What ``GET {url}/v1/data-planes`` answers an installation admin, asked on the control
    plane's host: whoever can open its cpdb (its data directory, or
    ``APIARY_CP_DATABASE_URL``) acts as the installation's first admin, with a session made
    for this one request and revoked after it."""
    from sqlalchemy import select

    from apiary.control import admin
    from apiary.control.db import User
    from apiary.control.identity.sessions import create_session, revoke_session

    with admin.control_plane(settings) as cp:
        with cp.transaction() as db:
            user = db.scalars(select(User).where(User.is_instance_admin, ~User.disabled)
                              .order_by(User.created_at, User.id)).first()
            if user is None:
                raise ConfigurationError(
                    "this control plane has no installation admin; pass --token T")
            issued = create_session(cp, db, user, "cli")
            session_id = issued.session.id
        try:
            return _data_planes_over_http(url, issued.token)
        finally:
            with cp.transaction() as db:
                revoke_session(cp, db, session_id)


def _health_value(health: dict[str, Any] | None, name: str) -> Any:
    """A field of a health report, by its proto name or its JSON (camelCase) name."""
    if not health:
        return None
    camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
    return health.get(name, health.get(camel))


def _age(plane: dict[str, Any], now: float) -> str:
    """How long ago the data plane last reported (its health, else its last contact)."""
    from datetime import datetime

    def timestamp(value: Any) -> float | None:
        if value in (None, "", "0", 0):
            return None
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    at_ms = _health_value(plane.get("last_health"), "at_unix_ms")
    at = (float(at_ms) / 1000 if at_ms not in (None, "", "0", 0)
          else timestamp(_health_value(plane.get("last_health"), "at"))
          or timestamp(plane.get("last_seen_at")))
    if at is None:
        return "never"
    seconds = max(0.0, now - at)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


_PLANE_COLUMNS = ("name", "id", "status", "connected", "last report", "version", "ingest/s",
                  "writer lag", "dead letters", "projects")


def _plane_row(plane: dict[str, Any], now: float) -> tuple[str, ...]:
    health = plane.get("last_health")
    rate = _health_value(health, "ingest_rate")

    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    status = str(plane.get("status", "-")) + (" (draining)" if plane.get("draining") else "")
    return (
        str(plane.get("name", "")), str(plane.get("id", "")), status,
        "yes" if plane.get("connected") else "no", _age(plane, now),
        cell(plane.get("version")),
        "-" if rate is None else f"{float(rate):.1f}",
        cell(_health_value(health, "writer_lag")),
        cell(_health_value(health, "dead_letters")),
        ", ".join(plane.get("projects") or []) or "-",
    )


def _print_data_planes(source: str, planes: list[dict[str, Any]], now: float) -> None:
    """Every data plane as a table, one line each."""
    print(f"data planes of {source}: {len(planes)}")
    if not planes:
        print("  none yet: `apiary data-planes create NAME --url URL` on the control plane")
        return
    rows = [_PLANE_COLUMNS, *(_plane_row(p, now) for p in planes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_PLANE_COLUMNS))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=True)).rstrip())


def _readiness(url: str) -> dict[str, Any]:
    """``/readyz``'s body (apiary.dataplane.replica.readiness), or why there is none."""
    try:
        answer = httpx.get(f"{url}/readyz", timeout=10.0)
    except httpx.HTTPError as exc:
        return {"ready": False, "error": f"unreachable: {exc}"}
    if answer.status_code not in (200, 503):
        return {"ready": False, "error": f"HTTP {answer.status_code}"}
    body: dict[str, Any] = answer.json()
    return body


def _ingest_stats(url: str, settings: ApiarySettings) -> dict[str, Any]:
    """Each project's ingest accounting (apiary.dataplane.accounting): every project's with
    the admin token (``APIARY_ADMIN_TOKEN``), else the project of ``connection.json``'s key.
    ``{"scope", "projects": [...], "as_of"}``, or ``{"error"}`` saying why there is none."""
    from apiary.startup.bootstrap import read_connection

    if settings.admin_token is not None:
        scope, path = "all projects", "/v1/admin/ingest/stats"
        credential = settings.admin_token.get_secret_value()
    else:
        key = read_connection(settings.data_dir).get("api_key")
        if not isinstance(key, str) or not key:
            return {"error": "no APIARY_ADMIN_TOKEN and no API key in connection.json"}
        scope, path, credential = "the connection's project", "/v1/ingest/stats", key
    try:
        answer = httpx.get(f"{url}{path}", headers={"authorization": f"Bearer {credential}"},
                           timeout=60.0)
    except httpx.HTTPError as exc:
        return {"scope": scope, "error": f"unreachable: {exc}"}
    if answer.status_code != 200:
        try:
            message = answer.json().get("message", "")
        except ValueError:
            message = answer.text[:200]
        return {"scope": scope, "error": f"HTTP {answer.status_code}: {message}"}
    body: dict[str, Any] = answer.json()
    if "projects" not in body:  # one project's
        return {"scope": scope, "projects": [{k: v for k, v in body.items() if k != "as_of"}],
                "as_of": body.get("as_of")}
    return {"scope": scope, "projects": body["projects"], "as_of": body.get("as_of")}


_INGEST_STATES = (("accepted", "accepted"), ("stored", "stored"),
                  ("dead_lettered", "dead-lettered"), ("in_flight", "in flight"))


def _print_ingest(ingest: dict[str, Any]) -> None:
    """The accounting as a table: rows, with messages in parentheses."""
    if "error" in ingest:
        print(f"  ingest:     unknown ({ingest['error']})")
        return
    projects = ingest["projects"]
    print(f"  ingest:     {ingest['scope']}; rows (messages), accepted = stored + "
          "dead-lettered + in flight")
    if not projects:
        print("              nothing accepted yet")
        return
    print("    " + f"{'project':<38}" + "".join(f"{title:>18}" for _, title in _INGEST_STATES))
    for project in projects:
        cells = "".join(f"{project[s]['rows']:>11} ({project[s]['messages']:>4})"
                        for s, _ in _INGEST_STATES)
        print(f"    {project['project_id']:<38}{cells}")


def _describe_readiness(readiness: dict[str, Any]) -> str:
    """``yes``, or what is not ready and why, in one line."""
    if readiness.get("ready"):
        return "yes"
    if "error" in readiness:
        return f"unknown ({readiness['error']})"
    checks = readiness.get("checks", {})
    return "no: " + "; ".join(f"{name}: {checks.get(name, {}).get('error', '?')}"
                              for name in readiness.get("not_ready", []))


def cmd_down(args: argparse.Namespace) -> int:
    from apiary.startup.node import process_alive, read_state

    settings = load_settings(**_settings_overrides(args))
    state = read_state(settings.data_dir)
    if not state or not process_alive(int(state["pid"])):
        print(f"Apiary is not running on {settings.data_dir}")
        return 0
    pid = int(state["pid"])
    print(f"stopping Apiary (pid {pid}) ...", flush=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            print("stopped")
            return 0
        time.sleep(0.5)
    print(f"Apiary (pid {pid}) did not stop within {args.timeout:.0f} s", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apiary",
        description="Apiary: self-hostable tracing and evaluation for LLM apps, on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help=f"data directory ({flag_help('data_dir')})")

    up = sub.add_parser("up", help="start Apiary in the foreground (Ctrl-C stops it)",
                        description="Start nats-server, Ray, the writers and the data plane "
                        "with the embedded defaults, and print the URL and an API key.",
                        epilog="Every setting is an APIARY_* environment variable: "
                        "`python -m apiary.settings` describes them all.")
    common(up)
    up.add_argument("--port", type=int, help=f"HTTP port ({flag_help('port')})")
    up.add_argument("--host", help=f"HTTP listen address ({flag_help('host')})")
    up.add_argument("--address", help="join an existing Ray cluster at this address "
                    f"({flag_help('ray_address')})")
    up.add_argument("--plane", choices=["both", "control", "data"],
                    help=f"the planes to run here ({flag_help('plane')})")
    up.add_argument("--control-plane", metavar="URL",
                    help="the control plane a data plane trusts "
                    f"({flag_help('control_plane_url')})")
    up.add_argument("--bootstrap-token", metavar="TOKEN",
                    help="register this data plane with the control plane "
                    f"({flag_help('bootstrap_token')})")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show whether Apiary runs, its health, and each "
                            "project's ingest accounting",
                            description="Whether Apiary runs on the data directory, its "
                            "health and readiness, and per project the rows (and messages) "
                            "accepted, stored, dead-lettered and in flight: every project's "
                            "with APIARY_ADMIN_TOKEN, else the project of connection.json's key.")
    common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true",
                        help="every data plane of the control plane: status, stream "
                        "connected, last report, version, ingest rate, writer lag, dead "
                        "letters, projects (on the control plane's host, or with "
                        "--control-plane and --token)")
    status.add_argument("--control-plane", metavar="URL",
                        help="with --all: the control plane to ask (its URL, with /cp)")
    status.add_argument("--token", help="with --all and --control-plane: an installation "
                        "admin's session token (POST /cp/v1/auth/login)")
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop the Apiary running on a data directory")
    common(down)
    down.add_argument("--timeout", type=float, default=120.0,
                      help="seconds to wait for a clean stop (default 120)")
    down.set_defaults(func=cmd_down)

    from apiary.cli.dlq import add_dlq_commands
    from apiary.control.cli import add_control_commands

    add_control_commands(sub, common)
    add_dlq_commands(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    # First of all: every file this process or its children create is owner-only.
    restrict_umask()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        print(f"apiary: {exc}", file=sys.stderr)
        return 2
    except ApiaryError as exc:
        print(f"apiary: {exc}", file=sys.stderr)
        return 1
    return code


__all__ = ["build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
