"""Scoring replay passes (one per seed) and the report of a replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streams.evaluation.datasets import OutcomeMatrix
from streams.evaluation.replay.baselines import aiq, apgr, best_single_model, cheapest_model, oracle_per_task
from streams.evaluation.replay.simulation import Session
from streams.routing.settings import BanditSettings

REGRET_POINTS = 50


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
    # With ``replay --ceilings``: what a learner with full information, and the best fixed order of
    # models in hindsight, reach on the same matrix (``streams.evaluation.replay.ceilings``).
    ceilings: dict[str, Any] | None = None

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
