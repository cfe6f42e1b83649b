"""Numbered, append-only ClickHouse migrations from ``streams/storage/sql/NNNN_name.sql``.

Each file is applied once, in order, and recorded in ``schema_migrations``; re-running is a no-op.
The files are package data, found through ``importlib.resources`` in a checkout and in a wheel alike;
finding none is an error, never "up to date".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from clickhouse_connect.driver.client import Client

from streams.infra.package_data import files_ending, package_folder

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations_dir() -> Traversable:
    return package_folder("streams.storage", "sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: list[str]


def _split(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    files = files_ending(directory, ".sql")
    if not files:
        raise FileNotFoundError(f"no ClickHouse migrations (NNNN_name.sql) in {directory}")
    found = []
    for path in files:
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(m.group(1)), m.group(2), _split(path.read_text())))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


def applied_versions(client: Client) -> set[int]:
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    return {int(r[0]) for r in client.query("SELECT version FROM schema_migrations FINAL").result_rows}


def migrate(client: Client, directory: Traversable | None = None) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    done = applied_versions(client)
    applied = []
    for m in load_migrations(directory):
        if m.version in done:
            continue
        for statement in m.statements:
            client.command(statement)
        client.insert("schema_migrations", [[m.version, m.name]], column_names=["version", "name"])
        applied.append(f"{m.version:04d}_{m.name}")
    return applied
