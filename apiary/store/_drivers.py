"""The two ClickHouse drivers behind one synchronous interface.

:func:`open_driver` picks the driver from configuration (docs/architecture.md, "Stores and
their embedded defaults"):

- :class:`ClickHouseServer` — a ClickHouse server over HTTP(S) via clickhouse-connect, for
  production. The URL carries the credentials (``http://user:pass@host:8123``).
- :class:`EmbeddedClickHouse` — chDB (the ClickHouse engine in-process) on a data directory,
  for one machine with no setup. chDB hosts **one** data directory per process and refuses a
  directory another process holds.

Both run the same SQL. Guarantees common to both:

- **Thread safety.** Any method may be called from several threads at once. The embedded
  driver keeps a small pool of chDB handles (each clickhouse-connect chDB client serializes
  its own calls with a lock, so one client would serialize an insert behind a long query);
  the server driver shares one HTTP client without a ClickHouse session, which
  clickhouse-connect allows concurrently.
- **Bound parameters only.** Values reach ClickHouse as ``{name:Type}`` server-side
  parameters; a parameter that the SQL does not reference as a placeholder is refused
  (a guard against accidentally formatting values into SQL).
- **One error vocabulary.** Driver exceptions become :class:`~apiary.errors.StoreUnavailable`
  (retryable: connection, timeouts, too many parts, memory limit, ...) or
  :class:`~apiary.errors.StoreRejected` (the SQL or the data is wrong), with the operation,
  the ClickHouse error code/name and the start of the SQL in ``context``. Credentials never
  appear in messages or context.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from apiary._private.files import private_dir
from apiary.errors import ApiaryError, ConfigurationError, StoreRejected, StoreUnavailable

T = TypeVar("T")

#: Largest number of chDB handles one embedded driver opens; more concurrent callers wait.
DEFAULT_EMBEDDED_POOL_SIZE = 4
#: How long a caller waits for a free chDB handle before the call fails as retryable.
POOL_WAIT_S = 60.0

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]+\}")

# ClickHouse error names (and their codes, for messages without a name) that describe a
# transient condition: repeating the same statement later can succeed.
_RETRYABLE_NAMES = frozenset({
    "TIMEOUT_EXCEEDED", "TOO_SLOW", "TOO_MANY_SIMULTANEOUS_QUERIES", "NO_FREE_CONNECTION",
    "SOCKET_TIMEOUT", "NETWORK_ERROR", "ABORTED", "MEMORY_LIMIT_EXCEEDED",
    "TABLE_IS_READ_ONLY", "NOT_ENOUGH_SPACE", "TOO_MANY_PARTS", "ALL_CONNECTION_TRIES_FAILED",
    "CANNOT_ALLOCATE_MEMORY", "QUERY_WAS_CANCELLED", "CANNOT_SCHEDULE_TASK",
    "KEEPER_EXCEPTION", "SERVER_OVERLOADED", "TOO_MANY_QUERIES", "CANNOT_READ_FROM_SOCKET",
    "CANNOT_WRITE_TO_SOCKET", "ALL_REPLICAS_ARE_STALE", "REPLICA_IS_NOT_IN_QUORUM",
    "TABLE_IS_BEING_RESTARTED", "UNEXPECTED_PACKET_FROM_SERVER",
})
_RETRYABLE_CODES = frozenset({159, 160, 173, 202, 203, 209, 210, 236, 241, 242, 243, 252,
                              279, 394, 439, 999})
_SQL_SNIPPET = 240


@runtime_checkable
class ClickHouseDriver(Protocol):
    """What the store needs from ClickHouse; both drivers implement it, thread-safely."""

    database: str

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""
        ...

    def insert_arrow(self, table: str, data: pa.Table, *,
                     dedup_token: str | None = None) -> None:
        """Insert an Arrow table; ``table`` is ``name`` or ``database.name``.

        With ``dedup_token``, the insert carries it as ``insert_deduplication_token``: on
        a table with a deduplication window (migration 0009), a second insert with the
        same token stores nothing, in the table and in the materialized views it feeds,
        so an insert whose outcome was unknown can be repeated safely.
        """
        ...

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """Run a SELECT and return its result as an Arrow table (strings as ``string``)."""
        ...

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Run a SELECT and return one dict per row (DateTime64 as naive-UTC ``datetime``)."""
        ...

    def close(self) -> None:
        """Release connections and handles; the driver is unusable afterwards."""
        ...


def open_driver(
    *, url: str | None, path: Path | None, database: str = "apiary",
    pool_size: int = DEFAULT_EMBEDDED_POOL_SIZE,
) -> ClickHouseDriver:
    """The driver configuration asks for: a server when ``url`` is set, else chDB at ``path``.

    ``database`` is where Apiary's tables live (created by the migrations, not here).
    Raises :class:`ConfigurationError` for an unusable combination and, for chDB, when the
    process already hosts another data directory; :class:`StoreUnavailable` when the data
    directory is held by another process (it may be shutting down).
    """
    check_identifier(database)
    if url is not None:
        return ClickHouseServer(url, database=database)
    if path is None:
        raise ConfigurationError(
            "ClickHouse needs either a server URL (APIARY_CLICKHOUSE_URL) or a data directory "
            "for embedded chDB (APIARY_DATA_DIR)"
        )
    return EmbeddedClickHouse(path, database=database, pool_size=pool_size)


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"invalid ClickHouse identifier {name!r}: use letters, digits and underscores",
        )
    return name


def _check_parameters(sql: str, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Refuse parameters the SQL does not bind server-side.

    clickhouse-connect falls back to client-side ``%(name)s`` formatting when a statement
    has no ``{name:Type}`` placeholder; refusing that case keeps every value out of the SQL
    text.
    """
    if not parameters:
        return None
    bound = set(_PLACEHOLDER.findall(sql))
    unbound = set(parameters) - bound
    if unbound:
        raise StoreRejected(
            "query parameters without a {name:Type} placeholder",
            parameters=sorted(unbound), sql=sql[:_SQL_SNIPPET],
        )
    return parameters


def map_driver_error(exc: BaseException, *, operation: str, sql: str | None = None,
                     driver: str, table: str | None = None) -> ApiaryError:
    """Translate a clickhouse-connect / chDB / pyarrow exception into Apiary's vocabulary.

    Retryable conditions (no connection, timeouts, overload, too many parts, memory limit)
    become :class:`StoreUnavailable`; everything else (syntax, unknown table, type or parse
    errors) :class:`StoreRejected`. Already-translated Apiary errors pass through.
    """
    if isinstance(exc, ApiaryError):
        return exc
    from clickhouse_connect.driver import exceptions as ch

    code: int | None = getattr(exc, "code", None)
    name: str | None = getattr(exc, "name", None)
    message = _scrub(str(exc))
    if name is None:
        found = re.findall(r"\(([A-Z][A-Z0-9_]+)\)", message)
        name = found[-1] if found else None
    if code is None:
        found_code = re.search(r"\bCode:\s*(\d+)", message)
        code = int(found_code.group(1)) if found_code else None
    context: dict[str, Any] = {
        "operation": operation, "driver": driver, "code": code, "error_name": name,
        "table": table, "sql": sql[:_SQL_SNIPPET] if sql else None,
    }
    retryable = (
        (name in _RETRYABLE_NAMES)
        or (code in _RETRYABLE_CODES)
        # No server code: the request never got an answer (refused, reset, timed out).
        or (isinstance(exc, ch.OperationalError) and code is None)
        or isinstance(exc, (ConnectionError, TimeoutError))
    )
    summary = message.splitlines()[0][:500] if message else type(exc).__name__
    if retryable:
        return StoreUnavailable(f"ClickHouse unavailable during {operation}: {summary}",
                                **context)
    return StoreRejected(f"ClickHouse rejected {operation}: {summary}", **context)


_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]*@")


def _scrub(text: str) -> str:
    """Drop ``user:password@`` from any URL inside an error message."""
    return _URL_CREDENTIALS.sub(r"\1", text)


def redact_url(url: str) -> str:
    """``url`` without its credentials, for logs and error context."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _qualified(table: str, database: str) -> str:
    parts = table.split(".")
    if len(parts) == 1:
        parts = [database, parts[0]]
    if len(parts) != 2:
        raise StoreRejected("table must be 'name' or 'database.name'", table=table)
    return ".".join(f"`{check_identifier(p)}`" for p in parts)


class _ClientDriver:
    """Shared method bodies: borrow a clickhouse-connect client, run, translate errors."""

    database: str
    _kind: str

    @contextmanager
    def _client(self) -> Iterator[Any]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def _call(self, operation: str, sql: str | None, table: str | None,
              fn: Callable[[Any], T]) -> T:
        try:
            with self._client() as client:
                return fn(client)
        except ApiaryError:
            raise
        except Exception as exc:
            raise map_driver_error(exc, operation=operation, sql=sql, driver=self._kind,
                                   table=table) from exc

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        params = _check_parameters(sql, parameters)
        self._call("command", sql, None, lambda c: c.command(sql, parameters=params))

    def insert_arrow(self, table: str, data: pa.Table, *,
                     dedup_token: str | None = None) -> None:
        target = _qualified(table, self.database)
        if data.num_rows == 0:
            return
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        self._call("insert", None, target,
                   lambda c: c.insert_arrow(target, data, settings=settings))

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        params = _check_parameters(sql, parameters)
        result: pa.Table = self._call(
            "query", sql, None,
            lambda c: c.query_arrow(sql, parameters=params, use_strings=True),
        )
        return result

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        params = _check_parameters(sql, parameters)

        def run(client: Any) -> list[dict[str, Any]]:
            result = client.query(sql, parameters=params)
            names = result.column_names
            return [dict(zip(names, row, strict=True)) for row in result.result_rows]

        return self._call("query", sql, None, run)


class EmbeddedClickHouse(_ClientDriver):
    """chDB on a data directory, with a pool of up to ``pool_size`` engine handles.

    Handles are opened lazily (the first one at construction, so a bad directory fails
    early) and reused; a caller that finds all of them busy waits up to
    :data:`POOL_WAIT_S` seconds, then gets :class:`StoreUnavailable`.
    """

    _kind = "chdb"

    def __init__(self, path: Path, *, database: str = "apiary",
                 pool_size: int = DEFAULT_EMBEDDED_POOL_SIZE) -> None:
        if pool_size < 1:
            raise ConfigurationError("the chDB handle pool needs at least one handle")
        self.path = Path(path).expanduser().resolve()
        private_dir(self.path)
        self.database = check_identifier(database)
        self._pool_size = pool_size
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._idle.put(self._open_handle())

    def _open_handle(self) -> Any:
        import clickhouse_connect

        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{self.path}")
        except Exception as exc:
            text = str(exc)
            if "different path" in text:
                raise ConfigurationError(
                    "this process already runs chDB on another data directory; chDB hosts "
                    "one data directory per process",
                    path=str(self.path),
                ) from exc
            # Typically another process holds the directory's lock (an old actor that is
            # still shutting down): worth retrying.
            raise StoreUnavailable(
                f"cannot open embedded ClickHouse: {text.splitlines()[0][:300]}",
                path=str(self.path), driver=self._kind,
            ) from exc
        with self._lock:
            self._all.append(client)
        return client

    @contextmanager
    def _client(self) -> Iterator[Any]:
        if self._closed:
            raise StoreRejected("the embedded ClickHouse driver is closed", path=str(self.path))
        client = self._borrow()
        try:
            yield client
        finally:
            if self._closed:
                client.close()
            else:
                self._idle.put(client)

    def _borrow(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            may_open = len(self._all) < self._pool_size
        if may_open:
            return self._open_handle()
        try:
            return self._idle.get(timeout=POOL_WAIT_S)
        except queue.Empty:
            raise StoreUnavailable(
                "no free embedded ClickHouse handle", pool_size=self._pool_size,
                waited_s=POOL_WAIT_S,
            ) from None

    @property
    def open_handles(self) -> int:
        """How many chDB handles this driver has opened (for tests and metrics)."""
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                break
            client.close()
        with self._lock:
            self._all.clear()


class ClickHouseServer(_ClientDriver):
    """A ClickHouse server over HTTP(S); ``url`` like ``http://user:pass@host:8123``.

    The connection is made on first use, so constructing the driver never blocks on the
    network and a server that is down surfaces as :class:`StoreUnavailable` from the call
    that needed it. A database in the URL path is ignored; ``database`` names Apiary's.
    """

    _kind = "http"

    def __init__(self, url: str, *, database: str = "apiary",
                 connect_timeout_s: int = 10, send_receive_timeout_s: int = 300) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "the ClickHouse URL must be http(s)://[user:password@]host[:port]",
                url=redact_url(url),
            )
        self.database = check_identifier(database)
        self.url = redact_url(url)
        self._options: dict[str, Any] = {
            "interface": parts.scheme,
            "host": parts.hostname,
            "port": parts.port or (8443 if parts.scheme == "https" else 8123),
            "username": parts.username or "default",
            "password": parts.password or "",
            "connect_timeout": connect_timeout_s,
            "send_receive_timeout": send_receive_timeout_s,
            # A ClickHouse session would serialize (and reject) concurrent requests.
            "autogenerate_session_id": False,
            # The driver's own retries would double the wait before StoreUnavailable;
            # retrying is the caller's decision.
            "query_retries": 0,
        }
        self._client_obj: Any = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def connection_options(self) -> dict[str, Any]:
        """The clickhouse-connect options, password masked (for diagnostics and tests)."""
        shown = dict(self._options)
        if shown["password"]:
            shown["password"] = "***"
        return shown

    def _connect(self) -> Any:
        import clickhouse_connect

        with self._lock:
            if self._closed:
                raise StoreRejected("the ClickHouse driver is closed", url=self.url)
            if self._client_obj is None:
                self._client_obj = clickhouse_connect.get_client(**self._options)
            return self._client_obj

    @contextmanager
    def _client(self) -> Iterator[Any]:
        yield self._connect()

    def _call(self, operation: str, sql: str | None, table: str | None,
              fn: Callable[[Any], T]) -> T:
        try:
            return super()._call(operation, sql, table, fn)
        except ApiaryError as exc:
            exc.context.setdefault("url", self.url)
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client_obj = self._client_obj, None
        if client is not None:
            client.close()
