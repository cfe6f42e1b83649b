"""The contextual bandit's decisions: Thompson sampling (or UCB) over linear-Gaussian arm models.

The reward of a decision is ``U = alpha * success - beta * cost``, with the cost in USD or
(``cost_scale="relative"``) in units of the dearest arm's prior cost per decision; with a quality
target, the arm maximising a draw of ``p - price * cost`` instead (``streams.routing.quality``).

Thompson draws of the linear predictor ``x . w`` are scalar Gaussians per arm, so one decision is a
few small matrix-vector products plus ``draws x arms`` normal samples: well under 0.2 ms. The same
draws give the propensity of the chosen arm (fraction of draws it wins, for off-policy evaluation)
and a meaningful confidence (fraction of draws in which it is within ``margin`` of the best arm's
reward), which the caller compares with ``sigma``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from streams.routing.bandit.cascade import Cascade
from streams.routing.bandit.layout import ATTEMPT_KEY, CASCADE_END, RETRY_BUCKETS
from streams.routing.bandit.posteriors import Posteriors
from streams.routing.bandit.priors import priors_from_models
from streams.routing.bandit.snapshot import Snapshots
from streams.routing.quality import QualityCalibrator, pessimistic, reference_column

if TYPE_CHECKING:
    from streams.config import ModelSettings
    from streams.routing.settings import BanditSettings

# Per known arm (the state's order): posterior mean and std of success, expected cost.
AllEstimates = tuple[np.ndarray, np.ndarray, np.ndarray]


class ContextualBandit(Posteriors, Cascade, Snapshots):
    """Contextual Thompson sampling / UCB over arms with a linear-Gaussian success model per arm.

    River style: ``predict_one`` decides, ``learn_one`` updates. Plain object, picklable, seeded.
    """

    @classmethod
    def from_settings(
        cls,
        settings: BanditSettings,
        models: Iterable[ModelSettings],
        *,
        cost_per_decision: Mapping[str, float] | None = None,
        task_tiers: Mapping[str, str] | None = None,
        reference_arm: str | None = None,
        **kwargs: Any,
    ) -> ContextualBandit:
        """The bandit a router runs: priors from the catalogue (and task tiers), knobs from settings.

        The gateway, the workers, the replay and the off-policy evaluator all build it here.
        """
        models = list(models)
        priors = priors_from_models(models, cost_per_decision=cost_per_decision, task_tiers=task_tiers)
        params: dict[str, Any] = {
            "alpha": settings.alpha,
            "beta": settings.beta,
            "exploration": settings.exploration,
            "explore_scale": settings.explore_scale,
            "cost_scale": settings.cost_scale,
            "seed": settings.seed,
            "quality_target": settings.quality_target,
            "half_life": settings.half_life,
            "reference_arm": reference_arm,
        }
        params.update(kwargs)
        return cls([m.name for m in models], priors=priors, **params)

    # ---- estimates --------------------------------------------------------------------------

    def _all_estimates(self, context: Mapping[str, float]) -> AllEstimates:
        """Every known arm's posterior mean and std of success and its expected cost, in context."""
        x = self._vector(context)
        # Score every known arm, then select: cheaper than copying the covariances of a subset.
        cx = self._cov @ x  # (arms, d): Cov_a x, for the variance and the shared prior term
        # Posterior mean with prior mean m = (prior success, shared weights): Cov_a (b_a + A0 m).
        # Only the cascade weights are shared: "a retry succeeds less" holds for every arm, while a
        # content feature that one arm fails on says nothing about the others.
        p_mean = self._mu @ x + (cx[:, 1:CASCADE_END] @ self._smu[1:CASCADE_END]) / self.context_prior_var
        p_std = np.sqrt(np.maximum(cx @ x, 0.0))
        attempt = int(context.get(ATTEMPT_KEY, 0) or 0)
        if attempt >= 2:
            # Retries: the count model (see ``_retry_estimates``). It reads only the attempt
            # number: context effects learned mostly on first attempts, added to the small success
            # rates of retries, moved decisions more by noise than by signal in replays.
            p_mean, p_std = self._retry_estimates(min(attempt, RETRY_BUCKETS))
        cost = self._cost_sum / self._cost_n * self._cost_factor(context)
        return p_mean, p_std, cost

    def estimates(self, context: Mapping[str, float], arms: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per arm: posterior mean and std of the success probability, and the expected cost."""
        idx = self._arm_indices(arms)
        p_mean, p_std, cost = self._all_estimates(context)
        return p_mean[idx], p_std[idx], cost[idx]

    def expected_rewards(self, context: Mapping[str, float], arms: list[str]) -> np.ndarray:
        """Posterior mean of ``U`` per arm (success clipped to [0, 1])."""
        p_mean, _, cost = self.estimates(context, arms)
        return self.alpha * np.clip(p_mean, 0.0, 1.0) - self.beta * cost / self.cost_unit()

    # ---- decide -----------------------------------------------------------------------------

    def should_escalate(self, context: Mapping[str, float], arms: list[str]) -> bool:
        """After a failed attempt: is another one worth paying for? (Some arm's expected ``U > 0``.)

        The stop rule of the search: an attempt whose expected success is worth less than what it
        costs loses reward whatever comes after it, since later attempts only get harder.
        """
        if not arms:
            return False
        idx = self._arm_indices(arms)
        p_mean, p_std, cost = (v[idx] for v in self._all_estimates(context))
        attempt = int(context.get(ATTEMPT_KEY, 0) or 0)
        if attempt >= 2:
            p_mean, p_std = (v[idx] for v in self._retry_estimates(min(attempt, RETRY_BUCKETS), wide_std=True))
        # A full posterior draw (Thompson on the stop decision itself), with the cell's own Beta
        # width: once it stops it learns nothing more about escalating, so a stop rule on the mean
        # (or on the pooled, narrower draw) locks in after a few unlucky retries.
        p = np.clip(p_mean + p_std * self._rng.standard_normal(len(arms)), 0.0, 1.0)
        return bool(np.max(self.alpha * p - self.beta * cost / self.cost_unit()) > 0.0)

    def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]:
        """Pick an arm: (arm, propensity of that arm under the exploration policy, confidence)."""
        if not arms:
            raise ValueError("predict_one needs at least one arm")
        if len(arms) == 1:
            return arms[0], 1.0, 1.0
        idx = self._arm_indices(arms)
        every = self._all_estimates(context)
        p_mean, p_std, cost = (v[idx] for v in every)
        cost_term = self.beta * cost / self.cost_unit()
        z = self._rng.standard_normal((self.draws, len(arms)))
        # Draws of success are clipped to [0, 1]: an arm whose cost exceeds what a certain success
        # is worth can never win a draw, so it is never explored for nothing.
        retry = int(context.get(ATTEMPT_KEY, 0) or 0) >= 2
        if self.quality_target is not None and not retry:
            return self._predict_quality(arms, idx, every, p_mean, p_std, cost)
        scale = self.retry_explore_scale if retry else self.explore_scale
        explore = self._score(context, np.clip(p_mean + scale * p_std * z, 0.0, 1.0), cost_term)
        best_per_draw = explore.argmax(axis=1)
        if self.exploration == "ucb":
            optimistic = np.minimum(p_mean + self.ucb_c * p_std, 1.0)[None, :]
            k = int(np.argmax(self._score(context, optimistic, cost_term)[0]))
            propensity = 1.0  # deterministic given the state
        else:
            k = int(best_per_draw[0])
            # Monte Carlo estimate of P(arm k wins); draw 0 chose it, so it is at least 1/draws.
            propensity = float(np.count_nonzero(best_per_draw == k)) / self.draws
        # Confidence: posterior probability (unscaled draws) that k is within margin of the best.
        post = self.alpha * np.clip(p_mean + p_std * z, 0.0, 1.0) - cost_term
        confidence = float(np.mean(post[:, k] >= post.max(axis=1) - self.margin))
        return arms[k], propensity, confidence

    def _predict_quality(
        self,
        arms: list[str],
        idx: np.ndarray,
        every: AllEstimates,
        p_mean: np.ndarray,
        p_std: np.ndarray,
        cost: np.ndarray,
    ) -> tuple[str, float, float]:
        """Quality-target decision (see ``streams.routing.quality``): the arm maximising a Thompson
        draw of ``p - price * cost``, with the price calibrated on the recent traffic.

        ``idx`` places ``arms`` among every known arm; ``every`` holds every arm's estimates (the
        calibrator records all of them), ``p_mean``, ``p_std`` and ``cost`` those of ``arms``.
        """
        assert self.quality_target is not None
        if self._quality is None:
            self._quality = QualityCalibrator(seed=self.seed)
        self._quality.observe(every[0], every[1])
        c = cost / self.cost_unit()
        ref = reference_column(arms, self.reference_arm, self._b0[idx, 0] / self._A0[idx, 0, 0])
        price = self._quality.price(idx, c, ref, self.quality_target, self.explore_scale)
        z = self._rng.standard_normal((self.draws, len(arms)))
        credit = pessimistic(p_mean, p_std, ref)
        explore = np.clip(credit + self.explore_scale * p_std * z, 0.0, 1.0) - price * c
        best_per_draw = explore.argmax(axis=1)
        k = int(best_per_draw[0])
        propensity = float(np.count_nonzero(best_per_draw == k)) / self.draws
        # Confidence: posterior probability (unscaled draws) that the pick keeps the target share
        # of the reference arm's success: what sigma guards when the pick leaves the task's prior.
        post = np.clip(p_mean + p_std * z, 0.0, 1.0)
        confidence = float(np.mean(post[:, k] >= self.quality_target * post[:, ref] - self.margin))
        return arms[k], propensity, confidence

    # ---- serving-side state -----------------------------------------------------------------

    def keep_decision_state(self, previous: object) -> None:
        """Carry the serving process's own state (the quality calibrator's recent traffic) over from
        the policy this one replaces: a hot swap changes the evidence, not the traffic served."""
        quality = getattr(previous, "_quality", None)
        if isinstance(quality, QualityCalibrator) and self._quality is None:
            self._quality = quality

    def quality_price(self) -> float | None:
        """The current Lagrange price of cost (success per cost unit), once a target decision ran."""
        return None if self._quality is None else self._quality.last_price
