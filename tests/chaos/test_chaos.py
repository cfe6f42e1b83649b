"""Chaos: the whole service under load while things break, then the books are checked.

Each scenario runs the service as ``weave-router up`` wires it (see ``_stack.py``), sends a few hundred
requests at a modest pace (three dialects, half of them streaming, every model and ``router/auto``),
injects its fault part-way through, heals it, and lets the pipeline settle (bounded). Then, for every
scenario:

- every request got a complete answer or a clean error in its own dialect (status + error shape, or a
  well-formed error event at the end of a stream): no hung connection, no cut stream, no traceback;
- ClickHouse holds exactly one trace per request served (``count() FROM traces FINAL`` equals the
  requests, the request ids match one to one, no duplicate under FINAL, the raw table holds no more
  distinct event ids than requests), and one decision per request.

The table of what was injected and what was observed goes to artifacts/chaos.txt and to the log.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from _stack import Observed, Outcome, drive, judge_body, observe, publish, render_table, running_stack
from aiokafka import AIOKafkaProducer

from streams.agents.service import consumer_groups
from streams.config import Settings
from streams.infra.broker import EmbeddedBroker
from streams.infra.retention import BrokerKeeper

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(120)]

RATE = 40.0  # requests per second: modest, the point is correctness under faults, not throughput


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=httpx.Limits(max_connections=64))


def _finish(results: list[Observed], obs: Observed) -> None:
    results.append(obs)
    assert not obs.problems, render_table([obs])


async def _upstream_scenario(
    base: Settings, broker: EmbeddedBroker, chdb_url: str, tmp_path: Path, results: list[Observed],
    name: str, injected: str, fault: dict[str, object], header: str | None, n: int = 150,
) -> None:
    """A simulator-wide fault for the middle third of the load, plus a per-request ``x-sim-fault``
    header on every 7th request of that third (forwarded by the gateway to the simulator)."""
    t0 = time.monotonic()
    start, end = n // 3, 2 * n // 3
    async with running_stack(base, broker.bootstrap_servers, chdb_url, tmp_path) as st, _client() as http:

        async def inject() -> None:
            await st.sim_fault(http, **fault)

        async def heal() -> None:
            await st.clear_sim_faults(http)

        def headers(i: int) -> dict[str, str] | None:
            return {"x-sim-fault": header} if header and start <= i < end and i % 7 == 0 else None

        outcomes = await drive(http, st.url, n, rate=RATE, hooks={start: inject, end: heal}, headers=headers)
        errors = Counter(f"{o.status}+error event" if o.status == 200 else str(o.status)
                         for o in outcomes if o.kind == "clean")
        notes = "clean errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(errors.items()))
        obs = await observe(st, name, injected, outcomes, t0, notes=notes)
    _finish(results, obs)


async def test_upstream_5xx_storm(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str,
                                  tmp_path: Path, chaos_results: list[Observed]) -> None:
    await _upstream_scenario(base_settings, chaos_broker, chdb_url, tmp_path, chaos_results, "upstream 5xx storm",
                             "503 p=0.6 + x-sim-fault:500", {"kind": "503", "probability": 0.6}, "500")


async def test_upstream_429_burst(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str,
                                  tmp_path: Path, chaos_results: list[Observed]) -> None:
    await _upstream_scenario(base_settings, chaos_broker, chdb_url, tmp_path, chaos_results, "upstream 429 burst",
                             "429 x40 + x-sim-fault:429:1", {"kind": "429", "count": 40, "retry_after": 1.0},
                             "429:1")


async def test_upstream_timeouts(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str,
                                 tmp_path: Path, chaos_results: list[Observed]) -> None:
    # Providers give up after 1 s without a first byte (chaos_settings); the simulator hangs for 3 s.
    await _upstream_scenario(base_settings, chaos_broker, chdb_url, tmp_path, chaos_results, "upstream timeouts",
                             "hang 3s p=0.4 + x-sim-fault:timeout:3", {"kind": "timeout", "probability": 0.4,
                                                                       "seconds": 3.0}, "timeout:3")


async def test_upstream_disconnects(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str,
                                    tmp_path: Path, chaos_results: list[Observed]) -> None:
    await _upstream_scenario(base_settings, chaos_broker, chdb_url, tmp_path, chaos_results,
                             "mid-stream disconnects", "disconnect@3 p=0.5 + x-sim-fault:disconnect:2",
                             {"kind": "disconnect", "probability": 0.5, "after_chunks": 3}, "disconnect:2")


async def test_upstream_malformed(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str,
                                  tmp_path: Path, chaos_results: list[Observed]) -> None:
    await _upstream_scenario(base_settings, chaos_broker, chdb_url, tmp_path, chaos_results,
                             "malformed upstream", "malformed@2 p=0.4 + x-sim-fault:malformed:1",
                             {"kind": "malformed", "probability": 0.4, "after_chunks": 2}, "malformed:1")


async def test_broker_killed_and_restarted(base_settings: Settings, chdb_url: str, tmp_path: Path,
                                           chaos_results: list[Observed]) -> None:
    """kill -9 of the broker under load; a new (empty: in-memory storage) broker on the same port ~2 s
    later. The emitter spills to disk meanwhile and replays, re-sending what the old broker had
    acknowledged but nobody had consumed; the sink finds its offsets gone and re-reads from the start."""
    t0 = time.monotonic()
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    holder = [broker]
    n = 240
    try:
        async with running_stack(base_settings, broker.bootstrap_servers, chdb_url, tmp_path / "svc") as st, \
                _client() as http:
            emitter = st.services.emitter
            assert emitter is not None

            async def kill() -> None:
                proc = holder[0].process
                assert proc is not None
                proc.kill()  # SIGKILL: no goodbye to any client
                await asyncio.to_thread(holder[0].stop)

            async def restart() -> None:
                again = EmbeddedBroker(port=broker.port, log_path=tmp_path / "tansu2.log")
                await asyncio.to_thread(again.start)
                holder[0] = again

            outcomes = await drive(http, st.url, n, rate=RATE, hooks={60: kill, 150: restart})
            obs = await observe(st, "broker killed", "kill -9, back after ~2 s (empty)", outcomes, t0,
                                notes=f"emitter spilled {emitter.spill.appended}, replayed {emitter.spill.replayed}, "
                                      f"re-sent {emitter.resent}")
            assert emitter.spill.appended > 0, "the outage was not noticed: the scenario tested nothing"
    finally:
        holder[0].stop()
    _finish(chaos_results, obs)


async def test_broker_started_afresh_for_memory(base_settings: Settings, chdb_url: str, tmp_path: Path,
                                                chaos_results: list[Observed]) -> None:
    """The retention of the embedded broker: past its memory limit (here: any size) the keeper holds
    the emitter, waits until the sink group has read everything, carries the policy snapshot over and
    starts the broker afresh on the same port, under load. Nothing is lost, nothing is re-sent."""
    t0 = time.monotonic()
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    n = 240
    try:
        async with running_stack(base_settings, broker.bootstrap_servers, chdb_url, tmp_path / "svc") as st, \
                _client() as http:
            emitter = st.services.emitter
            assert emitter is not None
            keeper = BrokerKeeper(broker, st.topics, consumer_groups(st.topics, ()), partitions=4, emitter=emitter,
                                  max_rss_mb=1.0, settle_s=15.0, quiet_s=0.5)
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, max_batch_size=1)
            await producer.start()
            for version in (6, 7):  # the newest per learner is what followers need
                await producer.send_and_wait(st.topics.policy, f"snapshot-v{version}".encode(), key=b"learner-1")
            await producer.stop()
            old_pid = broker.pid
            actions: list[str] = []

            async def recycle() -> None:
                actions.append(await keeper.check())

            outcomes = await drive(http, st.url, n, rate=RATE, hooks={80: recycle, 160: recycle})
            obs = await observe(st, "broker started afresh", "memory limit passed twice under load", outcomes, t0,
                                notes=f"keeper: {', '.join(actions)}; emitter held {keeper.stats.last_recycle_s:.2f} s, "
                                      f"re-sent {emitter.resent}")
            assert "recycled" in actions and broker.pid != old_pid, actions
            assert emitter.resent == 0  # everything it had sent was read before the old broker went
            assert (await keeper._latest(st.topics.policy)) == {b"learner-1": b"snapshot-v7"}
    finally:
        broker.stop()
    _finish(chaos_results, obs)


async def test_sink_killed(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str, tmp_path: Path,
                           chaos_results: list[Observed]) -> None:
    """The sink dies mid-stream (its loop and any write in flight cancelled, nothing committed), a new
    sink worker joins the same group ~1 s later and re-reads from the last commit: the rows the dead one
    wrote after that commit arrive twice and ReplacingMergeTree keeps one."""
    t0 = time.monotonic()
    n = 200
    async with running_stack(base_settings, chaos_broker.bootstrap_servers, chdb_url, tmp_path) as st, \
            _client() as http:
        written: list[int] = []

        async def crash_and_replace() -> None:
            dead = st.services.sink
            assert dead is not None
            written.append(dead.rows_written)
            await dead.stop(commit=False)
            await asyncio.sleep(1.0)
            fresh = st.new_sink()
            await fresh.start()
            st.services.sink = fresh  # stopped (drained) with the other services at the end

        outcomes = await drive(http, st.url, n, rate=RATE, hooks={90: crash_and_replace})
        obs = await observe(st, "sink killed", "sink crash (no commit), new worker ~1 s later", outcomes, t0,
                            notes=f"first sink wrote {written[0]} rows before dying")
        assert written and written[0] > 0, "the sink died before writing anything: nothing to re-read"
    _finish(chaos_results, obs)


async def test_clickhouse_unavailable(base_settings: Settings, chaos_broker: EmbeddedBroker, chdb_url: str,
                                      tmp_path: Path, chaos_results: list[Observed]) -> None:
    """The sink's ClickHouse refuses connections for 4 s under load (see ``FlakyClickHouse``): the sink
    keeps its offsets uncommitted and retries with backoff; the gateway never notices."""
    t0 = time.monotonic()
    n = 200
    async with running_stack(base_settings, chaos_broker.bootstrap_servers, chdb_url, tmp_path) as st, \
            _client() as http:

        async def outage() -> None:
            st.sink_client.outage(4.0)

        outcomes = await drive(http, st.url, n, rate=RATE, hooks={60: outage})
        sink = st.services.sink
        assert sink is not None
        obs = await observe(st, "ClickHouse down", "connection refused for 4 s", outcomes, t0,
                            notes=f"sink refused {st.sink_client.refused} times, {sink.storage_retries} retries")
        assert st.sink_client.refused > 0 and sink.storage_retries > 0, "the outage was never felt"
    _finish(chaos_results, obs)


async def test_huge_tool_name_then_ordinary_traffic(base_settings: Settings, chaos_broker: EmbeddedBroker,
                                                   chdb_url: str, tmp_path: Path,
                                                   chaos_results: list[Observed]) -> None:
    """One request whose history holds a 1.5 MB tool name (it lands in the decision's features), then
    ordinary traffic: the big event is stored with the name cut and a marker, nothing blocks behind it."""
    t0 = time.monotonic()
    name = "run_" + "x" * 1_500_000
    body = {"model": "router/auto", "messages": [
        {"role": "user", "content": "fix the failing test"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1 failed"},
    ]}
    async with running_stack(base_settings, chaos_broker.bootstrap_servers, chdb_url, tmp_path) as st, \
            _client() as http:
        resp = await http.post(st.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer chaos"})
        kind, detail = judge_body("openai_chat", resp.status_code, resp.content)
        big = Outcome(-1, "openai_chat", False, kind, resp.status_code, resp.headers.get("x-request-id"), detail)
        outcomes = [big, *await drive(http, st.url, 120, rate=RATE)]
        emitter = st.services.emitter
        assert emitter is not None
        obs = await observe(st, "1.5 MB tool name", "a 1.5 MB tool name, then 120 ordinary requests", outcomes, t0,
                            notes=f"emitter dead letters: {emitter.stats().get('dead_letters', 0)}")
        rows = (await asyncio.to_thread(st.clickhouse.query, (
            "SELECT length(features), position(features, '[truncated ') > 0 FROM decisions FINAL "
            "WHERE request_id = {r:String}"), parameters={"r": big.request_id})).result_rows
        if [(size < 64_000, bool(marked)) for size, marked in rows] != [(True, True)]:
            obs.problems.append(f"the big decision is not stored once, cut and marked: {rows}")
    _finish(chaos_results, obs)


def test_zz_report(chaos_results: list[Observed], request: pytest.FixtureRequest,
                   capsys: pytest.CaptureFixture[str]) -> None:
    """Write the table (artifacts/chaos.txt) and show it in the log whatever the capture mode."""
    if not chaos_results:
        pytest.skip("no chaos scenario ran")
    table = publish(chaos_results)
    if hasattr(request.config, "workerinput"):
        # An xdist worker's stdout and terminal summary never reach the log; its stderr does.
        with capsys.disabled():
            sys.stderr.write("\n=== chaos suite: injected vs observed ===\n" + table)
            sys.stderr.flush()

