"""What a router would know of an outcome matrix's models before serving anything, and its bandit.

Each model's price is its mean cost per task in the matrix and its tier comes from its price rank;
success is only learned.
"""

from __future__ import annotations

from streams.config import ModelSettings, Tier
from streams.evaluation.datasets import OutcomeMatrix
from streams.routing.bandit import ContextualBandit
from streams.routing.settings import BanditSettings

TIERS_BY_PRICE: tuple[Tier, ...] = ("cheap", "standard", "strong", "frontier")


def catalogue(matrix: OutcomeMatrix) -> list[ModelSettings]:
    """Models as a router would configure them: tier from price rank (quartiles), nothing learned."""
    prices = matrix.mean_cost()
    ranked = sorted(matrix.models, key=lambda m: prices[m])
    n = len(ranked)
    tier_of = {m: TIERS_BY_PRICE[min(3, (4 * r) // n)] if n > 1 else "standard" for r, m in enumerate(ranked)}
    if n > 1:
        tier_of[ranked[-1]] = "frontier"
    return [ModelSettings(name=m, provider="replay", tier=tier_of[m]) for m in matrix.models]


def make_bandit(
    matrix: OutcomeMatrix, settings: BanditSettings, *, beta: float, seed: int, quality_target: float | None = None
) -> ContextualBandit:
    """The production bandit (``ContextualBandit.from_settings``) on the matrix's catalogue: the
    frontier default is the dearest model, as a router configured with these prices would have it.
    ``quality_target`` overrides the settings' (a point of the target sweep)."""
    models = catalogue(matrix)
    prices = matrix.mean_cost()
    frontier = max(models, key=lambda m: prices[m.name]).name
    own = settings.model_copy(update={"beta": beta, "seed": seed,
                                      "quality_target": quality_target or settings.quality_target})
    return ContextualBandit.from_settings(own, models, cost_per_decision=prices, reference_arm=frontier)
