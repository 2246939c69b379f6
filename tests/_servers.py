"""Real servers for tests: each on a free port on 127.0.0.1, in a private temporary
directory, stopped and removed afterwards. Used by session fixtures; never mocks.

- :func:`redis_server` → ``redis://127.0.0.1:<port>/0`` (Debian package ``redis-server``).
- :func:`postgres_server` → ``postgresql+psycopg://postgres@127.0.0.1:<port>/postgres``
  (PostgreSQL 15 from /usr/local/bin; run as an unprivileged system user when we are root,
  because postgres refuses to run as root). :func:`postgres_database` adds a database.
- :func:`http_server` → ``http://127.0.0.1:<port>`` serving an ASGI app with uvicorn in a
  background thread (its own event loop), for playing a remote service such as the control
  plane.
- :func:`s3_server` → ``http://127.0.0.1:<port>``, an S3-protocol server (``moto_server``),
  for the S3 object-store driver.

A port is picked by binding port 0 and releasing it, so another process may grab it before
the server binds; each starter then retries on a new port.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from apiary._private.ports import spare_port

_STARTUP_S = 30.0
_ATTEMPTS = 3
PG_BIN = Path(os.environ.get("APIARY_TEST_PG_BIN", "/usr/local/bin"))
PG_USER = "apiarypg"


def free_port() -> int:
    return spare_port()


def _wait(ready: Callable[[], bool], proc: subprocess.Popen[Any], what: str, log: Path) -> bool:
    """True once ``ready()``; False if ``proc`` exited first (e.g. the port was taken)."""
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{what} did not become ready in {_STARTUP_S} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[Any], sig: int, timeout_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- Redis -----------------------------------------------------------------------------


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server without persistence; yields its URL (database 0)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
    with tempfile.TemporaryDirectory(prefix="apiary-redis-") as tmp:
        log = Path(tmp) / "redis.log"
        for _ in range(_ATTEMPTS):
            port = free_port()
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                     "--save", "", "--appendonly", "no", "--daemonize", "no"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            if _wait(lambda p=port: _redis_answers(p), proc, "redis-server", log):
                break
        else:
            raise RuntimeError(f"redis-server would not start:\n{_tail(log)}")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(proc, signal.SIGTERM)


# --- PostgreSQL ------------------------------------------------------------------------


def _postgres_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, creating the system user if needed; None if not root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True, capture_output=True,
        )
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def _as_user(ids: tuple[int, int] | None) -> dict[str, Any]:
    if ids is None:
        return {}
    return {"user": ids[0], "group": ids[1], "extra_groups": []}


def _postgres_answers(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=1
        ) as conn:
            conn.execute("SELECT 1")
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A private PostgreSQL 15 (trust auth, user ``postgres``, fsync off); yields its
    SQLAlchemy URL. Stopped with SIGINT (fast shutdown), its directory removed."""
    ids = _postgres_user()
    with tempfile.TemporaryDirectory(prefix="apiary-pg-") as tmp:
        root = Path(tmp)
        data, sockets, log = root / "data", root / "sock", root / "postgres.log"
        sockets.mkdir()
        log.touch()
        if ids is not None:
            for path in (root, sockets, log):
                os.chown(path, *ids)
        env = {**os.environ, "HOME": tmp, "LC_ALL": "C"}
        init = subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, env=env, cwd=tmp, **_as_user(ids),
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        for _ in range(_ATTEMPTS):
            port = free_port()
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                     "-h", "127.0.0.1", "-k", str(sockets),
                     # Durability is not under test here; speed is.
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, cwd=tmp, **_as_user(ids),
                )
            if _wait(lambda p=port: _postgres_answers(p), proc, "postgres", log):
                break
        else:
            raise RuntimeError(f"postgres would not start:\n{_tail(log)}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            _stop(proc, signal.SIGINT)


def postgres_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` on the server of ``server_url`` (a copy of ``template``
    when given: much faster than migrating again); return its URL."""
    import psycopg
    from psycopg import sql

    base, _, _ = server_url.rpartition("/")
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(
        server_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(statement)
    return f"{base}/{name}"


# --- HTTP ------------------------------------------------------------------------------


@contextlib.contextmanager
def http_server(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on 127.0.0.1 in a daemon thread; yields its URL."""
    import uvicorn

    for _ in range(_ATTEMPTS):
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off",
            )
        )
        thread = threading.Thread(target=server.run, name=f"http-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + _STARTUP_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if server.started:
            break
        server.should_exit = True
        thread.join(5)
    else:
        raise RuntimeError("uvicorn would not start on a free port")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# --- S3 --------------------------------------------------------------------------------


def _http_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A real S3-protocol server (``moto_server`` from ``moto[server]``, in memory); yields
    its endpoint URL. Any access key is accepted: set ``AWS_ACCESS_KEY_ID``/``..._SECRET_...``
    to anything and ``AWS_DEFAULT_REGION`` for boto3."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        raise RuntimeError("moto_server is not installed: pip install 'moto[server]'")
    with tempfile.TemporaryDirectory(prefix="apiary-s3-") as tmp:
        log = Path(tmp) / "moto.log"
        for _ in range(_ATTEMPTS):
            port = free_port()
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [str(binary), "-H", "127.0.0.1", "-p", str(port)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp,
                )
            if _wait(lambda p=port: _http_answers(p), proc, "moto_server", log):
                break
        else:
            raise RuntimeError(f"moto_server would not start:\n{_tail(log)}")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc, signal.SIGTERM)
