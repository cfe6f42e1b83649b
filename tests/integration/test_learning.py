"""Routing learns from outcomes: the acceptance test of the learning loop, end to end on loopback.

The real gateway (ingress, router with the bandit, upstream client, translation) serves a stream of
task-sessions against the real simulated provider, whose models have per-task-type skill. Each
session's verdict (the sim's "TESTS PASSED" / "TESTS FAILED", read from the answer the client got) is
reported to ``POST /v1/feedback``; the service's feedback handler publishes the outcome, the learner
agent's logic joins it with the session's decisions and traces and updates its bandit, and its policy
snapshots are merged and hot-swapped into the router as the policy follower does. Only Kafka is
replaced, by an in-process bus that hands each event to the learner in the order it was emitted.

Asserted, from the decisions the gateway served:
- per task type, the share of sessions on the cheapest model that succeeds at that type grows from
  the first window to the last and ends above half, while a cheaper model that fails everything
  (the cheapest of all) stays rare;
- after a drift (``POST /sim/skill``: the cheap model stops solving test-writing tasks) test-writing
  traffic leaves it within a bounded number of sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from streams.agents.learner import Learner
from streams.agents.policy_snapshots import PolicyView, base_bandit
from streams.agents.records import decision_event
from streams.config import Settings
from streams.infra.runtime import feedback_handler, make_router
from streams.ingress.app import create_app, listen_socket, uvicorn_config
from streams.ingress.gateway import Gateway
from streams.providers.client import UpstreamClient
from streams.providers.sim import FAIL_MARKER, PASS_MARKER, SimConfig, running_sim
from streams.routing.decision import Decision

FLAKY, CHEAP, MID, FRONTIER = "flaky-sim", "cheap-sim", "mid-sim", "frontier-sim"
TASKS = ("test_writing", "implementation", "debugging")
# The cheapest model that succeeds at each task type (by the skills below).
TARGET = {"test_writing": CHEAP, "implementation": CHEAP, "debugging": MID}
SKILLS: dict[str, float | dict[str, float]] = {
    FLAKY: 0.1,  # the cheapest of all, and it fails almost everything
    CHEAP: {"test_writing": 0.95, "implementation": 0.95, "debugging": 0.05, "default": 0.5},
    MID: {"debugging": 0.95, "default": 0.8},
    FRONTIER: 0.97,
}
PROMPTS = {
    "test_writing": "Write unit tests with pytest for the parser module, covering edge cases.",
    "implementation": "Implement a new feature: add a retry option to the HTTP client and wire it in.",
    "debugging": "Debug this failing test: the traceback shows a KeyError raised in the handler.",
}
# Sessions in the stream, the session at which the cheap model drifts, sessions per window. The
# bandit keeps all its evidence (no forgetting), so how fast it leaves a drifted model grows with
# how much it saw before the drift: the drift comes after 30 sessions of each task type.
SESSIONS, DRIFT_AT, WINDOW = 300, 90, 24
# A Claude-Code-sized system prompt (~20k tokens, the size the bandit's cost prior assumes), so the
# observed cost of a call compares with the catalogue prior as it would in real use.
SYSTEM = ("You are a coding agent working in a repository. Follow the project's conventions. " * 1000).strip()


def settings(seed: int) -> Settings:
    """The test catalogue. Two routing knobs differ from the defaults, on purpose:

    - ``sigma: 0``: with the default 0.95 a fresh router serves the frontier default until the bandit
      is confident, and only the default's outcomes come back, so confidence in the other models
      never grows: live traffic alone cannot move it (safety first, by design). This test is about
      the learning loop, so the bandit's choice is served from the first session.
    - ``explore_scale: 1`` (plain Thompson sampling): the default 0.15 explores so little that a model
      failing its first tries (or never tried while another is good enough) is not tried again.
    """
    return Settings.model_validate(
        {
            "providers": [
                {"name": "sim-openai", "dialect": "openai_chat", "base_url": "sim"},
                {"name": "sim-responses", "dialect": "openai_responses", "base_url": "sim"},
                {"name": "sim-anthropic", "dialect": "anthropic_messages", "base_url": "sim"},
            ],
            "models": [
                {"name": FLAKY, "provider": "sim-openai", "price_in": 0.1, "price_out": 0.4, "tier": "cheap"},
                {"name": CHEAP, "provider": "sim-openai", "price_in": 0.25, "price_out": 2.0, "tier": "cheap"},
                {"name": MID, "provider": "sim-responses", "price_in": 1.0, "price_out": 5.0, "tier": "standard"},
                {"name": FRONTIER, "provider": "sim-anthropic", "price_in": 5.0, "price_out": 25.0, "tier": "frontier"},
            ],
            "routing": {
                "auto_models": ["router/auto"],
                "default_model": FRONTIER,
                "bandit": {"sigma": 0.0, "explore_scale": 1.0, "seed": seed},
            },
        }
    )


class Bus:
    """Stands in for the router.decisions / traces / outcomes topics: the gateway's event sink and the
    feedback handler's emitter, delivering each event to the learner as the Kafka agent would."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.decisions: list[Decision] = []

    def emit_decision(self, decision: Decision, **context: Any) -> None:
        self.decisions.append(decision)
        self.learner.handle("Decision", decision_event(decision, **context))

    def emit_trace(self, trace: dict[str, Any]) -> None:
        self.learner.handle("Trace", trace)

    def emit_outcome(self, outcome: dict[str, Any]) -> None:
        self.learner.handle("Outcome", outcome)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Session:
    index: int
    task: str
    model: str
    success: bool


@dataclass
class Run:
    sessions: list[Session] = field(default_factory=list)

    def share(self, task: str, model: str, start: int, stop: int) -> float:
        """Share of the ``task`` sessions among sessions ``start:stop`` that ``model`` served."""
        picked = [s.model for s in self.sessions[start:stop] if s.task == task]
        return Counter(picked)[model] / max(1, len(picked))

    def share_all(self, model: str, start: int, stop: int) -> float:
        picked = [s.model for s in self.sessions[start:stop]]
        return Counter(picked)[model] / max(1, len(picked))


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn_config(app, loop="none"))
    sock = listen_socket("127.0.0.1", 0)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def run_sessions(n: int, *, seed: int = 7, drift_at: int | None = None) -> Run:
    """Serve ``n`` task-sessions through the gateway, report each outcome, learn, hot-swap the policy.

    The learner publishes on its own cadence (every 2 s of a fake clock that advances 0.5 s per
    session, i.e. every 4 sessions), and the router takes the merged policy as the follower would.
    """
    cfg = settings(seed)
    router = make_router(cfg)
    clock = Clock()
    learner = Learner(cfg, "learner-0", clock=clock, publish_every_s=2.0, cost_grace_s=1e9)
    view = PolicyView(lambda: base_bandit(cfg))
    bus = Bus(learner)
    gateway = Gateway(cfg, router, UpstreamClient(None), bus)
    run = Run()
    sim = SimConfig(ttft_ms=0, tokens_per_s=0, reply_tokens=12, models=SKILLS, seed=seed)
    async with running_sim(sim) as sim_url:
        gateway.client = UpstreamClient(sim_url)
        app = create_app(gateway, feedback_handler(router, bus))
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            for i in range(n):
                if i == drift_at:
                    r = await http.post(
                        f"{sim_url}/sim/skill", json={"model": CHEAP, "skill": 0.0, "task_type": "test_writing"}
                    )
                    assert r.status_code == 200, r.text
                task = TASKS[i % len(TASKS)]
                sid = f"s-{i}"
                headers = {"x-session-id": sid, "x-router-task": task, "x-sim-task": f"{task}:{i}"}
                messages: list[dict[str, Any]] = [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{PROMPTS[task]} (ticket {i})"},
                ]
                text, model = "", ""
                for _ in range(1 + i % 2):  # one or two requests per session
                    r = await http.post(
                        "/v1/chat/completions", headers=headers, json={"model": "router/auto", "messages": messages}
                    )
                    assert r.status_code == 200, r.text
                    text = r.json()["choices"][0]["message"]["content"]
                    model = r.json()["model"]
                    messages += [
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": "Now run the tests."},
                    ]
                assert text.startswith((PASS_MARKER, FAIL_MARKER)), text
                success = text.startswith(PASS_MARKER)
                r = await http.post("/v1/feedback", json={"session_id": sid, "success": success})
                assert r.status_code == 202, r.text
                run.sessions.append(Session(i, task, model, success))
                clock.now += 0.5
                learner.tick()
                if learner.should_publish() and view.offer(learner.snapshot()):
                    router.set_policy(view.merged(), view.version)
    return run


def _windows(run: Run, start: int, stop: int, window: int = 15) -> str:
    """Per window of sessions and task type, which models served (for the failure message)."""
    lines = []
    for lo in range(start, stop, window):
        chunk = run.sessions[lo : min(lo + window, stop)]
        per_task = {task: dict(Counter(s.model for s in chunk if s.task == task)) for task in TASKS}
        lines.append(f"sessions {lo}-{lo + len(chunk) - 1}: {per_task}")
    return "\n".join(lines)


async def test_sim_skill_per_task_type_and_its_drift() -> None:
    sim = SimConfig(ttft_ms=0, tokens_per_s=0, models=SKILLS)
    async with running_sim(sim) as url, httpx.AsyncClient(base_url=url) as http:

        async def outcome(task: str, **params: str) -> dict[str, Any]:
            r = await http.get("/sim/outcome", params={"model": CHEAP, "task": task, **params})
            return dict(r.json())

        assert (await outcome("debugging:1"))["skill"] == 0.05  # task type from the id's prefix
        assert (await outcome("x-1", task_type="test_writing"))["skill"] == 0.95
        assert (await outcome("planning:1"))["skill"] == 0.5  # no entry: the model's default
        r = await http.post("/sim/skill", json={"model": CHEAP, "skill": 0.0, "task_type": "test_writing"})
        assert r.json() == {"model": CHEAP, "skill": 0.0, "task_type": "test_writing"}
        assert (await outcome("test_writing:1"))["success"] is False
        assert (await outcome("implementation:1"))["skill"] == 0.95  # other types unchanged
        # The header names the task type of an id without a prefix.
        body = {"model": CHEAP, "messages": [{"role": "user", "content": "hi"}]}
        auth = {"authorization": "Bearer k", "x-sim-task": "t-9"}
        r = await http.post("/v1/chat/completions", json=body, headers={**auth, "x-sim-task-type": "test_writing"})
        assert r.json()["choices"][0]["message"]["content"].startswith(FAIL_MARKER)


def test_traffic_moves_to_the_cheapest_model_that_succeeds_per_task_type_and_away_after_drift() -> None:
    n, drift, window = SESSIONS, DRIFT_AT, WINDOW
    run = asyncio.run(run_sessions(n, drift_at=drift))
    history = _windows(run, 0, n)
    assert len(run.sessions) == n

    # Learning: first window vs the last window before the drift, per task type.
    for task, target in TARGET.items():
        first = run.share(task, target, 0, window)
        last = run.share(task, target, drift - window, drift)
        assert last > first, f"{task}: share on {target} did not grow ({first:.2f} -> {last:.2f})\n{history}"
        assert last > 0.5, f"{task}: only {last:.0%} on {target} before the drift\n{history}"
    # The cheapest model of all fails nearly everything: after exploring it, traffic leaves it.
    assert run.share_all(FLAKY, drift - window, drift) <= 0.1, history

    # Drift: the cheap model stops solving test-writing tasks; test-writing traffic leaves it within
    # RECOVERY sessions (its other task types may keep it).
    before = run.share("test_writing", CHEAP, drift - window, drift)
    after = run.share("test_writing", CHEAP, n - window, n)
    assert after <= 0.2 and before > 0.5, (
        f"test_writing on {CHEAP}: {before:.0%} before the drift, {after:.0%} at the end\n{history}"
    )
    assert run.share("implementation", CHEAP, n - window, n) > 0.5, history
    assert run.share("debugging", MID, n - window, n) > 0.5, history
    # Sessions really failed on the drifted model (the outcomes the router learned from).
    drifted = [s for s in run.sessions[drift:] if s.task == "test_writing" and s.model == CHEAP]
    assert drifted and not any(s.success for s in drifted)


if __name__ == "__main__":
    import sys
    import time

    t0 = time.monotonic()
    total = int(sys.argv[1]) if len(sys.argv) > 1 else SESSIONS
    at = int(sys.argv[2]) if len(sys.argv) > 2 else DRIFT_AT
    seed_arg = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    result = asyncio.run(run_sessions(total, drift_at=at, seed=seed_arg))
    print(_windows(result, 0, total))
    print("time", time.monotonic() - t0)
