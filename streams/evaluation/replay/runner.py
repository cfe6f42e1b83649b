"""``run_replay``: the learned policy over seeded task orders, with the cost-quality curve swept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.config import Settings, load_settings
from streams.evaluation.datasets import OutcomeMatrix, load_dataset, task_context
from streams.evaluation.replay.baselines import best_single_model
from streams.evaluation.replay.catalogue import make_bandit
from streams.evaluation.replay.ceilings import best_within, static_orders
from streams.evaluation.replay.scoring import ReplayReport, SeedRun, build_report, score_run
from streams.evaluation.replay.simulation import PaidOutcomes, ReplayPolicy, simulate
from streams.routing.settings import BanditSettings

KNOB_FACTORS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # "usd" cost scale: knob = factor / reference cost
# "relative" cost scale: beta is already in units of the dearest model's cost, the same on any data.
RELATIVE_KNOBS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.5, 5.0)
# A coding agent retrying a failed task with another (usually stronger) model: up to three runs in
# all, what a team would tolerate before a human looks (hard tasks are solved by a different model,
# not by the same one).
DEFAULT_MAX_ATTEMPTS = 3
# ``--through-kafka``: outcomes the gateway's policy may be behind before a decision waits for the
# learner (see streams.evaluation.kafka_replay, "Staleness").
DEFAULT_KAFKA_MAX_LAG = 8
# The quality targets the curve sweeps when a target is set (else it sweeps beta).
TARGET_KNOBS = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99, 1.0)


def task_order(matrix: OutcomeMatrix, seed: int) -> list[int]:
    """The seeded order tasks arrive in (the same for every way of running the replay)."""
    return [int(i) for i in np.random.default_rng(seed).permutation(matrix.n_tasks)]


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
    full_information: bool = False,
) -> SeedRun:
    order = task_order(matrix, seed)
    if policy_factory is not None:
        policy = policy_factory(matrix, settings, beta, seed)
    else:
        policy = make_bandit(matrix, settings, beta=beta, seed=seed)
    sessions = simulate(matrix, policy, PaidOutcomes(matrix), order=order, max_attempts=max_attempts,
                        contexts=contexts, label_noise=label_noise, noise_seed=seed,
                        full_information=full_information)
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
    full_information: bool = False,
    ceilings: bool = False,
) -> ReplayReport:
    """Replay the learned policy over ``seeds`` task orders.

    The knob of the curve is the quality target when one is set (here or in the settings), else
    beta, the cost weight. ``label_noise`` flips that share of the outcomes the router is told.
    ``full_information``: the learner sees every model's outcome (a ceiling, not a router);
    ``ceilings``: add both ceilings of ``streams.evaluation.replay.ceilings`` to the report.
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
                      contexts=contexts, policy_factory=policy_factory, label_noise=label_noise,
                      full_information=full_information)
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
    if ceilings:
        full = run_replay(matrix, seeds=seeds, max_attempts=max_attempts, config=settings, knob_values=knob_values,
                          curve=curve, policy_factory=policy_factory, label_noise=label_noise, full_information=True)
        report.ceilings = ceiling_summary(matrix, report, full, max_attempts)
    return report


def ceiling_summary(matrix: OutcomeMatrix, report: ReplayReport, full: ReplayReport, max_attempts: int) -> dict[str, Any]:
    """The report's ``ceilings``: the full-information run, and the best static orders in hindsight
    at the replay's own cost and at the best single model's."""
    frontier = static_orders(matrix, max_attempts)

    def order(budget: float) -> dict[str, Any] | None:
        o = best_within(frontier, budget)
        return None if o is None else {"models": list(o.models), "success_rate": o.success_rate,
                                       "cost_per_task": o.cost_per_task}

    return {
        "full_information": {"success_rate": full.success_rate, "cost_per_task": full.cost_per_task,
                             "apgr": full.apgr, "curve": full.curve},
        "static_order_at_replay_cost": order(report.cost_per_task),
        "static_order_at_best_cost": order(report.best_cost_per_task),
    }
