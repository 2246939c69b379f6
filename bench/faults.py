"""bench/faults: run the fault-injection suite (``tests/faults``) and print what it measured.

Usage: bench/faults [-k EXPRESSION] [--report PATH] [--json PATH] [-- PYTEST ARGS...]

Runs ``pytest tests/faults`` (real nats-server, chDB, Ray and object store; each fault
injected for real) with ``APIARY_FAULT_REPORT`` set, showing pytest's progress as it goes.
Each fault test appends one JSON line to that report once its fault is over and every
acknowledged event is stored (``tests/faults/_report.py``). Then prints the table:

  fault | accepted | stored | dead-lettered | duplicates | recovery

``accepted``: events the platform acknowledged (spans answered 200, events published or
sent); ``stored``: of them, stored; ``dead-lettered``: dead letters written; ``duplicates``:
rows beyond one per event; ``recovery``: from the fault's end until the stream was drained
and everything stored (``-`` for a fault without an end). Exits non-zero when any fault
test failed (or none ran), naming the failures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REPORT_ENV = "APIARY_FAULT_REPORT"  # as tests/faults/_report.py reads it

COLUMNS = ("fault", "accepted", "stored", "dead-lettered", "duplicates", "recovery")


def read_report(path: Path) -> list[dict[str, Any]]:
    """The records of a report file (JSON lines), in the order the faults ran."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(records: list[dict[str, Any]]) -> str:
    """The records as a Markdown table (it reads as plain text too)."""
    rows = [COLUMNS]
    for r in sorted(records, key=lambda r: _fault_order(str(r["fault"]))):
        recovery = r.get("recovery_s")
        rows.append((str(r["fault"]), str(r["accepted"]), str(r["stored"]),
                     str(r["dead_lettered"]), str(r["duplicates"]),
                     "-" if recovery is None else f"{float(recovery):.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def _fault_order(name: str) -> tuple[int, str]:
    """Faults by their number in issue 13 ("7b." after "7."), unnumbered ones last."""
    digits = re.match(r"\d+", name)
    return (int(digits.group()), name) if digits else (1_000, name)


def failures(junit: Path) -> list[str]:
    """Tests that failed or errored, from pytest's JUnit XML."""
    if not junit.exists():
        return []
    failed = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", dest="keyword", help="only the fault tests matching this "
                        "pytest -k expression")
    parser.add_argument("--report", type=Path,
                        help="the JSON-lines report to write (default: a temporary file; "
                        "an existing file is replaced)")
    parser.add_argument("--json", type=Path, help="also write the records to this file")
    parser.add_argument("pytest_args", nargs="*",
                        help="more pytest arguments, after `--` (e.g. -- -x)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="apiary-faults-") as scratch:
        report = args.report or Path(scratch) / "faults.jsonl"
        report.unlink(missing_ok=True)
        junit = Path(scratch) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                   f"--junitxml={junit}", "tests/faults", *args.pytest_args]
        if args.keyword:
            command += ["-k", args.keyword]
        env = {**os.environ, REPORT_ENV: str(report.resolve()),
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        print("$ " + " ".join(command), flush=True)
        code = subprocess.call(command, cwd=ROOT, env=env)  # progress: pytest's own output
        records = read_report(report)
        failed = failures(junit)

    print()
    print(table(records) if records else "no fault recorded anything")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    for name in failed:
        print(f"FAILED {name}")
    if code == 0 and not records:
        return 1  # nothing ran: not a pass
    return code


if __name__ == "__main__":
    sys.exit(main())
