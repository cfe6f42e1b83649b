"""The broker goes away under load and a new one (empty: Tansu keeps everything in memory) comes back on
the same port: the emitter spills to disk and replays, the sink re-reads the new logs; no trace lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.agents.emitter import KafkaEventSink
from streams.agents.records import new_id, now_ms
from streams.agents.sink import SinkAgent
from streams.agents.topics import Topics
from streams.config import Settings
from streams.infra.broker import EmbeddedBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def trace(i: int) -> dict[str, Any]:
    return {"event_id": new_id(), "ts_ms": now_ms(), "request_id": f"r{i}", "session_id": f"s{i % 11}",
            "decision_id": f"d{i}", "client_dialect": "anthropic_messages", "provider_dialect": "openai_chat",
            "model": "deepseek-sim", "provider": "sim-openai", "status": 200}


async def count(client: Any) -> int:
    rows = (await asyncio.to_thread(client.query, "SELECT count() FROM traces FINAL")).result_rows
    return int(rows[0][0])


async def test_broker_restart_under_load_loses_no_trace(
    settings: Settings, clickhouse: Any, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    topics = Topics()
    emitter = KafkaEventSink.from_settings(settings, broker.bootstrap_servers, topics=topics, embedded=True,
                                           data_dir=tmp_path, send_timeout_s=1.5, retry_interval_s=0.2)
    sink = SinkAgent.from_settings(settings, broker.bootstrap_servers, clickhouse, topics=topics, embedded=True,
                                   group_id=f"sink-{uuid.uuid4().hex[:6]}")
    await emitter.start()
    await sink.start()
    total = 1500
    try:
        async def load() -> None:
            # ~600 events/s for 2.5 s, as a gateway under load would emit them (never awaiting Kafka).
            for i in range(total):
                emitter.emit_trace(trace(i))
                if i % 30 == 29:
                    await asyncio.sleep(0.05)

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.6)
        assert await count(clickhouse) > 0, "nothing stored before the outage"
        # A hard stop (Tansu can take seconds to honour SIGTERM with clients connected).
        assert broker.process is not None
        broker.process.kill()
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(2.0)
        assert not emitter.connected and emitter.spill.appended > 0, emitter.stats()
        restarted = EmbeddedBroker(port=broker.port, log_path=tmp_path / "tansu2.log")
        await asyncio.to_thread(restarted.start)
        broker = restarted
        await asyncio.wait_for(loader, 30)
        assert await emitter.idle(30), emitter.stats()
        deadline = time.monotonic() + 45
        n = 0
        while time.monotonic() < deadline:
            n = await count(clickhouse)
            if n >= total:
                break
            await asyncio.sleep(0.2)
        assert n == total, (emitter.stats(), sink.stats())
        assert not emitter.spill.pending
        assert emitter.resent > 0  # the new broker came back empty: the unconsumed tail was sent again
    finally:
        await emitter.stop()
        await sink.stop()
        broker.stop()
