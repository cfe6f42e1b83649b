"""Fixtures of the chaos suite: one embedded broker for the module, the default configuration, and the
table of results (written to artifacts/chaos.txt and printed). The chDB engine is the test process's
one data dir (``chdb_url`` in tests/conftest.py); each scenario works in a fresh database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.config import Settings, load_settings
from streams.infra.broker import EmbeddedBroker
from streams.infra.topics import ensure_topics

RESULTS = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault-injection suite (upstream faults, broker/sink/ClickHouse outages)")


@pytest.fixture(scope="module")
def chaos_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    import asyncio

    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("chaos-tansu") / "tansu.log")
    broker.start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap_servers, 4))
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def base_settings() -> Settings:
    return load_settings(env={})


@pytest.fixture(scope="session")
def chaos_results(request: pytest.FixtureRequest) -> list:
    results: list = request.config.stash.setdefault(RESULTS, [])
    return results


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # Single-process runs: the table in the summary, whatever the capture mode. (An xdist worker's
    # summary never reaches the terminal; there the last test of test_chaos.py prints it to stderr.)
    results = config.stash.get(RESULTS, None)
    if hasattr(config, "workerinput") or not results:
        return
    from _stack import publish  # beside this file; importable once the test module was collected

    terminalreporter.write_sep("=", "chaos suite: injected vs observed")
    terminalreporter.write(publish(results))
