"""The learned routing policy: a contextual bandit over the configured models (arms).

Each arm keeps a Bayesian linear model of its success given the request context, plus a running
estimate of its cost. The reward of a decision is ``U = alpha * success - beta * cost``, with the
cost in USD or (``cost_scale="relative"``) in units of the dearest arm's prior cost per decision.

Cascades (context keys ``attempt`` / ``attempts_left``): a retry's success is scored by a count
model per (arm, attempt) pooled across arms (``_retry_estimates``); with attempts left, arms are
ordered by success per unit cost (Weitzman's index) among those worth trying, and
``should_escalate`` is the stop rule (no arm with ``U > 0``).

Why this shape:
- Closed-form Gaussian posteriors keep only sufficient statistics (precision matrix ``A`` and vector
  ``b`` per arm, cost sums), so two learners can be merged *exactly* (``A = A1 + A2 - A_prior``).
- Thompson draws of the linear predictor ``x . w`` are scalar Gaussians per arm, so one decision is a
  few small matrix-vector products plus ``draws x arms`` normal samples: well under 0.2 ms.
- The same draws give the propensity of the chosen arm (fraction of draws it wins, for off-policy
  evaluation) and a meaningful confidence (fraction of draws in which it is within ``margin`` of the
  best arm's reward), which the caller compares with ``sigma``.
- Priors come from the catalogue: cost from price, prior success from tier, so a fresh router does
  not spend its first sessions trying the most expensive model.

The success posterior is an online ``river.linear_model.BayesianLinearRegression`` in spirit (same
Bishop closed form), kept in our own arrays because we need exact merges, cheap snapshots and
vectorised scoring over all arms; ``river.proba.Beta`` gives the tier priors' pseudo-counts.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from river import proba

from streams.routing.features import TASK_TYPES, TIER_RANK
from streams.routing.quality import QualityCalibrator, pessimistic, reference_column

if TYPE_CHECKING:
    from streams.config import ModelSettings, Settings
    from streams.routing.settings import BanditSettings

Exploration = Literal["thompson", "ucb"]
CostScale = Literal["relative", "usd"]

# Prior probability of success by tier, as a Beta pseudo-count (mean, strength). Weak on purpose:
# the bandit must learn success; the prior only decides which arms are worth trying first.
# river types Beta's pseudo-counts as int; fractional counts are valid Beta parameters.
TIER_PRIOR: dict[str, proba.Beta] = {
    "frontier": proba.Beta(3.0, 1.0),  # type: ignore[arg-type]  # mean 0.75
    "strong": proba.Beta(2.6, 1.4),  # type: ignore[arg-type]  # mean 0.65
    "standard": proba.Beta(2.2, 1.8),  # type: ignore[arg-type]  # mean 0.55
    "cheap": proba.Beta(1.8, 2.2),  # type: ignore[arg-type]  # mean 0.45
}
# A "typical" agent request, used to turn per-token prices into a per-decision cost prior.
REFERENCE_INPUT_TOKENS = 20_000
REFERENCE_OUTPUT_TOKENS = 1_000
SNAPSHOT_FORMAT = 1
# Task-type prior (see ``task_prior_success``): success of a model of the tier a task calls for,
# and what each tier below loses. Strong enough (``TASK_PRIOR_STRENGTH`` pseudo-observations) to
# hold the first sessions, weak enough that a few dozen outcomes of one task type move it.
TASK_PRIOR_OK = 0.8
TASK_PRIOR_DROP = 0.25
TASK_PRIOR_STRENGTH = 4.0
# Text of the current turn: hashed word n-grams arrive as context keys ``t:<bucket>`` (see
# ``streams.routing.features.text_features``) and get a block of their own, normalised on its own,
# so a long prompt's words neither drown the other features nor vanish among them.
TEXT_PREFIX = "t:"
MAX_ATTEMPT_SLOTS = 16
# Forgetting rebases the statistics this many times per half-life (see ``ContextualBandit._rebase``).
REBASE_STEPS = 32
# Context keys the cascade reads (both optional): 1-based attempt number within the session, and
# how many attempts remain after this one.
ATTEMPT_KEY = "attempt"
ATTEMPTS_LEFT_KEY = "attempts_left"
# Keys the model already has in its head, so they are not hashed again: the router's
# ``Features.vector()`` carries a constant "bias", which would otherwise take a context slot and
# dilute the normalised context.
_HEAD_KEYS = frozenset({ATTEMPT_KEY, ATTEMPTS_LEFT_KEY, "bias"})
# Layout of the model's input: [bias, attempt>=2, attempt>=3, attempt>=4, task type one-hot ...,
# hashed context ...]. The cascade indicators sit outside the normalised hashed part so that "this
# is a retry" keeps its full weight however long the prompt is. So does the task type (the router's
# ``task=<type>`` keys), the feature routing depends on most: hashed, two task types shared a slot
# (crc32 % 32 puts task=implementation and task=debugging together) and the normalisation diluted
# it, so the bandit could not tell a debugging session from an implementation one.
CASCADE_SLOTS = 3
CASCADE_END = 1 + CASCADE_SLOTS
TASK_SLOTS: dict[str, int] = {"task=" + t: CASCADE_END + i for i, t in enumerate(TASK_TYPES)}
HEAD = CASCADE_END + len(TASK_SLOTS)
# Snapshots written before the task slots had this head (restore pads them with the prior).
_LEGACY_HEAD = CASCADE_END
# Retries are scored by a count model per (arm, attempt bucket); attempts past the last bucket
# share it. Pseudo-counts: the per-attempt success factor's prior, and how far one arm's success
# at one attempt may stray from "arm strength x attempt factor" before its own counts take over.
RETRY_BUCKETS = 6
RETRY_FACTOR_STRENGTH = 4.0
CELL_STRENGTH = 2.0
# Prior of the retry success factor: each further attempt succeeds this share of the first
# attempt's rate less (a retry lands on a task that already beat a model), floored at 10%.
RETRY_FACTOR_STEP = 0.3
# Pseudo-observations (average decisions) shrinking the learned cost-per-attempt factor to 1.
COST_FACTOR_STRENGTH = 10.0


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
        beta = TIER_PRIOR.get(m.tier, TIER_PRIOR["standard"])
        if cost_per_decision is not None and m.name in cost_per_decision:
            cost = float(cost_per_decision[m.name])
        else:
            cost = m.cost_usd(REFERENCE_INPUT_TOKENS, REFERENCE_OUTPUT_TOKENS)
        tasks = {t: task_prior_success(tier, m.tier) for t, tier in (task_tiers or {}).items() if t in TASK_TYPES}
        priors[m.name] = ArmPrior(
            success=beta.alpha / (beta.alpha + beta.beta),
            cost_usd=cost,
            strength=float(beta.alpha + beta.beta),
            task_success=tasks,
        )
    return priors


def bandit_for(settings: Settings, **kwargs: Any) -> ContextualBandit:
    """The learned policy for a service's settings: its models, task tiers and frontier default."""
    return ContextualBandit.from_settings(
        settings.routing.bandit,
        settings.models,
        task_tiers=settings.routing.task_tiers,
        reference_arm=settings.frontier_default(),
        **kwargs,
    )


def _slot(name: str, dim: int) -> int:
    # Stable across processes (unlike hash()), so snapshots mean the same thing on every worker.
    return zlib.crc32(name.encode()) % dim


class ContextualBandit:
    """Contextual Thompson sampling / UCB over arms with a linear-Gaussian success model per arm.

    River style: ``predict_one`` decides, ``learn_one`` updates. Plain object, picklable, seeded.
    """

    def __init__(
        self,
        arms: Iterable[str] = (),
        *,
        priors: Mapping[str, ArmPrior] | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        exploration: Exploration = "thompson",
        dim: int = 32,
        noise: float = 0.25,
        context_prior_var: float = 0.03,
        shared_prior_var: float = 0.3,
        retry_prior: float = -0.15,
        explore_scale: float = 0.15,
        retry_explore_scale: float = 0.5,
        ucb_c: float = 1.0,
        draws: int = 64,
        margin: float = 0.02,
        cascade: bool = True,
        cost_scale: CostScale = "usd",
        seed: int | None = None,
        text_dim: int = 64,
        text_weight: float = 2.0,
        quality_target: float | None = None,
        reference_arm: str | None = None,
        half_life: float | None = None,
    ) -> None:
        self.alpha = float(alpha)
        self.beta = float(beta)
        # "usd": ``beta`` weighs dollars. "relative": it weighs cost in units of the most expensive
        # arm's prior cost per decision, so one default means the same on a catalogue priced in
        # cents per call and on one priced in dollars per agent run.
        self.cost_scale: CostScale = cost_scale
        self.exploration: Exploration = exploration
        self.dim = int(dim)
        self.text_dim = max(0, int(text_dim))
        self.text_weight = float(text_weight)  # norm of the text block relative to the other features
        # Quality target (see ``streams.routing.quality``): keep this share of the reference arm's
        # (the frontier default's) success at the least cost; None: maximise U = alpha*p - beta*c.
        self.quality_target = None if quality_target is None else float(quality_target)
        self.reference_arm = reference_arm
        # Forgetting: evidence loses half its weight every ``half_life`` units of the clock passed to
        # ``learn_outcome(ts=...)``; None keeps everything (a stationary world).
        self.half_life = None if half_life is None or half_life <= 0 else float(half_life)
        self.noise = float(noise)  # variance of one outcome around its mean (Bernoulli at p=0.5)
        self.context_prior_var = float(context_prior_var)  # how far one arm may differ from the rest
        self.shared_prior_var = float(shared_prior_var)  # how much context moves every arm
        # Prior belief that each further attempt succeeds less: the task already beat a model.
        self.retry_prior = float(retry_prior)
        self.explore_scale = float(explore_scale)  # scales posterior std in draws; <1 explores less
        # Same, for retries (count model): its std is an honest Beta one and the ratio index keeps
        # dear arms out, so retries can explore more than first attempts (but a full draw still
        # spends too much on one-off expensive agent runs in replays).
        self.retry_explore_scale = float(retry_explore_scale)
        self.ucb_c = float(ucb_c)
        self.draws = max(1, int(draws))
        self.margin = float(margin)
        self.cascade = cascade
        self.seed = seed
        self.version = 0
        self.priors: dict[str, ArmPrior] = dict(priors or {})
        self._rng = np.random.default_rng(seed)
        self._slots: dict[str, int] = {}  # cache of feature name -> slot
        self._last_arms: list[str] = []
        self._last_idx = np.zeros(0, dtype=np.intp)
        self.arms: list[str] = []
        self._index: dict[str, int] = {}
        d = self._d = self.dim + HEAD + self.text_dim
        self._A = np.zeros((0, d, d))  # posterior precision, per arm
        self._A0 = np.zeros((0, d, d))  # prior precision (kept to merge exactly)
        self._b = np.zeros((0, d))  # precision-weighted mean, per arm
        self._b0 = np.zeros((0, d))
        self._cov = np.zeros((0, d, d))  # A^-1, maintained by Sherman-Morrison
        self._mu = np.zeros((0, d))
        self._cost_sum = np.zeros(0)
        self._cost_n = np.zeros(0)
        self._cost_sum0 = np.zeros(0)
        self._cost_n0 = np.zeros(0)
        self._pulls = np.zeros(0)
        # Shared model: the cascade's effect on success common to all arms ("after two failed
        # attempts, everyone succeeds less"). It is the prior mean of each arm's cascade weights,
        # so an arm never tried at a retry still inherits what the others taught.
        self._S0 = np.eye(d) / self.shared_prior_var
        self._S0[0, 0] = 1e-2
        self._S = self._S0.copy()
        m0 = np.zeros(d)
        m0[1 : 1 + CASCADE_SLOTS] = self.retry_prior
        self._s0 = self._S0 @ m0
        self._s = self._s0.copy()
        self._scov = np.linalg.inv(self._S)
        self._smu = self._scov @ self._s
        # Cascade statistics per attempt number (index = attempt, 1-based): outcomes seen there.
        # Columns: count, success sum, cost sum, sum of the chosen arms' prior costs.
        self._att = np.zeros((MAX_ATTEMPT_SLOTS + 1, 4))
        # Outcomes per (arm, attempt bucket): count and success sum. Sums only, so merges are exact.
        self._cell = np.zeros((0, RETRY_BUCKETS + 1, 2))
        self._retry_cache: tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._clock = 0.0  # forgetting: the time the statistics are weighted at (see ``_rebase``)
        self._quality: QualityCalibrator | None = None  # built on the first quality-target decision
        self._last_all: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self._cost_unit: tuple[int, float] = (-1, 1.0)  # (arms when computed, value)
        for arm in arms:
            self._ensure_arm(arm)

    @classmethod
    def from_settings(
        cls,
        settings: BanditSettings,
        models: Iterable[ModelSettings],
        *,
        cost_per_decision: Mapping[str, float] | None = None,
        task_tiers: Mapping[str, str] | None = None,
        reference_arm: str | None = None,
        **kwargs: object,
    ) -> ContextualBandit:
        """The bandit a router runs: priors from the catalogue (and task tiers), knobs from settings.

        The gateway, the workers, the replay and the off-policy evaluator all build it here.
        """
        models = list(models)
        priors = priors_from_models(models, cost_per_decision=cost_per_decision, task_tiers=task_tiers)
        params: dict[str, object] = {
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
        return cls([m.name for m in models], priors=priors, **params)  # type: ignore[arg-type]

    # ---- arms -------------------------------------------------------------------------------

    def _ensure_arm(self, arm: str) -> int:
        i = self._index.get(arm)
        if i is not None:
            return i
        prior = self.priors.get(arm, ArmPrior())
        d = self._d
        a0 = np.eye(d) / self.context_prior_var
        a0[0, 0] = prior.strength / self.noise  # bias: strength pseudo-observations of success
        b0 = np.zeros(d)
        b0[0] = prior.strength * prior.success / self.noise
        for task, p in prior.task_success.items():
            # The task-type slot's prior mean is the task's offset from the arm's overall prior.
            t = TASK_SLOTS.get("task=" + task)
            if t is not None:
                a0[t, t] = TASK_PRIOR_STRENGTH / self.noise
                b0[t] = a0[t, t] * (float(p) - prior.success)
        cov = np.linalg.inv(a0)
        self._A = np.concatenate([self._A, a0[None]])
        self._A0 = np.concatenate([self._A0, a0[None]])
        self._b = np.concatenate([self._b, b0[None]])
        self._b0 = np.concatenate([self._b0, b0[None]])
        self._cov = np.concatenate([self._cov, cov[None]])
        self._mu = np.concatenate([self._mu, (cov @ b0)[None]])
        self._cost_sum0 = np.append(self._cost_sum0, prior.cost_usd * prior.cost_strength)
        self._cost_n0 = np.append(self._cost_n0, prior.cost_strength)
        self._cost_sum = np.append(self._cost_sum, prior.cost_usd * prior.cost_strength)
        self._cost_n = np.append(self._cost_n, prior.cost_strength)
        self._pulls = np.append(self._pulls, 0.0)
        self._cell = np.concatenate([self._cell, np.zeros((1, RETRY_BUCKETS + 1, 2))])
        self._index[arm] = len(self.arms)
        self.arms.append(arm)
        return self._index[arm]

    # ---- features ---------------------------------------------------------------------------

    def _vector(self, context: Mapping[str, float]) -> np.ndarray:
        vals = [0.0] * (self.dim + HEAD)
        slots = self._slots
        log1p, copysign = math.log1p, math.copysign
        tasks: list[tuple[int, float]] = []
        text: list[tuple[int, float]] = []
        text_dim = self.text_dim
        for name, value in context.items():
            if not value or name in _HEAD_KEYS:
                continue
            t = TASK_SLOTS.get(name)
            if t is not None:
                tasks.append((t, min(max(float(value), -1.0), 1.0)))
                continue
            if name.startswith(TEXT_PREFIX):
                if text_dim:
                    s = slots.get(name)
                    if s is None:
                        s = slots[name] = _slot(name, text_dim)
                    text.append((s, float(value)))
                continue
            s = slots.get(name)
            if s is None:
                s = slots[name] = HEAD + _slot(name, self.dim)
            v = float(value)
            vals[s] += copysign(log1p(abs(v)), v)  # signed log: token counts and flags comparable
        if text_dim:
            block = [0.0] * text_dim
            for s, v in text:
                block[s] += v
            tx = np.array(block)
            tnorm = math.sqrt(float(tx @ tx))
            if tnorm > 0:
                tx *= self.text_weight / tnorm
            x = np.concatenate([np.array(vals), tx])
        else:
            x = np.array(vals)
        core = x[: self.dim + HEAD]  # a view: normalising it leaves the text block as it is
        norm = math.sqrt(float(core @ core))
        if norm > 0:
            core /= norm  # unit norm: the context can move an arm's estimate, not swamp its bias
        x[0] = 1.0
        for t, value in tasks:
            x[t] = value
        attempt = int(context.get(ATTEMPT_KEY, 0) or 0)
        for j in range(1, CASCADE_SLOTS + 1):
            x[j] = 1.0 if attempt > j else 0.0
        return x

    # ---- decide -----------------------------------------------------------------------------

    def estimates(self, context: Mapping[str, float], arms: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per arm: posterior mean and std of the success probability, and the expected cost."""
        if arms == self._last_arms:
            idx = self._last_idx  # the caller usually passes the same arm list every time
        else:
            idx = np.fromiter((self._ensure_arm(a) for a in arms), dtype=np.intp, count=len(arms))
            self._last_arms, self._last_idx = list(arms), idx
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
        self._last_all = (p_mean, p_std)
        return p_mean[idx], p_std[idx], cost[idx]

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

    def cost_unit(self) -> float:
        """USD per unit of cost in the reward: 1, or the dearest arm's prior cost ("relative").

        Taken from the priors only (never from outcomes), so it is the same on every worker and
        merges stay exact.
        """
        if self.cost_scale != "relative" or not self.arms:
            return 1.0
        if self._cost_unit[0] != len(self.arms):  # priors change only when an arm is added
            top = float(np.max(self._cost_sum0 / self._cost_n0))
            self._cost_unit = (len(self.arms), top if top > 0 else 1.0)
        return self._cost_unit[1]

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

    def expected_rewards(self, context: Mapping[str, float], arms: list[str]) -> np.ndarray:
        """Posterior mean of ``U`` per arm (success clipped to [0, 1])."""
        p_mean, _, cost = self.estimates(context, arms)
        return self.alpha * np.clip(p_mean, 0.0, 1.0) - self.beta * cost / self.cost_unit()

    def should_escalate(self, context: Mapping[str, float], arms: list[str]) -> bool:
        """After a failed attempt: is another one worth paying for? (Some arm's expected ``U > 0``.)

        The stop rule of the search: an attempt whose expected success is worth less than what it
        costs loses reward whatever comes after it, since later attempts only get harder.
        """
        if not arms:
            return False
        p_mean, p_std, cost = self.estimates(context, arms)
        attempt = int(context.get(ATTEMPT_KEY, 0) or 0)
        if attempt >= 2:
            idx = self._last_idx  # set by estimates() for this arm list
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
        p_mean, p_std, cost = self.estimates(context, arms)
        cost_term = self.beta * cost / self.cost_unit()
        z = self._rng.standard_normal((self.draws, len(arms)))
        # Draws of success are clipped to [0, 1]: an arm whose cost exceeds what a certain success
        # is worth can never win a draw, so it is never explored for nothing.
        retry = int(context.get(ATTEMPT_KEY, 0) or 0) >= 2
        if self.quality_target is not None and not retry:
            return self._predict_quality(arms, p_mean, p_std, cost)
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
        self, arms: list[str], p_mean: np.ndarray, p_std: np.ndarray, cost: np.ndarray
    ) -> tuple[str, float, float]:
        """Quality-target decision (see ``streams.routing.quality``): the arm maximising a Thompson
        draw of ``p - price * cost``, with the price calibrated on the recent traffic."""
        assert self.quality_target is not None
        if self._quality is None:
            self._quality = QualityCalibrator(seed=self.seed)
        self._quality.observe(*self._last_all)
        c = cost / self.cost_unit()
        idx = self._last_idx
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

    def keep_decision_state(self, previous: object) -> None:
        """Carry the serving process's own state (the quality calibrator's recent traffic) over from
        the policy this one replaces: a hot swap changes the evidence, not the traffic served."""
        quality = getattr(previous, "_quality", None)
        if isinstance(quality, QualityCalibrator) and self._quality is None:
            self._quality = quality

    def quality_price(self) -> float | None:
        """The current Lagrange price of cost (success per cost unit), once a target decision ran."""
        return None if self._quality is None else self._quality._price

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

    # ---- learn ------------------------------------------------------------------------------

    def learn_one(self, context: dict[str, float], arm: str, reward: float) -> None:
        """Learn from a scalar reward ``U``: split into success and cost with the arm's cost estimate.

        Prefer ``learn_outcome`` when success and cost are known separately (they are in the
        replay and the learner agent); this keeps the River-style single-reward interface. The
        reward here is ``alpha * success - beta * cost_usd`` (USD, whatever ``cost_scale``), as
        the router computes it: it only carries the success back, so any consistent unit works.
        """
        i = self._ensure_arm(arm)
        cost = float(self._cost_sum[i] / self._cost_n[i])
        success = (reward + self.beta * cost) / self.alpha if self.alpha else 0.0
        self._learn(i, self._vector(context), success, None)
        self._learn_attempt(context, i, success, cost)

    def learn_outcome(
        self, context: Mapping[str, float], arm: str, success: float, cost_usd: float, ts: float | None = None
    ) -> None:
        """Learn from one observed outcome: ``success`` in [0, 1] and what the call cost.

        ``ts`` is when it was observed (any clock: seconds in production, the task index in a
        replay); with ``half_life`` set, older evidence counts less.
        """
        i = self._ensure_arm(arm)
        weight = self._weight(ts)
        self._learn(i, self._vector(context), float(success), float(cost_usd), weight)
        self._learn_attempt(context, i, float(success), float(cost_usd), weight)

    def learn_many(self, records: Iterable[tuple[Any, ...]]) -> int:
        """``learn_outcome`` for each ``(context, arm, success, cost_usd[, ts])`` in order; returns how many.

        Bit-for-bit the state the sequential calls reach (the learner relies on it: batching must
        not change what it learns). The vector and scalar sums (``b``, ``s``, costs, counts) are
        accumulated with ``np.add.at``, which applies repeated indices one after another in order,
        so every float addition happens in the same order as in the loop; the matrices (``A``, ``S``,
        and the Sherman-Morrison covariance updates, which depend on each other) are updated record by
        record with the loop's own operations. The means are only read at the end, so they are
        computed once per touched arm instead of once per record.
        """
        timed: list[tuple[Any, ...]] = [tuple(r) for r in records]
        n = len(timed)
        if n == 0:
            return 0
        if self.half_life is not None and any(len(r) > 4 for r in timed):
            # Timestamped outcomes under forgetting: each carries its own weight, so one by one.
            for r in timed:
                self.learn_outcome(r[0], r[1], r[2], r[3], r[4] if len(r) > 4 else None)
            return n
        rows = [(r[0], r[1], r[2], r[3]) for r in timed]  # without forgetting the clock does not matter
        idx = np.fromiter((self._ensure_arm(arm) for _, arm, _, _ in rows), dtype=np.intp, count=n)
        X = np.stack([self._vector(ctx) for ctx, _, _, _ in rows])
        success = [float(r[2]) for r in rows]
        costs = np.array([float(r[3]) for r in rows])
        w = 1.0 / self.noise
        coef = np.array([w * s for s in success])  # the loop's ``w * success`` (a Python float)
        wsx = coef[:, None] * X
        np.add.at(self._b, idx, wsx)
        np.add.at(self._s[None], np.zeros(n, dtype=np.intp), wsx)
        A, S, covs, scov = self._A, self._S, self._cov, self._scov
        # np.outer(a, b) is multiply(a[:, None], b[None, :]); calling multiply directly skips its
        # wrapper (same products, same bits).
        mul = np.multiply
        cols, rows_ = X[:, :, None], X[:, None, :]
        for k in range(n):
            x, i = X[k], idx[k]
            xx = w * mul(cols[k], rows_[k])  # the loop computes this twice (A and S); same value
            A[i] += xx
            S += xx
            cov = covs[i]
            cx = cov @ x
            cov -= mul(cx[:, None], cx[None, :]) * (w / (1.0 + w * (x @ cx)))  # Sherman-Morrison, as in _learn
            sx = scov @ x
            scov -= mul(sx[:, None], sx[None, :]) * (w / (1.0 + w * (x @ sx)))
        for i in dict.fromkeys(idx.tolist()):
            self._mu[i] = self._cov[i] @ self._b[i]
        self._smu = scov @ self._s
        np.add.at(self._cost_sum, idx, costs)
        np.add.at(self._cost_n, idx, 1.0)
        np.add.at(self._pulls, idx, 1.0)
        self.version += n
        # _learn_attempt, batched the same way.
        ks = [int(ctx.get(ATTEMPT_KEY, 0) or 0) for ctx, _, _, _ in rows]
        att = [(k, (1.0, s, float(c), self._cost_sum0[i] / self._cost_n0[i]))
               for k, s, c, i in zip(ks, success, costs.tolist(), idx.tolist(), strict=True)
               if 0 < k <= MAX_ATTEMPT_SLOTS]
        if att:
            np.add.at(self._att, np.array([k for k, _ in att], dtype=np.intp), np.array([v for _, v in att]))
        buckets = np.array([min(max(k, 1), RETRY_BUCKETS) for k in ks], dtype=np.intp)
        cells = np.array([(1.0, min(max(s, 0.0), 1.0)) for s in success])
        np.add.at(self._cell, (idx, buckets), cells)
        return n

    def _learn_attempt(
        self, context: Mapping[str, float], i: int, success: float, cost: float, weight: float = 1.0
    ) -> None:
        k = int(context.get(ATTEMPT_KEY, 0) or 0)
        # ``weight * x`` is ``x`` exactly at weight 1, so unweighted learning stays bit-identical
        # to ``learn_many``.
        if 0 < k <= MAX_ATTEMPT_SLOTS:
            self._att[k] += (weight, weight * success, weight * cost, weight * self._cost_sum0[i] / self._cost_n0[i])
        # Bucket 1 holds first attempts (and decisions outside a cascade): the reference strength.
        self._cell[i, min(max(k, 1), RETRY_BUCKETS)] += (weight, weight * min(max(success, 0.0), 1.0))

    def reward(self, success: float, cost_usd: float) -> float:
        return self.alpha * success - self.beta * cost_usd

    def _learn(self, i: int, x: np.ndarray, success: float, cost: float | None, weight: float = 1.0) -> None:
        w = weight / self.noise
        self._A[i] += w * np.outer(x, x)
        self._b[i] += w * success * x
        cov = self._cov[i]
        cx = cov @ x
        cov -= np.outer(cx, cx) * (w / (1.0 + w * (x @ cx)))  # Sherman-Morrison
        self._mu[i] = cov @ self._b[i]
        self._S += w * np.outer(x, x)
        self._s += w * success * x
        sx = self._scov @ x
        self._scov -= np.outer(sx, sx) * (w / (1.0 + w * (x @ sx)))
        self._smu = self._scov @ self._s
        if cost is not None:
            self._cost_sum[i] += weight * cost
            self._cost_n[i] += weight
        self._pulls[i] += 1.0
        self.version += 1

    # ---- merge / snapshot -------------------------------------------------------------------

    def merge(self, other: ContextualBandit, base: ContextualBandit | None = None) -> None:
        """Add ``other``'s updates to ours: exact on the sufficient statistics.

        Both learners must share the same priors; if both started from a snapshot that already
        held data, pass it as ``base`` so that data is not counted twice. With forgetting, every
        side is first weighted at the latest clock of the three, so the sum is what one learner
        that saw every outcome would hold.
        """
        if other.dim != self.dim or other.noise != self.noise or other.text_dim != self.text_dim:
            raise ValueError("cannot merge bandits with different dim/noise/text_dim")
        clock = max(self._clock, other._clock, base._clock if base is not None else self._clock)
        if self.half_life is not None:
            self._rebase(clock, force=True)
        fo = other._decay_to(clock)
        fb = base._decay_to(clock) if base is not None else 1.0
        for arm in other.arms:
            self._ensure_arm(arm)
        for arm in other.arms:
            i, j = self._index[arm], other._index[arm]
            k = base._index.get(arm) if base is not None else None

            def delta(name: str, prior: str | None, _j: int = j, _k: int | None = k) -> np.ndarray:
                got = other._at(name, prior, _j, fo)
                if _k is None or base is None:
                    return got - (getattr(other, prior)[_j] if prior else 0.0)
                return got - base._at(name, prior, _k, fb)

            self._A[i] += delta("_A", "_A0")
            self._b[i] += delta("_b", "_b0")
            self._cost_sum[i] += delta("_cost_sum", "_cost_sum0")
            self._cost_n[i] += delta("_cost_n", "_cost_n0")
            self._cell[i] += delta("_cell", None)
            self._pulls[i] += other._pulls[j] - (base._pulls[k] if base is not None and k is not None else 0.0)
            self._cov[i] = np.linalg.inv(self._A[i])
            self._mu[i] = self._cov[i] @ self._b[i]
        self._att += fo * other._att - (fb * base._att if base is not None else 0.0)
        if base is not None:
            ref_s = base._S0 + fb * (base._S - base._S0)
            ref_sv = base._s0 + fb * (base._s - base._s0)
        else:
            ref_s, ref_sv = other._S0, other._s0
        self._S += other._S0 + fo * (other._S - other._S0) - ref_s
        self._s += other._s0 + fo * (other._s - other._s0) - ref_sv
        self._scov = np.linalg.inv(self._S)
        self._smu = self._scov @ self._s
        self.version += other.version - (base.version if base is not None else 0)
        self._retry_cache = None

    # ---- forgetting -------------------------------------------------------------------------

    def _decay_to(self, clock: float) -> float:
        """Weight of this learner's evidence when read at ``clock`` (1 without forgetting)."""
        if self.half_life is None or clock <= self._clock:
            return 1.0
        return float(0.5 ** ((clock - self._clock) / self.half_life))

    def _at(self, name: str, prior: str | None, j: int, factor: float) -> np.ndarray:
        """Arm ``j``'s statistic ``name`` with its evidence (the part above ``prior``) scaled."""
        value = getattr(self, name)[j]
        if factor == 1.0:
            return value
        base = getattr(self, prior)[j] if prior else 0.0
        return base + factor * (value - base)

    def _rebase(self, clock: float, *, force: bool = False) -> None:
        """Weigh every statistic at ``clock``: evidence shrinks towards the prior by the half-life.

        Done every ``half_life / REBASE_STEPS`` of the clock (or on a merge), not per outcome: it
        re-inverts every arm's precision. Between rebases an outcome is added with its exact weight
        relative to the current clock, so the sums stay exact whatever the rebase points.
        """
        if self.half_life is None or clock <= self._clock:
            return
        if not force and clock - self._clock < self.half_life / REBASE_STEPS:
            return
        f = 0.5 ** ((clock - self._clock) / self.half_life)
        self._A = self._A0 + f * (self._A - self._A0)
        self._b = self._b0 + f * (self._b - self._b0)
        self._cost_sum = self._cost_sum0 + f * (self._cost_sum - self._cost_sum0)
        self._cost_n = self._cost_n0 + f * (self._cost_n - self._cost_n0)
        self._cell = f * self._cell
        self._att = f * self._att
        self._S = self._S0 + f * (self._S - self._S0)
        self._s = self._s0 + f * (self._s - self._s0)
        if len(self.arms):
            self._cov = np.asarray(np.linalg.inv(self._A), dtype=np.float64)
            self._mu = np.einsum("aij,aj->ai", self._cov, self._b)
        self._scov = np.linalg.inv(self._S)
        self._smu = self._scov @ self._s
        self._clock = float(clock)
        self._retry_cache = None

    def _weight(self, ts: float | None) -> float:
        """Weight of an outcome observed at ``ts`` relative to the statistics' clock."""
        if self.half_life is None or ts is None:
            return 1.0
        self._rebase(float(ts))
        return float(0.5 ** ((self._clock - float(ts)) / self.half_life))

    def snapshot(self) -> bytes:
        """Serialise to bytes (npz + JSON header, no pickle: safe to read from a shared topic)."""
        meta = {
            "format": SNAPSHOT_FORMAT,
            "head": HEAD,
            "arms": self.arms,
            "version": self.version,
            "params": {
                "alpha": self.alpha,
                "beta": self.beta,
                "exploration": self.exploration,
                "dim": self.dim,
                "noise": self.noise,
                "context_prior_var": self.context_prior_var,
                "shared_prior_var": self.shared_prior_var,
                "retry_prior": self.retry_prior,
                "explore_scale": self.explore_scale,
                "retry_explore_scale": self.retry_explore_scale,
                "ucb_c": self.ucb_c,
                "draws": self.draws,
                "margin": self.margin,
                "cascade": self.cascade,
                "cost_scale": self.cost_scale,
                "seed": self.seed,
                "text_dim": self.text_dim,
                "text_weight": self.text_weight,
                "quality_target": self.quality_target,
                "reference_arm": self.reference_arm,
                "half_life": self.half_life,
            },
            "clock": self._clock,
            "priors": {
                a: [p.success, p.cost_usd, p.strength, p.cost_strength, dict(p.task_success)]
                for a, p in self.priors.items()
            },
            "rng": self._rng.bit_generator.state,
        }
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            A=self._A,
            A0=self._A0,
            b=self._b,
            b0=self._b0,
            cov=self._cov,
            mu=self._mu,
            S=self._S,
            s=self._s,
            scov=self._scov,
            smu=self._smu,
            cost_sum=self._cost_sum,
            cost_n=self._cost_n,
            cost_sum0=self._cost_sum0,
            cost_n0=self._cost_n0,
            pulls=self._pulls,
            att=self._att,
            cell=self._cell,
        )
        return buf.getvalue()

    @classmethod
    def restore(cls, data: bytes) -> ContextualBandit:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"unknown bandit snapshot format {meta.get('format')!r}")
            priors = {a: ArmPrior(*v) for a, v in meta["priors"].items()}
            params = dict(meta["params"])
            params.setdefault("text_dim", 0)  # snapshots from before the text block had none
            bandit = cls(priors=priors, **params)
            bandit._clock = float(meta.get("clock", 0.0))
            bandit.arms = list(meta["arms"])
            bandit._index = {a: i for i, a in enumerate(bandit.arms)}
            bandit._A, bandit._A0 = z["A"].copy(), z["A0"].copy()
            bandit._b, bandit._b0 = z["b"].copy(), z["b0"].copy()
            bandit._cost_sum, bandit._cost_n = z["cost_sum"].copy(), z["cost_n"].copy()
            bandit._cost_sum0, bandit._cost_n0 = z["cost_sum0"].copy(), z["cost_n0"].copy()
            bandit._pulls = z["pulls"].copy()
            bandit._att = z["att"].copy()
            # Snapshots from before the retry count model have no cells: start them empty.
            n_arms = len(bandit.arms)
            bandit._cell = z["cell"].copy() if "cell" in z.files else np.zeros((n_arms, RETRY_BUCKETS + 1, 2))
            # The covariance is saved, not re-inverted, so a restored bandit decides bit-identically.
            bandit._cov, bandit._mu = z["cov"].copy(), z["mu"].copy()
            bandit._S, bandit._s = z["S"].copy(), z["s"].copy()
            bandit._scov, bandit._smu = z["scov"].copy(), z["smu"].copy()
        head = int(meta.get("head", _LEGACY_HEAD))
        if head != HEAD:
            bandit._pad_head(head)
        bandit.version = int(meta["version"])
        bandit._rng.bit_generator.state = meta["rng"]
        return bandit

    def _pad_head(self, head: int) -> None:
        """Upgrade a restored snapshot written with an older, shorter head (before the task slots):
        insert the missing slots after its head, holding only their prior (nothing was learned
        there), which is exactly the state the new layout would have reached on the same data."""
        if not _LEGACY_HEAD <= head < HEAD:
            raise ValueError(f"bandit snapshot has an unknown layout (head {head}, expected {HEAD})")
        at, k = head, HEAD - head
        new = np.arange(at, at + k)

        def vec(a: np.ndarray) -> np.ndarray:  # (..., d): the new slots hold 0
            return np.insert(a, [at] * k, 0.0, axis=-1)

        def mat(a: np.ndarray, diag: float) -> np.ndarray:  # (..., d, d): independent new slots
            a = np.insert(np.insert(a, [at] * k, 0.0, axis=-1), [at] * k, 0.0, axis=-2)
            a[..., new, new] = diag
            return a

        pv, sv = self.context_prior_var, self.shared_prior_var
        self._A, self._A0, self._cov = mat(self._A, 1 / pv), mat(self._A0, 1 / pv), mat(self._cov, pv)
        self._b, self._b0, self._mu = vec(self._b), vec(self._b0), vec(self._mu)
        self._S, self._scov = mat(self._S, 1 / sv), mat(self._scov, sv)
        self._s, self._smu = vec(self._s), vec(self._smu)

    def pulls(self, arm: str) -> int:
        i = self._index.get(arm)
        return 0 if i is None else int(self._pulls[i])
