"""The routing brain's priors, quality target, prompt-level learning, forgetting and noisy outcomes.

Synthetic matrices whose prompts differ in their words, so "learned per prompt" can be checked
exactly; the real SWE-bench matrix for the noisy-signal run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_routing_fixtures import captured, default_settings

from streams.config import load_settings
from streams.evaluation.datasets import OutcomeMatrix, Task, task_context
from streams.evaluation.replay import PaidOutcomes, make_bandit, run_replay, simulate, swap_skills
from streams.routing.bandit import ContextualBandit, bandit_for
from streams.routing.features import TIER_RANK, text_features
from streams.routing.router import Router
from streams.routing.settings import BanditSettings
from streams.translation.registry import get
from tests.conftest import shared_dir

EASY = ("rename the variable {i} to count", "fix the typo in docstring {i}", "bump the version in file {i}")
HARD = ("find the race condition in scheduler {i}", "the deadlock in pool {i} under load",
        "intermittent corruption in cache shard {i}")


def _prompt_matrix(n: int = 600, seed: int = 0) -> tuple[OutcomeMatrix, np.ndarray]:
    """Two models: 'small' (cheap) solves easy prompts 95% of the time and hard ones 15%; 'large'
    (50x dearer) solves 90% of both. Which family a prompt is in shows only in its words."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < 0.5
    tasks = [Task(f"t{i}", (HARD if h else EASY)[i % 3].format(i=i)) for i, h in enumerate(hard)]
    small = np.where(hard, rng.random(n) < 0.15, rng.random(n) < 0.95).astype(float)
    large = (rng.random(n) < 0.9).astype(float)
    success = np.stack([small, large], axis=1)
    cost = np.stack([np.full(n, 0.02), np.full(n, 1.0)], axis=1)
    return OutcomeMatrix("prompts", tasks, ["small", "large"], success, cost), hard


def test_text_features_hash_words_and_bigrams_stably() -> None:
    f = text_features("Fix the race")
    assert len(f) == 5 and all(k.startswith("t:") for k in f)  # 3 words + 2 bigrams
    assert f == text_features("fix the RACE")  # case-insensitive, same buckets in every process
    assert text_features("") == {}


def test_quality_target_learns_which_prompts_the_cheap_model_can_take() -> None:
    m, hard = _prompt_matrix()
    order = list(range(m.n_tasks))
    bandit = make_bandit(m, BanditSettings(), beta=0.8, seed=3, quality_target=0.95)
    sessions = simulate(m, bandit, PaidOutcomes(m), order=order, max_attempts=1)
    chose_small = np.array([s.attempts[0].model == "small" for s in sessions])
    late = np.arange(m.n_tasks) >= m.n_tasks // 2
    # Learned from bandit feedback only: in the second half, easy prompts go to the cheap model and
    # hard ones stay on the dear one.
    assert chose_small[late & ~hard].mean() > 0.8
    assert chose_small[late & hard].mean() < 0.2
    success = np.mean([s.success for s in sessions][m.n_tasks // 2:])
    cost = np.mean([s.cost_usd for s in sessions][m.n_tasks // 2:])
    large_success = m.success[:, 1].mean()
    assert success >= 0.95 * large_success and cost < 0.6


def test_quality_target_sweep_trades_cost_for_success() -> None:
    m, _ = _prompt_matrix(400, seed=1)
    knobs = [0.6, 0.8, 0.9, 0.95, 1.0]
    r = run_replay(m, seeds=2, max_attempts=1, quality_target=0.95, knob_values=knobs)
    assert r.quality_target == 0.95 and [p["knob"] for p in r.curve] == knobs
    costs = [p["cost_per_task"] for p in r.curve]
    assert costs == sorted(costs)  # a higher target buys more of the dear model
    assert r.apgr > 0.5


def test_forgetting_merges_exactly() -> None:
    rng = np.random.default_rng(5)
    rows = [({"x": float(rng.random()), "t:1": 1.0}, ("a", "b")[i % 2], float(rng.random() < 0.6), 0.1, float(i))
            for i in range(120)]
    kw: dict[str, Any] = {"half_life": 20.0, "seed": 1}
    one = ContextualBandit(["a", "b"], **kw)
    left, right = ContextualBandit(["a", "b"], **kw), ContextualBandit(["a", "b"], **kw)
    for i, (ctx, arm, s, c, ts) in enumerate(rows):
        one.learn_outcome(ctx, arm, s, c, ts=ts)
        (left if i % 3 else right).learn_outcome(ctx, arm, s, c, ts=ts)
    left.merge(right)
    one._rebase(max(one._clock, left._clock), force=True)
    assert np.allclose(left._A, one._A) and np.allclose(left._b, one._b)
    assert np.allclose(left._cell, one._cell) and np.allclose(left._cost_sum, one._cost_sum)
    ctx = {"x": 0.5, "t:1": 1.0}
    assert np.allclose(left.estimates(ctx, ["a", "b"])[0], one.estimates(ctx, ["a", "b"])[0])
    # Old evidence counts less: ten half-lives later it weighs 2**-10 of what it did.
    evidence = one._A - one._A0
    one._rebase(one._clock + 200.0, force=True)
    assert np.allclose(one._A - one._A0, evidence / 1024)


def test_drift_is_recovered_within_a_bounded_number_of_tasks() -> None:
    """'small' is as good as 'large' on every prompt for the first half; then the two models swap
    skills. With forgetting the router leaves 'small' within 150 tasks of the swap."""
    n = 600
    rng = np.random.default_rng(2)
    tasks = [Task(f"t{i}", f"change number {i}") for i in range(n)]
    success = np.stack([(rng.random(n) < 0.9), (rng.random(n) < 0.5)], axis=1).astype(float)
    cost = np.stack([np.full(n, 0.02), np.full(n, 1.0)], axis=1)
    m = OutcomeMatrix("drift", tasks, ["small", "large"], success, cost)
    order = list(range(n))
    drifted = swap_skills(m, order, "small", "large", at=n // 2)

    def small_share_after(half_life: float | None) -> np.ndarray:
        own = BanditSettings(half_life=half_life)
        bandit = make_bandit(drifted, own, beta=0.8, seed=4, quality_target=0.95)
        sessions = simulate(drifted, bandit, PaidOutcomes(drifted), order=order, max_attempts=1)
        chose = np.array([s.attempts[0].model == "small" for s in sessions], dtype=float)
        return chose

    forgetting = small_share_after(60.0)
    assert forgetting[200:300].mean() > 0.7  # before the swap the cheap model is used
    assert forgetting[n // 2 + 150:].mean() < 0.2  # recovered within 150 tasks of the swap
    remembering = small_share_after(None)
    assert remembering[n // 2 + 150:].mean() > forgetting[n // 2 + 150:].mean()


def test_noisy_outcomes_still_route_well_on_real_agent_data() -> None:
    path = Path(shared_dir()) / "data" / "swebench_verified_dev"
    r = run_replay(path, seeds=2, max_attempts=3, curve=False, label_noise=0.1)
    assert r.label_noise == 0.1
    # Scored on the truth, learned from flipped outcomes: still near the best single model, cheaply.
    assert r.success_vs_best >= 0.9 and r.cost_vs_best <= 0.25


def test_label_noise_flips_what_the_router_is_told_not_the_score() -> None:
    m, _ = _prompt_matrix(200)

    class Recorder:
        def __init__(self) -> None:
            self.told: list[float] = []

        def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]:
            return "large", 1.0, 1.0

        def learn_outcome(self, context: dict[str, float], arm: str, success: float, cost_usd: float) -> None:
            self.told.append(success)

    rec = Recorder()
    sessions = simulate(m, rec, PaidOutcomes(m), order=list(range(200)), max_attempts=1, label_noise=0.2)
    truth = np.array([s.success for s in sessions])
    flipped = np.mean(np.array(rec.told) != truth)
    assert 0.12 < flipped < 0.28
    assert np.isclose(truth.mean(), m.success[:, 1].mean())


# --- task-type prior in the router --------------------------------------------------------------

DIALECT = {"/v1/messages": "anthropic_messages", "/v1/responses": "openai_responses",
           "/v1/chat/completions": "openai_chat"}


def _product() -> Any:
    """The built-in default config (quality target 0.95), without its demo exploration below sigma."""
    bandit = load_settings(env={}).routing.bandit.model_dump()
    return default_settings(decision_cache_size=0, bandit={**bandit, "explore_below_sigma": 0.0})


def _decide(router: Router, body: dict[str, Any], dialect: str, headers: dict[str, str]) -> Any:
    body = dict(body)
    tools = [t for t in body.get("tools", []) if isinstance(t, dict)]  # captured bodies are trimmed
    if tools:
        body["tools"] = tools
    else:
        body.pop("tools", None)
    return router.decide(get(dialect).parse_request(body), headers, requested_model="router/auto")


@pytest.mark.parametrize("name", ["claude_code_turn1_messages.json", "claude_code_turn2_tool_result_messages.json",
                                  "codex_turn1_responses.json", "codex_turn2_function_call_output_responses.json"])
def test_real_agent_requests_land_on_the_tier_their_task_calls_for(name: str) -> None:
    s = _product()
    router = Router(s, bandit=bandit_for(s))
    c = captured(name)
    d = _decide(router, c["body"], DIALECT[c["path"]], c["headers"])
    called = s.routing.task_tiers[d.features["task"]]
    served = {m.name: m.tier for m in s.models}[d.model]
    assert TIER_RANK[served] >= TIER_RANK[called], d.reason
    assert f"task {d.features['task']} calls for {called}" in d.reason


def test_planning_goes_frontier_and_a_trivial_edit_goes_cheaper_with_no_outcome() -> None:
    s = _product()
    tiers = {m.name: m.tier for m in s.models}
    plans, edits = [], []
    for i in range(20):
        router = Router(s, bandit=bandit_for(s))  # a fresh router each time: its first decisions
        plan = {"model": "router/auto", "messages": [{"role": "user", "content":
                "Plan the architecture of the new billing service: module boundaries, data ownership, trade-offs"}]}
        edit = {"model": "router/auto", "messages": [{"role": "user", "content": "rename variable x to count"}]}
        plans.append(tiers[_decide(router, plan, "openai_chat", {"x-router-session": f"p{i}"}).model])
        router = Router(s, bandit=bandit_for(s))
        d = _decide(router, edit, "openai_chat", {"x-router-session": f"e{i}"})
        edits.append((tiers[d.model], d.model, d.reason))
    assert plans.count("frontier") == 20
    assert all(tier in ("cheap", "standard") for tier, _, _ in edits), [e for e in edits if e[0] not in
                                                                         ("cheap", "standard")]


def test_task_contexts_carry_the_prompt_text() -> None:
    ctx = task_context(Task("t", "fix the race in the pool", {"repo": "a/b"}))
    assert {k for k in ctx if k.startswith("t:")} == set(text_features("fix the race in the pool"))
    assert ctx["repo=a/b"] == 1.0
