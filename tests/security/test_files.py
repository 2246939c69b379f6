"""Attacks on what an installation leaves on disk and prints.

- Another local user reads the data directory: the SQLite databases (password hashes,
  sealed keys), chDB's parts, the JetStream store, dead letters, the NATS token, the
  envelope keys, ``connection.json``. They used to follow the umask (usually 022:
  world-readable).
- Anyone who reads a terminal scroll-back, a CI log or ``connection.json`` learns the
  admin's password: it was printed on every ``apiary up`` and kept in the file.

The first test runs the real start-up path, ``apiary up`` as a subprocess (the same command
the README runs), from a process whose umask is 0o022, twice on one data directory, with
an older version's leftovers in between (a loose directory, a world-readable database, a
password in ``connection.json``). The rest check the pieces that write into the data
directory on their own (nats-server, the object store, SQLite) and the recovery path for
the admin's password, ``apiary users reset-password``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apiary._private.files import loose_paths
from apiary._private.ports import spare_port
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings

ADMIN = "admin@apiary.local"
RESET_HINT = (f"admin: {ADMIN} (password shown when it was created; reset with "
              f"`apiary users reset-password {ADMIN}`)")


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask of a login shell: files group- and world-readable by default."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)




def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class ApiaryUp:
    """``apiary up`` in a subprocess started with umask 0o022; its output, line by line."""

    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("APIARY_") or k == "APIARY_FROM_SOURCE"}
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", APIARY_LOG_FORMAT="text",
                   APIARY_RAY_NUM_CPUS="2", APIARY_WRITER_FLUSH_INTERVAL_S="0.2",
                   # 4317 is the host's; a free one keeps parallel runs apart
                   APIARY_OTLP_GRPC_PORT=str(spare_port()))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "apiary.cli", "up", "--data-dir", str(data_dir),
             "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            preexec_fn=lambda: os.umask(0o022),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith("Press Ctrl-C to stop") for line in self.lines):
                return self.output
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"apiary up exited {self.process.returncode}:\n"
                                     f"{self.output}")
            time.sleep(0.25)
        raise AssertionError(f"apiary up not ready in {timeout} s:\n{self.output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(180)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._reader.join(10)


def _assert_private(data_dir: Path) -> None:
    assert _mode(data_dir) == 0o700
    assert loose_paths(data_dir) == []
    for secret in ("cp.sqlite", "cp-envelope.key", "connection.json", "nats/token",
                   "nats/nats-server.conf", "state.json"):
        assert _mode(data_dir / secret) == 0o600, secret
    for directory in ("nats", "nats/jetstream", "clickhouse"):
        assert _mode(data_dir / directory) == 0o700, directory


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def _password_of(output: str) -> str:
    line = next(line for line in output.splitlines() if line.strip().startswith("admin:"))
    email, _, password = line.split(":", 1)[1].strip().partition(" / ")
    assert email == ADMIN, line
    assert len(password) >= 16, line
    return password


def _login(base_url: str, password: str) -> httpx.Response:
    return httpx.post(f"{base_url}/cp/v1/auth/login", json={"email": ADMIN, "password": password},
                      timeout=60)


@pytest.mark.ray
def test_apiary_up_under_a_loose_umask_leaves_nothing_readable_and_stores_no_password(
    tmp_path: Path, loose_umask: None,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)  # an existing data directory others may enter
    port = spare_port()
    base_url = f"http://127.0.0.1:{port}"

    first = ApiaryUp(data_dir, port)
    try:
        output = first.wait_ready()
        _assert_private(data_dir)
        assert "tightened the modes of 1 path(s)" in output
        password = _password_of(output)
        assert "shown this once and stored nowhere" in output
        connection = json.loads((data_dir / "connection.json").read_text())
        assert set(connection) == {"url", "api_key", "project_id", "control_plane_url",
                                   "admin_email", "otlp_grpc_endpoint"}
        # Stored nowhere: not in connection.json, not in any database, log or key file.
        assert _files_containing(data_dir, password.encode()) == []
        assert _login(base_url, password).status_code == 200  # and it is the real one
    finally:
        first.stop()
    assert first.process.returncode == 0, first.output

    # What an older version left: a loose directory and database, and the password kept
    # in a world-readable connection.json.
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "cp.sqlite", 0o644)
    os.chmod(data_dir / "nats" / "token", 0o644)
    legacy = json.loads((data_dir / "connection.json").read_text())
    (data_dir / "connection.json").write_text(json.dumps({**legacy,
                                                          "admin_password": password}))
    os.chmod(data_dir / "connection.json", 0o644)

    second = ApiaryUp(data_dir, port)
    try:
        output = second.wait_ready()
        # The password is not shown again; the way to replace it is.
        assert password not in output
        assert RESET_HINT in output
        assert "tightened the modes of 4 path(s)" in output
        assert "removing the admin password an earlier version kept in connection.json" in (
            output)
        _assert_private(data_dir)
        assert "admin_password" not in json.loads((data_dir / "connection.json").read_text())
        assert _files_containing(data_dir, password.encode()) == []
    finally:
        second.stop()
    assert second.process.returncode == 0, second.output


def test_embedded_nats_server_files_are_private_under_a_loose_umask(
    tmp_path: Path, loose_umask: None,
) -> None:
    server = NatsServer(tmp_path)
    server.start()
    try:
        assert _mode(tmp_path / "nats") == 0o700
        assert _mode(tmp_path / "nats" / "token") == 0o600
        assert _mode(tmp_path / "nats" / "nats-server.conf") == 0o600
        assert _mode(tmp_path / "nats" / "nats-server.log") == 0o600
    finally:
        server.stop()
    # The JetStream store is written by nats-server itself, with the umask it was given.
    assert (tmp_path / "nats" / "jetstream").is_dir()
    assert loose_paths(tmp_path / "nats") == []


def test_a_token_file_left_readable_by_an_older_version_is_tightened(
    tmp_path: Path, loose_umask: None,
) -> None:
    (tmp_path / "nats").mkdir(mode=0o755)
    token = tmp_path / "nats" / "token"
    token.write_text("old-token")
    token.chmod(0o644)
    server = NatsServer(tmp_path)
    server.start()
    try:
        assert "old-token" in server.url  # the same token, kept
        assert _mode(token) == 0o600
        assert _mode(tmp_path / "nats") == 0o700
    finally:
        server.stop()


async def test_dead_letters_are_written_owner_only_under_a_loose_umask(
    tmp_path: Path, loose_umask: None,
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("dead-letters/2026/batch-1.arrow", b"event payloads")
    assert loose_paths(tmp_path / "objects") == []
    assert _mode(tmp_path / "objects" / "dead-letters" / "2026" / "batch-1.arrow") == 0o600
    assert await store.keys("dead-letters/") == ["dead-letters/2026/batch-1.arrow"]


def test_sqlite_databases_are_created_owner_only_under_a_loose_umask(
    tmp_path: Path, loose_umask: None,
) -> None:
    from sqlalchemy import text

    from apiary.control.service import ControlPlane
    from apiary.dataplane.db import DataPlaneDatabase

    settings = ApiarySettings(data_dir=tmp_path / "fresh")
    cp = ControlPlane.open(settings)
    dpdb = DataPlaneDatabase.open(settings.dp_database)
    try:
        with cp.transaction() as db:
            db.execute(text("SELECT 1"))
        assert _mode(settings.data_dir) == 0o700
        assert _mode(settings.data_dir / "cp.sqlite") == 0o600
        assert _mode(settings.data_dir / "dp.sqlite") == 0o600
        assert _mode(settings.data_dir / "cp-envelope.key") == 0o600
        # SQLite's WAL and shared-memory files take the main file's mode.
        assert loose_paths(settings.data_dir) == []
    finally:
        dpdb.dispose()
        cp.close()


# --- the admin's password: replaced, never recovered ------------------------------------------


def _cli(data_dir: Path, *args: str, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return subprocess.run([sys.executable, "-m", "apiary.cli", *args, "--data-dir",
                           str(data_dir)], input=stdin, capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_forgotten_admin_password_is_reset_and_every_old_session_is_logged_out(
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from apiary.control import admin
    from apiary.control.api import create_control_plane_app
    from apiary.control.db import User
    from apiary.control.service import ControlPlane

    settings = ApiarySettings(data_dir=tmp_path)
    first = admin.bootstrap(settings, admin_email=ADMIN, mint_key=False)
    old_password = first["admin_password"]
    cp = ControlPlane.open(settings)
    try:
        with TestClient(create_control_plane_app(cp)) as http:
            login = http.post("/v1/auth/login", json={"email": ADMIN, "password": old_password})
            assert login.status_code == 200, login.text
            stolen = {"authorization": f"Bearer {login.json()['session_token']}"}
            assert http.get("/v1/me", headers=stolen).status_code == 200

            # Generated, printed once.
            reset = _cli(tmp_path, "users", "reset-password", ADMIN, "--json")
            assert reset.returncode == 0, reset.stderr
            result = json.loads(reset.stdout)
            new_password = result["password"]
            assert new_password != old_password
            assert len(new_password) >= 16
            assert result["sessions_revoked"] == 1
            # The session of whoever knew the old password is gone, and so is the password.
            assert http.get("/v1/me", headers=stolen).status_code == 401
            assert http.post("/v1/auth/login", json={"email": ADMIN, "password": old_password}
                             ).status_code == 401
            assert http.post("/v1/auth/login", json={"email": ADMIN, "password": new_password}
                             ).status_code == 200
            assert _files_containing(tmp_path, new_password.encode()) == []

            # A locked account is unlocked; a chosen password is read from stdin.
            with cp.transaction() as db:
                user = db.scalars(select(User).where(User.email == ADMIN)).one()
                user.locked_until = cp.now().replace(year=cp.now().year + 1)
                user.failed_logins = 3
            chosen = "a chosen, long admin password 7"
            reset = _cli(tmp_path, "users", "reset-password", ADMIN, "--password-stdin",
                         "--json", stdin=chosen + "\n")
            assert reset.returncode == 0, reset.stderr
            result = json.loads(reset.stdout)
            assert "password" not in result  # given, so not printed back
            assert result["lockout_cleared"] is True
            assert http.post("/v1/auth/login", json={"email": ADMIN, "password": chosen}
                             ).status_code == 200
    finally:
        cp.close()


def test_reset_password_refuses_an_unknown_account_and_a_short_password(tmp_path: Path) -> None:
    from apiary.control import admin

    admin.bootstrap(ApiarySettings(data_dir=tmp_path), admin_email=ADMIN, mint_key=False)
    unknown = _cli(tmp_path, "users", "reset-password", "nobody@example.com")
    assert unknown.returncode == 1
    assert "no user with email nobody@example.com" in unknown.stderr
    short = _cli(tmp_path, "users", "reset-password", ADMIN, "--password-stdin",
                 stdin="short\n")
    assert short.returncode == 1
    assert "at least" in short.stderr
