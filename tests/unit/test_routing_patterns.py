"""Each routing pattern, route matching, and the parallel-then-pick scorer."""

from __future__ import annotations

from typing import Any

import pytest
from test_routing_fixtures import CC_HEADERS, SDK_HEADERS, assistant, call, default_settings, request, result, user

from streams.routing.catalog import Catalog
from streams.routing.matching import Matcher
from streams.routing.parallel import pick
from streams.routing.router import Router
from streams.translation.canonical import CanonicalResponse, TextPart, ToolCallPart, Usage


class FakeBandit:
    """Records calls; answers with a fixed (arm, propensity, confidence)."""

    def __init__(self, arm: str = "deepseek-sim", propensity: float = 0.7, confidence: float = 0.99) -> None:
        self.answer = (arm, propensity, confidence)
        self.calls: list[tuple[dict[str, float], list[str]]] = []
        self.learned: list[tuple[dict[str, float], str, float]] = []
        self.version = 7

    def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]:
        self.calls.append((context, arms))
        return self.answer

    def learn_one(self, context: dict[str, float], arm: str, reward: float) -> None:
        self.learned.append((context, arm, reward))


def router(routes: list[dict[str, Any]], bandit: Any = None, **routing: Any) -> Router:
    return Router(default_settings(routes=routes, decision_cache_size=0, **routing), bandit=bandit)


def ask(r: Router, text: str, headers: dict[str, str] | None = None, **kw: Any):  # noqa: ANN201
    hdrs = {"x-session-id": text[:20], **(headers or {})}
    return r.decide(request([user(text)], **kw), hdrs, requested_model="router/auto")


def test_matcher_operators() -> None:
    f = {"client": "codex", "input_tokens": 5000, "task": "debugging"}
    assert Matcher({})(f)
    assert Matcher({"client": "codex", "input_tokens": {"gt": 1000, "lte": 5000}})(f)
    assert Matcher({"task": ["debugging", "planning"]})(f)
    assert not Matcher({"task": {"not_in": ["debugging"]}})(f)
    assert not Matcher({"missing": 1})(f)
    with pytest.raises(ValueError, match="unknown operator"):
        Matcher({"x": {"approx": 1}})


def test_rules_pattern_and_first_matching_route_wins() -> None:
    r = router(
        [
            {"name": "codex", "match": {"client": "codex"}, "pattern": "fixed", "models": ["gpt-frontier-sim"]},
            {
                "name": "main",
                "pattern": "rules",
                "prompt_version": "p-3",
                "rules": [
                    {"when": {"task": "chat"}, "tier": "cheap"},
                    {"when": {"input_tokens": {"gt": 100_000}}, "model": "gpt-frontier-sim"},
                ],
                "models": ["gpt-mini-sim"],
            },
        ]
    )
    chat = ask(r, "hi, thanks!")
    assert chat.route == "main" and chat.policy == "rules" and chat.prompt_version == "p-3"
    assert chat.model == "deepseek-sim"  # cheapest of tier cheap
    assert "rule 0" in chat.reason
    other = ask(r, "Implement pagination for /users")
    assert other.model == "gpt-mini-sim" and "no rule matched" in other.reason
    codex = ask(r, "hi", headers={"originator": "codex_exec"})
    assert codex.route == "codex" and codex.model == "gpt-frontier-sim"


def test_classifier_then_model() -> None:
    r = router(
        [
            {
                "name": "by-task",
                "pattern": "classifier",
                "min_confidence": 0.3,
                "task_map": {
                    "planning": "frontier",
                    "debugging": "claude-opus-sim",
                    "chat": "cheap",
                    "default": "gpt-mini-sim",
                },
            }
        ]
    )
    assert ask(r, "Plan the architecture for multi-tenant support").model == "gpt-frontier-sim"  # cheapest frontier
    d = ask(r, "Fix the crash with KeyError in login")
    assert d.model == "claude-opus-sim" and d.features["task"] == "debugging"
    assert ask(r, "hi thanks").model in ("deepseek-sim", "claude-haiku-sim")
    assert ask(r, "Implement pagination for the users endpoint").model == "gpt-mini-sim"
    # A client's task hint overrides the classifier.
    d = ask(r, "hello there", headers={"x-router-task": "planning"})
    assert d.features["task_source"] == "hint" and d.model == "gpt-frontier-sim"


def test_classifier_low_confidence_uses_the_stronger_default() -> None:
    r = router([{"name": "by-task", "pattern": "classifier", "min_confidence": 0.99, "task_map": {"chat": "cheap"}}])
    d = ask(r, "hi")
    assert d.model == "claude-opus-sim" and "confidence" in d.reason


def test_failover_chain_carries_fallbacks() -> None:
    r = router([{"name": "fo", "pattern": "failover", "models": ["gpt-mini-sim", "deepseek-sim", "claude-opus-sim"]}])
    d = ask(r, "Implement the thing")
    assert d.model == "gpt-mini-sim" and d.fallbacks == ["deepseek-sim", "claude-opus-sim"]
    assert d.policy == "failover" and d.provider == "sim-openai"
    # A model that cannot serve the request (no vision) is skipped.
    from streams.translation.canonical import ImagePart

    d = r.decide(
        request([user("what is this?", ImagePart(url="http://x/y.png"))]),
        {"x-session-id": "img"},
        requested_model="router/auto",
    )
    assert d.model == "gpt-mini-sim" and "deepseek-sim" not in d.fallbacks


def test_parallel_candidates_and_pick() -> None:
    r = router(
        [
            {
                "name": "par",
                "pattern": "parallel",
                "parallel_n": 3,
                "models": ["deepseek-sim", "gpt-mini-sim", "claude-haiku-sim", "claude-opus-sim"],
            }
        ]
    )
    d = ask(r, "Write a function")
    assert [d.model, *d.fallbacks] == ["deepseek-sim", "gpt-mini-sim", "claude-haiku-sim"]
    assert d.policy == "parallel"

    def resp(parts: list[Any], out: int = 10) -> CanonicalResponse:
        return CanonicalResponse(id="r", model="m", parts=parts, usage=Usage(input_tokens=100, output_tokens=out))

    broken = resp([ToolCallPart("1", "Edit", '{"file_path": "a.py", ')])
    good_tool = resp([TextPart("ok"), ToolCallPart("1", "Edit", '{"file_path": "a.py"}')])
    long_text = resp([TextPart("a much longer answer " * 10)])
    assert pick([broken, good_tool, long_text]) == 1  # valid tool-call JSON first
    assert pick([resp([TextPart("")]), resp([TextPart("short")]), long_text]) == 2  # then longest non-empty
    assert pick([RuntimeError("upstream 500"), None, resp([TextPart("x")])]) == 2  # failures lose
    cat = Catalog(default_settings())
    same = [resp([TextPart("same")], out=1000), resp([TextPart("same")], out=1000)]
    assert pick(same, models=["claude-opus-sim", "deepseek-sim"], catalog=cat) == 1  # then cheapest


def test_cascade_starts_cheap_and_escalates_after_failed_outcome() -> None:
    r = router([{"name": "cas", "pattern": "cascade", "models": ["deepseek-sim", "gpt-mini-sim", "claude-opus-sim"]}])
    hdrs = {"x-session-id": "cas-1"}
    req = request([user("Implement pagination")])
    d1 = r.decide(req, hdrs, requested_model="router/auto")
    assert d1.model == "deepseek-sim" and d1.fallbacks == ["gpt-mini-sim", "claude-opus-sim"]
    assert r.record_outcome("cas-1", success=False)
    d2 = r.decide(req, hdrs, requested_model="router/auto")
    assert d2.model == "gpt-mini-sim" and "escalation" in d2.reason
    r.record_outcome("cas-1", success=False)
    r.record_outcome("cas-1", success=False)
    assert r.decide(req, hdrs, requested_model="router/auto").model == "claude-opus-sim"  # top rung holds
    assert not r.record_outcome("unknown-session", success=False)


def test_cascade_low_confidence_starts_one_rung_up() -> None:
    r = router(
        [
            {
                "name": "cas",
                "pattern": "cascade",
                "min_confidence": 0.99,
                "models": ["deepseek-sim", "gpt-mini-sim", "claude-opus-sim"],
            }
        ]
    )
    assert ask(r, "hmm").model == "gpt-mini-sim"


def test_cascade_escalates_when_the_agent_gets_stuck_once_per_episode() -> None:
    r = router([{"name": "cas", "pattern": "cascade", "models": ["deepseek-sim", "gpt-mini-sim", "claude-opus-sim"]}])
    hdrs = {"x-session-id": "loop"}
    msgs = [user("find the config")]
    assert r.decide(request(msgs), hdrs, requested_model="router/auto").model == "deepseek-sim"
    for i in range(3):
        msgs += [assistant(call(f"g{i}", "Grep", {"pattern": "X"})), user(result(f"g{i}", "no matches"))]
    d = r.decide(request(msgs), hdrs, requested_model="router/auto")
    # Stuck counts as a failed check, but the switch waits for a safe boundary (we are in a tool loop).
    assert d.features["stage"] == "stuck" and d.model == "deepseek-sim" and "tool-call loop" in d.reason
    msgs += [assistant("I could not find it."), user("look in settings.yaml then")]
    d = r.decide(request(msgs), hdrs, requested_model="router/auto")
    assert d.model == "gpt-mini-sim"


def test_bandit_pattern_delegates_and_falls_back_below_sigma() -> None:
    confident = FakeBandit("deepseek-sim", 0.7, 0.99)
    r = router([], bandit=confident)
    d = ask(r, "Implement the parser", headers=CC_HEADERS)
    assert d.model == "deepseek-sim" and d.policy == "bandit" and d.route == "default"
    assert d.propensity == 0.7 and d.confidence == 0.99 and d.policy_version == 7
    context, arms = confident.calls[-1]
    assert context["client=claude_code"] == 1.0 and "bias" in context
    assert set(arms) == {"claude-opus-sim", "claude-sonnet-sim", "claude-haiku-sim", "gpt-frontier-sim", "gpt-mini-sim",
                         "gemini-flash-sim", "deepseek-sim"}

    unsure = FakeBandit("deepseek-sim", 0.4, 0.6)
    safe = {"explore_below_sigma": 0.0}  # the product default; the embedded demo config explores
    r = Router(default_settings(routes=[], decision_cache_size=0, bandit=safe), bandit=unsure)
    # Below sigma, a pick under the tier the task calls for gets the prior's model: implementation
    # calls for a standard model, planning for a frontier one.
    d = ask(r, "Implement the parser")
    assert d.model == "gpt-mini-sim"
    assert "0.60 < sigma 0.95" in d.reason and "task implementation calls for standard" in d.reason
    d = ask(r, "Plan the architecture of the new billing service: module boundaries and trade-offs")
    assert d.model == "gpt-frontier-sim" and "task planning calls for frontier" in d.reason  # the cheapest frontier
    # Without a prior for the task type, the frontier default guards (as before task tiers).
    r = Router(default_settings(routes=[], decision_cache_size=0, bandit=safe, task_tiers={}), bandit=unsure)
    d = ask(r, "Implement the parser")
    assert d.model == "claude-opus-sim"  # Settings.frontier_default()
    assert "0.60 < sigma 0.95" in d.reason and "frontier default" in d.reason

    d = ask(router([]), "Implement the parser")  # no bandit loaded at all: the task's prior tier
    assert d.model == "gpt-mini-sim" and "no learned policy" in d.reason


def test_sigma_guards_deviations_from_the_prior_tier_both_ways() -> None:
    safe = {"explore_below_sigma": 0.0}
    # A pick of the tier the task calls for stands whatever its confidence.
    same = Router(default_settings(routes=[], decision_cache_size=0, bandit=safe),
                  bandit=FakeBandit("gpt-mini-sim", 0.4, 0.3))
    d = ask(same, "Implement the parser")
    assert d.model == "gpt-mini-sim" and "prior holds" in d.reason
    # A dearer pick needs confidence too (the cost question), as a cheaper one does (the safety one).
    dear = Router(default_settings(routes=[], decision_cache_size=0, bandit=safe),
                  bandit=FakeBandit("gpt-frontier-sim", 0.4, 0.3))
    d = ask(dear, "Implement the parser")
    assert d.model == "gpt-mini-sim" and "prior's gpt-mini-sim" in d.reason
    sure = Router(default_settings(routes=[], decision_cache_size=0, bandit=safe),
                  bandit=FakeBandit("gpt-frontier-sim", 0.4, 0.99))
    d = ask(sure, "Implement the parser")
    assert d.model == "gpt-frontier-sim" and "above it at confidence >= sigma" in d.reason


def test_a_struggling_session_lifts_the_prior_tier() -> None:
    unsure = FakeBandit("deepseek-sim", 0.4, 0.3)
    r = Router(default_settings(routes=[], decision_cache_size=0, bandit={"explore_below_sigma": 0.0},
                                sticky_sessions=False), bandit=unsure)
    hdrs = {"x-router-session": "struggle-1"}
    d = r.decide(request([user("Implement the parser")]), hdrs, requested_model="router/auto")
    assert d.model == "gpt-mini-sim"
    r.record_outcome("struggle-1", False)  # the tests failed: one tier up, standard -> strong
    d = r.decide(request([user("Implement the parser, again")]), hdrs, requested_model="router/auto")
    assert d.model == "claude-sonnet-sim" and "lifted to strong: 1 failed outcome" in d.reason


def test_bandit_arms_respect_tier_and_cost_hints() -> None:
    b = FakeBandit("claude-haiku-sim", 0.5, 0.99)
    r = router([], bandit=b)
    ask(r, "Implement it", headers={"x-router-tier": "cheap"})
    assert set(b.calls[-1][1]) == {"claude-haiku-sim", "deepseek-sim"}
    ask(r, "Implement it too", headers={"x-router-max-cost-usd": "0.001"})
    assert set(b.calls[-1][1]) <= {"deepseek-sim", "gpt-mini-sim"}


def test_unknown_model_in_route_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model or tier"):
        router([{"name": "bad", "pattern": "rules", "rules": [{"when": {}, "model": "nope"}]}])


def test_sdk_request_without_tools_can_go_anywhere() -> None:
    r = router(
        [{"name": "cheap-chat", "match": {"client": "sdk", "tools_offered": 0}, "pattern": "fixed", "tier": "cheap"}]
    )
    d = r.decide(request([user("hi")], with_tools=False), SDK_HEADERS, requested_model="router/auto")
    assert d.route == "cheap-chat" and d.model == "deepseek-sim"


def test_a_share_of_sessions_explores_below_sigma() -> None:
    unsure = FakeBandit("deepseek-sim", 0.4, 0.6)
    r = Router(default_settings(routes=[], decision_cache_size=0, bandit={"explore_below_sigma": 0.5}), bandit=unsure)
    decisions = [r.decide(request([user("Implement the parser")]), {"x-session-id": f"s{i}"},
                          requested_model="router/auto") for i in range(400)]
    explored = [d for d in decisions if d.model == "deepseek-sim"]
    assert 0.4 < len(explored) / len(decisions) < 0.6
    assert all("exploring" in d.reason and d.propensity == 0.4 * 0.5 for d in explored)
    assert all(d.model == "gpt-mini-sim" for d in decisions if d not in explored)  # the prior's model
    # A session keeps its side: asking again in an exploring session explores again.
    again = r.decide(request([user("Implement the parser")]), {"x-session-id": explored[0].session_id},
                     requested_model="router/auto")
    assert again.model == "deepseek-sim"
