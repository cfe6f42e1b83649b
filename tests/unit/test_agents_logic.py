"""The stream agents' plain logic, without Kafka or ClickHouse: feedback validation, the learner's join,
the spill file, event conformance, the batch writer's classification, the router handler, policy merge."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.agents.app import Event, Poison, WeaveAvroCodec
from streams.agents.feedback import build_outcome
from streams.agents.learner import Learner, OutcomeJoiner
from streams.agents.policy_snapshots import PolicyView, base_bandit, snapshot_event
from streams.agents.records import conform, decision_event
from streams.agents.route_agent import RouteHandler
from streams.agents.spill import SpillFile
from streams.config import load_settings
from streams.events.codec import EventCodec
from streams.routing.decision import Decision
from streams.routing.features import Features
from streams.storage.writer import BatchWriter, StorageUnavailable, TableLayout, _column_converter

CODEC = EventCodec()


# --- feedback ------------------------------------------------------------------------------------


def test_feedback_builds_an_encodable_outcome() -> None:
    o = build_outcome({"session_id": "s1", "success": True, "tests_passed": 12, "tests_failed": 0,
                       "cost_usd": 0.5, "metadata": {"suite": "unit", "run": 7, "flaky": False}})
    assert o["session_id"] == "s1" and o["success"] == 1.0 and o["tests_passed"] == 12
    assert o["metadata"] == {"suite": "unit", "run": "7", "flaky": "false"}
    assert CODEC.decode(CODEC.encode("Outcome", o))[1] == o


def test_feedback_score_counts_and_request_id() -> None:
    assert build_outcome({"session_id": "s", "score": 0.25})["success"] == 0.25
    assert build_outcome({"session_id": "s", "tests_passed": 3, "tests_failed": 1})["success"] == 0.0
    assert build_outcome({"session_id": "s", "tests_passed": 3})["success"] == 1.0
    o = build_outcome({"request_id": "r9", "success": False}, resolve_session={"r9": "sess-9"}.get)
    assert (o["session_id"], o["request_id"]) == ("sess-9", "r9")
    assert build_outcome({"request_id": "r0", "success": False})["session_id"] == "r0"
    assert build_outcome({"session_id": "s", "success": 1, "event_id": "k1"})["event_id"] == "k1"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"success": True}, "session_id"),
        ({"session_id": 5, "success": True}, "session_id"),
        ({"session_id": "s"}, "success"),
        ({"session_id": "s", "success": "yes"}, "success"),
        ({"session_id": "s", "score": 1.5}, "score"),
        ({"session_id": "s", "success": True, "tests_failed": -1}, "tests_failed"),
        ({"session_id": "s", "success": True, "tests_passed": 1.5}, "tests_passed"),
        ({"session_id": "s", "success": True, "cost_usd": -0.1}, "cost_usd"),
        ({"session_id": "s", "success": True, "cost_usd": float("nan")}, "cost_usd"),
        ({"session_id": "s", "success": True, "metadata": ["x"]}, "metadata"),
        ({"session_id": "s", "success": True, "metadata": {"a": {"b": 1}}}, "metadata"),
    ],
)
def test_feedback_errors_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as err:
        build_outcome(payload)
    assert str(err.value).startswith(field + ":")


# --- learner join ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def dec(did: str, sid: str, ts: int, model: str = "m", rid: str = "") -> dict[str, Any]:
    return {"event_id": did, "session_id": sid, "ts_ms": ts, "model": model, "request_id": rid,
            "context": {"bias": 1.0}}


def out(sid: str, ts: int, success: float = 1.0, rid: str | None = None, cost: float | None = None,
        eid: str = "") -> dict[str, Any]:
    return {"event_id": eid or f"o-{sid}-{ts}", "session_id": sid, "ts_ms": ts, "success": success,
            "request_id": rid, "cost_usd": cost}


def test_outcome_credits_each_earlier_decision_once_with_its_trace_cost() -> None:
    j = OutcomeJoiner()
    assert j.add_decision(dec("d1", "s", 10)) == []
    assert j.add_decision(dec("d2", "s", 20)) == []
    j.add_trace({"decision_id": "d1", "cost_usd": 0.3})
    j.add_trace({"decision_id": "d2", "cost_usd": 0.1})
    credits = j.add_outcome(out("s", 30, 0.0))
    assert [(c.decision_id, c.success, c.cost_usd) for c in credits] == [("d1", 0.0, 0.3), ("d2", 0.0, 0.1)]
    assert j.add_outcome(out("s", 30, 0.0)) == []  # the same outcome redelivered
    assert j.add_decision(dec("d3", "s", 40)) == []  # after the outcome: waits for the next one
    assert [c.decision_id for c in j.add_outcome(out("s", 50, 1.0))] == ["d3"]


def test_outcome_before_its_decision_joins_when_the_decision_arrives() -> None:
    j = OutcomeJoiner()
    assert j.add_outcome(out("s", 100, 1.0, cost=0.4)) == []
    credits = j.add_decision(dec("d1", "s", 90))
    assert [(c.decision_id, c.success, c.cost_usd, c.fallback_cost) for c in credits] == [("d1", 1.0, None, 0.4)]
    assert j.add_decision(dec("d1", "s", 90)) == []  # redelivered decision


def test_outcome_with_request_id_credits_only_that_request() -> None:
    j = OutcomeJoiner()
    j.add_decision(dec("d1", "s", 10, rid="r1"))
    j.add_decision(dec("d2", "s", 20, rid="r2"))
    assert [c.decision_id for c in j.add_outcome(out("s", 30, rid="r2"))] == ["d2"]


def test_learner_waits_for_the_trace_cost_then_falls_back() -> None:
    settings = load_settings(env={})
    clock = Clock()
    learner = Learner(settings, "l1", clock=clock, cost_grace_s=5.0)
    arm = settings.models[0].name
    learner.handle("Decision", dec("d1", "s", 10, model=arm))
    assert learner.handle("Outcome", out("s", 20, 1.0, cost=0.2)) == 0  # the trace may still come
    assert learner.handle("Trace", {"decision_id": "d1", "cost_usd": 0.05}) == 1
    learner.handle("Decision", dec("d2", "s2", 10, model=arm))
    learner.handle("Outcome", out("s2", 20, 0.0, cost=0.2))
    assert learner.tick() == 0
    clock.t = 6.0
    assert learner.tick() == 1 and learner.updates == 2
    assert learner.should_publish()
    snap = learner.snapshot()
    assert snap["version"] == learner.bandit.version and not learner.dirty
    assert learner.handle("Decision", dec("d3", "s3", 10, model="not-configured")) == 0


def test_learner_handle_many_learns_exactly_what_handle_does() -> None:
    settings = load_settings(env={})
    arms = [m.name for m in settings.models]
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(120):
        sid = f"s{i % 17}"
        ctx = {"bias": 1.0, "x": (i % 5) / 5, "attempt": float(i % 3)}
        events.append(("Decision", {**dec(f"d{i}", sid, 10 * i, model=arms[i % len(arms)]), "context": ctx}))
        events.append(("Trace", {"decision_id": f"d{i}", "cost_usd": 0.001 * (i % 7)}))
        if i % 4 == 3:
            events.append(("Outcome", out(sid, 10 * i + 5, float(i % 3 != 0))))
    rng = np.random.default_rng(4)
    order = rng.permutation(len(events))  # arrival order across the three topics is not fixed
    events = [events[k] for k in order] + [("Unknown", {})]
    one, many = Learner(settings, "a", clock=Clock()), Learner(settings, "b", clock=Clock())
    for name, value in events:
        one.handle(name, value)
    for start in range(0, len(events), 37):
        many.handle_many(events[start:start + 37])
    assert one.updates == many.updates > 20 and one.outcomes_seen == many.outcomes_seen
    for attr in ("_A", "_b", "_cov", "_mu", "_S", "_scov", "_cost_sum", "_pulls", "_att", "_cell"):
        assert getattr(one.bandit, attr).tobytes() == getattr(many.bandit, attr).tobytes(), attr


def test_sessions_expire_after_their_ttl() -> None:
    clock = Clock()
    j = OutcomeJoiner(ttl_s=10, clock=clock)
    j.add_decision(dec("d1", "old", 1))
    clock.t = 20
    j.add_decision(dec("d2", "new", 1))
    assert j.expire() == 1 and list(j.sessions) == ["new"]


# --- spill file ----------------------------------------------------------------------------------------


def test_spill_file_replays_in_order_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "events.spill"
    spill = SpillFile(path)
    items = [("t", f"k{i}".encode(), f"v{i}".encode() * i) for i in range(10)] + [("t", None, b"nokey")]
    spill.append_many(items)
    chunk = spill.read(4)
    assert [item for item, _ in chunk] == items[:4]
    spill.commit(chunk[-1][1])
    spill.close()
    again = SpillFile(path)  # a new process: the position survived
    rest = again.read(100)
    assert [item for item, _ in rest] == items[4:]
    again.close()
    with open(path, "ab") as f:
        f.write(b"\x00\x01\x00\x00")  # a torn tail write: the process died mid-append
    third = SpillFile(path)
    third.append_many([("t", b"k", b"after the crash")])
    replay = [item for item, _ in third.read(100)]
    assert replay == [*items[4:], ("t", b"k", b"after the crash")]
    third.commit(third.read(100)[-1][1])
    assert not third.pending and third.size() == 0  # fully replayed: the file starts over


# --- records ---------------------------------------------------------------------------------------------


def test_conform_fills_defaults_and_drops_unknown_keys() -> None:
    t = conform(CODEC, "Trace", {"event_id": "e", "ts_ms": 5, "request_id": "r", "session_id": "s",
                                 "decision_id": "d", "provider_dialect": None, "ttft_ms": None, "status": 200,
                                 "task_type": None, "not_a_field": "k"})
    assert "not_a_field" not in t and t["provider_dialect"] == "" and t["ttft_ms"] == 0.0 and t["task_type"] == ""
    assert t["error"] is None and t["attempts"] == 1
    assert CODEC.decode(CODEC.encode("Trace", t))[1] == t


def test_decision_event_rebuilds_the_bandit_context_from_features() -> None:
    f = Features(input_tokens=20_000, task="debugging", stage="failing_tests", client="claude_code")
    d = Decision(decision_id="d", session_id="s", model="m", provider="p", policy="bandit", policy_version=2,
                 reason="r", confidence=0.9, propensity=0.4, features=f.to_dict(), ts_ms=7)
    e = decision_event(d, request_id="r1", source="http", client_dialect="openai_chat")
    assert e["context"] == f.vector() and e["task_type"] == "debugging" and e["request_id"] == "r1"
    assert json.loads(e["features"])["stage"] == "failing_tests"
    assert CODEC.decode(CODEC.encode("Decision", e))[1]["context"] == pytest.approx(f.vector())


def test_fast_codec_is_wire_compatible() -> None:
    plain = EventCodec()
    t = conform(plain, "Trace", {"event_id": "e", "ts_ms": 1, "request_id": "r", "session_id": "s",
                                 "decision_id": "d", "status": 200})
    assert CODEC.encode("Trace", t) == plain.encode("Trace", t)
    assert CODEC.decode(plain.encode("Trace", t)) == plain.decode(CODEC.encode("Trace", t))


def test_faust_codec_turns_bad_bytes_into_poison() -> None:
    codec = WeaveAvroCodec(CODEC)
    raw = codec.dumps(("Outcome", build_outcome({"session_id": "s", "success": True})))
    assert isinstance(codec.loads(raw), Event) and codec.loads(raw).name == "Outcome"
    poison = codec.loads(b"garbage")
    assert isinstance(poison, Poison) and "bad magic" in poison.reason and poison.raw == b"garbage"


# --- batch writer ------------------------------------------------------------------------------------------


class FakeClient:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.down = False

    def insert(self, table: str, data: list[tuple[Any, ...]], column_names: list[str],
               column_oriented: bool = False) -> None:
        if self.down:
            raise ConnectionError("refused")
        rows = list(zip(*data, strict=True)) if column_oriented else data
        if any(r[column_names.index("input_tokens")] < 0 for r in rows):
            raise ValueError("UInt64 cannot hold a negative number")
        self.rows.extend(rows)

    def command(self, sql: str) -> int:
        if self.down:
            raise ConnectionError("refused")
        return 1


def fake_writer(client: FakeClient) -> BatchWriter:
    w = BatchWriter(client, batch_size=10, flush_interval_s=1.0, tables={"Trace": "traces"})
    cols = [("event_id", "String"), ("ts", "DateTime64(3)"), ("input_tokens", "UInt64"),
            ("error", "Nullable(String)")]
    w.layouts = {"traces": TableLayout("traces", [c for c, _ in cols], [_column_converter(c, t) for c, t in cols])}
    return w


async def test_writer_rejects_only_the_bad_row_and_dedups() -> None:
    client = FakeClient()
    w = fake_writer(client)
    for i in range(7):
        w.add("Trace", {"event_id": f"e{i}", "ts_ms": 1000 + i, "input_tokens": -1 if i == 4 else i})
    assert not w.add("Trace", {"event_id": "e1", "ts_ms": 0, "input_tokens": 0})  # duplicate in the batch
    result = await w.flush()
    assert result.written == 6 and [r.event["event_id"] for r in result.rejected] == ["e4"]
    assert "negative" in result.rejected[0].reason
    assert sorted(r[0] for r in client.rows) == ["e0", "e1", "e2", "e3", "e5", "e6"]
    assert client.rows[0] == ("e0", 1000, 0, None)
    assert not w.add("Trace", {"event_id": "e2", "ts_ms": 0, "input_tokens": 0})  # written recently


async def test_writer_keeps_rows_while_clickhouse_is_down() -> None:
    client = FakeClient()
    w = fake_writer(client)
    w.add("Trace", {"event_id": "a", "ts_ms": 1, "input_tokens": 1})
    client.down = True
    with pytest.raises(StorageUnavailable):
        await w.flush()
    w.add("Trace", {"event_id": "b", "ts_ms": 2, "input_tokens": 2})
    assert len(w) == 2
    client.down = False
    assert (await w.flush()).written == 2 and [r[0] for r in client.rows] == ["a", "b"]


# --- router handler ----------------------------------------------------------------------------------------


class FakeRouter:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    def is_auto(self, model_name: str) -> bool:
        return model_name == "router/auto"

    def decide(self, req: Any, headers: dict[str, str], *, requested_model: str,
               session_id: str | None = None) -> Decision:
        self.seen.append((requested_model, headers))
        return Decision(decision_id="d1", session_id="", model="gpt-mini-sim", provider="sim-openai",
                        policy="bandit", policy_version=4, reason="test", confidence=1.0, propensity=0.5,
                        features={"task": "debugging"}, ts_ms=1)


def route_request(body: str, mode: str = "decide", dialect: str = "openai_chat") -> dict[str, Any]:
    return {"event_id": "e", "ts_ms": 5, "request_id": "r1", "session_id": "s1", "dialect": dialect,
            "body": body, "hints": {"task": "debugging"}, "reply_topic": "replies", "mode": mode}


async def test_decide_mode_publishes_decision_and_trace_only() -> None:
    router = FakeRouter()
    handler = RouteHandler(load_settings(env={}), router, None)
    body = json.dumps({"model": "router/auto", "messages": [{"role": "user", "content": "hi"}]})
    outputs = await handler.handle(route_request(body))
    assert [(t, n) for t, _, n, _ in outputs.events] == [("router.decisions", "Decision"), ("router.traces", "Trace")]
    assert router.seen[0][1] == {"x-session-id": "s1", "x-router-task": "debugging"}
    decision, trace = outputs.events[0][3], outputs.events[1][3]
    assert decision["session_id"] == "s1" and decision["source"] == "kafka" and decision["policy_version"] == 4
    assert trace["decision_id"] == "d1" and trace["status"] == 200 and trace["task_type"] == "debugging"
    for _, _, name, value in outputs.events:
        CODEC.encode(name, value)


async def test_unparseable_body_answers_400_in_the_dialect() -> None:
    handler = RouteHandler(load_settings(env={}), FakeRouter(), None)
    outputs = await handler.handle(route_request("{not json", mode="execute", dialect="anthropic_messages"))
    names = [(t, n) for t, _, n, _ in outputs.events]
    assert names == [("router.traces", "Trace"), ("replies", "RouteResponse")]
    response = outputs.events[1][3]
    assert response["status"] == 400 and json.loads(response["body"])["type"] == "error"
    assert outputs.events[0][3]["status"] == 400


async def test_a_body_too_deep_for_json_is_refused_like_over_http() -> None:
    handler = RouteHandler(load_settings(env={}), FakeRouter(), None)
    deep = "[" * 100_000 + "]" * 100_000
    outputs = await handler.handle(route_request(deep, mode="execute"))
    response = outputs.events[1][3]
    assert response["status"] == 400 and "nested too deeply" in json.loads(response["body"])["error"]["message"]


# --- policy merge --------------------------------------------------------------------------------------------


def test_merged_partials_equal_one_learner_and_versions_add_up() -> None:
    settings = load_settings(env={})
    arms = [m.name for m in settings.models]
    rng = np.random.default_rng(1)
    data = [({"bias": 1.0, "x": float(rng.random())}, arms[i % len(arms)], float(i % 3 != 0), 0.01 * (i % 4))
            for i in range(40)]
    one, a, b = base_bandit(settings), base_bandit(settings), base_bandit(settings)
    for i, (ctx, arm, success, cost) in enumerate(data):
        one.learn_outcome(ctx, arm, success, cost)
        (a if i % 2 else b).learn_outcome(ctx, arm, success, cost)
    view = PolicyView(lambda: base_bandit(settings))
    assert view.offer(snapshot_event(a, learner_id="A", updates=20))
    assert view.offer(snapshot_event(b, learner_id="B", updates=20))
    old = snapshot_event(base_bandit(settings), learner_id="A", updates=0)
    assert not view.offer(old)  # older than what we have from A
    merged = view.merged()
    assert view.version == merged.version == 40
    for ctx, _, _, _ in data[:5]:
        for x, y in zip(merged.estimates(ctx, arms), one.estimates(ctx, arms), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-7, atol=1e-12)



class FakePublisher:
    """Records what the router agent queues; deliveries resolve at once."""

    def __init__(self) -> None:
        self.outputs: list[tuple[str, str, str]] = []
        self.dead: list[tuple[Any, str, str]] = []

    async def queue_many(self, batch: list[Any]) -> list[Any]:
        self.outputs.extend((t, k, n) for outputs in batch for t, k, n, _ in outputs.events)
        return [self._done()] if batch else []

    async def dead_letter(self, source: Any, reason: str, stage: str) -> Any:
        self.dead.append((source, reason, stage))
        return self._done()

    @staticmethod
    def _done() -> Any:
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f


async def test_route_batch_publishes_in_input_order_and_dead_letters_the_rest() -> None:
    from streams.agents.route_agent import queue_route_batch

    handler = RouteHandler(load_settings(env={}), FakeRouter(), None)
    publisher = FakePublisher()
    body = json.dumps({"model": "router/auto", "messages": [{"role": "user", "content": "hi"}]})
    first, second = route_request(body), {**route_request(body), "request_id": "r2", "session_id": "s2"}
    items = [("rec0", Event("RouteRequest", first)), ("rec1", Poison("bad magic", b"x")),
             ("rec2", Event("Outcome", {})), ("rec3", Event("RouteRequest", second))]
    futures = await queue_route_batch(handler, publisher, items)  # type: ignore[arg-type]
    assert len(futures) == 3 and all(f.done() for f in futures)
    assert publisher.outputs == [("router.decisions", "s1", "Decision"), ("router.traces", "s1", "Trace"),
                                 ("router.decisions", "s2", "Decision"), ("router.traces", "s2", "Trace")]
    assert [(src, stage) for src, _, stage in publisher.dead] == [("rec1", "decode"), ("rec2", "decode")]
    assert "got Outcome" in publisher.dead[1][1]
    assert handler.stats == {"handled": 2, "dead": 2}


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[Any, int]] = []
        self.seeks: list[tuple[Any, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


async def test_batch_app_commits_a_batch_only_after_its_outputs_are_delivered() -> None:
    from aiokafka import TopicPartition
    from aiokafka.structs import ConsumerRecord

    from streams.agents.app import BatchApp

    loop = asyncio.get_running_loop()
    deliveries: list[asyncio.Future[Any]] = []
    seen: list[int] = []

    async def handler(batch: list[Any]) -> list[asyncio.Future[Any]]:
        seen.extend(record.offset for record, _ in batch)
        deliveries.append(loop.create_future())
        return [deliveries[-1]]

    app = BatchApp("unused:9092", "g", {"t": handler}, embedded=True, retry_s=0.0)
    consumer = FakeConsumer()
    tp = TopicPartition("t", 0)

    def fetch(*offsets: int) -> dict[Any, list[Any]]:
        return {tp: [ConsumerRecord("t", 0, o, 0, 0, b"k", CODEC.encode("Outcome", out("s", o)), None, 1, 3, [])
                     for o in offsets]}

    await app._step(consumer, fetch(0, 1))  # type: ignore[arg-type]
    assert seen == [0, 1] and consumer.commits == []  # handled, outputs not delivered yet
    deliveries[0].set_result(None)
    await app._step(consumer, fetch(2))  # type: ignore[arg-type]
    assert consumer.commits == [{tp: 2}]  # the first batch, once delivered; the second is in flight
    deliveries[1].set_exception(RuntimeError("broker gone"))
    await app._step(consumer, {})  # type: ignore[arg-type]
    assert consumer.commits == [{tp: 2}] and consumer.seeks == [(tp, 2)]  # not committed: read again
    assert "broker gone" in app.last_error and app._inflight is None
