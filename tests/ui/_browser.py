"""What every browser test of the web UI shares: one real Apiary for the session (the
control plane serving the built UI over HTTP, with its own SQLite cpdb, and a data plane
on another origin: real NATS, chDB and writer, tests/_served_planes.py, trusting the
control plane through its JWKS and granting CORS to its origin only), an admin with TOTP,
traces sent with the OpenTelemetry SDK, a signed-in browser, axe-core and screenshots.

Page tests share the installation: give what they create unique names, and never count
what another test may also have made.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from _served_planes import served_data_plane
from _servers import http_server
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.control.api.routes_ui import UI_DIR
from apiary.dataplane.auth import control_plane_authenticator
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import EventStore

ISSUER = "http://cp.ui.test/cp"
DP_ID = "dp-ui"
EMAIL = "admin@ui.test"
CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "ui" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("APIARY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"
WAIT_MS = 30_000
# The built UI the control plane serves: the package's (`make ui`), or another build
# (`npx vite build --outDir DIR`), so that builds in progress elsewhere never touch it.
UI_BUILD = Path(os.environ.get("APIARY_TEST_UI_DIR", UI_DIR))



def _require_ui_and_browser() -> None:
    """These tests never skip: ``make test`` builds the UI and installs chromium first."""
    assert (UI_BUILD / "index.html").is_file(), f"{UI_BUILD} is not built: run `make ui`"
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make system-deps`"


def next_code(totp: pyotp.TOTP, last_step: int) -> tuple[int, str]:
    """``(step, code)``: a TOTP code the control plane accepts now, of a step after
    ``last_step`` (each step is used once; the current step and the next are accepted),
    waiting for the next step when both are used."""
    while True:
        current = int(time.time()) // 30
        step = max(current, last_step + 1)
        if step <= current + 1:
            return step, totp.at(step * 30)
        time.sleep(1)


class Codes:
    """TOTP codes of one secret, in the order the control plane accepts them."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = 0

    def next(self) -> str:
        self.last_step, code = next_code(self.totp, self.last_step)
        return code


@dataclass
class Installation:
    cp_url: str
    dp_url: str
    password: str
    totp: pyotp.TOTP
    api_key: str
    project_id: str
    last_step: int = 0
    admin_token: str | None = None
    #: The control plane itself, for state its API cannot reach in this installation (the
    #: data plane here is not federated: a project is assigned to it in cpdb directly).
    control_plane: ControlPlane | None = None

    def code(self) -> str:
        """A TOTP code the control plane accepts now (see :class:`Codes`)."""
        self.last_step, code = next_code(self.totp, self.last_step)
        return code

    def admin_headers(self) -> dict[str, str]:
        """The admin's API session (email, password and a TOTP code), signed in once."""
        if self.admin_token is None:
            login = httpx.post(f"{self.cp_url}/v1/auth/login", timeout=30, json={
                "email": EMAIL, "password": self.password, "totp_code": self.code()})
            assert login.status_code == 200, login.text
            self.admin_token = str(login.json()["session_token"])
        return {"authorization": f"Bearer {self.admin_token}"}

    def new_project(self, name: str) -> tuple[str, str]:
        """A project of its own in the seeded project's workspace, for a test whose
        assertions must not see what other tests send: ``(project id, API key)``."""
        headers = self.admin_headers()
        seeded = httpx.get(f"{self.cp_url}/v1/projects/{self.project_id}", headers=headers)
        assert seeded.status_code == 200, seeded.text
        created = httpx.post(
            f"{self.cp_url}/v1/workspaces/{seeded.json()['workspace_id']}/projects",
            headers=headers, json={"name": name})
        assert created.status_code == 201, created.text
        project_id = str(created.json()["id"])
        key = httpx.post(f"{self.cp_url}/v1/projects/{project_id}/keys", headers=headers,
                         json={"name": f"{name} key"})
        assert key.status_code == 201, key.text
        return project_id, str(key.json()["api_key"])


def _enrol_totp(cp_url: str, password: str) -> tuple[pyotp.TOTP, int]:
    with httpx.Client(base_url=cp_url, timeout=30) as http:
        login = http.post("/v1/auth/login", json={"email": EMAIL, "password": password})
        assert login.status_code == 200, login.text
        auth = {"authorization": f"Bearer {login.json()['session_token']}"}
        enrolment = http.post("/v1/me/totp", headers=auth)
        assert enrolment.status_code == 201, enrolment.text
        totp = pyotp.TOTP(enrolment.json()["secret"])
        step = int(time.time()) // 30
        confirmed = http.post("/v1/me/totp/verify", headers=auth,
                              json={"code": totp.at(step * 30)})
        assert confirmed.status_code == 200, confirmed.text
        http.post("/v1/auth/logout", headers=auth)
    return totp, step


@pytest.fixture(scope="session")
def installation(nats_server: NatsServer, store: EventStore,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    _require_ui_and_browser()
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("ui-cp"), cp_issuer=ISSUER,
                              data_plane_id=DP_ID, cp_jwks_cache_s=1)
    control_plane = ControlPlane.open(settings)
    try:
        with http_server(create_control_plane_app(control_plane, ui_dir=UI_BUILD)) as cp_url:
            dp_config = settings.model_copy(update={
                "data_dir": tmp_path_factory.mktemp("ui-dp"), "control_plane_url": cp_url,
                "jwt_issuer": ISSUER, "cors_origins": (cp_url,),
                "writer_flush_interval_s": 0.05,
            })
            with served_data_plane(nats_server.url, store, dp_config,
                                   control_plane_authenticator) as dp_url:
                boot = admin.bootstrap(settings, admin_email=EMAIL, data_plane_id=DP_ID,
                                       data_plane_url=dp_url)
                password = boot["admin_password"]
                totp, step = _enrol_totp(cp_url, password)
                yield Installation(cp_url, dp_url, password, totp, boot["key"]["api_key"],
                                   boot["project"]["id"], step, control_plane=control_plane)
    finally:
        control_plane.close()


class Traces:
    """Sends traces like an instrumented application: the OpenTelemetry SDK's OTLP/HTTP
    exporter, one session per call."""

    def __init__(self, dp_url: str, api_key: str) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": "ui-e2e"}))
        self.provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
            endpoint=f"{dp_url}/v1/traces", headers={"Authorization": f"Bearer {api_key}"})))
        self.tracer = self.provider.get_tracer("ui-e2e")

    def session(self, name: str, tier: str, question: str, answer: str) -> str:
        session_id = str(uuid.uuid4())
        common = {"session.id": session_id, "customer_tier": tier}
        with self.tracer.start_as_current_span(name, attributes=common):
            with self.tracer.start_as_current_span("retrieve", attributes=common):
                time.sleep(0.002)
            with self.tracer.start_as_current_span("openai.chat", attributes={
                **common, "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
                "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": question,
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": answer,
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 7,
            }):
                time.sleep(0.003)
        return session_id

    def close(self) -> None:
        self.provider.shutdown()


def stored_sessions(inst: Installation, count: int, api_key: str | None = None) -> None:
    """Wait until the data plane serves ``count`` sessions (the writer stored them) to the
    project of ``api_key`` (default: the seeded project's)."""
    token = httpx.post(f"{inst.cp_url}/v1/auth/token",
                       headers={"authorization": f"Bearer {api_key or inst.api_key}"},
                       json={"audience": DP_ID}).json()["access_token"]
    deadline = time.monotonic() + 30
    while True:
        got = httpx.get(f"{inst.dp_url}/v1/sessions", params={"limit": 100},
                        headers={"authorization": f"Bearer {token}"}, timeout=10)
        if got.status_code == 200 and got.json()["totalSessions"] >= count:
            return
        assert time.monotonic() < deadline, got.text
        time.sleep(0.2)


def axe(page: Any, what: str) -> None:
    """No serious or critical accessibility violation on the page as it is."""
    # Evaluated through the browser's debugging protocol: the page's CSP (script-src
    # 'self') rightly refuses an injected <script>, and stays on for everything else.
    page.evaluate(AXE.read_text() + "\n;0")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:3]}
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{what}: {json.dumps(bad, indent=1)}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def data_plane_token(inst: Installation) -> str:
    """A data-plane token for the seeded project, from its API key."""
    issued = httpx.post(f"{inst.cp_url}/v1/auth/token",
                        headers={"authorization": f"Bearer {inst.api_key}"},
                        json={"audience": DP_ID})
    assert issued.status_code == 200, issued.text
    return str(issued.json()["access_token"])


def sign_in(page: Any, inst: Installation) -> None:
    """Sign ``page`` in as the admin (email, password, then a fresh TOTP code) on the
    control plane's root, and wait for the project's traces."""
    from playwright.sync_api import expect

    page.goto(f"{inst.cp_url}/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(inst.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Authentication code").fill(inst.code())
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("table", name="Sessions")).to_be_visible()


@pytest.fixture(scope="session")
def signed_in_state(installation: Installation,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cookies of one admin sign-in, for every page test to start from (a TOTP code
    is good once per 30 s step: signing in per test would wait for the next)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    state = tmp_path_factory.mktemp("ui-state") / "state.json"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        sign_in(page, installation)
        page.context.storage_state(path=str(state))
        browser.close()
    return state


@pytest.fixture
def page(installation: Installation, signed_in_state: Path) -> Iterator[Any]:
    """A signed-in page in headless chromium, 1400x900; console errors about CORS or the
    Content-Security-Policy fail the test."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900},
                                      storage_state=str(signed_in_state))
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        blocked: list[str] = []
        page.on("console", lambda m: m.type == "error" and blocked.append(m.text))
        yield page
        browser.close()
    assert not [m for m in blocked if "CORS" in m or "Content Security" in m], blocked
