"""Synthetic but realistic analytics rows (traces, decisions, outcomes) and a loader.

Used by the tests (known traffic with known outcomes, figures recomputed in plain Python) and handy to
preview the dashboard or the report on an empty data dir. Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

# name -> (provider, price_in, price_out, price_cached), USD per million tokens.
SAMPLE_MODELS: dict[str, tuple[str, float, float, float]] = {
    "claude-opus-sim": ("sim-anthropic", 5.0, 25.0, 0.5),
    "claude-haiku-sim": ("sim-anthropic", 1.0, 5.0, 0.1),
    "gpt-mini-sim": ("sim-openai", 0.25, 2.0, 0.025),
    "deepseek-sim": ("sim-openai", 0.28, 0.42, 0.028),
}
FRONTIER = "claude-opus-sim"
DIALECTS = ("anthropic_messages", "openai_chat", "openai_responses")
ROUTES = ("default", "cheap-first")
TASK_TYPES = ("bugfix", "feature", "refactor", "explain")


def cost(model: str, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
    _, p_in, p_out, p_cached = SAMPLE_MODELS[model]
    return (max(0, input_tokens - cached_tokens) * p_in + cached_tokens * p_cached + output_tokens * p_out) / 1e6


@dataclass
class SampleData:
    traces: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def sample_data(now: datetime, sessions: int = 24, seed: int = 7, span: timedelta = timedelta(hours=2)) -> SampleData:
    """``sessions`` task-sessions spread over ``[now - span, now)``: several requests each, a few
    failovers and upstream errors, policy versions moving forward, outcomes for most sessions (some
    failing first and passing after an escalation)."""
    rng = random.Random(seed)
    data = SampleData()
    names = list(SAMPLE_MODELS)
    for s in range(sessions):
        sid = f"sess-{s:03d}"
        start = now - span + timedelta(seconds=rng.uniform(0, span.total_seconds() * 0.85))
        dialect = DIALECTS[s % len(DIALECTS)]
        route = ROUTES[s % len(ROUTES)]
        task = TASK_TYPES[rng.randrange(len(TASK_TYPES))]
        client = {"anthropic_messages": "claude_code", "openai_responses": "codex", "openai_chat": "aider"}[dialect]
        model = names[rng.randrange(len(names))]
        policy_version = 1 + int(3 * s / sessions)
        t = start
        escalate = rng.random() < 0.25
        n_requests = rng.randint(1, 5)
        for i in range(n_requests):
            if escalate and i == n_requests - 1 and i > 0:
                model = FRONTIER  # cascade: the last attempt goes to the frontier model
            t += timedelta(seconds=rng.uniform(1, 30))
            served = model
            attempts = 1
            status, error = 200, None
            roll = rng.random()
            if roll < 0.1:
                attempts = 2
                served = names[(names.index(model) + 1) % len(names)]
            elif roll < 0.2:
                status, error = 502, "upstream unavailable: circuit open for " + SAMPLE_MODELS[model][0]
            provider = SAMPLE_MODELS[served][0]
            inp = rng.randint(500, 40_000)
            cached = rng.randint(0, inp // 2) if i else 0
            out = rng.randint(50, 3000)
            if status >= 400:
                inp = out = cached = 0
            did, rid = _id(rng), _id(rng)
            reason = (
                "below confidence threshold: frontier default" if served == FRONTIER
                else f"bandit: best expected utility for {task}"
            )
            data.decisions.append({
                "event_id": did, "ts": t, "request_id": rid, "session_id": sid, "model": model,
                "provider": SAMPLE_MODELS[model][0], "route": route, "policy": "bandit",
                "policy_version": policy_version, "prompt_version": None, "reason": reason,
                "confidence": round(rng.uniform(0.5, 1.0), 3), "propensity": round(rng.uniform(0.1, 1.0), 3),
                "task_type": task, "features": "{}", "context": {}, "fallbacks": [], "source": "http",
            })
            overhead = round(rng.lognormvariate(-1.2, 0.5), 4)
            latency = round(overhead + rng.uniform(200, 4000), 3)
            data.traces.append({
                "event_id": _id(rng), "ts": t + timedelta(milliseconds=1), "request_id": rid, "session_id": sid,
                "decision_id": did, "client_dialect": dialect, "provider_dialect": dialect, "model": served,
                "provider": provider, "route": route, "policy": "bandit", "policy_version": policy_version,
                "prompt_version": None, "status": status, "error": error, "stream": i % 2 == 0,
                "latency_ms": latency, "ttft_ms": round(latency * 0.2, 3), "overhead_ms": overhead,
                "input_tokens": inp, "output_tokens": out, "cached_tokens": cached,
                "cost_usd": cost(served, inp, out, cached), "baseline_cost_usd": cost(FRONTIER, inp, out, cached),
                "attempts": attempts, "source": "http", "task_type": task, "client": client,
            })
        if rng.random() < 0.8:
            passed = rng.random() < 0.65
            if escalate:
                data.outcomes.append(_outcome(rng, sid, t - timedelta(seconds=5), False))
                passed = True
            data.outcomes.append(_outcome(rng, sid, t + timedelta(seconds=2), passed))
    return data


def _outcome(rng: random.Random, sid: str, t: datetime, passed: bool) -> dict[str, Any]:
    return {
        "event_id": _id(rng), "ts": t, "session_id": sid, "request_id": None, "success": 1.0 if passed else 0.0,
        "tests_passed": 10 if passed else 7, "tests_failed": 0 if passed else 3, "cost_usd": None,
        "metadata": {"suite": "unit"}, "source": "feedback",
    }


def insert(client: Client, data: SampleData) -> None:
    """Insert the rows as the sink would (one insert per table)."""
    for table, rows in (("traces", data.traces), ("decisions", data.decisions), ("outcomes", data.outcomes)):
        if rows:
            columns = list(rows[0])
            client.insert(table, [[r[c] for c in columns] for r in rows], column_names=columns)


def utc_now() -> datetime:
    return datetime.now(UTC)
