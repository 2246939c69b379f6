"""Which events have more than one stored row: the register that lets reads skip ``FINAL``.

``events`` is a ReplacingMergeTree: a new version of an event (an update, a relinked
session, a span the client sent twice) is a second row until a merge collapses them, so an
exact read collapsed versions with ``FINAL`` over the project's rows — 94 % of an export's
CPU at 10M events (docs/benchmarks.md, "Queries"). Yet each part is free of duplicates
(ClickHouse collapses an inserted block, and a merge its inputs): a key has two rows only
when an insert wrote a key already stored. The embedded store has one process that
inserts (the chDB owner), so it can know those keys exactly:

- :meth:`DuplicateRegister.observe` sees every insert *before* it is sent, hashes each key
  (``xxHash64`` of ``project_id``, ``session_id`` and ``event_id`` joined by NUL, 8 bytes an
  event held in memory, in sorted arrays merged like an LSM tree) and records the keys it
  has seen before (or twice in the batch) as duplicated;
- :meth:`DuplicateRegister.load` fills the hashes from the table when the store opens (in
  a thread: reads collapse with ``FINAL`` until it is done), and marks the keys that are
  stored twice already; inserts made while it runs are checked against it when it ends;
- a read takes :meth:`snapshot` of a project's duplicated keys, counts and pages the rows
  outside them without ``FINAL`` and collapses only theirs (:mod:`._export_reads`), then
  keeps its answer only if :meth:`unchanged` says no insert marked a key of the project in
  the meantime — a key is marked before its insert is sent, so an insert the read could
  have seen has changed the epoch by the time the read checks;
- :meth:`prune` drops keys whose rows a merge has collapsed since.

Marking errs one way only: a key may be marked without being stored twice (a retried
insert, a hash collision, a row the load read that was also observed), which costs a read
a little; a key stored twice is never unmarked while its rows are apart. A project with more
than ``max_keys`` marked keys is read with ``FINAL`` (its reads are as before).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import xxhash

log = logging.getLogger(__name__)

#: The SQL that hashes a stored key as :func:`key_hashes` does (xxHash64 of the NUL-joined ids).
KEY_HASH_SQL = "xxHash64(concat(project_id, '\\0', session_id, '\\0', event_id))"
#: Above this many marked keys a project's reads use FINAL until a prune brings it below.
DEFAULT_MAX_KEYS = 50_000



@dataclass(frozen=True, slots=True)
class DuplicateSnapshot:
    """A project's marked keys at ``epoch``, as their hashes (``events.key_hash``)."""

    epoch: int
    hashes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.hashes)


def key_hashes(projects: Sequence[str], sessions: Sequence[str],
               events: Sequence[str]) -> np.ndarray:
    """The keys' hashes, as :data:`KEY_HASH_SQL` computes them in ClickHouse."""
    digest = xxhash.xxh64_intdigest
    return np.fromiter(
        (digest(f"{p}\0{s}\0{e}".encode()) for p, s, e in zip(projects, sessions, events,
                                                                  strict=True)),
        dtype=np.uint64, count=len(events))


def sorted_unique(hashes: np.ndarray) -> np.ndarray:
    """``hashes`` sorted, each value once. (numpy's ``unique`` hashes since 2.x: 19 s for
    10M values here, against under one for a sort.)"""
    ordered = np.sort(hashes)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def repeated_hashes(hashes: np.ndarray) -> np.ndarray:
    """The distinct values that occur more than once in ``hashes``."""
    ordered = np.sort(hashes)
    return sorted_unique(ordered[1:][ordered[1:] == ordered[:-1]])


def _repeated(hashes: np.ndarray) -> np.ndarray:
    """A mask of the hashes that occur more than once in ``hashes``."""
    if len(hashes) < 2:
        return np.zeros(len(hashes), dtype=bool)
    return np.isin(hashes, repeated_hashes(hashes))


class _SortedHashes:
    """A set of uint64 held as sorted arrays of decreasing size (a merge when two
    neighbours are alike in size): inserting n hashes costs O(n log N) amortized, a look-up
    one binary search per array."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for level in self._levels:
            at = np.searchsorted(level, hashes)
            inside = at < len(level)
            found[inside] |= level[at[inside]] == hashes[inside]
        return found

    def add(self, hashes: np.ndarray, *, ordered: bool = False) -> None:
        """Add ``hashes`` (``ordered``: already sorted and unique)."""
        if len(hashes) == 0:
            return
        self._levels.append(hashes if ordered else sorted_unique(hashes))
        while len(self._levels) > 1 and len(self._levels[-2]) <= 2 * len(self._levels[-1]):
            top = self._levels.pop()
            self._levels[-1] = sorted_unique(np.concatenate([self._levels[-1], top]))


class DuplicateRegister:
    """The embedded store's record of duplicated keys (module docstring). Thread-safe."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._seen = _SortedHashes()
        self._ready = threading.Event()
        self._failed = False
        #: Inserts observed while the load runs: checked against what it read, at its end.
        self._pending: list[tuple[np.ndarray, list[str]]] = []
        #: project -> key hash -> the project epoch at which the key was last marked.
        self._marked: dict[str, dict[int, int]] = {}
        self._epochs: dict[str, int] = {}
        #: Inserts observed and not settled that marked keys: token -> project -> epoch.
        self._inflight: dict[int, dict[str, int]] = {}
        self._tokens = itertools.count(1)

    # -- writes ------------------------------------------------------------------------

    def observe(self, table: pa.Table) -> int:
        """Record the keys of ``table`` (an ``events`` insert, before it is sent) and mark
        those seen before; returns a token for :meth:`settle`, to call once the insert
        returned or failed (until then :meth:`prune` leaves the keys it marked alone)."""
        token = next(self._tokens)  # itertools.count: atomic under the GIL
        if table.num_rows == 0:
            return token
        projects = table.column("project_id").to_pylist()
        sessions = table.column("session_id").to_pylist()
        events = table.column("event_id").to_pylist()
        hashes = key_hashes(projects, sessions, events)
        with self._lock:
            again = _repeated(hashes) | self._seen.contains(hashes)
            self._seen.add(hashes)
            if not self._ready.is_set() and not self._failed:
                self._pending.append((hashes, projects))
            marked = self._mark([(projects[i], int(hashes[i])) for i in np.flatnonzero(again)])
            if marked:
                self._inflight[token] = marked
        return token

    def settle(self, token: int) -> None:
        """The insert of :meth:`observe`'s ``token`` returned (committed) or failed."""
        with self._lock:
            self._inflight.pop(token, None)

    def _mark(self, keys: Sequence[tuple[str, int]]) -> dict[str, int]:
        """Mark ``keys`` (project, key hash); returns each project's new epoch (what the
        marks carry)."""
        for project in {k[0] for k in keys}:
            self._epochs[project] = self._epochs.get(project, 0) + 1
        for project, key in keys:
            self._marked.setdefault(project, {})[key] = self._epochs[project]
        return {k[0]: self._epochs[k[0]] for k in keys}

    # -- the load ----------------------------------------------------------------------

    def load(self, hashes: np.ndarray, stored_twice: Sequence[tuple[str, int]]) -> None:
        """End the load: ``hashes`` of every stored row (read after the first observed
        insert began to be recorded), ``stored_twice`` the keys (project, key hash) the
        table holds more than once. Inserts observed meanwhile are checked against it."""
        loaded = _SortedHashes()
        loaded.add(sorted_unique(hashes), ordered=True)
        with self._lock:
            self._mark(stored_twice)
            for batch, projects in self._pending:
                found = loaded.contains(batch)
                self._mark([(projects[i], int(batch[i])) for i in np.flatnonzero(found)])
            self._pending = []
            for level in loaded._levels:
                self._seen.add(level, ordered=True)
            self._ready.set()
        log.info("duplicate register loaded", extra={
            "stored_keys": len(hashes), "duplicated": len(stored_twice)})

    def fail(self) -> None:
        """The load could not run: reads keep collapsing with FINAL."""
        with self._lock:
            self._failed = True
            self._pending = []

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._failed

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and not self._failed

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    # -- reads -------------------------------------------------------------------------

    def snapshot(self, project_id: str) -> DuplicateSnapshot | None:
        """The project's marked keys now; None until loaded, or above ``max_keys``."""
        with self._lock:
            if not self.ready:
                return None
            marked = self._marked.get(project_id, {})
            if len(marked) > self.max_keys:
                return None
            return DuplicateSnapshot(self._epochs.get(project_id, 0), tuple(marked))

    def unchanged(self, project_id: str, epoch: int) -> bool:
        """Whether no key of the project was marked since the snapshot at ``epoch``."""
        with self._lock:
            return self._epochs.get(project_id, 0) == epoch

    def marked(self, project_id: str) -> dict[int, int]:
        """The project's marked key hashes, each with the epoch it was marked at."""
        with self._lock:
            return dict(self._marked.get(project_id, {}))

    def prune_epoch(self, project_id: str) -> int:
        """The epoch to give :meth:`prune`, read before its query: marks at or before it
        were made by inserts that have returned (committed) before the query runs."""
        with self._lock:
            cutoff = self._epochs.get(project_id, 0)
            for marks in self._inflight.values():
                if project_id in marks:
                    cutoff = min(cutoff, marks[project_id] - 1)
            return cutoff

    def prune(self, project_id: str, epoch: int, still_duplicated: set[int]) -> int:
        """Unmark the project's keys that were marked at or before ``epoch``
        (:meth:`prune_epoch`) and are not in ``still_duplicated`` (found stored more than
        once by a query begun after ``epoch`` was read); returns how many were unmarked."""
        with self._lock:
            marked = self._marked.get(project_id, {})
            gone = [k for k, at in marked.items() if at <= epoch and k not in still_duplicated]
            for key in gone:
                del marked[key]
            return len(gone)

    def epoch(self, project_id: str) -> int:
        with self._lock:
            return self._epochs.get(project_id, 0)


__all__ = ["DEFAULT_MAX_KEYS", "KEY_HASH_SQL", "DuplicateRegister", "DuplicateSnapshot",
           "key_hashes", "repeated_hashes"]
