"""ClickHouse clients: a server over HTTP, or the embedded engine (chDB) through clickhouse-connect.

The same SQL runs on both. chDB allows one process per data directory, so in the embedded default the
service process owns it and everything else reads through the service's analytics API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

if TYPE_CHECKING:
    from streams.config import Settings

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Memory bounds for the embedded engine, given to chDB when it opens (server settings).

    chDB's own defaults are a database server's: each cache (marks, primary index, index marks) may
    take half the machine's RAM and the engine 90% of it. Here it shares the box with the gateway and
    the broker, so the caches get a few MB (the tables are small and scanned whole) and the engine a
    ceiling past which a query fails with MEMORY_LIMIT_EXCEEDED instead of the box swapping. 0 keeps
    chDB's default for that bound.
    """

    max_memory_mb: int = 1024
    cache_mb: int = 64

    def options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.max_memory_mb:
            opts["max_server_memory_usage"] = str(self.max_memory_mb * _MIB)
        if self.cache_mb:
            cache = str(self.cache_mb * _MIB)
            for name in ("mark_cache_size", "primary_index_cache_size", "index_mark_cache_size",
                         "query_condition_cache_size"):
                opts[name] = cache
        return opts


def is_embedded(url: str) -> bool:
    return url.startswith("chdb:")


def chdb_dir(url: str) -> Path:
    """``chdb:///abs/dir`` → /abs/dir."""
    return Path(urlparse(url).path)


def redact_url(url: str) -> str:
    """The URL without credentials, for logs and /health."""
    parsed = urlparse(url)
    if parsed.password or parsed.username:
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        return parsed._replace(netloc=f"{host}{port}").geturl()
    return url


def connect(url: str, database: str, *, limits: EngineLimits = EngineLimits(), **settings: Any) -> Client:
    """A client on ``database``, created first if missing; ``limits`` bound the embedded engine (they
    take effect when this process first opens it: chDB runs one engine per process)."""
    if is_embedded(url):
        directory = chdb_dir(url)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        dsn = f"chdb://{directory}"
        options = limits.options()
        bootstrap = clickhouse_connect.get_client(dsn=dsn, chdb_options=options)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or None,
                                             chdb_options=options)
    # clickhouse-connect's HTTP pool already sets TCP_NODELAY on its sockets (httputil.py).
    bootstrap = clickhouse_connect.get_client(dsn=url)
    bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    bootstrap.close()
    return clickhouse_connect.get_client(dsn=url, database=database, settings=settings or None)


def connect_configured(settings: Settings) -> Client:
    """The configured store (``clickhouse.url`` or the embedded default) with the configured bounds."""
    ch = settings.clickhouse
    limits = EngineLimits(max_memory_mb=ch.embedded_max_memory_mb, cache_mb=ch.embedded_cache_mb)
    return connect(settings.clickhouse_url, ch.database, limits=limits)
