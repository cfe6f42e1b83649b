"""Canary and shadow routing: session split, stickiness, shadow never acting, settings, Avro evolution."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path
from typing import Any

import pytest
from test_routing_fixtures import CC_HEADERS, claude_code_76kb, default_settings, request, user
from test_routing_patterns import FakeBandit

from streams.agents.records import decision_event
from streams.config import ConfigError
from streams.events.codec import EventCodec
from streams.routing.experiments import CANARY, CONTROL, ExperimentRouter, build_router, session_bucket
from streams.routing.router import Router

CHEAP = [{"name": "all", "pattern": "fixed", "models": ["deepseek-sim"]}]
STRONG = [{"name": "all", "pattern": "fixed", "models": ["claude-opus-sim"]}]


def _req(i: int) -> tuple[Any, dict[str, str]]:
    return request([user(f"task {i}: fix the failing test")]), {"x-session-id": f"session-{i}"}


def _experiment(canary: float = 0.0, shadow: bool = False, **kw: Any) -> ExperimentRouter:
    control = Router(default_settings(routes=STRONG, decision_cache_size=0))
    candidate = Router(default_settings(routes=CHEAP, decision_cache_size=0))
    return ExperimentRouter(control, candidate, canary, shadow, name="candidate-v2", **kw)


def test_session_bucket_is_stable_and_uniform() -> None:
    assert session_bucket("abc", "x") == session_bucket("abc", "x")
    assert session_bucket("abc", "x") != session_bucket("abc", "y")  # the salt reshuffles
    values = [session_bucket(f"s{i}", "salt") for i in range(20_000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert abs(sum(v < 0.25 for v in values) / len(values) - 0.25) < 0.015


def test_canary_serves_its_fraction_of_sessions_and_each_session_stays_in_its_arm() -> None:
    r = _experiment(canary=0.1)
    arm_of: dict[int, str] = {}
    for turn in range(3):
        for i in range(2000):
            req, headers = _req(i)
            d = r.decide(req, headers, requested_model="router/auto")
            assert d.experiment == "candidate-v2"
            # The variant says who decided: the candidate routes everything to the cheap model.
            assert d.model == ("deepseek-sim" if d.variant == CANARY else "claude-opus-sim")
            if turn == 0:
                arm_of[i] = d.variant
            else:
                assert d.variant == arm_of[i], f"session-{i} changed arm"
    share = sum(v == CANARY for v in arm_of.values()) / len(arm_of)
    assert abs(share - 0.1) < 0.025  # 3 sigma for n=2000 is 0.02


def test_zero_and_full_canary() -> None:
    none, full = _experiment(canary=0.0), _experiment(canary=1.0)
    for i in range(50):
        req, headers = _req(i)
        assert none.decide(req, headers, requested_model="router/auto").variant == CONTROL
        assert full.decide(req, headers, requested_model="router/auto").variant == CANARY


def test_shadow_never_changes_the_served_decision() -> None:
    plain = Router(default_settings(routes=STRONG, decision_cache_size=0))
    r = _experiment(shadow=True, shadow_inline=True)
    for i in range(200):
        req, headers = _req(i)
        want = plain.decide(req, headers, requested_model="router/auto")
        d = r.decide(req, headers, requested_model="router/auto")
        assert (d.model, d.provider, d.policy, d.route, d.fallbacks) == (
            want.model, want.provider, want.policy, want.route, want.fallbacks)
        assert d.variant == CONTROL and d.experiment == "candidate-v2"
        assert (d.shadow_model, d.shadow_policy) == ("deepseek-sim", "fixed")


def test_shadow_reuses_the_controls_features() -> None:
    r = _experiment(shadow=True, shadow_inline=True)
    assert r.candidate is not None

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, 0

        def extract(self, *a: Any, **k: Any) -> Any:
            self.calls += 1
            return self.inner.extract(*a, **k)

    counting = Counting(r.candidate.extractor.inner)  # type: ignore[attr-defined]
    r.candidate.extractor.inner = counting  # type: ignore[attr-defined]
    d = r.decide(claude_code_76kb(), CC_HEADERS, requested_model="router/auto")
    assert d.shadow_model == "deepseek-sim" and counting.calls == 0
    assert r._extraction is not None and r._extraction.last is None  # the request is not kept alive
    # A request the control did not just see is parsed by the candidate itself.
    r.candidate.decide(*_req(9), requested_model="router/auto")
    assert counting.calls == 1


async def test_shadow_runs_after_decide_returns_inside_an_event_loop() -> None:
    r = _experiment(shadow=True)
    req, headers = _req(1)
    d = r.decide(req, headers, requested_model="router/auto")
    assert d.model == "claude-opus-sim" and d.shadow_model is None  # not on the critical path
    await asyncio.sleep(0)
    assert d.shadow_model == "deepseek-sim" and d.model == "claude-opus-sim"


def test_a_failing_shadow_candidate_never_fails_the_request() -> None:
    r = _experiment(shadow=True, shadow_inline=True)

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("candidate bug")

    r.candidate.decide = boom  # type: ignore[union-attr, method-assign]
    req, headers = _req(3)
    d = r.decide(req, headers, requested_model="router/auto")
    assert d.model == "claude-opus-sim" and d.shadow_model is None and r.shadow_errors == 1


def test_a_failing_canary_candidate_falls_back_to_the_control() -> None:
    r = _experiment(canary=1.0)
    r.candidate.decide = lambda *a, **k: 1 / 0  # type: ignore[union-attr, method-assign]
    req, headers = _req(4)
    d = r.decide(req, headers, requested_model="router/auto")
    assert d.model == "claude-opus-sim" and d.variant == CONTROL


def test_explicit_models_are_not_shadowed() -> None:
    r = _experiment(shadow=True, shadow_inline=True)
    d = r.decide(request([user("hi")]), {}, requested_model="gpt-mini-sim")
    assert d.policy == "passthrough" and d.shadow_model is None


def test_outcomes_reach_the_router_that_served_the_session() -> None:
    r = _experiment(canary=0.5)
    seen: dict[str, str] = {}
    for i in range(40):
        req, headers = _req(i)
        seen[f"session-{i}"] = r.decide(req, headers, requested_model="router/auto").variant
    for sid, variant in seen.items():
        assert r.record_outcome(sid, False)
        owner = r.candidate if variant == CANARY else r.control
        other = r.control if variant == CANARY else r.candidate
        assert owner.sessions.get(sid).failures == 1  # type: ignore[union-attr]
        assert other.sessions.get(sid) is None  # type: ignore[union-attr]


def test_shadow_outcomes_update_the_candidates_session_but_never_teach_it() -> None:
    bandit = FakeBandit("deepseek-sim", 0.5, 0.99)
    bandit_routes = [{"name": "all", "pattern": "bandit"}]
    control = Router(default_settings(routes=bandit_routes, decision_cache_size=0), bandit=bandit)
    candidate = Router(default_settings(routes=bandit_routes, decision_cache_size=0, bandit={"sigma": 0.5}),
                       bandit=bandit)
    r = ExperimentRouter(control, candidate, 0.0, True, shadow_inline=True)
    req, headers = _req(5)
    d = r.decide(req, headers, requested_model="router/auto")
    assert r.record_outcome(d.session_id, True, cost_usd=0.01, learn=True)
    assert len(bandit.learned) == 1  # the control's decision only
    assert candidate.sessions.get(d.session_id).successes == 1  # type: ignore[union-attr]


def test_set_policy_reaches_a_candidate_sharing_the_learned_policy() -> None:
    bandit = FakeBandit()
    r = ExperimentRouter(Router(default_settings(), bandit=bandit), Router(default_settings(), bandit=bandit),
                         0.2, False)
    new = FakeBandit("gpt-mini-sim")
    r.set_policy(new, 9)
    assert r.control.bandit is new and r.candidate.bandit is new  # type: ignore[union-attr]
    assert r.candidate.policy_version == 9  # type: ignore[union-attr]
    assert r.is_auto("router/auto") and not r.is_auto("gpt-mini-sim")
    assert r.catalog is r.control.catalog  # the rest of the Router interface is the control's


def test_experiment_router_pickles_like_a_router() -> None:
    r = _experiment(canary=0.3, shadow=True, shadow_inline=True)
    r.decide(*_req(1), requested_model="router/auto")
    copy = pickle.loads(pickle.dumps(r))
    d = copy.decide(*_req(2), requested_model="router/auto")
    assert d.variant == r.variant("session-2") and d.experiment == "candidate-v2"
    assert copy.catalog.models.keys() == r.catalog.models.keys()


# --- build_router and settings ---------------------------------------------------------------------


def test_build_router_without_experiments_is_a_plain_router() -> None:
    assert type(build_router(default_settings())) is Router


def test_build_router_inline_canary() -> None:
    s = default_settings(canary={"fraction": 0.25, "name": "cheap-v2", "routes": CHEAP})
    r = build_router(s, FakeBandit())
    assert isinstance(r, ExperimentRouter)
    assert (r.canary_fraction, r.name, r.shadow) == (0.25, "cheap-v2", False)
    assert r.candidate is not None and r.candidate.routes[0].name == "all"
    assert r.candidate.bandit is r.control.bandit


def test_build_router_shadow_from_a_candidate_file(tmp_path: Path) -> None:
    path = tmp_path / "candidate.yaml"
    path.write_text(
        "routing:\n"
        "  routes:\n"
        "    - {name: all, pattern: fixed, models: [gpt-mini-sim]}\n"
        "  bandit: {alpha: 2.0}\n"
    )
    s = default_settings(routes=STRONG, shadow={"config": str(path), "name": "mini"})
    r = build_router(s, FakeBandit())
    assert isinstance(r, ExperimentRouter) and r.shadow and r.canary_fraction == 0.0
    assert r.candidate is not None and r.candidate.bandit is not r.control.bandit  # other reward weights
    req, headers = _req(7)
    d = r.decide(req, headers, requested_model="router/auto")
    # No event loop here: the shadow is computed inline.
    assert (d.model, d.shadow_model, d.shadow_policy) == ("claude-opus-sim", "gpt-mini-sim", "fixed")


def test_candidate_config_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_router(default_settings(canary={"fraction": 0.1, "config": str(tmp_path / "nope.yaml")}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - {name: x, pattern: fixed, models: [no-such-model]}\n")
    with pytest.raises(ConfigError, match="no-such-model"):
        build_router(default_settings(canary={"fraction": 0.1, "config": str(bad)}))
    with pytest.raises(ValueError, match="either config or inline"):
        default_settings(canary={"fraction": 0.1, "config": "x.yaml", "routes": CHEAP})
    with pytest.raises(ValueError):
        default_settings(canary={"fraction": 1.5, "routes": CHEAP})
    with pytest.raises(ConfigError, match="same candidate"):
        build_router(default_settings(canary={"fraction": 0.1, "routes": CHEAP, "name": "a"},
                                      shadow={"routes": STRONG, "name": "b"}))


def test_an_experiment_without_fraction_or_candidate_is_off() -> None:
    assert type(build_router(default_settings(canary={"routes": CHEAP}))) is Router
    assert type(build_router(default_settings(canary={"fraction": 0.5}))) is Router
    assert type(build_router(default_settings(shadow={"routes": CHEAP, "fraction": 0.0}))) is Router


# --- the Decision event ----------------------------------------------------------------------------


def test_old_decision_events_read_with_the_new_schema() -> None:
    codec = EventCodec()
    old = next(v for v in codec.by_fingerprint.values()
               if v.name == "Decision" and v.fingerprint != codec.current["Decision"].fingerprint)
    r = Router(default_settings(routes=STRONG))
    d = r.decide(*_req(1), requested_model="router/auto")
    event = decision_event(d, request_id="r1")
    old_event = {k: v for k, v in event.items() if k not in ("variant", "experiment", "shadow_model", "shadow_policy")}
    name, value = codec.decode(codec.encode_with(old, old_event))
    assert name == "Decision" and value["model"] == "claude-opus-sim"
    assert (value["variant"], value["experiment"], value["shadow_model"], value["shadow_policy"]) == (
        "control", "", None, None)


def test_new_decision_events_carry_variant_and_shadow() -> None:
    codec = EventCodec()
    r = _experiment(canary=0.0, shadow=True, shadow_inline=True)
    d = r.decide(*_req(2), requested_model="router/auto")
    event = {**decision_event(d), "variant": d.variant, "experiment": d.experiment,
             "shadow_model": d.shadow_model, "shadow_policy": d.shadow_policy}
    value = codec.decode_as("Decision", codec.encode("Decision", event))
    assert (value["variant"], value["experiment"], value["shadow_model"]) == ("control", "candidate-v2", "deepseek-sim")
