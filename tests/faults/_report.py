"""The fault suite's report: one line per fault (accepted, stored, dead-lettered,
duplicates, recovery time), kept in memory and, when ``APIARY_FAULT_REPORT=<path>`` is set,
appended to that file as JSON lines (``bench/faults`` reads them back into its table).

Each line is appended and flushed as the fault test records it, so a run that fails later
still reports the faults that ran before.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["REPORT_ENV", "FaultRecord", "FaultReport"]

#: Set to a file path to have every recorded fault appended there as a JSON line.
REPORT_ENV = "APIARY_FAULT_REPORT"


@dataclass(frozen=True)
class FaultRecord:
    """What one fault test measured once its fault was over and everything was stored.

    All three counts are in spans (events), as the ingest accounting counts them, so that
    ``accepted == stored + dead_lettered``: ``accepted``: spans the platform acknowledged;
    ``stored``: distinct of them stored; ``dead_lettered``: spans dead-lettered (a
    dead-lettered message counts its spans; one that does not decode holds none);
    ``duplicates``: rows beyond one per
    event (in reads and session aggregates); ``recovery_s``: from the fault's end until the
    stream was drained and everything stored (``None`` when the fault has no end)."""

    fault: str
    accepted: int
    stored: int
    dead_lettered: int
    duplicates: int
    recovery_s: float | None
    test: str = ""
    at: float = 0.0


class FaultReport:
    """Collects :class:`FaultRecord` s; appends each to ``path`` (JSON lines) if given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.records: list[FaultRecord] = []

    @classmethod
    def from_env(cls) -> FaultReport:
        value = os.environ.get(REPORT_ENV, "").strip()
        return cls(Path(value) if value else None)

    def record(self, fault: str, accepted: int, stored: int, dead_lettered: int,
               duplicates: int, recovery_s: float | None = None) -> FaultRecord:
        """Keep one fault's figures (and append them to the report file, if any)."""
        entry = FaultRecord(
            fault=fault, accepted=int(accepted), stored=int(stored),
            dead_lettered=int(dead_lettered), duplicates=int(duplicates),
            recovery_s=None if recovery_s is None else round(float(recovery_s), 2),
            test=os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], at=time.time())
        self.records.append(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
                out.flush()
        return entry
