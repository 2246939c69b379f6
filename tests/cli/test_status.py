"""``apiary status`` shows each project's ingest accounting, from a real data plane served
over HTTP (tests/_served_planes.py: real NATS, chDB and writer) that the data directory's
``state.json`` and ``connection.json`` name, as ``apiary up`` writes them: every project
with the admin token (``APIARY_ADMIN_TOKEN``), else the project of the connection's key."""

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
import pytest
from _served_planes import served_data_plane
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apiary.cli import main
from apiary.credentials import mint_api_key
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import EventStore

ADMIN_TOKEN = "status-admin-token-" + "y" * 24


@dataclass
class Running:
    url: str
    data_dir: Path
    keys: dict[str, str]
    projects: dict[str, str]


@pytest.fixture
def running(nats_server: NatsServer, store: EventStore, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    for name in ("APIARY_ADMIN_TOKEN", "APIARY_DATA_DIR", "APIARY_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    projects = {who: f"proj-{who}-{uuid.uuid4().hex[:10]}" for who in ("a", "b")}
    keys: dict[str, str] = {}
    stored = []
    for who, project in projects.items():
        key = mint_api_key()
        keys[who] = key.value
        stored.append(StoredKey(key.key_id, key.secret_hash, Principal(
            subject=f"key:{key.key_id}", org_id="o", workspace_id="w", project_id=project,
            permissions=frozenset({Permission.EVENTS_WRITE, Permission.EVENTS_READ}))))
    config = ApiarySettings(data_dir=tmp_path / "plane", writer_flush_interval_s=0.05,
                            admin_token=ADMIN_TOKEN)
    with served_data_plane(nats_server.url, store, config,
                           lambda _: ApiKeyAuthenticator(stored)) as url:
        data_dir = tmp_path / "apiary"
        data_dir.mkdir()
        # What `apiary up` leaves for the CLI (this process stands in for its pid).
        (data_dir / "state.json").write_text(json.dumps({
            "pid": os.getpid(), "url": url, "project_id": projects["a"],
            "nats": nats_server.url, "clickhouse": "embedded chDB"}))
        (data_dir / "connection.json").write_text(json.dumps({
            "url": url, "api_key": keys["a"], "project_id": projects["a"]}))
        yield Running(url, data_dir, keys, projects)


def _spans(running: Running, who: str, n: int) -> None:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    trace_id = uuid.uuid4().bytes
    for i in range(n):
        scope.spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}",
                        start_time_unix_nano=time.time_ns(),
                        end_time_unix_nano=time.time_ns() + 1000)
    response = httpx.post(f"{running.url}/v1/traces", content=request.SerializeToString(),
                          headers={"authorization": f"Bearer {running.keys[who]}",
                                   "content-type": "application/x-protobuf"}, timeout=30)
    assert response.status_code == 200, response.text


def _status(capsys: pytest.CaptureFixture[str], running: Running, *flags: str
            ) -> tuple[int, str]:
    code = main(["status", "--data-dir", str(running.data_dir), *flags])
    return code, capsys.readouterr().out


def _stored(capsys: pytest.CaptureFixture[str], running: Running, rows: dict[str, int]
            ) -> dict[str, Any]:
    """``apiary status --json`` once each project of ``rows`` has that many rows stored."""
    deadline = time.monotonic() + 30
    while True:
        code, out = _status(capsys, running, "--json")
        assert code == 0
        report: dict[str, Any] = json.loads(out)
        found = {p["project_id"]: p for p in report["ingest"].get("projects", [])}
        if all(p in found and found[p]["stored"]["rows"] == n for p, n in rows.items()):
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.1)


def test_status_shows_the_connection_projects_accounting(
        running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    _spans(running, "a", 5)
    _spans(running, "b", 2)
    report = _stored(capsys, running, {running.projects["a"]: 5})
    ingest = report["ingest"]
    assert ingest["scope"] == "the connection's project"
    [project] = ingest["projects"]  # the key's project only, never b's
    assert project["project_id"] == running.projects["a"]
    assert project["accepted"] == project["stored"] == {"messages": 1, "rows": 5}
    assert project["in_flight"] == project["dead_lettered"] == {"messages": 0, "rows": 0}

    code, out = _status(capsys, running)
    assert code == 0
    assert "rows (messages), accepted = stored + dead-lettered + in flight" in out
    [line] = [x for x in out.splitlines() if running.projects["a"] in x and "(" in x]
    assert line.split()[1:] == ["5", "(", "1)", "5", "(", "1)", "0", "(", "0)", "0", "(",
                                "0)"]
    assert running.projects["b"] not in out


def test_status_with_the_admin_token_shows_every_project(
        running: Running, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIARY_ADMIN_TOKEN", ADMIN_TOKEN)
    _spans(running, "a", 3)
    _spans(running, "b", 4)
    report = _stored(capsys, running, {running.projects["a"]: 3, running.projects["b"]: 4})
    assert report["ingest"]["scope"] == "all projects"
    for project in report["ingest"]["projects"]:
        assert project["accepted"]["rows"] == sum(
            project[s]["rows"] for s in ("stored", "dead_lettered", "in_flight"))


def test_status_says_why_it_has_no_accounting(
        running: Running, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIARY_ADMIN_TOKEN", "a wrong admin token, long enough to be one")
    code, out = _status(capsys, running)
    assert code == 0
    assert "ingest:     unknown (HTTP 403:" in out
