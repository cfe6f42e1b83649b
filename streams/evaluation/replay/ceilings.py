"""How far any router could get on an outcome matrix: the ceilings a replay's figures sit under.

An online router pays for one model's outcome per attempt and knows a task only by its context. Two
ceilings separate what it loses to each of those:

- **Full information**: the same learner, fed every model's outcome at every attempt (unpaid: only
  the chosen model's cost counts). The gap from the replay is the price of bandit feedback; what is
  left to the oracle is what the context cannot tell, to this learner.
- **Static order in hindsight**: the best fixed order of up to ``max_attempts`` models (the same
  order for every task, chosen knowing every outcome) within a cost budget. A router that learns
  per context can beat it; one that cannot tell tasks apart cannot, however long it learns.

Neither is a router: both read the whole matrix. They say whether a target on a data set is within
reach of the information a router has.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from streams.evaluation.datasets import OutcomeMatrix
from streams.evaluation.replay.simulation import PASS_THRESHOLD

# Orders of three or more attempts are searched among this many cheapest models (24 models make
# 12k orders of three; the dearest models are never worth a place in a budget-bound order anyway).
ORDER_POOL = 12


@dataclass(frozen=True, slots=True)
class StaticOrder:
    """A fixed order of models tried on every task until one succeeds, scored in hindsight."""

    models: tuple[str, ...]
    success_rate: float
    cost_per_task: float


def order_outcome(matrix: OutcomeMatrix, order: tuple[int, ...]) -> tuple[float, float]:
    """Success rate and mean cost of trying ``order`` (model indices) on every task, in turn."""
    solved = np.zeros(matrix.n_tasks, dtype=bool)
    cost = np.zeros(matrix.n_tasks)
    for j in order:
        cost[~solved] += matrix.cost[~solved, j]
        solved |= matrix.success[:, j] >= PASS_THRESHOLD
    # A graded single attempt keeps its score (as a replay scores it); a cascade counts solved tasks.
    success = matrix.success[:, order[0]] if len(order) == 1 else solved.astype(float)
    return float(success.mean()), float(cost.mean())


def static_orders(matrix: OutcomeMatrix, max_attempts: int) -> list[StaticOrder]:
    """The cost-success frontier of fixed orders of up to ``max_attempts`` models, cheapest first.

    Single models and pairs range over every model; longer orders over the ``ORDER_POOL``
    cheapest. Only orders no other order beats on both success and cost are kept.
    """
    n = len(matrix.models)
    pool = [int(j) for j in np.argsort(matrix.cost.mean(axis=0))[:ORDER_POOL]]
    scored: list[StaticOrder] = []
    for length in range(1, max(1, max_attempts) + 1):
        source = range(n) if length <= 2 else pool
        for order in itertools.permutations(source, length):
            s, c = order_outcome(matrix, order)
            scored.append(StaticOrder(tuple(matrix.models[j] for j in order), s, c))
    scored.sort(key=lambda o: (o.cost_per_task, -o.success_rate))
    frontier: list[StaticOrder] = []
    for o in scored:
        if not frontier or o.success_rate > frontier[-1].success_rate:
            frontier.append(o)
    return frontier


def best_within(frontier: list[StaticOrder], budget: float) -> StaticOrder | None:
    """The most successful order costing at most ``budget`` per task (None if none is that cheap)."""
    limit = budget * (1.0 + 1e-9)  # the budget is often one model's own mean cost, summed another way
    fits = [o for o in frontier if o.cost_per_task <= limit]
    return max(fits, key=lambda o: o.success_rate) if fits else None


__all__ = ["ORDER_POOL", "StaticOrder", "best_within", "order_outcome", "static_orders"]
