"""The control plane serves the web UI's build for page requests no route matched, and
only those: API paths keep their JSON answers, files never leave the build, and an unbuilt
UI says so. (The real build in a real browser: tests/ui.)"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.api import create_control_plane_app

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
INDEX = ('<!doctype html><html><head><script type="module" src="./assets/app.js"></script>'
         '</head><body><div id="root"></div></body></html>')


@pytest.fixture
def ui_dir(tmp_path: Path) -> Path:
    build = tmp_path / "webui"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_text(INDEX)
    (build / "assets" / "app.js").write_text("console.log('app')")
    (build / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("not for you")
    return build


def _client(cp: ControlPlane, ui_dir: Path, root_path: str = "") -> TestClient:
    return TestClient(create_control_plane_app(cp, ui_dir=ui_dir), root_path=root_path)


def test_a_deep_link_gets_the_app_with_its_base_and_policy(cp: ControlPlane,
                                                          ui_dir: Path) -> None:
    client = _client(cp, ui_dir)
    page = client.get("/projects/p1/sessions/s1?event=e", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<head>\n    <base href="/">' in page.text
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "connect-src 'self' http://dp.test;" in policy  # the registered data plane
    assert "frame-ancestors 'none'" in policy


def test_the_base_follows_the_mount_point(cp: ControlPlane, ui_dir: Path) -> None:
    client = _client(cp, ui_dir, root_path="/cp")
    page = client.get("/cp/projects/p1/traces", headers=HTML)
    assert page.status_code == 200
    assert '<base href="/cp/">' in page.text


def test_build_files_are_served_and_nothing_outside_it(cp: ControlPlane, ui_dir: Path) -> None:
    client = _client(cp, ui_dir)
    asset = client.get("/assets/app.js")
    assert asset.text == "console.log('app')"
    assert "immutable" in asset.headers["cache-control"]
    assert client.get("/favicon.svg").headers["cache-control"] == "no-cache"
    for path in ("/assets/..%2F..%2Fsecret.txt", "/..%2Fsecret.txt", "/assets/missing.js"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "not for you" not in answer.text
        assert answer.json()["errorCode"] == "not_found"


def test_api_paths_keep_their_json_answers(cp: ControlPlane, ui_dir: Path) -> None:
    client = _client(cp, ui_dir)
    for path in ("/v1/nope", "/v1/orgs/x/nope", "/.well-known/nope", "/healthz/x"):
        answer = client.get(path, headers=HTML)
        assert answer.status_code == 404, path
        assert answer.json()["errorCode"] == "not_found", path
    assert client.get("/projects/p1/traces").status_code == 404  # JSON asked: JSON 404
    assert client.post("/projects/p1/traces", headers=HTML).json()["errorCode"] == "not_found"
    assert client.get("/v1/me", headers=HTML).json()["errorCode"] == "unauthenticated"
    assert client.delete("/v1/orgs", headers=HTML).status_code == 405  # as before


def test_an_unbuilt_ui_says_so(cp: ControlPlane, tmp_path: Path) -> None:
    client = _client(cp, tmp_path / "never-built")
    page = client.get("/", headers=HTML)
    assert page.status_code == 404
    assert "The web UI is not built" in page.text
    assert "make ui" in page.text
    assert client.get("/v1/nope", headers=HTML).json()["errorCode"] == "not_found"


def test_the_mailed_verification_link_opens_the_ui_or_else_the_api_page(
        cp: ControlPlane, ui_dir: Path, tmp_path: Path) -> None:
    built = _client(cp, ui_dir, root_path="/cp").get("/cp/verify-email?token=apev_x",
                                                     headers=HTML)
    assert built.status_code == 200
    assert '<div id="root">' in built.text
    unbuilt = TestClient(create_control_plane_app(cp, ui_dir=tmp_path / "none"),
                         root_path="/cp", follow_redirects=False)
    moved = unbuilt.get("/cp/verify-email?token=apev_x")
    assert moved.status_code == 302
    assert moved.headers["location"] == "/cp/v1/auth/email/verify?token=apev_x"
    page = unbuilt.get("/cp/v1/auth/email/verify?token=apev_x")
    assert page.status_code == 200
    assert 'method="post"' in page.text


def test_a_failed_sso_callback_sends_a_browser_back_into_the_ui(
        cp: ControlPlane, ui_dir: Path, tmp_path: Path) -> None:
    forged = "/cp/v1/sso/oidc/callback?state=forged&code=x"
    client = TestClient(create_control_plane_app(cp, ui_dir=ui_dir), root_path="/cp",
                        follow_redirects=False)
    back = client.get(forged, headers=HTML)
    assert back.status_code == 303
    location = urlsplit(back.headers["location"])
    assert location.path == "/cp/"
    assert parse_qs(location.query)["sso_error"][0]  # the reason, for the sign-in page
    assert "apiary_session" not in back.headers.get("set-cookie", "")
    # An API client, or a control plane without the UI: the JSON error, as before.
    assert client.get(forged).status_code in (400, 401)
    bare = TestClient(create_control_plane_app(cp, ui_dir=tmp_path / "none"),
                      root_path="/cp", follow_redirects=False)
    assert bare.get(forged, headers=HTML).headers["content-type"].startswith(
        "application/json")
