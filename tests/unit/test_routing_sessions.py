"""Sessions: keys, stickiness, safe-boundary switching, cache-loss vs saving, bounded store."""

from __future__ import annotations

from typing import Any

from test_routing_fixtures import (
    CC_HEADERS,
    assistant,
    call,
    default_settings,
    request,
    result,
    signed_thinking_history,
    user,
)
from test_routing_patterns import FakeBandit

from streams.routing.catalog import Catalog
from streams.routing.client_detection import lower_case_headers
from streams.routing.extractor import FeatureExtractor
from streams.routing.features import Features
from streams.routing.router import Router
from streams.routing.sessions import SessionState, SessionStore, session_identity, switch_verdict
from streams.translation.canonical import Thinking


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_session_identity_sources() -> None:
    req = request([user("fix it")])
    assert session_identity(lower_case_headers(CC_HEADERS), req) == "cc-session-1"
    assert session_identity({"session-id": "codex-1"}, req) == "codex-1"
    assert session_identity({"x-session-id": "mine"}, req) == "mine"
    req.extra["prompt_cache_key"] = "pck-1"
    assert session_identity({}, req) == "pck-1"
    a = session_identity({}, request([user("fix it")]))
    b = session_identity({}, request([user("fix it"), assistant("ok"), user("and more")]))
    c = session_identity({}, request([user("something else")]))
    assert a == b != c and a.startswith("h-")


def test_store_is_bounded_lru_with_ttl() -> None:
    clock = Clock()
    store = SessionStore(max_sessions=2, ttl_s=60, clock=clock)
    store.touch("a")
    store.touch("b")
    store.touch("a")
    store.touch("c")  # evicts b, the least recently used
    assert store.get("b") is None and store.get("a") is not None and len(store) == 2
    clock.t += 61
    assert store.get("a") is None


def bandit_router(arm: str, **routing: Any) -> tuple[Router, FakeBandit]:
    b = FakeBandit(arm, 0.5, 0.99)
    return Router(default_settings(decision_cache_size=0, **routing), bandit=b), b


def test_session_keeps_its_model_inside_a_tool_loop() -> None:
    r, b = bandit_router("claude-opus-sim")
    hdrs = {"x-session-id": "s1"}
    msgs = [user("Implement the feature")]
    assert r.decide(request(msgs), hdrs, requested_model="router/auto").model == "claude-opus-sim"
    b.answer = ("deepseek-sim", 0.5, 0.99)
    msgs += [assistant(call("1", "Read", {"file_path": "/a.py"})), user(result("1", "x = 1\n" * 20000))]
    d = r.decide(request(msgs), hdrs, requested_model="router/auto")
    assert d.model == "claude-opus-sim" and "tool-call loop" in d.reason


def test_switch_at_a_safe_boundary_when_the_saving_beats_the_cache_loss() -> None:
    r, b = bandit_router("claude-opus-sim", expected_remaining_requests=20)
    hdrs = {"x-session-id": "s2"}
    msgs = [user("Implement the feature " + "context " * 4000)]
    r.decide(request(msgs), hdrs, requested_model="router/auto")
    b.answer = ("deepseek-sim", 0.5, 0.99)
    msgs += [assistant("Done."), user("now rename it")]
    d = r.decide(request(msgs), hdrs, requested_model="router/auto")
    assert d.model == "deepseek-sim" and "switched from claude-opus-sim" in d.reason
    assert r.sessions.get("s2").model == "deepseek-sim"


def test_no_switch_when_the_cache_loss_beats_the_saving() -> None:
    cat = Catalog(default_settings())
    f = Features(input_tokens=150_000, max_tokens=200, tools_offered=3)
    s = SessionState("s", model="claude-opus-sim", requests=1)
    v = switch_verdict(f, s, "gpt-mini-sim", cat, escalation=False, expected_remaining=1)
    assert not v.allowed and "cache loss" in v.reason
    # The same switch pays off over a long expected remainder.
    assert switch_verdict(f, s, "gpt-mini-sim", cat, escalation=False, expected_remaining=200).allowed
    # Moving to a pricier model never "saves"; only an escalation may do that.
    up = SessionState("s", model="deepseek-sim", requests=5)
    assert not switch_verdict(f, up, "claude-opus-sim", cat, escalation=False, expected_remaining=50).allowed
    assert switch_verdict(f, up, "claude-opus-sim", cat, escalation=True, expected_remaining=0).allowed


def test_never_switch_to_a_non_thinking_model_after_signed_thinking() -> None:
    cat = Catalog(default_settings())
    req = request(signed_thinking_history(), thinking=Thinking(enabled=True))
    f = FeatureExtractor().extract(req, CC_HEADERS)
    s = SessionState("s", model="claude-opus-sim", requests=30)
    v = switch_verdict(f, s, "claude-haiku-sim", cat, escalation=False, expected_remaining=1000)
    assert not v.allowed and "signed thinking" in v.reason
    assert switch_verdict(f, s, "gpt-frontier-sim", cat, escalation=False, expected_remaining=1000).allowed
    # And the router, asked by the bandit for the non-thinking model, keeps the session's model.
    r, b = bandit_router("claude-opus-sim", expected_remaining_requests=1000)
    r.decide(request([user("Refactor the config loader")]), {"x-session-id": "t"}, requested_model="router/auto")
    b.answer = ("claude-haiku-sim", 0.5, 0.99)
    d = r.decide(req, {"x-session-id": "t"}, requested_model="router/auto")
    assert d.model != "claude-haiku-sim"


def test_never_switch_to_a_model_whose_window_is_too_small() -> None:
    cat = Catalog(default_settings())
    f = Features(input_tokens=150_000)
    s = SessionState("s", model="claude-opus-sim", requests=50)
    v = switch_verdict(f, s, "deepseek-sim", cat, escalation=True, expected_remaining=0)
    assert not v.allowed and "window" in v.reason


def test_escalation_waits_for_the_end_of_the_tool_loop() -> None:
    r = Router(
        default_settings(
            decision_cache_size=0,
            routes=[{"name": "cas", "pattern": "cascade", "models": ["deepseek-sim", "claude-opus-sim"]}],
        )
    )
    hdrs = {"x-session-id": "esc"}
    msgs = [user("Fix the parser")]
    assert r.decide(request(msgs), hdrs, requested_model="router/auto").model == "deepseek-sim"
    r.record_outcome("esc", success=False)
    msgs += [assistant(call("1", "Bash", {"command": "pytest"})), user(result("1", "1 failed", is_error=True))]
    assert r.decide(request(msgs), hdrs, requested_model="router/auto").model == "deepseek-sim"
    msgs += [assistant("The test still fails."), user("try again")]
    d = r.decide(request(msgs), hdrs, requested_model="router/auto")
    assert d.model == "claude-opus-sim" and "escalation after a failed outcome" in d.reason


def test_non_sticky_sessions_follow_the_policy() -> None:
    r, b = bandit_router("claude-opus-sim", sticky_sessions=False)
    hdrs = {"x-session-id": "free"}
    msgs = [user("Implement it")]
    r.decide(request(msgs), hdrs, requested_model="router/auto")
    b.answer = ("deepseek-sim", 0.5, 0.99)
    msgs += [assistant(call("1", "Read", {"file_path": "/a.py"})), user(result("1", "x"))]
    assert r.decide(request(msgs), hdrs, requested_model="router/auto").model == "deepseek-sim"


def test_background_side_calls_neither_stick_nor_move_the_session() -> None:
    r = Router(
        default_settings(
            decision_cache_size=0,
            routes=[
                {"name": "bg", "match": {"background": True}, "pattern": "fixed", "tier": "cheap"},
                {"name": "main", "pattern": "fixed", "models": ["claude-opus-sim"]},
            ],
        )
    )
    main = r.decide(request([user("Implement the feature")]), CC_HEADERS, requested_model="claude-opus-4-8")
    side = r.decide(
        request([user("Generate a title for this conversation")], with_tools=False, max_tokens=512),
        CC_HEADERS,
        requested_model="claude-haiku-4-5",
    )
    assert main.session_id == side.session_id
    assert (main.model, side.model, side.route) == ("claude-opus-sim", "deepseek-sim", "bg")
    assert r.sessions.get(main.session_id).model == "claude-opus-sim"


# --- Claude Code's subagents (Task/Agent tool) -------------------------------------------------------

EXPLORE_PROMPT = "You are a file search specialist for Claude Code, Anthropic's official CLI for Claude."


def _plan_and_explore(headers: dict[str, str]) -> tuple[Router, Any, Any]:
    r = Router(default_settings())
    plan = request([user("Plan the architecture for migrating billing to event sourcing; design the components")],
                   model="claude-opus-4-8", max_tokens=32000)
    parent = r.decide(plan, CC_HEADERS, requested_model="claude-opus-4-8")
    explore = request([user("Find where the config loader is defined and which files import it.")],
                      model="claude-opus-4-8", system=EXPLORE_PROMPT, max_tokens=32000)
    child = r.decide(explore, headers, requested_model="claude-opus-4-8")
    return r, parent, child


def test_subagent_is_recognised_by_its_header_or_its_built_in_prompt() -> None:
    from streams.routing.client_detection import subagent_of

    main = request([user("fix it")], system="You are Claude Code, Anthropic's official CLI for Claude.")
    assert subagent_of({}, main) == ""
    assert subagent_of({"x-claude-code-agent-id": "a1b2"}, main) == "agent:a1b2"
    explore = request([user("find it")], system=EXPLORE_PROMPT)
    key = subagent_of({}, explore)
    assert key.startswith("prompt:") and key == subagent_of({}, request([user("other")], system=EXPLORE_PROMPT))


def test_subagent_is_routed_on_its_own_task_but_credited_to_the_parent_session() -> None:
    for headers in (CC_HEADERS, {**CC_HEADERS, "x-claude-code-agent-id": "agent-7"}):
        r, parent, child = _plan_and_explore(headers)
        assert parent.features["task"] == "planning" and parent.features["subagent"] == ""
        # Its own task type and model, not the parent's sticky frontier model...
        assert child.features["task"] == "search" and child.features["subagent"]
        assert r.catalog.get(child.model).tier == "cheap" != r.catalog.get(parent.model).tier  # type: ignore[union-attr]
        assert "session keeps" not in child.reason
        # ...and the decision names the parent session, whose own model did not move.
        assert child.session_id == parent.session_id == "cc-session-1"
        assert r.sessions.get("cc-session-1").model == parent.model  # type: ignore[union-attr]


def test_the_parent_sessions_outcome_is_the_subagents_too() -> None:
    r, _, _ = _plan_and_explore({**CC_HEADERS, "x-claude-code-agent-id": "agent-7"})
    parent = r.sessions.get("cc-session-1")
    assert parent is not None and len(parent.subagents) == 1
    child = r.sessions.get(parent.subagents[0])
    assert child is not None and child.session_id == "cc-session-1"
    assert r.record_outcome("cc-session-1", success=False)
    assert (parent.failures, child.failures) == (1, 1) and child.escalation_pending


def test_the_learner_credits_the_subagents_decisions_with_the_parents_outcome() -> None:
    from streams.agents.learner import OutcomeJoiner
    from streams.agents.records import decision_event

    r, parent, child = _plan_and_explore({**CC_HEADERS, "x-claude-code-agent-id": "agent-7"})
    j = OutcomeJoiner()
    for d in (parent, child):
        assert j.add_decision(decision_event(d, request_id=d.decision_id)) == []
    credits = j.add_outcome({"event_id": "o1", "session_id": "cc-session-1", "success": 1.0,
                             "ts_ms": child.ts_ms + 1})
    assert {c.model for c in credits} == {parent.model, child.model} and len(credits) == 2
    assert all(c.context for c in credits)  # what the bandit saw for each, the subagent's own included
