"""Replay: an honest online simulation of the learned router on an outcome matrix.

Tasks arrive in a seeded random order; the policy pays for, and learns from, only the cell of the
matrix it picks, and escalates a failed task to another model while attempts remain (``simulation``).

The catalogue the policy starts from is what a router would know before serving anything: each
model's price (here its mean cost per task in the matrix) and a tier derived from price rank.
Success is only learned.

Modules: ``simulation`` (one pass), ``catalogue`` (the models and the bandit a router would start
with), ``baselines`` (reference points, AIQ, APGR), ``scoring`` (a pass scored, the report),
``runner`` (``run_replay``: seeds and the cost-quality curve).
"""

from streams.evaluation.replay.baselines import aiq, apgr, best_single_model, cheapest_model, oracle_per_task
from streams.evaluation.replay.catalogue import TIERS_BY_PRICE, catalogue, make_bandit
from streams.evaluation.replay.runner import (
    DEFAULT_KAFKA_MAX_LAG,
    DEFAULT_MAX_ATTEMPTS,
    KNOB_FACTORS,
    RELATIVE_KNOBS,
    TARGET_KNOBS,
    bandit_settings,
    default_knobs,
    run_replay,
    task_order,
)
from streams.evaluation.replay.scoring import REGRET_POINTS, ReplayReport, SeedRun, build_report, score_run
from streams.evaluation.replay.simulation import (
    PASS_THRESHOLD,
    Attempt,
    PaidOutcomes,
    Pick,
    ReplayPolicy,
    Session,
    TaskAttempts,
    attempt_context,
    escalates,
    simulate,
    swap_skills,
)

__all__ = [
    "DEFAULT_KAFKA_MAX_LAG",
    "DEFAULT_MAX_ATTEMPTS",
    "KNOB_FACTORS",
    "PASS_THRESHOLD",
    "REGRET_POINTS",
    "RELATIVE_KNOBS",
    "TARGET_KNOBS",
    "TIERS_BY_PRICE",
    "Attempt",
    "PaidOutcomes",
    "Pick",
    "ReplayPolicy",
    "ReplayReport",
    "SeedRun",
    "Session",
    "TaskAttempts",
    "aiq",
    "apgr",
    "attempt_context",
    "bandit_settings",
    "best_single_model",
    "build_report",
    "catalogue",
    "cheapest_model",
    "default_knobs",
    "escalates",
    "make_bandit",
    "oracle_per_task",
    "run_replay",
    "score_run",
    "simulate",
    "swap_skills",
    "task_order",
]
