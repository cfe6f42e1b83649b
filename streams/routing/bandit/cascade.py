"""Cascades: scoring retries, and ordering the attempts of a search over models.

Context keys ``attempt`` / ``attempts_left`` (see ``layout``) say where a decision sits in a
session's attempts. A retry's success is scored by a count model per (arm, attempt) pooled across
arms (``_retry_estimates``); with attempts left, arms are ordered by success per unit cost
(Weitzman's index) among those worth trying (``_score``), and ``ContextualBandit.should_escalate``
is the stop rule (no arm with ``U > 0``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streams.routing.bandit.base import BanditState
from streams.routing.bandit.layout import ATTEMPT_KEY, ATTEMPTS_LEFT_KEY, MAX_ATTEMPT_SLOTS, RETRY_BUCKETS

# Pseudo-counts of the retry model: the per-attempt success factor's prior, and how far one arm's
# success at one attempt may stray from "arm strength x attempt factor" before its own counts take over.
RETRY_FACTOR_STRENGTH = 4.0
CELL_STRENGTH = 2.0
# Prior of the retry success factor: each further attempt succeeds this share of the first
# attempt's rate less (a retry lands on a task that already beat a model), floored at 10%.
RETRY_FACTOR_STEP = 0.3
# Pseudo-observations (average decisions) shrinking the learned cost-per-attempt factor to 1.
COST_FACTOR_STRENGTH = 10.0


class Cascade(BanditState):
    """Retry estimates, the cost of an attempt by position, and the value of the attempts left."""

    def _retry_estimates(self, k: int, *, wide_std: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Success of every arm at attempt ``k >= 2``: mean and std, never outside [0, 1].

        A retry lands on a task that already beat some models, so success there is a different
        quantity from first-attempt success, and the linear model (additive, unbounded) scores it
        badly: a cheap arm that failed a few retries goes below 0 while an untried dear one keeps
        its catalogue optimism. Here success at attempt k is ``strength(arm) x factor(k)``, both
        fitted from all arms' counts (Poisson-style ratio estimates, shrunk to the tier prior and to
        a prior factor), and each (arm, k) cell is a Beta whose prior mean is that product: an
        untried arm inherits what the others taught about attempt k, a tried one its own record.
        """
        key = (self.version, len(self.arms))
        if self._retry_cache is None or self._retry_cache[:2] != key:
            n, succ = self._cell[:, :, 0], self._cell[:, :, 1]
            prior = self._b0[:, 0] / np.maximum(self._A0[:, 0, 0], 1e-12)  # the tier prior mean
            strength = self._A0[:, 0, 0] * self.noise  # its pseudo-observations
            buckets = np.arange(RETRY_BUCKETS + 1)
            f0 = np.clip(1.0 - RETRY_FACTOR_STEP * (buckets - 1), 0.1, 1.0)  # prior factor per attempt
            f0[0] = 1.0
            f = f0.copy()
            a = prior.copy()
            for _ in range(3):  # alternate the two ratio estimates; converges in a few rounds
                a = np.clip((succ.sum(axis=1) + strength * prior) / (n @ f + strength), 1e-3, 1.0)
                f = (succ.sum(axis=0) + RETRY_FACTOR_STRENGTH * f0) / (a @ n + RETRY_FACTOR_STRENGTH)
                f[:2] = 1.0  # attempt 1 (and "unknown") is the reference
            mean0 = np.clip(a[:, None] * f[None, :], 1e-3, 1.0 - 1e-3)
            post_n = n + CELL_STRENGTH
            mean = (succ + CELL_STRENGTH * mean0) / post_n
            # Uncertainty: of the prior mean (the arm's strength, known from all its outcomes, times
            # the attempt factor), weighted by how much the cell still leans on it, plus the
            # cell's own sampling noise. An untried dear arm is thus as uncertain as its strength,
            # not as a blank Beta(1, 1), and is not explored at retries on a hunch.
            evidence = n @ f + strength
            var0 = (f[None, :] ** 2) * (a * (1.0 - a) / (evidence + 1.0))[:, None]
            w = CELL_STRENGTH / post_n
            std = np.sqrt(w**2 * var0 + (1.0 - w) * mean * (1.0 - mean) / (post_n + 1.0))
            # The cell's plain Beta std, blind to the pooling: for the stop rule (see there).
            wide = np.sqrt(mean * (1.0 - mean) / (post_n + 1.0))
            self._retry_cache = (key[0], key[1], mean, std, wide)
        _, _, mean, std, wide = self._retry_cache
        return mean[:, k], (wide if wide_std else std)[:, k]

    def _cost_factor(self, context: Mapping[str, float]) -> float:
        """How much more (or less) attempts at this position cost than an arm's average.

        Retries land on harder tasks, which take longer runs; learned across arms relative to the
        catalogue prices, shrunk to 1 by one pseudo-observation.
        """
        k = int(context.get(ATTEMPT_KEY, 0) or 0)
        if not 0 < k <= MAX_ATTEMPT_SLOTS or not self.arms:
            return 1.0
        # Shrunk to 1 by COST_FACTOR_STRENGTH average decisions: agent-run costs are heavy-tailed
        # (one run can cost 20x the price), and one such run must not price a whole attempt out.
        ref = COST_FACTOR_STRENGTH * float(np.mean(self._cost_sum0 / self._cost_n0)) or 1e-12
        total = self._att.sum(axis=0)
        r_all = (total[2] + ref) / (total[3] + ref)
        r_k = (self._att[k, 2] + ref) / (self._att[k, 3] + ref)
        return float(r_k / r_all)

    def continuation_value(self, context: Mapping[str, float]) -> float:
        """Expected reward of the rest of the cascade if this attempt fails (0 without attempts left)."""
        if not self.cascade:
            return 0.0
        k = int(context.get(ATTEMPT_KEY, 0) or 0)
        left = int(context.get(ATTEMPTS_LEFT_KEY, 0) or 0)
        if k <= 0 or left <= 0:
            return 0.0
        value = 0.0
        # Backwards over the remaining attempts: V_j = max(0, U_j + P(fail at j) * V_{j+1}).
        for j in range(min(k + left, MAX_ATTEMPT_SLOTS), k, -1):
            n, s_sum, c_sum, _ = self._att[j]
            if n <= 0:
                value = 0.0
                continue
            p, c = s_sum / n, c_sum / n / self.cost_unit()
            value = max(0.0, self.alpha * p - self.beta * c + (1.0 - p) * value)
        return min(value, self.alpha)

    def _score(self, context: Mapping[str, float], p: np.ndarray, cost_term: np.ndarray) -> np.ndarray:
        """What the decision maximises, per draw (rows) and arm (columns).

        Last (or only) attempt: the reward ``U = alpha * p - beta * cost``. With attempts left, a
        failure is not the end, and the order that maximises the search's expected reward is by
        success per unit cost ``alpha * p / (beta * cost)`` (the index of Weitzman's search
        problem when every success is worth the same), among the arms worth trying at all
        (``U > 0``); when none is, the least bad ``U`` (the caller may stop: ``should_escalate``).
        """
        u = self.alpha * p - cost_term
        left = int(context.get(ATTEMPTS_LEFT_KEY, 0) or 0)
        if not self.cascade or left <= 0 or self.beta <= 0:
            return u
        ratio = self.alpha * p / np.maximum(cost_term, 1e-12)
        return np.where(u > 0.0, ratio, u)
