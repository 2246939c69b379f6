"""The writer's ingest ledger (apiary/dataplane/writer/_ledger.py): idempotent, durable
when ``settled`` returns, and a retryable StoreError while the store is unreachable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apiary.dataplane.writer import IngestLedger, LedgerEntry
from apiary.errors import StoreError
from apiary.store import ClickHouseServer, DirectStoreClient, EventStore


def _totals(store: EventStore, project: str) -> dict[tuple[str, bool], tuple[int, int, int]]:
    return {(str(r["kind"]), bool(r["dead"])): (int(r["messages"]), int(r["stored_rows"]),
                                                int(r["dead_rows"]))
            for r in store.ledger_totals(project, [])}


async def test_settling_the_same_entries_again_counts_them_once(store: EventStore,
                                                                 project: str) -> None:
    ledger = IngestLedger(DirectStoreClient(store))
    first = [LedgerEntry(project, 11, "spans", "stored", 5),
             LedgerEntry(project, 12, "api", "stored", 1)]
    await ledger.settled(first)
    await ledger.settled(first)  # a retry after a timeout that hid the commit
    # A redelivered message settled again with a later flush, and one split by per-span
    # isolation: two entries of one message.
    await ledger.settled([first[0], LedgerEntry(project, 13, "spans", "stored", 3),
                          LedgerEntry(project, 13, "spans", "dead", 1)])
    await ledger.settled([])
    assert _totals(store, project) == {("spans", False): (1, 5, 0), ("spans", True): (1, 3, 1),
                                       ("api", False): (1, 1, 0)}


async def test_an_unreachable_store_is_a_retryable_store_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = EventStore(ClickHouseServer(f"http://127.0.0.1:{port}"))
    ledger = IngestLedger(DirectStoreClient(store))
    with pytest.raises(StoreError) as raised:
        await ledger.settled([LedgerEntry("p", 1, "spans", "stored", 1)])
    assert raised.value.retryable
    store.close()


_RECORD = textwrap.dedent("""
    import asyncio, sys
    from apiary.dataplane.writer import IngestLedger, LedgerEntry
    from apiary.store import DirectStoreClient, EmbeddedClickHouse, EventStore

    store = EventStore(EmbeddedClickHouse(sys.argv[1]))
    store.migrate()
    entries = [LedgerEntry("p-durable", s, "spans", "stored", 7) for s in range(1, 51)]
    asyncio.run(IngestLedger(DirectStoreClient(store)).settled(entries))
    print("settled", flush=True)
    sys.stdin.read()  # killed here, before any clean shutdown
""")
_READ = textwrap.dedent("""
    import sys
    from apiary.store import EmbeddedClickHouse, EventStore

    store = EventStore(EmbeddedClickHouse(sys.argv[1]))
    [row] = store.ledger_totals("p-durable", [])
    settings = store.driver.query_rows(
        "SELECT create_table_query AS q FROM system.tables WHERE database = 'apiary' "
        "AND name = 'ingest_ledger'")[0]["q"]
    print(row["messages"], row["stored_rows"], "fsync_after_insert = 1" in settings,
          "fsync_part_directory = 1" in settings)
""")


def test_settled_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    """kill -9 the process right after ``settled`` returned: another process opening the
    same data directory finds every entry (and the table fsyncs its parts)."""
    data = tmp_path / "chdb"
    recorder = subprocess.Popen([sys.executable, "-c", _RECORD, str(data)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert recorder.stdout is not None
        assert recorder.stdout.readline().strip() == "settled"
        os.kill(recorder.pid, signal.SIGKILL)
    finally:
        recorder.kill()
        recorder.wait(timeout=30)
    assert recorder.returncode == -signal.SIGKILL
    read = subprocess.run([sys.executable, "-c", _READ, str(data)], capture_output=True,
                          text=True, timeout=120, check=True)
    assert read.stdout.split() == ["50", "350", "True", "True"], read.stderr[-2000:]
