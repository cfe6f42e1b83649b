"""The Router's public API: is_auto, every Decision field, decision cache TTL, set_policy, explicit models."""

from __future__ import annotations

import pickle
import uuid

from test_routing_fixtures import CC_HEADERS, claude_code_76kb, default_settings, request, user
from test_routing_patterns import FakeBandit
from test_routing_sessions import Clock

from streams.routing.router import Router


def test_is_auto() -> None:
    r = Router(default_settings())  # auto_models: router/auto, claude-*, gpt-5*, gemini-*
    assert r.is_auto("router/auto") and r.is_auto("router-auto")
    assert r.is_auto("claude-opus-4-8") and r.is_auto("claude-sonnet-5") and r.is_auto("gpt-5.1-codex")
    # Every name Claude Code sends, its background haiku calls and older releases included.
    for name in ("claude-haiku-4-5-20251001", "claude-3-5-haiku-20241022", "claude-3-7-sonnet-latest",
                 "claude-opus-4-1-20250805"):
        assert r.is_auto(name), name
    assert not r.is_auto("claude-opus-sim")  # a configured model's exact name is never auto
    assert not r.is_auto("gpt-4o-mini") and not r.is_auto("haiku")


def test_decision_fields_are_all_filled() -> None:
    clock = Clock()
    r = Router(
        default_settings(routes=[{"name": "main", "pattern": "bandit", "prompt_version": "v2"}]),
        bandit=FakeBandit("gpt-mini-sim", 0.3, 0.97),
        clock=clock,
        wall_clock=lambda: 1_700_000_000.5,
    )
    d = r.decide(claude_code_76kb(), CC_HEADERS, requested_model="claude-opus-4-8")
    uuid.UUID(d.decision_id)
    assert d.session_id == "cc-session-1"
    assert (d.model, d.provider, d.policy, d.policy_version) == ("gpt-mini-sim", "sim-openai", "bandit", 7)
    assert d.route == "main" and d.prompt_version == "v2"
    assert (d.confidence, d.propensity) == (0.97, 0.3)
    assert "bandit picked gpt-mini-sim" in d.reason
    assert d.features["client"] == "claude_code" and d.features["stage"] == "failing_tests"
    assert d.features["task"] == "debugging"
    assert d.ts_ms == 1_700_000_000_500 and not d.cached


def test_explicit_configured_model_is_passed_through() -> None:
    r = Router(default_settings())
    d = r.decide(request([user("hi")]), {}, requested_model="gpt-mini-sim")
    assert (d.model, d.policy, d.provider, d.confidence) == ("gpt-mini-sim", "passthrough", "sim-openai", 1.0)


def test_x_router_model_forces_the_model_over_the_policy_and_the_cache() -> None:
    b = FakeBandit("gpt-mini-sim", 0.5, 0.99)
    r = Router(default_settings(decision_cache_ttl_s=30), bandit=b)
    req = request([user("Implement pagination")])
    hdrs = {"x-session-id": "f1"}
    assert r.decide(req, hdrs, requested_model="router/auto").model == "gpt-mini-sim"
    d = r.decide(req, {**hdrs, "X-Router-Model": " claude-opus-sim "}, requested_model="router/auto")
    assert (d.model, d.provider, d.policy, d.route, d.cached) == ("claude-opus-sim", "sim-anthropic", "override",
                                                                 "override", False)
    assert d.reason == "override: x-router-model header forces claude-opus-sim (task implementation)"
    assert d.session_id == "f1" and d.features["task"] == "implementation"
    assert len(b.calls) == 1  # the policy was not asked
    # The session's history is now the forced model's: it stays there rather than the cached pick.
    assert r.sessions.get("f1").model == "claude-opus-sim"  # type: ignore[union-attr]
    # A name the router does not serve is no override here (the gateway answers it with a 404 first).
    assert r.decide(req, {**hdrs, "x-router-model": "nope"}, requested_model="router/auto").policy != "override"


def test_decision_cache_reuses_within_ttl_only() -> None:
    clock = Clock()
    b = FakeBandit("gpt-mini-sim", 0.5, 0.99)
    r = Router(default_settings(decision_cache_ttl_s=30), bandit=b, clock=clock)
    req = request([user("Implement pagination")])
    hdrs = {"x-session-id": "c1"}
    first = r.decide(req, hdrs, requested_model="router/auto")
    clock.t += 10
    second = r.decide(req, hdrs, requested_model="router/auto")
    assert second.cached and second.model == first.model and second.decision_id != first.decision_id
    assert len(b.calls) == 1
    clock.t += 31
    third = r.decide(req, hdrs, requested_model="router/auto")
    assert not third.cached and len(b.calls) == 2
    # Another session does not share the entry.
    assert not r.decide(req, {"x-session-id": "c2"}, requested_model="router/auto").cached


def test_outcome_invalidates_the_cache() -> None:
    clock = Clock()
    r = Router(
        default_settings(routes=[{"name": "cas", "pattern": "cascade", "models": ["deepseek-sim", "claude-opus-sim"]}]),
        clock=clock,
    )
    req = request([user("Implement pagination")])
    hdrs = {"x-session-id": "c3"}
    assert r.decide(req, hdrs, requested_model="router/auto").model == "deepseek-sim"
    r.record_outcome("c3", success=False)
    d = r.decide(req, hdrs, requested_model="router/auto")
    assert not d.cached and d.model == "claude-opus-sim"


def test_set_policy_hot_swaps_the_bandit() -> None:
    r = Router(default_settings(decision_cache_size=0), bandit=FakeBandit("deepseek-sim"))
    assert r.decide(request([user("Implement it")]), {"x-session-id": "p1"}, requested_model="router/auto").model == (
        "deepseek-sim"
    )
    new = FakeBandit("gpt-mini-sim")
    new.version = 42
    r.set_policy(new)
    d = r.decide(request([user("Implement it")]), {"x-session-id": "p2"}, requested_model="router/auto")
    assert d.model == "gpt-mini-sim" and d.policy_version == 42


def test_set_policy_accepts_a_bandit_snapshot_when_the_bandit_exists() -> None:
    import pytest

    bandit_mod = pytest.importorskip("streams.routing.bandit")
    s = default_settings()
    bandit = bandit_mod.ContextualBandit.from_settings(s.routing.bandit, s.models)
    r = Router(s)
    r.set_policy(bandit.snapshot())
    d = r.decide(request([user("Implement it")]), {"x-session-id": "snap"}, requested_model="router/auto")
    assert d.policy == "bandit" and d.model in {m.name for m in s.models}


def test_record_outcome_can_teach_the_bandit_in_process() -> None:
    b = FakeBandit("gpt-mini-sim", 0.5, 0.99)
    settings = default_settings()
    r = Router(settings, bandit=b)
    r.decide(request([user("Implement it")]), {"x-session-id": "l1"}, requested_model="router/auto")
    r.record_outcome("l1", success=True, cost_usd=0.25, learn=True)
    context, arm, reward = b.learned[-1]
    expected = settings.routing.bandit.alpha * 1.0 - settings.routing.bandit.beta * 0.25
    assert arm == "gpt-mini-sim" and reward == expected and context["bias"] == 1.0


def test_router_pickles() -> None:
    r = Router(default_settings())
    r.decide(request([user("Implement it")]), {"x-session-id": "k"}, requested_model="router/auto")
    clone = pickle.loads(pickle.dumps(r))
    assert clone.decide(request([user("Implement it")]), {"x-session-id": "k"}, requested_model="router/auto").model
