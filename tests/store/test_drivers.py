"""The two drivers: construction, thread safety, parameter binding and error mapping.

No ClickHouse server exists here, so the HTTP driver is exercised up to the network
(construction, options, an unreachable port) and its error mapping with the exception
types clickhouse-connect raises; the shared SQL runs through chDB everywhere else.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from clickhouse_connect.driver import exceptions as ch
from factory import many_events, tenant

from apiary.errors import ConfigurationError, StoreRejected, StoreUnavailable
from apiary.store import (
    ClickHouseServer,
    EmbeddedClickHouse,
    EventStore,
    events_to_arrow,
    map_driver_error,
    open_driver,
)

# --- chDB -----------------------------------------------------------------------------


def test_query_rows_and_arrow_with_bound_parameters(driver: EmbeddedClickHouse) -> None:
    rows = driver.query_rows("SELECT {a:String} AS a, {n:UInt32} + 1 AS n",
                             {"a": "x'y\\z\n", "n": 41})
    assert rows == [{"a": "x'y\\z\n", "n": 42}]
    table = driver.query_arrow("SELECT arrayJoin({ids:Array(String)}) AS id",
                               {"ids": ["a", "b"]})
    assert table.column("id").to_pylist() == ["a", "b"]
    assert pa.types.is_string(table.schema.field("id").type)


def test_parameters_without_placeholders_are_refused(driver: EmbeddedClickHouse) -> None:
    with pytest.raises(StoreRejected, match="placeholder") as info:
        driver.query_rows("SELECT %(a)s AS a", {"a": "1"})
    assert info.value.context["parameters"] == ["a"]


def test_bad_sql_is_rejected_with_context(driver: EmbeddedClickHouse) -> None:
    with pytest.raises(StoreRejected) as info:
        driver.query_rows("SELEC 1")
    assert info.value.context["error_name"] == "SYNTAX_ERROR"
    assert info.value.context["code"] == 62
    assert info.value.context["sql"] == "SELEC 1"
    assert not info.value.retryable


def test_unknown_table_and_bad_insert_are_rejected(driver: EmbeddedClickHouse,
                                                   store: EventStore) -> None:
    with pytest.raises(StoreRejected) as info:
        driver.query_rows("SELECT * FROM apiary.nope")
    assert info.value.context["error_name"] == "UNKNOWN_TABLE"
    with pytest.raises(StoreRejected) as insert_info:
        driver.insert_arrow("events", pa.table({"no_such_column": [1]}))
    assert insert_info.value.context["table"] == "`apiary`.`events`"
    with pytest.raises(StoreRejected):
        driver.insert_arrow("a.b.c", pa.table({"x": [1]}))


def test_type_errors_are_rejected(driver: EmbeddedClickHouse) -> None:
    with pytest.raises(StoreRejected) as info:
        driver.query_rows("SELECT {n:UInt8} AS n", {"n": "not a number"})
    assert info.value.context["operation"] == "query"


def test_concurrent_inserts_and_queries(store: EventStore, project: str) -> None:
    driver = store.driver
    assert isinstance(driver, EmbeddedClickHouse)
    batches = [events_to_arrow(tenant(project), 1, many_events(2000, seed=s))
               for s in range(6)]
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {0: [], 1: []}
    done = threading.Event()

    def insert() -> None:
        try:
            for table in batches:
                store.insert_arrow(table)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def query(reader: int) -> None:
        try:
            while not done.is_set():
                seen[reader].append(store.count_events(project))
                driver.query_rows("SELECT sum(number) AS s FROM numbers(200000)")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=insert)] + [
        threading.Thread(target=query, args=(reader,)) for reader in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for counts in seen.values():
        assert counts, "a reader never ran while the inserts did"
        assert counts == sorted(counts)  # a reader never sees rows disappear
        assert all(n % 2000 == 0 for n in counts)  # inserts are atomic
    assert store.count_events(project) == 6 * 2000
    assert not any(t.is_alive() for t in threads)
    # Queries did not queue behind the insert (a second handle), and the pool stays within its
    # bound (four, DEFAULT_EMBEDDED_POOL_SIZE): three callers can make it open a fourth when a
    # handle comes back just after another caller found none idle (the CI failure "4 <= 3").
    assert 2 <= driver.open_handles <= 4


def test_pool_waits_for_a_free_handle(tmp_path: Path, driver: EmbeddedClickHouse) -> None:
    # A second driver on the session's directory shares its engine; with one handle,
    # a second caller waits for the first instead of failing.
    solo = EmbeddedClickHouse(driver.path, database="apiary", pool_size=1)
    try:
        results: list[int] = []

        def slow() -> None:
            results.append(solo.query_rows(
                "SELECT count() AS n FROM numbers(3) WHERE sleepEachRow(0.1) = 0")[0]["n"])

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.05)
        results.append(solo.query_rows("SELECT 1 AS n")[0]["n"])
        thread.join()
        assert sorted(results) == [1, 3]
        assert solo.open_handles == 1
    finally:
        solo.close()
    with pytest.raises(StoreRejected, match="closed"):
        solo.query_rows("SELECT 1")


def test_second_data_directory_in_one_process_is_a_configuration_error(
    tmp_path: Path, driver: EmbeddedClickHouse,
) -> None:
    with pytest.raises(ConfigurationError, match="one data directory per process"):
        open_driver(url=None, path=tmp_path / "other", database="apiary")
    assert driver.query_rows("SELECT 1 AS one") == [{"one": 1}]


def test_open_driver_needs_a_url_or_a_path() -> None:
    with pytest.raises(ConfigurationError, match="APIARY_CLICKHOUSE_URL"):
        open_driver(url=None, path=None)
    with pytest.raises(ConfigurationError, match="identifier"):
        open_driver(url="http://localhost:8123", path=None, database="bad-name;")


# --- HTTP server ------------------------------------------------------------------------


def test_server_driver_parses_the_url_without_connecting() -> None:
    drv = open_driver(url="https://alice:s3cret@ch.example:9443/ignored", path=None,
                      database="apiary")
    assert isinstance(drv, ClickHouseServer)
    assert drv.url == "https://ch.example:9443/ignored"
    options = drv.connection_options
    assert options["host"] == "ch.example"
    assert options["port"] == 9443
    assert options["interface"] == "https"
    assert options["username"] == "alice"
    assert options["password"] == "***"
    assert options["autogenerate_session_id"] is False
    assert "s3cret" not in repr(options)
    default_port = ClickHouseServer("http://ch")
    assert default_port.connection_options["port"] == 8123
    assert default_port.connection_options["username"] == "default"
    drv.close()


@pytest.mark.parametrize("url", ["ch.example:8123", "tcp://ch:9000", "http://"])
def test_server_driver_refuses_unusable_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ClickHouseServer(url)


def test_unreachable_server_is_retryable_and_hides_the_password() -> None:
    drv = ClickHouseServer("http://bob:hunter2@127.0.0.1:9", database="apiary",
                           connect_timeout_s=2)
    with pytest.raises(StoreUnavailable) as info:
        drv.query_rows("SELECT 1")
    assert info.value.retryable
    assert info.value.context["url"] == "http://127.0.0.1:9"
    assert info.value.context["driver"] == "http"
    assert "hunter2" not in str(info.value)
    drv.close()
    with pytest.raises(StoreRejected, match="closed"):
        drv.command("SELECT 1")


@pytest.mark.parametrize(("exc", "retryable"), [
    (ch.OperationalError("Error HTTPConnectionPool: connection refused"), True),
    (ch.DatabaseError("Received ClickHouse exception, code: 252, server response: Code: 252."
                      " DB::Exception: Too many parts (300). (TOO_MANY_PARTS)"), True),
    (ch.DatabaseError("boom", code=241, name="MEMORY_LIMIT_EXCEEDED"), True),
    (ch.OperationalError("retried", code=159, name="TIMEOUT_EXCEEDED"), True),
    (ch.DatabaseError("Code: 209. DB::Exception: Timeout exceeded while reading from socket"),
     True),
    (TimeoutError("read timed out"), True),
    (ch.DatabaseError("Code: 62. DB::Exception: Syntax error (SYNTAX_ERROR)"), False),
    (ch.DatabaseError("x", code=53, name="TYPE_MISMATCH"), False),
    (ch.ProgrammingError("Unrecognized client type"), False),
    (pa.ArrowInvalid("bad array"), False),
])
def test_error_mapping(exc: Exception, retryable: bool) -> None:
    mapped = map_driver_error(exc, operation="insert", driver="http", table="`a`.`events`")
    assert isinstance(mapped, StoreUnavailable if retryable else StoreRejected)
    assert mapped.retryable is retryable
    assert mapped.context["operation"] == "insert"
    assert mapped.context["table"] == "`a`.`events`"


def test_error_mapping_scrubs_credentials_and_keeps_the_code() -> None:
    exc = ch.DatabaseError("HTTP driver received HTTP status 500 (for url "
                           "http://u:pw@host:8123/?query=x) Code: 999. (KEEPER_EXCEPTION)")
    mapped = map_driver_error(exc, operation="query", driver="http", sql="SELECT 1")
    assert isinstance(mapped, StoreUnavailable)
    assert mapped.context["code"] == 999
    assert mapped.context["error_name"] == "KEEPER_EXCEPTION"
    assert "pw" not in mapped.message
    assert "http://host:8123" in mapped.message
