"""End to end on real Ray: `ApiaryNode` (what `apiary up` runs: both planes), the
OpenTelemetry SDK's OTLP/HTTP exporter sending to it, and every attribute read back through
the query API; a new user signing up on the control plane, enrolling TOTP, creating a
project and a key, and sending traces that another project's key cannot see. Then a
restart on the same data directory, which must keep every event."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _accounts import verify_email
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from apiary._private.files import loose_paths
from apiary._private.ports import spare_port
from apiary.settings import ApiarySettings
from apiary.startup.node import ApiaryNode, Connection, process_alive

pytestmark = pytest.mark.ray




@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("apiary-node")


@pytest.fixture(scope="module")
def node(data_dir: Path) -> Iterator[ApiaryNode]:
    settings = ApiarySettings(data_dir=data_dir, port=spare_port(), ray_num_cpus=2,
                              writer_flush_interval_s=0.2, otlp_grpc_port=spare_port())
    node = ApiaryNode(settings)
    node.start()
    yield node
    node.stop()


def _export(connection: Connection, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{connection.url}/v1/events/export", json=body,
                          headers={"authorization": f"Bearer {connection.api_key}"}, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _wait_for_events(connection: Connection, trace_filter: dict[str, Any], n: int
                     ) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = _export(connection, {"filters": [trace_filter], "limit": 100})["events"]
        if len(events) >= n:
            return events
        time.sleep(0.3)
    raise AssertionError(f"only {len(events)} of {n} events became queryable")


def test_up_writes_connection_json(node: ApiaryNode, data_dir: Path) -> None:
    connection = json.loads((data_dir / "connection.json").read_text())
    assert node.connection is not None
    assert connection["url"] == node.settings.base_url
    assert connection["api_key"] == node.connection.api_key
    assert connection["project_id"] == node.connection.project_id
    assert connection["control_plane_url"] == f"{node.settings.base_url}/cp"
    assert connection["admin_email"] == "admin@apiary.local"
    assert connection["otlp_grpc_endpoint"] == f"127.0.0.1:{node.settings.otlp_grpc_port}"
    # The admin's password is shown once (the start that created the account returns it)
    # and written nowhere.
    assert "admin_password" not in connection
    # APIARY_FEDERATION_GRPC_PORT=0 (tests/conftest.py): the data plane stays a legacy
    # audience of its control plane, with no identity and no stream.
    assert not (data_dir / "dp-identity.json").exists()
    assert node.settings.federation_grpc_port == 0
    assert node.connection.data_plane_id is None
    assert node.connection.admin_password is not None
    assert len(node.connection.admin_password) >= 16
    assert (data_dir / "connection.json").stat().st_mode & 0o077 == 0
    # Everything in the data directory is owner-only (apiary._private.files).
    assert loose_paths(data_dir) == []
    assert data_dir.stat().st_mode & 0o777 == 0o700
    # The control plane keeps hashes only: the key is nowhere in its database.
    secret = connection["api_key"].rsplit("_", 1)[1].encode()
    assert secret not in (data_dir / "cp.sqlite").read_bytes()


def test_opentelemetry_exporter_spans_read_back_with_every_attribute(node: ApiaryNode) -> None:
    connection = node.connection
    assert connection is not None
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-bot"}))
    exporter = OTLPSpanExporter(endpoint=f"{connection.url}/v1/traces",
                                headers={"authorization": f"Bearer {connection.api_key}"})
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("e2e")
    session = "7d1f4f0e-7c35-4a7e-a0a7-3a4a1f9f0c11"
    with tracer.start_as_current_span("agent_run") as root:
        root.set_attribute("honeyhive.session_id", session)
        root.set_attribute("honeyhive_event_type", "chain")
        root.set_attribute("honeyhive_metadata.customer.tier", "gold")
        root.set_attribute("honeyhive_metrics.relevance", 0.75)
        root.set_attribute("app.build", 1234)
        root.set_attribute("app.flags", ["a", "b"])
        root.set_attribute("app.cached", True)
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("honeyhive.session_id", session)
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.provider.name", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.request.temperature", 0.1)
            llm.set_attribute("gen_ai.usage.input_tokens", 120)
            llm.set_attribute("gen_ai.usage.output_tokens", 30)
            llm.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]}]))
            llm.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "On its way."}],
                  "finish_reason": "stop"}]))
        with tracer.start_as_current_span("lookup_order") as tool:
            tool.set_attribute("honeyhive.session_id", session)
            tool.set_attribute("honeyhive_event_type", "tool")
            tool.set_attribute("honeyhive_inputs.order_id", "A-17")
            tool.set_status(Status(StatusCode.ERROR, "order service timed out"))
            tool.record_exception(TimeoutError("order service timed out"))
    provider.shutdown()

    events = _wait_for_events(connection, {"field": "session_id", "operator": "is",
                                           "value": session, "type": "string"}, 3)
    by_name = {e["event_name"]: e for e in events}
    root_event, llm_event, tool_event = (by_name["agent_run"], by_name["chat gpt-4o"],
                                         by_name["lookup_order"])
    assert root_event["event_type"] == "chain"
    assert root_event["parent_id"] == session
    assert root_event["metadata"]["customer"]["tier"] == "gold"
    assert root_event["metrics"]["relevance"] == 0.75
    assert root_event["metadata"]["app"] == {"build": 1234, "flags": ["a", "b"], "cached": True}
    assert root_event["metadata"]["resource"]["service"]["name"] == "checkout-bot"

    assert llm_event["event_type"] == "model"
    assert llm_event["parent_id"] == root_event["event_id"]
    assert llm_event["config"]["model"] == "gpt-4o"
    assert llm_event["config"]["provider"] == "openai"
    assert llm_event["config"]["temperature"] == 0.1
    assert llm_event["inputs"]["chat_history"][0]["content"] == "Where is my order?"
    assert llm_event["outputs"]["content"] == "On its way."
    assert llm_event["metadata"]["prompt_tokens"] == 120
    assert llm_event["metadata"]["completion_tokens"] == 30
    assert llm_event["metadata"]["total_tokens"] == 150
    assert llm_event["metadata"]["cost"] > 0
    # Session-level metadata is inherited only from a session event; none was sent here.
    assert tool_event["event_type"] == "tool"
    assert tool_event["inputs"]["order_id"] == "A-17"
    assert "timed out" in tool_event["error"]
    assert tool_event["duration"] >= 0

    tree = httpx.get(f"{connection.url}/v1/sessions/{session}",
                     headers={"authorization": f"Bearer {connection.api_key}"}).json()
    assert tree["event_count"] == 3
    [child] = tree["session"]["children"]
    assert child["event_name"] == "agent_run"
    assert {c["event_name"] for c in child["children"]} == {"chat gpt-4o", "lookup_order"}
    sessions = httpx.get(f"{connection.url}/v1/sessions",
                         headers={"authorization": f"Bearer {connection.api_key}"}).json()
    listed = next(s for s in sessions["sessions"] if s["session_id"] == session)
    assert listed["event_count"] == 3
    assert listed["error_count"] == 1
    assert listed["total_tokens"] == 150


def test_otlp_grpc_exporter_span_is_stored(node: ApiaryNode) -> None:
    """The endpoint in connection.json takes the unmodified OTLP/gRPC exporter (gzip)."""
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcSpanExporter,
    )

    connection = node.connection
    assert connection is not None
    assert connection.otlp_grpc_endpoint is not None
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(GrpcSpanExporter(
        endpoint=f"http://{connection.otlp_grpc_endpoint}", insecure=True,
        headers={"authorization": f"Bearer {connection.api_key}"},
        compression=grpc.Compression.Gzip)))
    session = "5b0e6a53-2b1c-4f43-9d35-0c7e7c4b9a21"
    with provider.get_tracer("e2e-grpc").start_as_current_span("grpc_run") as span:
        span.set_attribute("honeyhive.session_id", session)
    provider.shutdown()
    [event] = _wait_for_events(connection, {"field": "session_id", "operator": "is",
                                            "value": session, "type": "string"}, 1)
    assert event["event_name"] == "grpc_run"


def test_up_refuses_an_otlp_grpc_port_another_process_holds(tmp_path: Path) -> None:
    """The replicas bind it with SO_REUSEPORT: a second installation must not share it."""
    from apiary.errors import ConfigurationError

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        settings = ApiarySettings(data_dir=tmp_path, port=spare_port(),
                                  otlp_grpc_port=held.getsockname()[1])
        with pytest.raises(ConfigurationError, match="APIARY_OTLP_GRPC_PORT"):
            ApiaryNode(settings).start()
    assert not (tmp_path / "nats").exists()  # refused before anything started


def test_a_new_user_signs_up_enrols_totp_and_ingests_into_their_own_project(
    node: ApiaryNode,
) -> None:
    import pyotp

    connection = node.connection
    assert connection is not None
    cp = connection.control_plane_url
    with httpx.Client(base_url=cp, timeout=30) as http:
        signup = http.post("/v1/auth/signup", json={"email": "ada@example.com",
                                                    "password": "correct horse battery 9"})
        assert signup.status_code == 201, signup.text
        session = {"authorization": f"Bearer {signup.json()['session_token']}"}
        # No SMTP on this node: the operator prints the link, the user opens it.
        verify_email(node.settings, cp, "ada@example.com")
        enrol = http.post("/v1/me/totp", headers=session)
        assert enrol.status_code == 201, enrol.text
        totp = pyotp.TOTP(enrol.json()["secret"])
        verified = http.post("/v1/me/totp/verify", headers=session, json={"code": totp.now()})
        assert verified.status_code == 200, verified.text
        assert len(verified.json()["recovery_codes"]) == 10
        # With TOTP enrolled, a password alone no longer logs in.
        no_code = http.post("/v1/auth/login", json={"email": "ada@example.com",
                                                    "password": "correct horse battery 9"})
        assert no_code.status_code == 401
        org = http.post("/v1/orgs", headers=session, json={"name": "Ada Labs"}).json()
        ws = http.post(f"/v1/orgs/{org['id']}/workspaces", headers=session,
                       json={"name": "prod"}).json()
        project = http.post(f"/v1/workspaces/{ws['id']}/projects", headers=session,
                            json={"name": "support-bot"}).json()
        issued = http.post(f"/v1/projects/{project['id']}/keys", headers=session,
                           json={"name": "ingest"})
        assert issued.status_code == 201, issued.text
        key = issued.json()["api_key"]

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{connection.url}/v1/traces", headers={"authorization": f"Bearer {key}"})))
    with provider.get_tracer("ada").start_as_current_span("ada-span") as span:
        span.set_attribute("honeyhive.session_id", "ada-session")
    provider.shutdown()

    own = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        response = httpx.post(f"{connection.url}/v1/events/export", headers=own,
                              json={"filters": [], "limit": 10})
        assert response.status_code == 200, response.text
        found = response.json()["events"]
        time.sleep(0.3)
    assert [e["event_name"] for e in found] == ["ada-span"]
    assert found[0]["project_id"] == project["id"]
    # The bootstrap project's key sees none of Ada's events, and cannot open her session.
    other = _export(connection, {"filters": [{"field": "event_name", "operator": "is",
                                              "value": "ada-span", "type": "string"}]})
    assert other["totalEvents"] == 0
    foreign = httpx.get(f"{connection.url}/v1/sessions/ada-session",
                        headers={"authorization": f"Bearer {connection.api_key}"})
    assert foreign.status_code == 404


def test_status_command_reports_the_running_node(node: ApiaryNode, data_dir: Path) -> None:
    deadline = time.monotonic() + 60  # the writers' first heartbeats
    while httpx.get(f"{node.settings.base_url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the node never became ready"
        time.sleep(0.2)
    result = subprocess.run(
        [sys.executable, "-m", "apiary.cli", "status", "--json"], capture_output=True,
        text=True, env={**os.environ, "APIARY_DATA_DIR": str(data_dir)}, timeout=60)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["running"] is True
    assert status["api"]["status"] == "ok"
    assert status["url"] == node.settings.base_url
    readiness = status["readiness"]
    assert readiness["ready"] is True, readiness
    assert readiness["checks"]["writers"]["detail"]["running"] == ["apiary-writer-0"]
    # The chDB owner keeps the register of keys stored twice: exports read without FINAL.
    assert readiness["checks"]["store"]["detail"]["duplicates"] == "ready"
    # The bootstrap project's ingest accounting (connection.json's key), through the
    # writer actors' ledger and the chDB owner: an event sent now shows as stored.
    connection = node.connection
    assert connection is not None
    sent = httpx.post(f"{connection.url}/v1/events", json={"event_type": "tool", "inputs": {}},
                      headers={"authorization": f"Bearer {connection.api_key}"}, timeout=30)
    assert sent.status_code == 200, sent.text
    first: dict[str, Any] | None = None
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "apiary.cli", "status", "--json"], capture_output=True,
            text=True, env={**os.environ, "APIARY_DATA_DIR": str(data_dir)}, timeout=60)
        [project] = json.loads(result.stdout)["ingest"]["projects"]
        first = first or project
        if project["in_flight"]["rows"] == 0 and project["stored"]["rows"] >= 1:
            break
        assert time.monotonic() < deadline + 60, project
        time.sleep(0.3)
    assert project["project_id"] == status["project_id"]
    assert _export(connection, {"limit": 5})["totalEvents"] >= 1
    result = subprocess.run(
        [sys.executable, "-m", "apiary.cli", "status", "--json"], capture_output=True,
        text=True, env={**os.environ, "APIARY_DATA_DIR": str(data_dir)}, timeout=60)
    reads = json.loads(result.stdout)["readiness"]["checks"]["store"]["detail"]
    assert reads["export_reads"]["without_final"] >= 1
    assert project["accepted"]["rows"] >= first["accepted"]["rows"] >= 1
    for unit in ("messages", "rows"):
        assert project["accepted"][unit] == sum(
            project[s][unit] for s in ("stored", "dead_lettered", "in_flight"))


def test_restart_on_the_same_data_dir_keeps_every_event(node: ApiaryNode, data_dir: Path
                                                        ) -> None:
    connection = node.connection
    assert connection is not None
    before = _export(connection, {"limit": 1})["totalEvents"]
    assert before >= 3
    node.stop()
    again = ApiaryNode(node.settings)
    try:
        second = again.start()
        assert second.api_key == connection.api_key
        assert second.project_id == connection.project_id
        assert second.admin_password is None  # shown when created, never again
        assert _export(second, {"limit": 1})["totalEvents"] == before
    finally:
        again.stop()
    assert not (data_dir / "state.json").exists()


def test_down_does_not_wait_for_an_up_process_that_exited_unreaped(tmp_path: Path) -> None:
    """`apiary up` started by a parent that had not reaped it yet (a supervisor, the
    benchmark) stayed a zombie after stopping, and `apiary down` waited for it in vain."""
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 20
        while process_alive(exited.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(exited.pid)
        assert exited.returncode is None  # still unreaped: a zombie, not a vanished pid
        assert process_alive(running.pid)

        (tmp_path / "state.json").write_text(json.dumps({"pid": exited.pid}))
        down = subprocess.run(
            [sys.executable, "-m", "apiary.cli", "down", "--data-dir", str(tmp_path),
             "--timeout", "20"], capture_output=True, text=True, timeout=60,
            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        assert down.returncode == 0, down.stderr
        assert "not running" in down.stdout  # not "did not stop within 20 s"
    finally:
        running.kill()
        running.wait()
        exited.wait()
