"""The ceilings of a replay: fixed orders scored in hindsight, and the full-information learner."""

from __future__ import annotations

import numpy as np
import pytest

from streams.evaluation.datasets import OutcomeMatrix, Task
from streams.evaluation.replay import PaidOutcomes, run_replay, simulate
from streams.evaluation.replay.ceilings import best_within, order_outcome, static_orders


def _matrix() -> OutcomeMatrix:
    # 3 tasks x 3 models. cheap: ok, fail, fail; mid: fail, ok, fail; dear: ok, ok, ok.
    return OutcomeMatrix(
        "tiny",
        [Task("t0", "fix the parser"), Task("t1", "add a flag"), Task("t2", "rewrite the engine")],
        ["cheap", "mid", "dear"],
        success=np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]),
        cost=np.array([[0.1, 0.3, 2.0], [0.1, 0.3, 2.0], [0.1, 0.3, 2.0]]),
    )


class Cheapest:
    """Always the first arm offered; records what it learned."""

    def __init__(self) -> None:
        self.learned: list[tuple[str, float]] = []

    def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]:
        return arms[0], 1.0, 1.0

    def learn_outcome(self, context: dict[str, float], arm: str, success: float, cost_usd: float) -> None:
        self.learned.append((arm, success))


def test_a_fixed_order_pays_until_a_model_succeeds() -> None:
    m = _matrix()
    # cheap then mid: t0 solved by cheap (0.1), t1 by mid (0.4), t2 by none (0.4).
    assert order_outcome(m, (0, 1)) == (pytest.approx(2 / 3), pytest.approx(0.9 / 3))
    assert order_outcome(m, (2,)) == (pytest.approx(1.0), pytest.approx(2.0))


def test_the_frontier_keeps_only_orders_nothing_beats_and_the_budget_picks_one() -> None:
    frontier = static_orders(_matrix(), max_attempts=3)
    costs = [o.cost_per_task for o in frontier]
    rates = [o.success_rate for o in frontier]
    assert costs == sorted(costs) and rates == sorted(rates) and len(set(rates)) == len(rates)
    assert frontier[0].models == ("cheap",)
    assert frontier[-1].success_rate == pytest.approx(1.0)
    # within 0.3 a task: cheap > mid reaches 2/3; everything needs the dear model somewhere.
    within = best_within(frontier, 0.3)
    assert within is not None and within.models == ("cheap", "mid")
    assert best_within(frontier, 0.05) is None
    cheapest_full = min((o for o in frontier if o.success_rate == 1.0), key=lambda o: o.cost_per_task)
    assert cheapest_full.models == ("cheap", "mid", "dear")  # dear last: it is only paid for t2


def test_full_information_learns_every_model_but_pays_for_one() -> None:
    m = _matrix()
    paid, policy = PaidOutcomes(m), Cheapest()
    sessions = simulate(m, policy, paid, order=[0, 1, 2], max_attempts=1, full_information=True)
    assert [s.cost_usd for s in sessions] == pytest.approx([0.1, 0.1, 0.1])  # only the chosen cell costs
    assert len(paid.reads) == 3 and paid.peeks == 6
    assert policy.learned[:3] == [("cheap", 1.0), ("mid", 0.0), ("dear", 1.0)]


def test_the_report_carries_both_ceilings() -> None:
    report = run_replay(_matrix(), seeds=1, max_attempts=2, curve=False, ceilings=True)
    c = report.ceilings
    assert c is not None
    assert set(c) == {"full_information", "static_order_at_replay_cost", "static_order_at_best_cost"}
    best = c["static_order_at_best_cost"]
    assert best is not None and best["cost_per_task"] <= report.best_cost_per_task + 1e-12
    assert best["success_rate"] >= report.best_success_rate  # the best model alone is one of the orders
    assert 0.0 <= c["full_information"]["success_rate"] <= 1.0
