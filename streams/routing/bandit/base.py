"""The learner protocol, and the state every part of the contextual bandit shares.

River style: ``predict_one`` decides, ``learn_one`` updates; any object with both can be a routing
policy (``BanditLike``). ``BanditState`` holds the bandit's knobs and its sufficient statistics, per
arm: the precision matrix ``A`` and vector ``b`` of a Bayesian linear model of success (with their
priors ``A0``, ``b0``, kept to merge exactly), the covariance ``A^-1`` and mean maintained between
updates, cost sums, and the cascade's count tables. The parts that read and update them are mixins
in this package (``posteriors``, ``forgetting``, ``cascade``, ``snapshot``), combined in
``thompson.ContextualBandit``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from streams.routing.bandit.encoding import ContextEncoder
from streams.routing.bandit.layout import CASCADE_SLOTS, MAX_ATTEMPT_SLOTS, RETRY_BUCKETS, TASK_SLOTS
from streams.routing.bandit.priors import TASK_PRIOR_STRENGTH, ArmPrior
from streams.routing.quality import QualityCalibrator

Exploration = Literal["thompson", "ucb"]
CostScale = Literal["relative", "usd"]


@runtime_checkable
class BanditLike(Protocol):
    """What a learned routing policy must offer (``ContextualBandit`` is the one we build)."""

    def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]: ...

    def learn_one(self, context: dict[str, float], arm: str, reward: float) -> None: ...


class BanditState:
    """Knobs and sufficient statistics of the bandit; arms are added on first sight with their prior."""

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
        self._encoder = ContextEncoder(self.dim, self.text_dim, self.text_weight)
        # The caller usually passes the same arm list every time: its indices, kept.
        self._arm_list: list[str] = []
        self._arm_idx = np.zeros(0, dtype=np.intp)
        self.arms: list[str] = []
        self._index: dict[str, int] = {}
        d = self._d = self._encoder.size
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
        self._cost_unit: tuple[int, float] = (-1, 1.0)  # (arms when computed, value)
        for arm in arms:
            self._ensure_arm(arm)

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

    def _arm_indices(self, arms: list[str]) -> np.ndarray:
        """The state's index of each of ``arms`` (added with their prior when new)."""
        if arms != self._arm_list:
            self._arm_idx = np.fromiter((self._ensure_arm(a) for a in arms), dtype=np.intp, count=len(arms))
            self._arm_list = list(arms)
        return self._arm_idx

    def _vector(self, context: Mapping[str, float]) -> np.ndarray:
        return self._encoder.vector(context)

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

    def reward(self, success: float, cost_usd: float) -> float:
        return self.alpha * success - self.beta * cost_usd

    def pulls(self, arm: str) -> int:
        i = self._index.get(arm)
        return 0 if i is None else int(self._pulls[i])
