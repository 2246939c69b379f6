"""bench/read_columns: what the read columns of migration 0014 and the duplicate register
cost an insert, each measured apart.

Usage: .venv/bin/python -m bench.read_columns [--events 60000] [--rounds 4]

Whole ``bench/insert`` runs varied by ±25 % on this shared machine (the same tree 17 to
35 µs a row within an hour), more than these costs, so they are measured in pairs: the
same 10,000-row Arrow tables (``bench/insert``'s events) are inserted, one after another,
into copies of ``events`` without the session view (as ``SHOW CREATE TABLE`` gives it:
plain, with ``key_hash`` only, with ``attr_hashes`` only, with both; each copy first as
often as the others), ``--rounds`` times;
each copy's CPU per row (getrusage of this process: chDB's threads included) is compared
with the plain copy's in the same round, and the medians of those differences printed.
Then the register's own work: :meth:`~apiary.store._duplicates.DuplicateRegister.observe`
on each table (hashing each key and looking it up), process CPU per row.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apiary.store import EmbeddedClickHouse, EventStore, events_to_arrow  # noqa: E402
from apiary.store._attributes import with_attributes  # noqa: E402
from apiary.store._duplicates import DuplicateRegister  # noqa: E402
from bench._insert_data import TENANT, Generator, Loaded  # noqa: E402

COPIES = {
    "plain": ("key_hash", "attr_hashes"),
    "key_hash": ("attr_hashes",),
    "attr_hashes": ("key_hash",),
    "both": (),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-read-columns-") as tmp:
        driver = EmbeddedClickHouse(Path(tmp), database="apiary")
        store = EventStore(driver)
        try:
            store.migrate()
            ddl = str(next(iter(driver.query_rows("SHOW CREATE TABLE apiary.events")[0]
                                .values())))
            for copy, dropped in COPIES.items():
                text = ddl.replace("apiary.events", f"apiary.events_{copy}", 1)
                for column in dropped:
                    text = re.sub(rf"\n\s*`{column}`[^\n]*,", "", text)
                driver.command(text)
            tables = []
            batch: list = []  # type: ignore[type-arg]
            for generated in Generator(7).all(args.events, Loaded()):
                batch.extend(generated)
                while len(batch) >= 10_000:
                    tables.append(with_attributes(events_to_arrow(TENANT, 1, batch[:10_000])))
                    batch = batch[10_000:]
            print(f"{len(tables)} tables of 10,000 rows, {args.rounds} rounds", flush=True)
            cost: dict[str, list[float]] = {copy: [] for copy in COPIES}
            names = list(COPIES)
            for round_ in range(args.rounds):
                for i, table in enumerate(tables):
                    # Each copy takes each place in the order as often: the first insert
                    # of a trio runs on a colder cache.
                    shift = (round_ * len(tables) + i) % len(names)
                    for copy in names[shift:] + names[:shift]:
                        before = _cpu()
                        driver.insert_arrow(f"apiary.events_{copy}", table)
                        cost[copy].append(1e6 * (_cpu() - before) / table.num_rows)
            register = DuplicateRegister()
            register.load(np.array([], dtype=np.uint64), [])
            observe = []
            for table in tables:
                before = _cpu()
                register.settle(register.observe(table))
                observe.append(1e6 * (_cpu() - before) / table.num_rows)
        finally:
            store.close()
    print("\n| columns | insert CPU a row (median) | over plain (median of pairs) |")
    print("|---|---|---|")
    for copy in COPIES:
        extra = [a - b for a, b in zip(cost[copy], cost["plain"], strict=True)]
        print(f"| {copy} | {statistics.median(cost[copy]):.2f} µs | "
              f"{statistics.median(extra):+.2f} µs |")
    print(f"\nregister observe (hash + look-up, no key marked): "
          f"{statistics.median(observe):.2f} µs a row (median of {len(observe)})")


if __name__ == "__main__":
    main()
