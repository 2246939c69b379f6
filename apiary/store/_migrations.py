"""Versioned schema migrations, the same SQL for the server and for chDB.

Migrations are the files ``migrations/NNNN_name.sql`` shipped with the package, applied in
order. Each file holds one or more statements separated by a ``;`` at the end of a line;
``{db}`` stands for the (validated, quoted) database name. Every statement is written to
be idempotent (``IF NOT EXISTS``), so a migration interrupted half-way is simply applied
again.

:func:`apply_migrations` records each applied migration in ``{db}.schema_migrations``
with a checksum of its text. Applying again is a no-op; a recorded migration whose file
has changed since is refused (edit by adding a new migration instead).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from apiary.errors import StoreRejected
from apiary.store._drivers import ClickHouseDriver, check_identifier

_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version     String,
    name        String,
    checksum    String,
    applied_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: ``version`` is its 4-digit prefix, ``statements`` its SQL."""

    version: str
    name: str
    checksum: str
    statements: tuple[str, ...]


def load_migrations(database: str) -> list[Migration]:
    """The package's migrations in version order, ``{db}`` replaced by ``database``."""
    db = f"`{check_identifier(database)}`"
    found: list[Migration] = []
    for entry in resources.files("apiary.store").joinpath("migrations").iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            continue
        text = entry.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()[:16]
        statements = tuple(
            stmt.replace("{db}", db) for stmt in split_statements(text)
        )
        found.append(Migration(match.group(1), match.group(2), checksum, statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreRejected("two migrations share a version number", versions=versions)
    return found


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: split at ``;`` ending a line, comments removed."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    body = "\n".join(lines)
    return [part.strip() for part in _STATEMENT_END.split(body) if part.strip()]


def apply_migrations(driver: ClickHouseDriver, database: str | None = None) -> list[str]:
    """Bring ``database`` (default: the driver's) up to the newest schema.

    Returns the ``NNNN_name`` of each migration applied by this call, in order; an empty
    list when the schema was already current. Raises :class:`StoreRejected` if an applied
    migration's file changed since, and the driver's errors otherwise.
    """
    database = check_identifier(database or driver.database)
    db = f"`{database}`"
    driver.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    driver.command(_LEDGER_DDL.replace("{db}", db))
    rows = driver.query_rows(
        f"SELECT version, argMax(checksum, applied_at) AS checksum "
        f"FROM {db}.schema_migrations GROUP BY version"
    )
    applied = {str(row["version"]): str(row["checksum"]) for row in rows}
    done: list[str] = []
    for migration in load_migrations(database):
        label = f"{migration.version}_{migration.name}"
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise StoreRejected(
                    "an applied migration was changed; add a new migration instead",
                    migration=label, recorded=recorded, current=migration.checksum,
                )
            continue
        for statement in migration.statements:
            driver.command(statement)
        driver.command(
            f"INSERT INTO {db}.schema_migrations (version, name, checksum) "
            "VALUES ({version:String}, {name:String}, {checksum:String})",
            {"version": migration.version, "name": migration.name,
             "checksum": migration.checksum},
        )
        done.append(label)
    return done
