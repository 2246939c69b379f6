"""The served OpenAPI specs against the running servers, with schemathesis.

A real control plane (uvicorn, its own SQLite cpdb) and a real data plane trusting it
(uvicorn, NATS, chDB, a writer, dpdb; see ``tests/_served_planes.py``) run for the module.
schemathesis generates requests (valid and invalid) for every operation of the data plane's
spec with the data-plane access token of a project owner (every data-plane permission;
configuration calls are refused with 403, as a data plane forwards only API keys to the
control plane), and for every operation of the control plane's spec with a signed-in
user's session. Each answer must not be a 5xx
(``not_a_server_error``), must carry a status the spec documents for the operation
(``status_code_conformance``), a body its schema accepts (``response_schema_conformance``)
and a documented content type (``content_type_conformance``).

Bounded and reproducible: a fixed seed, a few fuzzed examples per operation plus the
spec's own examples, no coverage phase (its hundreds of boundary cases per operation take
minutes; run it by hand with ``APIARY_OPENAPI_COVERAGE=1``), no shrinking.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from _accounts import verify_email
from _served_planes import served_control_plane, served_data_plane
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from apiary.control import admin
from apiary.control.api import create_control_plane_app
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import control_plane_authenticator
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import EventStore

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance]
ISSUER = "http://cp.openapi.test/cp"
DP_ID = "dp-openapi"
PASSWORD = "a long enough password 42"
SEED = 20240301
_DEEP = os.environ.get("APIARY_OPENAPI_COVERAGE") == "1"


def _config(max_examples: int) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": max_examples, "no-shrink": True,
                       "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": _DEEP}, "stateful": {"enabled": False}},
        "suppress-health-check": ["all"],
    })


# The specs the apps serve, built without serving them (schemathesis' lazy fixture loader
# does not run on pytest 9); test_the_served_specs_are_these checks the servers serve them.
DP_SPEC = create_app(None).openapi()  # type: ignore[arg-type]  # the spec needs no context
CP_SPEC = create_control_plane_app(None).openapi()  # type: ignore[arg-type]
dp = schemathesis.openapi.from_dict(DP_SPEC, config=_config(40 if _DEEP else 5))
# Signing out would leave the rest of the run unauthenticated (checked by the CP's tests).
cp = schemathesis.openapi.from_dict(CP_SPEC, config=_config(20 if _DEEP else 3)).exclude(
    method="POST", path="/v1/auth/logout")


def _signup(cp_url: str, settings: ApiarySettings) -> dict[str, str]:
    email = f"oas-{uuid.uuid4().hex[:8]}@example.com"
    response = httpx.post(f"{cp_url}/v1/auth/signup", json={
        "email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    verify_email(settings, cp_url, email)  # an unverified account owns nothing
    return {"authorization": f"Bearer {response.json()['session_token']}"}


def _post(cp_url: str, path: str, headers: dict[str, str], body: dict[str, Any]
          ) -> dict[str, Any]:
    response = httpx.post(f"{cp_url}{path}", headers=headers, json=body)
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[str, ApiarySettings]]:
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("openapi-cp"),
                              cp_issuer=ISSUER, data_plane_id=DP_ID)
    admin.data_planes_register(settings, dp_id=DP_ID, name="openapi", url="http://dp.test")
    with served_control_plane(settings) as url:
        yield url, settings


@pytest.fixture(scope="module")
def data_plane(control_plane: tuple[str, ApiarySettings], nats_server: NatsServer,
               store: EventStore, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[str, str]]:
    """(URL, a project owner's data-plane token) of a data plane trusting the CP."""
    cp_url, cp_settings = control_plane
    owner = _signup(cp_url, cp_settings)
    org = _post(cp_url, "/v1/orgs", owner, {"name": "OpenAPI"})
    ws = _post(cp_url, f"/v1/orgs/{org['id']}/workspaces", owner, {"name": "w"})
    project = _post(cp_url, f"/v1/workspaces/{ws['id']}/projects", owner, {"name": "p"})
    token = _post(cp_url, "/v1/auth/token", owner,
                  {"audience": DP_ID, "project_id": project["id"]})["access_token"]
    config = cp_settings.model_copy(update={
        "data_dir": tmp_path_factory.mktemp("openapi-dp"), "control_plane_url": cp_url,
        "jwt_issuer": ISSUER, "writer_flush_interval_s": 0.05})
    with served_data_plane(nats_server.url, store, config,
                           control_plane_authenticator) as url:
        yield url, str(token)


def test_the_served_specs_are_these(data_plane: tuple[str, str],
                                    control_plane: tuple[str, ApiarySettings]) -> None:
    assert httpx.get(f"{data_plane[0]}/openapi.json").json() == DP_SPEC
    assert httpx.get(f"{control_plane[0]}/openapi.json").json() == CP_SPEC


def test_every_operation_documents_its_errors() -> None:
    assert DP_SPEC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert DP_SPEC["security"] == [{"bearer": []}]
    operations = {(method.upper(), path) for path, item in DP_SPEC["paths"].items()
                  for method in item}
    assert {("POST", "/v1/charts/query"), ("GET", "/v1/charts/{chart_id}/data"),
            ("PATCH", "/v1/projects/{project_id}/charts/{chart_id}")} <= operations
    for spec in (DP_SPEC, CP_SPEC):
        assert "HTTPValidationError" not in spec["components"]["schemas"]
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                responses = operation["responses"]
                assert "422" not in responses, (method, path)  # validation errors are 400
                if operation.get("parameters") or operation.get("requestBody"):
                    assert "400" in responses, (method, path)
    for path, item in DP_SPEC["paths"].items():
        for method, operation in item.items():
            if path in ("/healthz", "/readyz", "/metrics"):
                assert operation["security"] == []
            else:
                assert {"400", "401", "403"} <= set(operation["responses"]), (method, path)
                schema = operation["responses"]["401"]["content"]["application/json"][
                    "schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"} or {
                    "message", "errorCode"} <= set(schema["required"]), (method, path)


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("GET", "/v1/runs", {"params": {"page": 10**30}}),  # was a 500 (SQLite overflow)
    ("GET", "/v1/queues/q/items", {"params": {"page": 2**62}}),  # same query shape
    # OFFSET (page - 1) * limit = 2^64 wrapped around to 0: page 2^54 + 1 was page 1.
    ("POST", "/v1/events/export", {"json": {"page": 2**54 + 1, "limit": 1024}}),
    ("GET", "/v1/sessions", {"params": {"page": 2**58 + 1, "limit": 64}}),
])
def test_pages_beyond_any_result_are_a_400(data_plane: tuple[str, str], method: str,
                                           path: str, kwargs: dict[str, Any]) -> None:
    """Findings of schemathesis, fixed: absurd page numbers are precise 400s."""
    url, token = data_plane
    response = httpx.request(method, f"{url}{path}", **kwargs,
                             headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "invalid_request"
    assert "page" in response.text


@dp.parametrize()
def test_data_plane_conforms_to_its_spec(case: schemathesis.Case,
                                         data_plane: tuple[str, str]) -> None:
    url, token = data_plane
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"},
                           checks=CHECKS, timeout=60)


@cp.parametrize()
def test_control_plane_conforms_to_its_spec(case: schemathesis.Case,
                                            control_plane: tuple[str, ApiarySettings]
                                            ) -> None:
    url, settings = control_plane
    case.call_and_validate(base_url=url, headers=_cp_user(url, settings), checks=CHECKS,
                           timeout=60)


_CP_USER: dict[str, dict[str, str]] = {}


def _cp_user(url: str, settings: ApiarySettings) -> dict[str, str]:
    """A user of its own for the control-plane run, signed up once (generated calls may
    sign it out or change its password; the data plane's owner is another user)."""
    if url not in _CP_USER:
        _CP_USER[url] = {k.title(): v for k, v in _signup(url, settings).items()}
    return _CP_USER[url]
