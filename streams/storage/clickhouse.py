"""ClickHouse clients: a server over HTTP, or the embedded engine (chDB) through clickhouse-connect.

The same SQL runs on both. chDB allows one process per data directory, so in the embedded default the
service process owns it and everything else reads through the service's analytics API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client


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


def connect(url: str, database: str, **settings: Any) -> Client:
    """A client on ``database``, created first if missing."""
    if is_embedded(url):
        directory = chdb_dir(url)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        dsn = f"chdb://{directory}"
        bootstrap = clickhouse_connect.get_client(dsn=dsn)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or None)
    # clickhouse-connect's HTTP pool already sets TCP_NODELAY on its sockets (httputil.py).
    bootstrap = clickhouse_connect.get_client(dsn=url)
    bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    bootstrap.close()
    return clickhouse_connect.get_client(dsn=url, database=database, settings=settings or None)
