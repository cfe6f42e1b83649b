"""Two learner workers on the same topics split the partitions; the merged policy equals the policy one
learner would have learned from all events (exact merge of the bandit's sufficient statistics)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.agents.emitter import KafkaEventSink
from streams.agents.learner import Learner
from streams.agents.policy_snapshots import PolicyFollower, base_bandit
from streams.agents.records import decision_event, new_id, now_ms
from streams.agents.topics import Topics
from streams.agents.worker import Worker
from streams.config import Settings
from streams.routing.bandit import ContextualBandit
from streams.routing.decision import Decision

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ARMS = ["claude-opus-sim", "gpt-mini-sim", "deepseek-sim"]


def session_events(i: int) -> tuple[Decision, dict[str, Any], dict[str, Any]]:
    sid = f"sess-{i}"
    arm = ARMS[i % 3]
    ctx = {"bias": 1.0, "log_input_tokens": (i % 7) / 7.0, f"task={'debugging' if i % 2 else 'planning'}": 1.0}
    ts = now_ms()
    d = Decision(decision_id=f"d-{i}", session_id=sid, model=arm, provider="p", policy="bandit", policy_version=0,
                 reason="t", confidence=1.0, propensity=0.5, features={"context": ctx}, ts_ms=ts)
    trace = {"event_id": new_id(), "ts_ms": ts, "request_id": f"r-{i}", "session_id": sid, "decision_id": d.decision_id,
             "client_dialect": "openai_chat", "model": arm, "provider": "p", "status": 200,
             "cost_usd": 0.001 * (1 + i % 5)}
    outcome = {"event_id": new_id(), "ts_ms": ts + 1, "session_id": sid, "success": float(i % 4 != 0)}
    return d, trace, outcome


@pytest.mark.parametrize("engine", ["faust", "batch"])
async def test_two_workers_split_partitions_and_learn_the_same_policy(
    settings: Settings, broker: str, topics: Topics, tmp_path: Path, engine: str
) -> None:
    app_id = f"weave-{uuid.uuid4().hex[:6]}"
    workers = [Worker(settings, broker, embedded=True, worker_id=f"w{k}", roles=("learner",), topics=topics,
                      app_id=app_id, publish_every_s=0.2, engine=engine) for k in range(2)]
    emitter = KafkaEventSink.from_settings(settings, broker, topics=topics, embedded=True, data_dir=tmp_path)
    await emitter.start()
    await asyncio.gather(*(w.start() for w in workers))
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            parts = [{tp.partition for tp in w.assignment() if tp.topic == topics.outcomes} for w in workers]
            if all(parts) and not parts[0] & parts[1] and len(parts[0] | parts[1]) == settings.kafka.partitions \
                    and all(await asyncio.gather(*(w.ready(0.1) for w in workers))):
                break
            await asyncio.sleep(0.1)
        assert all(parts) and not parts[0] & parts[1], parts

        n = 60
        events = [session_events(i) for i in range(n)]
        for d, trace, _ in events:
            emitter.emit_decision(d, request_id=trace["request_id"])
            emitter.emit_trace(trace)
        for _, _, outcome in events:
            emitter.emit_outcome(outcome)
        assert await emitter.idle(20)
        learners = [w.learner for w in workers]
        assert all(learner is not None for learner in learners)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(x.updates for x in learners) < n:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        assert sum(x.updates for x in learners) == n  # type: ignore[union-attr]
        assert all(x.updates > 0 for x in learners)  # type: ignore[union-attr]
        while time.monotonic() < deadline and any(x.dirty for x in learners):  # type: ignore[union-attr]
            await asyncio.sleep(0.05)

        # A learner counts a snapshot as published once it is queued; read the topic until the last
        # one has landed (or the deadline passes).
        seen: list[tuple[ContextualBandit, int]] = []
        while True:
            seen.clear()
            follower = PolicyFollower(broker, lambda b, v: seen.append((b, v)), base=lambda: base_bandit(settings),
                                      topics=topics)
            await follower.start()
            await follower.stop()
            if (seen and seen[-1][1] == n) or time.monotonic() > deadline + 10:
                break
            await asyncio.sleep(0.2)
        assert seen, "no policy snapshot was published"
        merged, version = seen[-1]
        assert version == n

        # One learner fed every event, as a single worker would have been.
        single = Learner(settings, "solo")
        for d, trace, _ in events:
            single.handle("Decision", decision_event(d, request_id=trace["request_id"]))
            single.handle("Trace", trace)
        for _, _, outcome in events:
            single.handle("Outcome", outcome)
        assert single.updates == n
        for i in range(6):
            ctx = events[i][0].features["context"]
            # Posterior mean, std and expected cost per arm agree up to float rounding.
            for a, b in zip(merged.estimates(ctx, ARMS), single.bandit.estimates(ctx, ARMS), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)
        assert [merged.pulls(a) for a in ARMS] == [single.bandit.pulls(a) for a in ARMS]
    finally:
        await emitter.stop()
        await asyncio.gather(*(w.stop() for w in workers))
