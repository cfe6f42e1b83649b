"""ClickHouse: the connection (server or embedded chDB), the numbered migrations, the batch writer."""

from __future__ import annotations

from streams.storage.clickhouse import EngineLimits, chdb_dir, connect, connect_configured, is_embedded, redact_url
from streams.storage.migrations import Migration, load_migrations, migrate
from streams.storage.writer import BatchWriter, FlushResult, StorageUnavailable

__all__ = [
    "BatchWriter",
    "EngineLimits",
    "FlushResult",
    "Migration",
    "StorageUnavailable",
    "chdb_dir",
    "connect",
    "connect_configured",
    "is_embedded",
    "load_migrations",
    "migrate",
    "redact_url",
]
