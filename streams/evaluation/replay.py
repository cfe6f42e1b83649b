"""Replay: an honest online simulation of the learned router on an outcome matrix.

Tasks arrive in a seeded random order. For each task the policy picks a model and *pays* for that
one cell of the matrix (success and cost); it never sees a cell it did not choose. If the attempt
failed and attempts remain, the session escalates: the same policy picks again among the models not
yet tried, with the attempt number and the failed models in its context. Costs add across attempts;
the session succeeds if any attempt does.

The catalogue the policy starts from is what a router would know before serving anything: each
model's price (here its mean cost per task in the matrix) and a tier derived from price rank.
Success is only learned.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streams.config import ModelSettings, Settings, Tier, load_settings
from streams.evaluation.datasets import OutcomeMatrix, load_dataset, task_context
from streams.routing.bandit import ATTEMPT_KEY, ATTEMPTS_LEFT_KEY, ContextualBandit
from streams.routing.settings import BanditSettings

PASS_THRESHOLD = 0.5  # a graded score below this counts as a failed attempt (worth escalating)
KNOB_FACTORS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # "usd" cost scale: knob = factor / reference cost
# "relative" cost scale: beta is already in units of the dearest model's cost, the same on any data.
RELATIVE_KNOBS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.5, 5.0)
REGRET_POINTS = 50
# A coding agent retrying a failed task with another (usually stronger) model: up to three runs in
# all, what a team would tolerate before a human looks (hard tasks are solved by a different model,
# not by the same one).
DEFAULT_MAX_ATTEMPTS = 3
# ``--through-kafka``: outcomes the gateway's policy may be behind before a decision waits for the
# learner (see streams.evaluation.kafka_replay, "Staleness").
DEFAULT_KAFKA_MAX_LAG = 8


class ReplayPolicy(Protocol):
    def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]: ...

    def learn_outcome(self, context: dict[str, float], arm: str, success: float, cost_usd: float) -> None: ...


def escalates(policy: ReplayPolicy, context: dict[str, float], arms: list[str]) -> bool:
    """Ask the policy whether a failed task is worth another attempt (policies without a stop rule
    always retry, up to ``max_attempts``)."""
    ask = getattr(policy, "should_escalate", None)
    return True if ask is None else bool(ask(context, arms))


class PaidOutcomes:
    """The only way the simulation reads the matrix: one (task, model) cell per paid attempt."""

    def __init__(self, matrix: OutcomeMatrix) -> None:
        self._success = matrix.success
        self._cost = matrix.cost
        self.reads: list[tuple[int, int]] = []

    def pay(self, task: int, model: int) -> tuple[float, float]:
        self.reads.append((task, model))
        return float(self._success[task, model]), float(self._cost[task, model])


@dataclass(slots=True)
class Attempt:
    model: str
    success: float
    cost_usd: float
    propensity: float
    confidence: float


@dataclass(slots=True)
class Session:
    task: int
    attempts: list[Attempt]

    @property
    def success(self) -> float:
        return max((a.success for a in self.attempts), default=0.0)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)


def attempt_context(base: dict[str, float], attempt: int, failed: Sequence[str], max_attempts: int) -> dict[str, float]:
    """The task's context plus what the cascade knows: attempt number and which models failed."""
    ctx = dict(base)
    ctx[ATTEMPT_KEY] = float(attempt)
    ctx[ATTEMPTS_LEFT_KEY] = float(max_attempts - attempt)
    for m in failed:
        ctx[f"failed:{m}"] = 1.0
    return ctx


def simulate(
    matrix: OutcomeMatrix,
    policy: ReplayPolicy,
    outcomes: PaidOutcomes,
    *,
    order: Sequence[int],
    max_attempts: int,
    contexts: Sequence[dict[str, float]] | None = None,
    label_noise: float = 0.0,
    noise_seed: int = 0,
) -> list[Session]:
    """Run one pass over the tasks in ``order``; the policy learns only from cells it paid for.

    ``label_noise``: the share of attempts whose outcome the router is told wrong (a flaky test
    suite, an agent's own tests that miss the bug). The router learns and stops its cascade on
    what it is told; the session is scored on the truth.
    """
    contexts = contexts if contexts is not None else [task_context(t) for t in matrix.tasks]
    model_index = {m: j for j, m in enumerate(matrix.models)}
    flips = np.random.default_rng([noise_seed, 0x5EED]) if label_noise > 0 else None
    learn_outcome: Any = policy.learn_outcome
    timed = "ts" in inspect.signature(learn_outcome).parameters  # policies that forget take a clock
    sessions: list[Session] = []
    for step, t in enumerate(order):
        tried: list[str] = []
        attempts: list[Attempt] = []
        for k in range(1, max_attempts + 1):
            arms = [m for m in matrix.models if m not in tried]
            if not arms:
                break
            ctx = attempt_context(contexts[t], k, tried, max_attempts)
            if k > 1 and not escalates(policy, ctx, arms):
                break
            arm, propensity, confidence = policy.predict_one(ctx, arms)
            success, cost = outcomes.pay(t, model_index[arm])
            told = success
            if flips is not None and flips.random() < label_noise:
                told = 1.0 - success
            if timed:
                learn_outcome(ctx, arm, told, cost, ts=float(step))  # the task's position is the clock
            else:
                learn_outcome(ctx, arm, told, cost)
            attempts.append(Attempt(arm, success, cost, propensity, confidence))
            tried.append(arm)
            if told >= PASS_THRESHOLD:
                break
        sessions.append(Session(int(t), attempts))
    return sessions


def swap_skills(matrix: OutcomeMatrix, order: Sequence[int], a: str, b: str, *, at: int) -> OutcomeMatrix:
    """Drift: the matrix in which models ``a`` and ``b`` trade their outcomes for every task that
    arrives at position ``at`` or later of ``order`` (costs stay: a model does not change price)."""
    ia, ib = matrix.models.index(a), matrix.models.index(b)
    success = matrix.success.copy()
    late = np.asarray(order[at:], dtype=np.intp)
    success[late, ia], success[late, ib] = matrix.success[late, ib], matrix.success[late, ia]
    return OutcomeMatrix(f"{matrix.name}-drift", matrix.tasks, matrix.models, success, matrix.cost, matrix.calls,
                         matrix.meta)


# ---- catalogue --------------------------------------------------------------------------------

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


# ---- reference points -------------------------------------------------------------------------


def best_single_model(matrix: OutcomeMatrix) -> tuple[str, float, float]:
    """Highest mean success; ties go to the cheaper model."""
    s = matrix.success.mean(axis=0)
    c = matrix.cost.mean(axis=0)
    j = min(range(len(matrix.models)), key=lambda j: (-round(float(s[j]), 12), float(c[j])))
    return matrix.models[j], float(s[j]), float(c[j])


def cheapest_model(matrix: OutcomeMatrix) -> tuple[str, float, float]:
    s = matrix.success.mean(axis=0)
    c = matrix.cost.mean(axis=0)
    j = int(np.argmin(c))
    return matrix.models[j], float(s[j]), float(c[j])


def oracle_per_task(matrix: OutcomeMatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per task, the cheapest model among those with the best score (cheapest successful model)."""
    best = matrix.success.max(axis=1, keepdims=True)
    cost = np.where(matrix.success >= best, matrix.cost, np.inf).min(axis=1)
    return best[:, 0], cost


# ---- curve metrics ----------------------------------------------------------------------------


def _envelope(points: Sequence[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    """Best success reachable at cost <= c (non-decreasing envelope of the curve), on ``grid``."""
    pts = sorted(points)
    out = np.full(grid.shape, -np.inf)
    for cost, success in pts:
        out = np.where(grid >= cost, np.maximum(out, success), out)
    return out


def aiq(points: Sequence[tuple[float, float]], c_min: float, c_max: float, n: int = 1001) -> float:
    """RouterBench AIQ: average quality of the curve's envelope over the normalised cost range."""
    if not points:
        return 0.0
    if c_max <= c_min:
        return max(s for _, s in points)
    grid = np.linspace(c_min, c_max, n)
    env = _envelope(points, grid)
    floor = min(s for _, s in points)  # below the cheapest point, count its quality (no extrapolation)
    env = np.where(np.isfinite(env), env, floor)
    return float(np.trapezoid(env, grid) / (c_max - c_min))


def apgr(
    points: Sequence[tuple[float, float]],
    weak: tuple[float, float],
    strong: tuple[float, float],
    n: int = 1001,
) -> float:
    """RouteLLM APGR: average over cost budgets between the weak and the strong model of the
    performance gap recovered, (quality - weak) / (strong - weak). Both end models are available
    as routing choices, so the envelope includes them."""
    (c_weak, s_weak), (c_strong, s_strong) = weak, strong
    if s_strong <= s_weak or c_strong <= c_weak:
        return 1.0 if max((s for _, s in points), default=s_weak) >= s_strong else 0.0
    grid = np.linspace(c_weak, c_strong, n)
    env = _envelope([*points, weak, strong], grid)
    pgr = (env - s_weak) / (s_strong - s_weak)
    return float(np.trapezoid(pgr, grid) / (c_strong - c_weak))


# ---- report -----------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    dataset: str
    tasks: int
    models: int
    seeds: int
    max_attempts: int
    alpha: float
    beta: float
    exploration: str
    success_rate: float
    cost_per_task: float
    success_std: float
    cost_std: float
    best_model: str
    best_success_rate: float
    best_cost_per_task: float
    success_vs_best: float
    cost_vs_best: float
    oracle_success_rate: float
    oracle_cost_per_task: float
    cheapest_model: str
    cheapest_success_rate: float
    cheapest_cost_per_task: float
    attempts_per_task: float
    curve: list[dict[str, float]]
    aiq: float
    apgr: float
    regret: list[dict[str, float]]
    models_chosen: dict[str, float] = field(default_factory=dict)
    single_models: list[dict[str, Any]] = field(default_factory=list)
    meets_target: bool = False
    quality_target: float | None = None  # the curve's knob is the target when set, else beta
    label_noise: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SeedRun:
    """One pass over the tasks (one seed), scored."""

    success: float
    cost: float
    attempts: float
    regret: np.ndarray
    chosen: dict[str, int]


def task_order(matrix: OutcomeMatrix, seed: int) -> list[int]:
    """The seeded order tasks arrive in (the same for every way of running the replay)."""
    return [int(i) for i in np.random.default_rng(seed).permutation(matrix.n_tasks)]


def score_run(
    matrix: OutcomeMatrix, settings: BanditSettings, *, beta: float, order: Sequence[int], sessions: Sequence[Session]
) -> SeedRun:
    """Success, cost, attempts and regret of one pass (``sessions`` in ``order``)."""
    # Regret against the per-task hindsight best single model, in reward units.
    task_u = settings.alpha * matrix.success - beta * matrix.cost
    best_u = task_u.max(axis=1)
    got = np.array([settings.alpha * s.success - beta * s.cost_usd for s in sessions])
    regret = np.cumsum(best_u[np.asarray(order)] - got)
    chosen: dict[str, int] = {}
    for s in sessions:
        for a in s.attempts:
            chosen[a.model] = chosen.get(a.model, 0) + 1
    return SeedRun(
        success=float(np.mean([s.success for s in sessions])),
        cost=float(np.mean([s.cost_usd for s in sessions])),
        attempts=float(np.mean([len(s.attempts) for s in sessions])),
        regret=regret,
        chosen=chosen,
    )


def _run_once(
    matrix: OutcomeMatrix,
    settings: BanditSettings,
    *,
    beta: float,
    seed: int,
    max_attempts: int,
    contexts: list[dict[str, float]],
    policy_factory: Callable[[OutcomeMatrix, BanditSettings, float, int], ReplayPolicy] | None,
    label_noise: float = 0.0,
) -> SeedRun:
    order = task_order(matrix, seed)
    if policy_factory is not None:
        policy = policy_factory(matrix, settings, beta, seed)
    else:
        policy = make_bandit(matrix, settings, beta=beta, seed=seed)
    sessions = simulate(matrix, policy, PaidOutcomes(matrix), order=order, max_attempts=max_attempts,
                        contexts=contexts, label_noise=label_noise, noise_seed=seed)
    return score_run(matrix, settings, beta=beta, order=order, sessions=sessions)


def default_knobs(matrix: OutcomeMatrix, beta: float, cost_scale: str = "usd") -> list[float]:
    """Cost weights spanning the data set's price scale (relative to the best model's cost)."""
    if cost_scale == "relative":
        return sorted(set(RELATIVE_KNOBS) | {beta})
    _, _, ref = best_single_model(matrix)
    ref = ref if ref > 0 else 1.0
    return sorted({round(f / ref, 12) for f in KNOB_FACTORS} | {beta})


def bandit_settings(config: Settings | BanditSettings | str | Path | None) -> BanditSettings:
    if isinstance(config, BanditSettings):
        return config
    if isinstance(config, Settings):
        return config.routing.bandit
    if config is None:
        return BanditSettings()
    return load_settings(config).routing.bandit


TARGET_KNOBS = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99, 1.0)


def run_replay(
    dataset_dir: str | Path | OutcomeMatrix,
    *,
    seeds: int = 5,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    config: Settings | BanditSettings | str | Path | None = None,
    knob_values: Sequence[float] | None = None,
    curve: bool = True,
    policy_factory: Callable[[OutcomeMatrix, BanditSettings, float, int], ReplayPolicy] | None = None,
    quality_target: float | None = None,
    label_noise: float = 0.0,
) -> ReplayReport:
    """Replay the learned policy over ``seeds`` task orders.

    The knob of the curve is the quality target when one is set (here or in the settings), else
    beta, the cost weight. ``label_noise`` flips that share of the outcomes the router is told.
    """
    matrix = dataset_dir if isinstance(dataset_dir, OutcomeMatrix) else load_dataset(dataset_dir)
    settings = bandit_settings(config)
    if quality_target is not None:
        settings = settings.model_copy(update={"quality_target": quality_target})
    base_seed = settings.seed or 0
    contexts = [task_context(t) for t in matrix.tasks]

    def runs(own: BanditSettings) -> list[SeedRun]:
        return [
            _run_once(matrix, own, beta=own.beta, seed=base_seed + i, max_attempts=max_attempts,
                      contexts=contexts, policy_factory=policy_factory, label_noise=label_noise)
            for i in range(seeds)
        ]

    main = runs(settings)
    target = settings.quality_target
    points: list[dict[str, float]] | None = None
    if curve:
        points = []
        if target is not None:
            knobs = list(knob_values) if knob_values is not None else sorted(set(TARGET_KNOBS) | {target})
        else:
            knobs = list(knob_values) if knob_values is not None else default_knobs(
                matrix, settings.beta, settings.cost_scale)
        for knob in knobs:
            if knob == (target if target is not None else settings.beta):
                rs = main
            else:
                rs = runs(settings.model_copy(update={"quality_target": knob} if target is not None else {"beta": knob}))
            points.append(
                {
                    "knob": float(knob),
                    "success_rate": float(np.mean([r.success for r in rs])),
                    "cost_per_task": float(np.mean([r.cost for r in rs])),
                }
            )
    report = build_report(matrix, settings, main, seeds=seeds, max_attempts=max_attempts, points=points)
    report.label_noise = label_noise
    return report


def build_report(
    matrix: OutcomeMatrix,
    settings: BanditSettings,
    main: Sequence[SeedRun],
    *,
    seeds: int,
    max_attempts: int,
    points: list[dict[str, float]] | None = None,
) -> ReplayReport:
    """The report of the runs at ``settings.beta`` (one per seed); ``points`` is the beta sweep, if run."""
    succ = np.array([r.success for r in main])
    cost = np.array([r.cost for r in main])
    best_name, best_s, best_c = best_single_model(matrix)
    cheap_name, cheap_s, cheap_c = cheapest_model(matrix)
    o_s, o_c = oracle_per_task(matrix)
    if not points:
        points = [{"knob": settings.beta, "success_rate": float(succ.mean()), "cost_per_task": float(cost.mean())}]
    pts = [(p["cost_per_task"], p["success_rate"]) for p in points]
    single = [
        {"model": m, "success_rate": float(s), "cost_per_task": float(c)}
        for m, s, c in zip(matrix.models, matrix.success.mean(axis=0), matrix.cost.mean(axis=0), strict=True)
    ]
    c_lo = min(p[0] for p in pts + [(cheap_c, cheap_s)])
    c_hi = max(p[0] for p in pts + [(best_c, best_s)])

    regret_curve = np.mean([r.regret for r in main], axis=0)
    n = matrix.n_tasks
    marks = sorted({max(1, round(n * i / REGRET_POINTS)) for i in range(1, REGRET_POINTS + 1)})
    chosen: dict[str, float] = {}
    for r in main:
        for m, k in r.chosen.items():
            chosen[m] = chosen.get(m, 0.0) + k / (len(main) * n)

    s_mean, c_mean = float(succ.mean()), float(cost.mean())
    return ReplayReport(
        dataset=matrix.name,
        tasks=n,
        models=len(matrix.models),
        seeds=seeds,
        max_attempts=max_attempts,
        alpha=settings.alpha,
        beta=settings.beta,
        exploration=settings.exploration,
        success_rate=s_mean,
        cost_per_task=c_mean,
        success_std=float(succ.std()),
        cost_std=float(cost.std()),
        best_model=best_name,
        best_success_rate=best_s,
        best_cost_per_task=best_c,
        success_vs_best=s_mean / best_s if best_s else float("inf"),
        cost_vs_best=c_mean / best_c if best_c else float("inf"),
        oracle_success_rate=float(o_s.mean()),
        oracle_cost_per_task=float(o_c.mean()),
        cheapest_model=cheap_name,
        cheapest_success_rate=cheap_s,
        cheapest_cost_per_task=cheap_c,
        attempts_per_task=float(np.mean([r.attempts for r in main])),
        curve=points,
        aiq=aiq(pts, c_lo, c_hi),
        apgr=apgr(pts, (cheap_c, cheap_s), (best_c, best_s)),
        regret=[{"task": float(t), "regret": float(regret_curve[t - 1])} for t in marks],
        models_chosen=dict(sorted(chosen.items(), key=lambda kv: -kv[1])),
        single_models=single,
        quality_target=settings.quality_target,
        meets_target=bool(s_mean >= best_s and c_mean <= 0.25 * best_c),
    )
