"""Fixtures of the chaos suite: one embedded broker and the process's chDB engine for the module, the
default configuration, and the table of results (written to artifacts/chaos.txt and printed).

chDB allows one engine path per process while any client is open, and pytest-xdist may run this file in
the same worker as the integration tests (whose session ``chdb_url`` fixture is not visible here). So
``chdb_url`` reuses the integration suite's directory when it was already created in this worker, and
otherwise makes one of its own whose clients are all closed when the module ends, which releases the
engine for whatever file runs next in the worker.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.config import Settings, load_settings
from streams.infra.broker import EmbeddedBroker
from streams.infra.topics import ensure_topics

RESULTS = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault-injection suite (upstream faults, broker/sink/ClickHouse outages)")


@pytest.fixture(scope="module")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = sorted(p for p in tmp_path_factory.getbasetemp().glob("chdb*") if p.is_dir())
    if existing:  # the integration suite's engine, opened earlier in this worker
        yield f"chdb://{existing[0]}"
        return
    yield f"chdb://{tmp_path_factory.mktemp('chaos-chdb')}"
    gc.collect()  # clients dropped without close() release the engine only when collected


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
