"""Shared integration fixtures: ONE embedded broker and ONE chDB data dir per test session (per xdist
worker), reused by every integration test.

- ``embedded_broker`` / ``broker``: Tansu on a free 127.0.0.1 port, standard topics created (4 partitions,
  Tansu's own auto-create count, so a topic it auto-creates matches ours).
- ``chdb_url``: the session's chDB directory. chDB allows ONE data dir per process: never open another
  one in an integration test, take ``clickhouse`` (or ``clickhouse_factory``) instead.
- ``clickhouse``: a client on a fresh, migrated database, dropped after the test.
- ``settings``: the default configuration pointed at the session broker and chDB, with a data dir of
  its own and small ClickHouse batches; ``settings.model_copy(update=...)`` for variations.
- ``topics``: topic names under a fresh prefix, created, so a test sees only its own events on the
  shared broker (``streams.agents.topics.Topics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.agents.topics import Topics, ensure
from streams.config import Settings, load_settings
from streams.infra.broker import EmbeddedBroker
from streams.infra.topics import ensure_topics
from streams.storage.clickhouse import connect
from streams.storage.migrations import migrate

PARTITIONS = 4


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = EmbeddedBroker(log_path=log)
    broker.start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap_servers, PARTITIONS))
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def broker(embedded_broker: EmbeddedBroker) -> str:
    """Bootstrap servers of the session's embedded broker."""
    return embedded_broker.bootstrap_servers


@pytest.fixture
def clickhouse_factory(chdb_url: str) -> Iterator[Callable[[], Any]]:
    """Make clients on fresh migrated databases of the session's chDB; dropped at teardown."""
    made: list[tuple[Any, str]] = []

    def make() -> Any:
        database = f"t_{uuid.uuid4().hex[:12]}"
        client = connect(chdb_url, database)
        migrate(client)
        made.append((client, database))
        return client

    yield make
    for client, database in made:
        with contextlib.suppress(Exception):
            client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def clickhouse(clickhouse_factory: Callable[[], Any]) -> Any:
    """A clickhouse-connect client on a fresh, migrated database."""
    return clickhouse_factory()


@pytest.fixture(scope="session")
def settings(broker: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = load_settings(env={})
    data_dir: Path = tmp_path_factory.mktemp("weave-data")
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"bootstrap_servers": broker, "partitions": PARTITIONS}),
            "clickhouse": base.clickhouse.model_copy(
                update={"url": chdb_url, "batch_size": 2000, "flush_interval_s": 0.2}
            ),
            "data_dir": str(data_dir),
        }
    )


@pytest.fixture
async def topics(broker: str) -> Topics:
    """Fresh, created topic names for this test (prefix ``t<hex>.``)."""
    names = Topics.prefixed(f"t{uuid.uuid4().hex[:8]}.")
    await ensure(broker, names, PARTITIONS)
    return names
