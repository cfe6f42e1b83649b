"""Emitter → Kafka → sink → ClickHouse on the real embedded broker and chDB: exact counts, dead letters,
a sink killed mid-stream, ClickHouse down for a while."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.agents.dlq import read_headers
from streams.agents.emitter import KafkaEventSink
from streams.agents.records import new_id, now_ms
from streams.agents.sink import SinkAgent
from streams.agents.topics import Topics
from streams.config import Settings
from streams.events.codec import EventCodec
from streams.routing.decision import Decision

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def trace(session: str, i: int, **over: Any) -> dict[str, Any]:
    t = {
        "event_id": new_id(), "ts_ms": now_ms(), "request_id": f"{session}-r{i}", "session_id": session,
        "decision_id": f"d-{session}-{i}", "client_dialect": "openai_chat", "provider_dialect": None,
        "model": "gpt-mini-sim", "provider": "sim-openai", "status": 200, "latency_ms": 12.5,
        "ttft_ms": None, "input_tokens": 100 + i, "output_tokens": 20, "cost_usd": 0.0001,
        "key_id": "k1",  # not in the schema: the emitter drops it
    }
    t.update(over)
    return t


def decision(session: str, i: int) -> Decision:
    return Decision(
        decision_id=f"d-{session}-{i}", session_id=session, model="gpt-mini-sim", provider="sim-openai",
        policy="bandit", policy_version=3, reason="test", confidence=0.9, propensity=0.5,
        features={"task": "debugging", "context": {"bias": 1.0, "task=debugging": 1.0}}, ts_ms=now_ms(),
    )


async def wait_for_count(client: Any, sql: str, expected: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    n = -1
    while time.monotonic() < deadline:
        n = int((await asyncio.to_thread(client.query, sql)).result_rows[0][0])
        if n >= expected:
            await asyncio.sleep(0.3)  # and no more than that arrives
            return int((await asyncio.to_thread(client.query, sql)).result_rows[0][0])
        await asyncio.sleep(0.2)
    return n


def make_sink(settings: Settings, broker: str, client: Any, topics: Topics, group: str, **kw: Any) -> SinkAgent:
    return SinkAgent.from_settings(settings, broker, client, topics=topics, embedded=True, group_id=group, **kw)


def make_emitter(settings: Settings, broker: str, topics: Topics, tmp_path: Path, **kw: Any) -> KafkaEventSink:
    kw.setdefault("send_timeout_s", 3.0)
    return KafkaEventSink.from_settings(settings, broker, topics=topics, embedded=True,
                                        data_dir=tmp_path, **kw)


async def dlq_records(broker: str, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_emitted_events_are_stored_exactly_once(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path
) -> None:
    sink = make_sink(settings, broker, clickhouse, topics, f"sink-{uuid.uuid4().hex[:6]}")
    emitter = make_emitter(settings, broker, topics, tmp_path)
    await sink.start()
    await emitter.start()
    try:
        n = 400
        traces = [trace(f"s{i % 7}", i) for i in range(n)]
        for i, t in enumerate(traces):
            emitter.emit_trace(t)
            emitter.emit_decision(decision(t["session_id"], i), request_id=t["request_id"], source="http")
        for t in traces[:50]:
            emitter.emit_trace(dict(t))  # redelivered: same event ids
        emitter.emit_outcome({"event_id": new_id(), "ts_ms": now_ms(), "session_id": "s1", "success": 1.0})
        assert await emitter.idle(20)
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", n) == n
        assert await wait_for_count(clickhouse, "SELECT count() FROM decisions FINAL", n) == n
        assert await wait_for_count(clickhouse, "SELECT count() FROM outcomes FINAL", 1) == 1
        row = clickhouse.query(
            "SELECT model, provider_dialect, ttft_ms, input_tokens, toUnixTimestamp64Milli(ts) FROM traces FINAL "
            "WHERE event_id = {id:String}", parameters={"id": traces[3]["event_id"]}).result_rows
        assert row == [("gpt-mini-sim", "", 0.0, 103, traces[3]["ts_ms"])]
        d = clickhouse.query("SELECT request_id, task_type, context FROM decisions FINAL "
                             "WHERE event_id = 'd-s3-3'").result_rows
        assert d == [("s3-r3", "debugging", {"bias": 1.0, "task=debugging": 1.0})]
    finally:
        await emitter.stop()
        await sink.stop()


async def test_poison_bytes_and_rejected_rows_go_to_the_dlq(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path
) -> None:
    sink = make_sink(settings, broker, clickhouse, topics, f"sink-{uuid.uuid4().hex[:6]}")
    emitter = make_emitter(settings, broker, topics, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    await sink.start()
    await emitter.start()
    try:
        await producer.send_and_wait(topics.traces, b"\x00not avro at all", key=b"s-poison")
        await producer.send_and_wait(topics.decisions, b"\xc3\x01" + b"\x00" * 8 + b"junk", key=b"s-poison")
        good = [trace("s-ok", i) for i in range(5)]
        bad = trace("s-bad", 99, input_tokens=-5)  # valid Avro, but UInt64 in ClickHouse: rejected
        for t in [*good[:2], bad, *good[2:]]:
            emitter.emit_trace(t)
        assert await emitter.idle(20)
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", 5) == 5
        letters = await dlq_records(broker, topics.dlq, 3)
        reasons = [read_headers(r.headers) for r in letters]
        assert len(letters) == 3, reasons
        stages = sorted(h["weave-dlq-stage"] for h in reasons)
        assert stages == ["decode", "decode", "store"]
        by_stage = {h["weave-dlq-stage"] + h["weave-dlq-topic"]: h["weave-dlq-reason"] for h in reasons}
        assert "bad magic" in by_stage["decode" + topics.traces]
        assert "unknown schema fingerprint" in by_stage["decode" + topics.decisions]
        assert any(r.value == b"\x00not avro at all" and r.key == b"s-poison" for r in letters)
        assert await wait_for_count(clickhouse, "SELECT count() FROM dead_letters FINAL", 3) == 3
        # The worker kept going: events after the poison are stored.
        emitter.emit_trace(trace("s-after", 1))
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", 6) == 6
    finally:
        await producer.stop()
        await emitter.stop()
        await sink.stop()


async def test_sink_killed_mid_stream_resumes_without_loss_or_duplicates(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path
) -> None:
    group = f"sink-{uuid.uuid4().hex[:6]}"
    small = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"batch_size": 100, "flush_interval_s": 0.05})})
    emitter = make_emitter(settings, broker, topics, tmp_path)
    await emitter.start()
    first = make_sink(small, broker, clickhouse, topics, group, worker_id="a")
    await first.start()
    total = 3000
    try:
        for i in range(total // 2):
            emitter.emit_trace(trace(f"k{i % 13}", i))
        deadline = time.monotonic() + 30
        while first.rows_written < 300 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert first.rows_written >= 300
        await first.stop(commit=False)  # killed: whatever it wrote after its last commit is re-read
        for i in range(total // 2, total):
            emitter.emit_trace(trace(f"k{i % 13}", i))
        second = make_sink(small, broker, clickhouse, topics, group, worker_id="b")
        await second.start()
        try:
            assert await emitter.idle(20)
            n = await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", total, 45)
            assert n == total
            assert clickhouse.query("SELECT uniqExact(event_id) FROM traces").result_rows[0][0] == total
        finally:
            await second.stop()
    finally:
        await emitter.stop()


class FlakyClient:
    """A clickhouse-connect client whose server is 'down' while ``down`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False
        self.failed_inserts = 0

    def insert(self, *a: Any, **kw: Any) -> Any:
        if self.down:
            self.failed_inserts += 1
            raise ConnectionError("connection refused")
        return self.inner.insert(*a, **kw)

    def command(self, *a: Any, **kw: Any) -> Any:
        if self.down:
            raise ConnectionError("connection refused")
        return self.inner.command(*a, **kw)

    def query(self, *a: Any, **kw: Any) -> Any:
        return self.inner.query(*a, **kw)


async def test_sink_retries_while_clickhouse_is_down(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path
) -> None:
    flaky = FlakyClient(clickhouse)
    sink = make_sink(settings, broker, flaky, topics, f"sink-{uuid.uuid4().hex[:6]}", retry_initial_s=0.05,
                     retry_max_s=0.2)
    emitter = make_emitter(settings, broker, topics, tmp_path)
    await sink.start()
    await emitter.start()
    try:
        flaky.down = True
        for i in range(200):
            emitter.emit_trace(trace("down", i))
        deadline = time.monotonic() + 20
        while flaky.failed_inserts < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert flaky.failed_inserts >= 3 and sink.rows_written == 0
        assert sink.dead_letters == 0  # an outage is not a poison row
        flaky.down = False
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", 200) == 200
        assert sink.storage_retries >= 3
    finally:
        await emitter.stop()
        await sink.stop()


async def test_events_a_killed_process_accepted_are_stored_once_by_the_next_one(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path
) -> None:
    group = f"sink-{uuid.uuid4().hex[:6]}"
    crashed = make_emitter(settings, broker, topics, tmp_path, sink_group=group)
    n = 120
    traces = [trace(f"k{i % 5}", i) for i in range(n)]
    for i, t in enumerate(traces):  # accepted, never produced: the process "dies" right here
        crashed.emit_trace(t)
        crashed.emit_decision(decision(t["session_id"], i), request_id=t["request_id"], source="http")
    sink = make_sink(settings, broker, clickhouse, topics, group)
    emitter = make_emitter(settings, broker, topics, tmp_path, sink_group=group, trim_interval_s=0.2)
    assert emitter.journal is not None
    emitter.journal.segment_age_s = 0.2
    await sink.start()
    await emitter.start()
    try:
        emitter.emit_trace(trace("k-new", 1))
        assert await emitter.idle(20)
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", n + 1) == n + 1
        assert await wait_for_count(clickhouse, "SELECT count() FROM decisions FINAL", n) == n
        assert clickhouse.query("SELECT count() FROM traces FINAL WHERE request_id = 'k3-r3'").result_rows == [(1,)]
        # Once the sink committed them, the journal lets go of the stored events.
        deadline = time.monotonic() + 20
        while emitter.journal.pending_events() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert emitter.journal.pending_events() == 0
        assert list((tmp_path / "journal" / "events").glob("*.log")) == []
    finally:
        await emitter.stop()
        await sink.stop()


async def test_an_event_the_broker_refuses_goes_to_the_dead_letters_and_blocks_nothing(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path
) -> None:
    sink = make_sink(settings, broker, clickhouse, topics, f"sink-{uuid.uuid4().hex[:6]}")
    emitter = make_emitter(settings, broker, topics, tmp_path)
    await sink.start()
    await emitter.start()
    try:
        emitter.emit_trace(trace("s-big", 0, error="E" * 1_500_000))  # cut to size, stored
        # A 2 MB snapshot is never cut (it would not load), so the producer refuses it for good.
        emitter.emit(topics.policy, "PolicySnapshot", {"event_id": new_id(), "ts_ms": now_ms(), "policy": "p",
                                                       "version": 1, "updates": 1, "state": b"\x01" * 2_000_000})
        for i in range(1, 6):
            emitter.emit_trace(trace("s-big", i))
        assert await emitter.idle(20)
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", 6) == 6
        [(length, marked)] = clickhouse.query(
            "SELECT length(error), endsWith(error, '[truncated 1495904 chars]') FROM traces FINAL "
            "WHERE request_id = 's-big-r0'").result_rows
        assert marked and length < 5000
        # The refused one: in the local file whole, on router.dlq cut, in the dead_letters table.
        lines = (tmp_path / "dead_letters" / "events.jsonl").read_text().splitlines()
        assert len(lines) == 1 and '"topic":"' + topics.policy + '"' in lines[0]
        assert "MessageSizeTooLargeError" in lines[0] and '"size":2000' in lines[0]
        [letter] = await dlq_records(broker, topics.dlq, 1)
        headers = read_headers(letter.headers)
        assert headers["weave-dlq-stage"] == "produce" and headers["weave-dlq-topic"] == topics.policy
        assert headers["weave-dlq-truncated"].startswith("2000") and len(letter.value) == 64 * 1024
        assert await wait_for_count(clickhouse, "SELECT count() FROM dead_letters FINAL", 1) == 1
        assert clickhouse.query("SELECT topic, reason LIKE '%MessageSizeTooLarge%' FROM dead_letters FINAL"
                                ).result_rows == [(topics.policy, 1)]
        assert emitter.connected and emitter.stats()["dead_letters"] == 1
    finally:
        await emitter.stop()
        await sink.stop()


async def test_a_broker_without_idempotence_is_detected_not_assumed(
    settings: Settings, broker: str, clickhouse: Any, topics: Topics, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tansu told apart by what it answers, not by being embedded: a producer configured for a real
    broker (``embedded=False``) asks for idempotence, is refused, says so once and produces anyway."""
    sink = make_sink(settings, broker, clickhouse, topics, f"sink-{uuid.uuid4().hex[:6]}")
    emitter = KafkaEventSink.from_settings(settings, broker, topics=topics, embedded=False, data_dir=tmp_path,
                                           send_timeout_s=3.0)
    await sink.start()
    with caplog.at_level("WARNING", logger="weave.broker"):
        await emitter.start()
    try:
        assert emitter.connected and not emitter.idempotent
        assert any("does not grant idempotent producers" in r.getMessage() for r in caplog.records)
        emitter.emit_trace(trace("s-plain", 1))
        assert await emitter.idle(20)
        assert await wait_for_count(clickhouse, "SELECT count() FROM traces FINAL", 1) == 1
    finally:
        await emitter.stop()
        await sink.stop()


async def test_batched_events_land_where_any_producer_puts_their_session_in_order(
    settings: Settings, broker: str, topics: Topics, tmp_path: Path
) -> None:
    """The learner joins a session's decisions, traces and outcomes inside one partition number: the
    emitter's record batches must pick the partition a plain producer (an agent's outcome) picks, and
    keep each session's events in the order they were accepted."""
    emitter = make_emitter(settings, broker, topics, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await emitter.start()
    await producer.start()
    sessions = [f"sess-{i}-{uuid.uuid4().hex[:6]}" for i in range(40)]
    try:
        for i in range(600):
            s = sessions[i % len(sessions)]
            emitter.emit_trace(trace(s, i))
            emitter.emit_decision(decision(s, i), request_id=f"{s}-r{i}")
        assert await emitter.idle(20)
        outcome_partition = {}
        for s in sessions:
            meta = await producer.send_and_wait(topics.outcomes, b"x", key=s.encode())
            outcome_partition[s] = meta.partition
    finally:
        await producer.stop()
        await emitter.stop()
    consumer = AIOKafkaConsumer(topics.traces, topics.decisions, bootstrap_servers=broker,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    codec = EventCodec()
    seen: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (topic, session) -> [(partition, i)]
    try:
        deadline = time.monotonic() + 20
        while sum(len(v) for v in seen.values()) < 1200 and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                for r in records:
                    request = codec.decode(r.value)[1]["request_id"]
                    seen.setdefault((tp.topic, r.key.decode()), []).append((tp.partition, int(request.rsplit("r", 1)[1])))
    finally:
        await consumer.stop()
    assert sum(len(v) for v in seen.values()) == 1200
    for (_, session), places in seen.items():
        assert {p for p, _ in places} == {outcome_partition[session]}
        accepted = [i for _, i in places]
        assert accepted == sorted(set(accepted))  # in log order as accepted, each once
