"""What the bandit believes about each arm before any outcome: from the model catalogue.

Cost comes from the price (or a measured cost per decision), success from the tier, and, per task
type, from the tier that task calls for (``routing.task_tiers``), so a fresh router does not spend
its first sessions trying the most expensive model, and puts planning on a frontier model and a
rename on a standard one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streams.routing.features import TASK_TYPES, TIER_RANK

if TYPE_CHECKING:
    from streams.config import ModelSettings

# Prior probability of success by tier, as Beta pseudo-counts (alpha, beta). Weak on purpose: the
# bandit must learn success; the prior only decides which arms are worth trying first.
TIER_PRIOR: dict[str, tuple[float, float]] = {
    "frontier": (3.0, 1.0),  # mean 0.75
    "strong": (2.6, 1.4),  # mean 0.65
    "standard": (2.2, 1.8),  # mean 0.55
    "cheap": (1.8, 2.2),  # mean 0.45
}
# A "typical" agent request, used to turn per-token prices into a per-decision cost prior.
REFERENCE_INPUT_TOKENS = 20_000
REFERENCE_OUTPUT_TOKENS = 1_000
# Task-type prior (see ``task_prior_success``): success of a model of the tier a task calls for,
# and what each tier below loses. Strong enough (``TASK_PRIOR_STRENGTH`` pseudo-observations) to
# hold the first sessions, weak enough that a few dozen outcomes of one task type move it.
TASK_PRIOR_OK = 0.8
TASK_PRIOR_DROP = 0.25
TASK_PRIOR_STRENGTH = 4.0


@dataclass(frozen=True, slots=True)
class ArmPrior:
    """What we believe about an arm before any outcome: success probability and cost per decision."""

    success: float = 0.5
    cost_usd: float = 0.0
    strength: float = 4.0  # pseudo-observations behind ``success`` (Beta alpha + beta)
    # Pseudo-observations behind ``cost_usd``. The price is known well up front, while agent-run
    # costs are heavy-tailed (one run can cost 10-20x the mean): one such run must not make an
    # arm look ten times dearer for the rest of the session.
    cost_strength: float = 10.0
    # Prior success per task type (the router's ``task=<type>`` context), from the tier each task
    # type calls for (``routing.task_tiers``): what the bandit believes before any outcome, so a
    # fresh router puts planning on a frontier model and a rename on a standard one.
    task_success: Mapping[str, float] = field(default_factory=dict)


def task_prior_success(task_tier: str, arm_tier: str) -> float:
    """Prior success of a model of ``arm_tier`` on a task that calls for ``task_tier``.

    At or above the called tier a model is believed enough (``TASK_PRIOR_OK``); each tier below
    loses ``TASK_PRIOR_DROP``. A stronger tier than called earns nothing in the prior: paying for it
    has to be learned.
    """
    gap = TIER_RANK.get(task_tier, 1) - TIER_RANK.get(arm_tier, 1)
    return max(0.05, TASK_PRIOR_OK - TASK_PRIOR_DROP * max(0, gap))


def priors_from_models(
    models: Iterable[ModelSettings],
    *,
    cost_per_decision: Mapping[str, float] | None = None,
    task_tiers: Mapping[str, str] | None = None,
) -> dict[str, ArmPrior]:
    """Priors from the model catalogue: cost from price (or a measured cost), success from tier.

    ``cost_per_decision`` overrides the price-derived cost, e.g. the mean cost per task of an
    outcome matrix, or the mean cost observed in production. ``task_tiers`` (task type -> the tier
    it calls for) adds a prior success per (task type, tier).
    """
    priors: dict[str, ArmPrior] = {}
    for m in models:
        alpha, beta = TIER_PRIOR.get(m.tier, TIER_PRIOR["standard"])
        if cost_per_decision is not None and m.name in cost_per_decision:
            cost = float(cost_per_decision[m.name])
        else:
            cost = m.cost_usd(REFERENCE_INPUT_TOKENS, REFERENCE_OUTPUT_TOKENS)
        tasks = {t: task_prior_success(tier, m.tier) for t, tier in (task_tiers or {}).items() if t in TASK_TYPES}
        priors[m.name] = ArmPrior(
            success=alpha / (alpha + beta),
            cost_usd=cost,
            strength=float(alpha + beta),
            task_success=tasks,
        )
    return priors
