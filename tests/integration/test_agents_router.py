"""Router and learner agents on the real embedded broker, with the sink writing to chDB.

One worker (router + learner), one sink, one simulated provider and one client are shared by the tests
of this module (group joins on the embedded broker cost seconds each)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.agents.dlq import read_headers
from streams.agents.emitter import KafkaEventSink
from streams.agents.records import new_id, now_ms
from streams.agents.service import start_streams
from streams.agents.sink import SinkAgent
from streams.agents.topics import Topics, ensure
from streams.agents.worker import Worker
from streams.config import Settings
from streams.kafka_client import RouterClient
from streams.providers.sim.config import SimConfig
from streams.providers.sim.server import running_sim
from streams.routing.decision import Decision

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Stack:
    settings: Settings
    topics: Topics
    worker: Worker
    sink: SinkAgent
    emitter: KafkaEventSink
    client: RouterClient
    clickhouse: Any
    broker: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(settings: Settings, broker: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Stack]:
    from streams.storage.clickhouse import connect
    from streams.storage.migrations import migrate

    database = f"t_{uuid.uuid4().hex[:12]}"
    clickhouse = connect(chdb_url, database)
    migrate(clickhouse)
    topics = Topics.prefixed(f"t{uuid.uuid4().hex[:8]}.")
    await ensure(broker, topics, settings.kafka.partitions)
    sim_config = SimConfig.from_settings(settings)
    sim_config.require_auth = False
    async with running_sim(sim_config) as sim_url:
        streams = await start_streams(
            settings, broker, embedded=True, clickhouse=clickhouse, sim_url=sim_url, worker_id="w1", topics=topics,
            worker_options={"app_id": f"weave-{uuid.uuid4().hex[:6]}", "publish_every_s": 0.3},
            sink_options={"group_id": f"sink-{uuid.uuid4().hex[:6]}"},
            emitter_options={"data_dir": tmp_path_factory.mktemp("emitter"), "send_timeout_s": 3},
        )
        client = RouterClient(broker, topics=topics, timeout_s=30)
        await client.start()
        assert streams.worker is not None and streams.sink is not None and streams.emitter is not None
        assert await streams.worker.ready(30)
        assert streams.health() == {"events": "ok", "sink": "ok", "worker": "ok"}
        try:
            yield Stack(settings, topics, streams.worker, streams.sink, streams.emitter, client, clickhouse, broker)
        finally:
            await client.close()
            await streams.stop()
            clickhouse.command(f"DROP DATABASE IF EXISTS {database}")


def chat(text: str, model: str = "router/auto") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 64}


def anthropic(text: str) -> dict[str, Any]:
    return {"model": "router/auto", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}


async def dlq_records(broker: str, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def count(client: Any, sql: str) -> int:
    return int((await asyncio.to_thread(client.query, sql)).result_rows[0][0])


async def wait_count(client: Any, sql: str, expected: int, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    n = -1
    while time.monotonic() < deadline:
        n = await count(client, sql)
        if n >= expected:
            await asyncio.sleep(0.5)
            return await count(client, sql)
        await asyncio.sleep(0.2)
    return n


async def test_kafka_and_gateway_requests_give_exactly_one_trace_each(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    # M requests through router.requests: execute and decide, two dialects.
    execute = [stack.client.request(chat(f"write a function {i}"), "openai_chat", f"{run}-k{i}")
               for i in range(6)]
    execute += [stack.client.request(anthropic(f"explain the bug {i}"), "anthropic_messages", f"{run}-a{i}")
                for i in range(4)]
    decide = [stack.client.request(chat(f"plan step {i}"), "openai_chat", f"{run}-d{i}", mode="decide")
              for i in range(10)]
    responses = await asyncio.gather(*execute)
    decisions = await asyncio.gather(*decide)
    m = len(responses) + len(decisions)
    for r in responses:
        assert r["status"] == 200, r
        body = json.loads(r["body"])
        assert r["model"] and r["decision_id"] and r["output_tokens"] > 0
        if r["dialect"] == "openai_chat":
            assert body["choices"][0]["message"]["role"] == "assistant"
        else:
            assert body["type"] == "message" and body["content"]
    assert all(d["source"] == "kafka" and d["model"] for d in decisions)
    # N requests as the gateway reports them.
    n = 15
    for i in range(n):
        sid = f"{run}-g{i}"
        d = Decision(decision_id=new_id(), session_id=sid, model="gpt-mini-sim", provider="sim-openai",
                     policy="bandit", policy_version=0, reason="gateway", confidence=1.0, propensity=1.0,
                     ts_ms=now_ms())
        stack.emitter.emit_decision(d, request_id=f"g{i}", client_dialect="openai_chat", source="http")
        stack.emitter.emit_trace({"event_id": new_id(), "ts_ms": now_ms(), "request_id": f"g{i}",
                                  "session_id": sid, "decision_id": d.decision_id, "client_dialect": "openai_chat",
                                  "provider_dialect": "openai_chat", "model": d.model, "provider": d.provider,
                                  "status": 200})
    assert await stack.emitter.idle(20)
    like = f"session_id LIKE '{run}-%'"
    assert await wait_count(stack.clickhouse, f"SELECT count() FROM traces FINAL WHERE {like}", n + m) == n + m
    assert await wait_count(stack.clickhouse, f"SELECT count() FROM decisions FINAL WHERE {like}", n + m) == n + m
    kafka_traces = await count(stack.clickhouse, f"SELECT count() FROM traces FINAL WHERE {like} AND source='kafka'")
    assert kafka_traces == m


async def test_poison_request_goes_to_dlq_and_agent_keeps_serving(stack: Stack) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker)
    await producer.start()
    try:
        await producer.send_and_wait(stack.topics.requests, b"{\"not\": \"avro\"}", key=b"poison")
    finally:
        await producer.stop()
    r = await stack.client.request(chat("still there?"), "openai_chat", "after-poison")
    assert r["status"] == 200
    letters = await dlq_records(stack.broker, stack.topics.dlq, 1)
    headers = [read_headers(x.headers) for x in letters]
    assert any(h["weave-dlq-topic"] == stack.topics.requests and "bad magic" in h["weave-dlq-reason"]
               for h in headers), headers


async def test_outcomes_change_the_policy_version_and_later_decisions(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    router = stack.worker.router
    before_version = router.policy_version
    sessions = [f"{run}-o{i}" for i in range(12)]
    first = await asyncio.gather(*[
        stack.client.request(chat(f"fix the failing test in module {i}"), "openai_chat", s, mode="decide")
        for i, s in enumerate(sessions)])
    assert {d["policy_version"] for d in first} == {before_version}
    learner = stack.worker.learner
    assert learner is not None
    updates_before = learner.updates
    for i, s in enumerate(sessions):
        await stack.client.send_outcome(s, success=i % 3 != 0, tests_passed=10, tests_failed=0 if i % 3 else 2,
                                        cost_usd=0.01)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and router.policy_version < before_version + len(sessions):
        await asyncio.sleep(0.1)
    assert learner.updates - updates_before == len(sessions)  # each decision credited exactly once
    assert router.policy_version >= before_version + len(sessions)
    later = await stack.client.request(chat("fix the failing test in module 0"), "openai_chat", f"{run}-new",
                                       mode="decide")
    assert later["policy_version"] == router.policy_version > before_version
    # The learned posterior moved: the credited arm's estimate differs from the prior's.
    bandit = router.bandit
    arm = first[1]["model"]
    assert bandit is not None and bandit.pulls(arm) >= 1


async def test_outcome_before_its_decision_is_joined_later(stack: Stack) -> None:
    learner = stack.worker.learner
    assert learner is not None
    sid = f"early-{uuid.uuid4().hex[:6]}"
    before = learner.updates
    ts = now_ms() + 60_000  # the outcome is about what happens before it
    stack.emitter.emit_outcome({"event_id": new_id(), "ts_ms": ts, "session_id": sid, "success": 1.0})
    assert await stack.emitter.idle(10)
    await asyncio.sleep(0.5)
    assert learner.updates == before
    d = Decision(decision_id=new_id(), session_id=sid, model="deepseek-sim", provider="sim-openai",
                 policy="bandit", policy_version=0, reason="late", confidence=1.0, propensity=1.0, ts_ms=now_ms(),
                 features={"context": {"bias": 1.0}})
    stack.emitter.emit_decision(d, request_id="late-1")
    stack.emitter.emit_trace({"event_id": new_id(), "ts_ms": now_ms(), "request_id": "late-1", "session_id": sid,
                              "decision_id": d.decision_id, "model": d.model, "status": 200, "cost_usd": 0.002})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and learner.updates == before:
        await asyncio.sleep(0.05)
    assert learner.updates == before + 1
