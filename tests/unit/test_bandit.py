"""The learned policy: decisions, learning, snapshot/restore, exact merge, priors, speed."""

from __future__ import annotations

import io
import pickle
import random

import numpy as np
import pytest

from streams.config import ModelSettings
from streams.routing.bandit import ArmPrior, ContextualBandit, priors_from_models
from streams.routing.features import Features

ARMS = ["cheap", "strong"]
PRIORS = {"cheap": ArmPrior(0.5, 0.01), "strong": ArmPrior(0.5, 0.10)}


def _outcomes(n: int, seed: int) -> list[tuple[dict[str, float], str, float, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ctx = {"tokens": rng.randint(10, 10_000), "lang=py": float(rng.random() < 0.5), "attempt": 1.0}
        arm = rng.choice(ARMS)
        out.append((ctx, arm, float(rng.random() < 0.6), rng.random() * 0.1))
    return out


def test_predict_returns_arm_propensity_confidence() -> None:
    b = ContextualBandit(ARMS, priors=PRIORS, seed=1)
    arm, propensity, confidence = b.predict_one({"x": 1.0}, ARMS)
    assert arm in ARMS
    assert 0.0 < propensity <= 1.0
    assert 0.0 <= confidence <= 1.0
    assert b.predict_one({"x": 1.0}, ["strong"]) == ("strong", 1.0, 1.0)


def test_version_increments_on_learn() -> None:
    b = ContextualBandit(ARMS, seed=1)
    b.learn_one({"x": 1.0}, "cheap", 0.9)
    b.learn_outcome({"x": 1.0}, "strong", 1.0, 0.05)
    assert b.version == 2


def test_learns_context_dependent_routing() -> None:
    """Cheap arm succeeds on 'easy' and fails on 'hard': traffic shifts accordingly."""
    priors = {"cheap": ArmPrior(0.5, 0.01), "strong": ArmPrior(0.5, 0.3)}
    b = ContextualBandit(ARMS, priors=priors, beta=1.0, seed=3)
    rng = random.Random(0)
    for _ in range(600):
        kind = rng.choice(["easy", "hard"])
        ctx = {f"kind={kind}": 1.0}
        arm, _, _ = b.predict_one(ctx, ARMS)
        ok = 1.0 if arm == "strong" else float(kind == "easy" and rng.random() < 0.95)
        b.learn_outcome(ctx, arm, ok, priors[arm].cost_usd)
    easy = [b.predict_one({"kind=easy": 1.0}, ARMS)[0] for _ in range(200)]
    hard = [b.predict_one({"kind=hard": 1.0}, ARMS)[0] for _ in range(200)]
    assert easy.count("cheap") > 170
    assert hard.count("strong") > 170
    # and it is confident about the easy case once learned
    assert b.predict_one({"kind=easy": 1.0}, ARMS)[2] > 0.9


def test_moves_away_on_drift() -> None:
    b = ContextualBandit(ARMS, priors=PRIORS, seed=5)
    ctx = {"k": 1.0}
    for _ in range(150):  # cheap is great
        b.learn_outcome(ctx, "cheap", 1.0, 0.01)
        b.learn_outcome(ctx, "strong", 1.0, 0.10)
    assert [b.predict_one(ctx, ARMS)[0] for _ in range(50)].count("cheap") > 45
    for _ in range(400):  # cheap breaks (new version of the model, say)
        arm, _, _ = b.predict_one(ctx, ARMS)
        b.learn_outcome(ctx, arm, 0.0 if arm == "cheap" else 1.0, PRIORS[arm].cost_usd)
    assert [b.predict_one(ctx, ARMS)[0] for _ in range(50)].count("strong") > 45


def test_snapshot_restore_decides_identically() -> None:
    b = ContextualBandit(ARMS, priors=PRIORS, seed=7)
    for ctx, arm, s, c in _outcomes(100, 1):
        b.learn_outcome(ctx, arm, s, c)
    r = ContextualBandit.restore(b.snapshot())
    assert r.version == b.version
    probe = [c for c, *_ in _outcomes(50, 2)]
    assert [b.predict_one(c, ARMS) for c in probe] == [r.predict_one(c, ARMS) for c in probe]
    p = pickle.loads(pickle.dumps(b))
    assert [b.predict_one(c, ARMS) for c in probe] == [p.predict_one(c, ARMS) for c in probe]


@pytest.mark.parametrize("exploration", ["thompson", "ucb"])
def test_merge_equals_single_learner(exploration: str) -> None:
    data = _outcomes(200, 3)
    whole = ContextualBandit(ARMS, priors=PRIORS, exploration=exploration, seed=11)  # type: ignore[arg-type]
    left = ContextualBandit(ARMS, priors=PRIORS, exploration=exploration, seed=11)  # type: ignore[arg-type]
    right = ContextualBandit(ARMS, priors=PRIORS, exploration=exploration, seed=99)  # type: ignore[arg-type]
    for i, (ctx, arm, s, c) in enumerate(data):
        whole.learn_outcome(ctx, arm, s, c)
        (left if i % 2 else right).learn_outcome(ctx, arm, s, c)
    left.merge(right)
    assert left.version == whole.version
    np.testing.assert_allclose(left._A, whole._A, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(left._b, whole._b, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(left._att, whole._att, rtol=1e-12)
    probe = [c for c, *_ in _outcomes(30, 4)]
    for c in probe:
        m1, s1, c1 = left.estimates(c, ARMS)
        m2, s2, c2 = whole.estimates(c, ARMS)
        np.testing.assert_allclose(m1, m2, atol=1e-9)
        np.testing.assert_allclose(s1, s2, atol=1e-9)
        np.testing.assert_allclose(c1, c2, atol=1e-12)


def test_merge_from_common_base_does_not_double_count() -> None:
    data = _outcomes(120, 5)
    base = ContextualBandit(ARMS, priors=PRIORS, seed=1)
    for ctx, arm, s, c in data[:40]:
        base.learn_outcome(ctx, arm, s, c)
    whole = ContextualBandit.restore(base.snapshot())
    w1, w2 = ContextualBandit.restore(base.snapshot()), ContextualBandit.restore(base.snapshot())
    for i, (ctx, arm, s, c) in enumerate(data[40:]):
        whole.learn_outcome(ctx, arm, s, c)
        (w1 if i % 2 else w2).learn_outcome(ctx, arm, s, c)
    w1.merge(w2, base=base)
    assert w1.version == whole.version == 120
    np.testing.assert_allclose(w1._A, whole._A, atol=1e-9)
    np.testing.assert_allclose(w1._cost_sum, whole._cost_sum, atol=1e-12)


def test_priors_from_catalogue_prefer_cheap_until_evidence() -> None:
    models = [
        ModelSettings(name="opus", provider="p", price_in=15, price_out=75, tier="frontier"),
        ModelSettings(name="mini", provider="p", price_in=0.25, price_out=2, tier="cheap"),
    ]
    priors = priors_from_models(models)
    assert priors["opus"].success > priors["mini"].success
    assert priors["opus"].cost_usd > 10 * priors["mini"].cost_usd
    b = ContextualBandit(["opus", "mini"], priors=priors, beta=1.0, seed=0)
    picks = [b.predict_one({}, ["opus", "mini"])[0] for _ in range(100)]
    assert picks.count("mini") > 60


def test_propensity_matches_choice_frequency() -> None:
    b = ContextualBandit(
        ARMS, priors={"cheap": ArmPrior(0.5, 0.0), "strong": ArmPrior(0.5, 0.0)}, explore_scale=1.0, draws=400, seed=2
    )
    picks = [b.predict_one({}, ARMS) for _ in range(2000)]
    freq = sum(1 for a, _, _ in picks if a == "cheap") / len(picks)
    mean_prop = np.mean([p for a, p, _ in picks if a == "cheap"])
    assert abs(freq - 0.5) < 0.05
    assert abs(mean_prop - 0.5) < 0.05


def test_accepts_router_feature_vector_with_cascade_keys() -> None:
    # The router passes Features.vector() plus the cascade's attempt counters; its constant "bias"
    # must not take a context slot (the model has its own intercept).
    b = ContextualBandit(ARMS, seed=3)
    ctx = {**Features().vector(), "attempt": 1.0, "attempts_left": 2.0}
    arm, propensity, confidence = b.predict_one(ctx, ARMS)
    assert arm in ARMS and 0 < propensity <= 1 and 0 <= confidence <= 1
    b.learn_outcome(ctx, arm, 1.0, 0.01)
    without_bias = {k: v for k, v in ctx.items() if k != "bias"}
    assert np.allclose(b.estimates(ctx, ARMS)[0], b.estimates(without_bias, ARMS)[0])


def _cascade_bandit(scale: float, seed: int = 0) -> ContextualBandit:
    arms = [f"m{i}" for i in range(5)]
    priors = {a: ArmPrior(0.5, scale * (i + 1)) for i, a in enumerate(arms)}
    return ContextualBandit(arms, priors=priors, beta=0.8, cost_scale="relative", seed=seed)


def test_relative_cost_scale_is_price_scale_free() -> None:
    # The same catalogue priced in cents or in dollars decides identically: beta weighs cost in
    # units of the dearest arm's price, not in USD.
    cheap, dear = _cascade_bandit(1e-4), _cascade_bandit(1.0)
    rng = random.Random(0)
    for _ in range(200):
        attempt = rng.randint(1, 3)
        ctx = {"x": rng.random(), "attempt": float(attempt), "attempts_left": float(3 - attempt)}
        a1, a2 = cheap.predict_one(ctx, cheap.arms)[0], dear.predict_one(ctx, dear.arms)[0]
        assert a1 == a2
        ok = float(rng.random() < 0.5)
        cost = (dear.arms.index(a2) + 1) * rng.uniform(0.5, 1.5)
        cheap.learn_outcome(ctx, a1, ok, cost * 1e-4)
        dear.learn_outcome(ctx, a2, ok, cost)


def test_stop_rule_learns_when_retries_pay() -> None:
    # After a failure, escalate only while some arm's success is worth its cost; learned per attempt.
    def trained(retry_success: float) -> ContextualBandit:
        b = _cascade_bandit(1.0, seed=1)
        rng = random.Random(2)
        for _ in range(300):
            b.learn_outcome({"attempt": 1.0, "attempts_left": 2.0}, "m0", float(rng.random() < 0.5), 1.0)
            arm = rng.choice(b.arms[1:])
            b.learn_outcome({"attempt": 2.0, "attempts_left": 1.0}, arm, float(rng.random() < retry_success), 2.0)
        return b

    ctx = {"attempt": 2.0, "attempts_left": 1.0}
    hopeless, paying = trained(0.02), trained(0.95)
    assert sum(hopeless.should_escalate(ctx, hopeless.arms[1:]) for _ in range(200)) < 20
    assert sum(paying.should_escalate(ctx, paying.arms[1:]) for _ in range(200)) > 180
    # with attempts left, the order is by success per unit cost: the cheapest of equal arms first
    assert [paying.predict_one({"attempt": 2.0, "attempts_left": 1.0}, paying.arms[1:])[0] for _ in range(50)].count(
        "m1"
    ) > 40


def test_retry_counts_merge_and_snapshot() -> None:
    whole, left, right = (_cascade_bandit(1.0, seed=s) for s in (1, 1, 2))
    rng = random.Random(3)
    for i in range(200):
        k = rng.randint(1, 4)
        ctx = {"attempt": float(k), "attempts_left": float(4 - k)}
        arm, ok, cost = rng.choice(whole.arms), float(rng.random() < 0.3), rng.random()
        whole.learn_outcome(ctx, arm, ok, cost)
        (left if i % 2 else right).learn_outcome(ctx, arm, ok, cost)
    left.merge(right)
    np.testing.assert_allclose(left._cell, whole._cell)
    probe = {"attempt": 3.0, "attempts_left": 1.0}
    np.testing.assert_allclose(left.estimates(probe, whole.arms)[0], whole.estimates(probe, whole.arms)[0])
    r = ContextualBandit.restore(whole.snapshot())
    assert r.cost_scale == "relative"
    assert [r.predict_one(probe, r.arms) for _ in range(20)] == [
        whole.predict_one(probe, whole.arms) for _ in range(20)
    ]


def test_learn_many_is_bit_identical_to_sequential_learn_outcome() -> None:
    rng = random.Random(11)
    records: list[tuple[dict[str, float], str, float, float]] = []
    for i in range(300):
        ctx: dict[str, float] = {"bias": 1.0, f"tok{i % 7}": float(rng.randint(0, 5000)), "task=debugging": 1.0}
        if i % 3 == 0:
            ctx |= {"attempt": float(rng.randint(1, 5)), "attempts_left": float(rng.randint(0, 3))}
        # "new-arm" is not in the catalogue: both paths must add it at the same point.
        arm = "new-arm" if i == 150 else rng.choice(["a", "b", "c"])
        records.append((ctx, arm, float(rng.random() < 0.6), rng.random() / 100))
    priors = {"a": ArmPrior(0.7, 0.01), "b": ArmPrior(0.5, 0.002), "c": ArmPrior(0.4, 0.0005)}
    sequential = ContextualBandit(["a", "b", "c"], priors=priors, seed=5)
    batched = ContextualBandit(["a", "b", "c"], priors=priors, seed=5)
    for ctx, arm, ok, cost in records:
        sequential.learn_outcome(ctx, arm, ok, cost)
    assert batched.learn_many(records[:1]) == 1
    assert batched.learn_many(records[1:137]) == 136
    assert batched.learn_many([]) == 0
    batched.learn_many(records[137:])
    # Compare what the snapshots hold, byte for byte (the zip container stamps the wall time).
    with np.load(io.BytesIO(batched.snapshot())) as got, np.load(io.BytesIO(sequential.snapshot())) as want:
        assert got.files == want.files
        for name in want.files:
            assert got[name].tobytes() == want[name].tobytes(), name
    probe = {"bias": 1.0, "tok3": 40.0, "attempt": 2.0, "attempts_left": 1.0}
    assert [batched.predict_one(probe, batched.arms) for _ in range(10)] == [
        sequential.predict_one(probe, sequential.arms) for _ in range(10)
    ]
