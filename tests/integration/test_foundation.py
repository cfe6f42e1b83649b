"""The foundation end to end: codec → real topic → Faust agent → ClickHouse table, and `up` lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import pytest

from streams.events.codec import EventCodec
from streams.infra.broker import EmbeddedBroker
from streams.infra.topics import ensure_topics, partition_counts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_broker():
    with EmbeddedBroker() as broker:
        yield broker


async def test_topics_are_created_with_explicit_partitions(local_broker: EmbeddedBroker) -> None:
    created = await ensure_topics(local_broker.bootstrap_servers, 3)
    assert "router.traces" in created or created == []
    counts = await partition_counts(local_broker.bootstrap_servers)
    assert counts["router.traces"] == 3
    assert counts["router.policy"] == 1
    assert await ensure_topics(local_broker.bootstrap_servers, 3) == []  # idempotent


async def test_event_goes_through_topic_and_faust_agent_into_clickhouse(
    local_broker: EmbeddedBroker, clickhouse: Any
) -> None:
    # ``clickhouse``: a fresh migrated database on the session's chDB (one data dir per process).
    codec = EventCodec()
    client = clickhouse
    topic_name = f"foundation.{uuid.uuid4().hex[:8]}"
    app = faust.App(
        f"foundation-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{local_broker.bootstrap_servers}",
        store="memory://",
        web_enabled=False,
        producer_max_batch_size=1,
        broker_session_timeout=3.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, value_serializer="raw", partitions=2)
    stored = asyncio.Event()

    @app.agent(topic)
    async def store(stream):  # type: ignore[no-untyped-def]
        async for data in stream:
            _, event = codec.decode(data)
            row = dict(event)
            row["ts"] = datetime.fromtimestamp(row.pop("ts_ms") / 1000, tz=UTC)
            await asyncio.to_thread(client.insert, "outcomes", [list(row.values())], column_names=list(row))
            stored.set()

    outcome = {
        "event_id": str(uuid.uuid4()), "ts_ms": int(time.time() * 1000), "session_id": "s-42",
        "request_id": None, "success": 1.0, "tests_passed": 12, "tests_failed": 0, "cost_usd": 0.0123,
        "metadata": {"suite": "unit"}, "source": "kafka",
    }
    await app.start()
    try:
        await topic.send(key=b"s-42", value=codec.encode("Outcome", outcome))
        await asyncio.wait_for(stored.wait(), timeout=30)
    finally:
        await app.stop()
    rows = client.query(
        "SELECT event_id, session_id, success, tests_passed, tests_failed, cost_usd, metadata, source "
        "FROM outcomes FINAL WHERE event_id = {id:String}", parameters={"id": outcome["event_id"]}
    ).result_rows
    assert rows == [(outcome["event_id"], "s-42", 1.0, 12, 0, 0.0123, {"suite": "unit"}, "kafka")]


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "WEAVE_DATA_DIR": str(tmp_path / "data")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("CLICKHOUSE_URL", None)
    env.pop("WEAVE_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 90
    url = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline and not url:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            url = line.split("listening on", 1)[1].split()[0]
    assert url, "weave-router up did not report its address"
    return proc, url


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_up_serves_health_and_leaves_no_children(tmp_path: Path, sig: signal.Signals) -> None:
    proc, url = _start_up(tmp_path)
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            health = json.loads(resp.read())
        assert health["components"]["broker"]["ok"] is True
        assert "embedded Tansu" in health["components"]["broker"]["detail"]
        assert health["components"]["clickhouse"]["ok"] is True
        children = _children(proc.pid)
        assert children, "the embedded broker should run as a child process"
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.1)
        assert not [c for c in children if _alive(c)], "child processes outlived weave-router up"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
