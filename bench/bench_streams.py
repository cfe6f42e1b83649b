"""Throughput of the stream agents on the embedded broker (Tansu) and chDB, one worker each.

    python bench/bench_streams.py [--requests 5000] [--outcomes 10000] [--rows 100000]
                                  [--engine batch|faust] [--skip router|learner|sink]

Each stage pre-loads its input topic, then starts the agent and times it from its first processed event
to its last (group join excluded):

- router agent, decide mode: RouteRequests → Decision + Trace (requests/s);
- learner: decisions + traces + outcomes → joined bandit updates (outcomes/s);
- sink: traces → ClickHouse (chDB) rows/s, batches of ``clickhouse.batch_size``.

Targets (DESIGN.md): router ≥ 5,000 req/s, learner ≥ 10,000 outcomes/s, sink ≥ 50,000 rows/s per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.agents.records import decision_event, new_id, now_ms  # noqa: E402
from streams.agents.sink import SinkAgent  # noqa: E402
from streams.agents.topics import Topics, ensure  # noqa: E402
from streams.agents.worker import Worker  # noqa: E402
from streams.config import Settings, load_settings  # noqa: E402
from streams.events.codec import EventCodec  # noqa: E402
from streams.infra.broker import EmbeddedBroker  # noqa: E402
from streams.routing.decision import Decision  # noqa: E402
from streams.storage.clickhouse import connect  # noqa: E402
from streams.storage.migrations import migrate  # noqa: E402

CODEC = EventCodec()


async def produce(bootstrap: str, items: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, CODEC.encode(name, value), key=key.encode())
                   for topic, key, name, value in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


CPU_MS: dict[str, float] = {}  # stage -> this process's CPU ms per item (the steadiest figure on a busy box)


async def timed(progress: Callable[[], int], total: int, timeout_s: float = 300, *, stage: str = "") -> float:
    """Seconds from the first processed item to ``total`` (polling ``progress``); the CPU this process
    spent per item meanwhile goes to ``CPU_MS[stage]``."""
    deadline = time.monotonic() + timeout_s
    while progress() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("nothing processed")
        await asyncio.sleep(0.001)
    t0, c0, n0 = time.perf_counter(), time.process_time(), progress()
    while progress() < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {progress()} of {total} processed")
        await asyncio.sleep(0.002)
    done = max(1, progress() - n0)
    if stage:
        CPU_MS[stage] = (time.process_time() - c0) * 1000.0 / done
    return (time.perf_counter() - t0) * total / max(1, total - n0)


def route_request(i: int, topics: Topics) -> dict[str, Any]:
    body = {"model": "router/auto", "max_tokens": 256, "messages": [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": f"Fix the failing test in module_{i % 50}.py; run pytest after the change."}]}
    return {"event_id": new_id(), "ts_ms": now_ms(), "request_id": f"r{i}", "session_id": f"s{i % 500}",
            "dialect": "openai_chat", "body": json.dumps(body), "hints": {}, "reply_topic": topics.responses,
            "mode": "decide"}


async def bench_router(settings: Settings, bootstrap: str, n: int, engine: str = "batch") -> float:
    topics = Topics.prefixed(f"b{uuid.uuid4().hex[:6]}.")
    await ensure(bootstrap, topics, settings.kafka.partitions)
    await produce(bootstrap, [(topics.requests, f"s{i % 500}", "RouteRequest", route_request(i, topics))
                              for i in range(n)])
    worker = Worker(settings, bootstrap, embedded=True, worker_id="bench", roles=("router",), topics=topics,
                    app_id=f"bench-{uuid.uuid4().hex[:6]}", engine=engine)
    await worker.start()
    try:
        assert worker.handler is not None
        handler = worker.handler
        seconds = await timed(lambda: handler.stats["handled"], n, stage="router")
    finally:
        await worker.stop()
    return n / seconds


async def bench_learner(settings: Settings, bootstrap: str, n: int, engine: str = "batch") -> tuple[float, int]:
    topics = Topics.prefixed(f"b{uuid.uuid4().hex[:6]}.")
    await ensure(bootstrap, topics, settings.kafka.partitions)
    items: list[tuple[str, str, str, dict[str, Any]]] = []
    for i in range(n):
        sid = f"s{i}"
        d = Decision(decision_id=f"d{i}", session_id=sid, model=settings.models[i % len(settings.models)].name,
                     provider="p", policy="bandit", policy_version=0, reason="bench", confidence=1.0,
                     propensity=0.5, ts_ms=now_ms(), features={"context": {"bias": 1.0, "x": (i % 10) / 10}})
        items.append((topics.decisions, sid, "Decision", decision_event(d, request_id=f"r{i}")))
        items.append((topics.traces, sid, "Trace", {
            "event_id": new_id(), "ts_ms": now_ms(), "request_id": f"r{i}", "session_id": sid, "decision_id": f"d{i}",
            "client_dialect": "openai_chat", "provider_dialect": "openai_chat", "model": d.model, "provider": "p",
            "route": "default", "policy": "bandit", "policy_version": 0, "prompt_version": None, "status": 200,
            "error": None, "stream": False, "latency_ms": 1.0, "ttft_ms": 0.0, "overhead_ms": 0.1,
            "input_tokens": 100, "output_tokens": 10, "cached_tokens": 0, "cost_usd": 0.001,
            "baseline_cost_usd": 0.01, "attempts": 1, "source": "http", "task_type": "", "client": ""}))
    for i in range(n):
        items.append((topics.outcomes, f"s{i}", "Outcome", {
            "event_id": new_id(), "ts_ms": now_ms() + 1000, "session_id": f"s{i}", "request_id": None,
            "success": float(i % 3 != 0), "tests_passed": None, "tests_failed": None, "cost_usd": None,
            "metadata": {}, "source": "kafka"}))
    await produce(bootstrap, items)
    worker = Worker(settings, bootstrap, embedded=True, worker_id="bench-learner", roles=("learner",),
                    topics=topics, app_id=f"bench-{uuid.uuid4().hex[:6]}", publish_every_s=1.0, engine=engine)
    await worker.start()
    try:
        learner = worker.learner
        assert learner is not None
        seconds = await timed(lambda: learner.updates, n, stage="learner")
        updates = learner.updates
    finally:
        await worker.stop()
    return n / seconds, updates


async def bench_sink(settings: Settings, bootstrap: str, client: Any, n: int) -> float:
    topics = Topics.prefixed(f"b{uuid.uuid4().hex[:6]}.")
    await ensure(bootstrap, topics, settings.kafka.partitions)
    chunk = 20_000
    for start in range(0, n, chunk):
        await produce(bootstrap, [(topics.traces, f"s{i % 1000}", "Trace", {
            "event_id": new_id(), "ts_ms": now_ms(), "request_id": f"r{i}", "session_id": f"s{i % 1000}",
            "decision_id": f"d{i}", "client_dialect": "openai_chat", "provider_dialect": "openai_chat",
            "model": "gpt-mini-sim", "provider": "sim-openai", "route": "default", "policy": "bandit",
            "policy_version": 3, "prompt_version": None, "status": 200, "error": None, "stream": True,
            "latency_ms": 812.5, "ttft_ms": 120.0, "overhead_ms": 0.3, "input_tokens": 18000 + i % 100,
            "output_tokens": 700, "cached_tokens": 12000, "cost_usd": 0.0042, "baseline_cost_usd": 0.11,
            "attempts": 1, "source": "http", "task_type": "debugging", "client": "claude_code"})
            for i in range(start, min(n, start + chunk))])
    sink = SinkAgent.from_settings(settings, bootstrap, client, topics=topics, embedded=True,
                                   group_id=f"bench-{uuid.uuid4().hex[:6]}")
    await sink.start()
    try:
        seconds = await timed(lambda: sink.rows_written, n)
    finally:
        await sink.stop()
    return n / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--outcomes", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=20_000, help="sink batch size (rows)")
    parser.add_argument("--engine", choices=("batch", "faust"), default="batch",
                        help="router/learner agents: batch consumer (default) or Faust agents")
    parser.add_argument("--skip", action="append", default=[], choices=("router", "learner", "sink"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        base = load_settings(env={})
        settings = base.model_copy(update={
            "data_dir": tmp,
            "clickhouse": base.clickhouse.model_copy(update={"batch_size": args.batch_size, "flush_interval_s": 0.5}),
        })
        broker = EmbeddedBroker(log_path=Path(tmp) / "tansu.log")
        broker.start()
        try:
            bs = broker.bootstrap_servers
            settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bs})})
            if "router" not in args.skip:
                rps = await bench_router(settings, bs, args.requests, args.engine)
                print(f"router agent (decide mode: Decision + Trace out):     {rps:,.0f} requests/s"
                      f" ({CPU_MS['router']:.3f} CPU ms/request in this process)")
            if "learner" not in args.skip:
                ops, updates = await bench_learner(settings, bs, args.outcomes, args.engine)
                print(f"learner (decision+trace+outcome joined, bandit update): {ops:,.0f} outcomes/s ({updates} updates,"
                      f" {CPU_MS['learner']:.3f} CPU ms/outcome in this process)")
            if "sink" not in args.skip:
                client = connect(f"chdb://{Path(tmp) / 'chdb'}", "bench")
                migrate(client)
                rows = await bench_sink(settings, bs, client, args.rows)
                print(f"sink (traces into chDB, batch {args.batch_size}):         {rows:,.0f} rows/s")
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
