"""Evaluating routers: replays on outcome matrices (``replay``), off-policy estimates from logged
decisions (``ope``, ``offline``), the replay through the real broker (``kafka_replay``), reports."""

from __future__ import annotations

from streams.evaluation.datasets import OutcomeMatrix, Task, load_dataset, task_context
from streams.evaluation.kafka_replay import run_kafka_replay
from streams.evaluation.offline import Evaluation, evaluate_records
from streams.evaluation.ope import Estimate, LoggedDecision, doubly_robust, ips, snips
from streams.evaluation.replay import run_replay

__all__ = [
    "Estimate",
    "Evaluation",
    "LoggedDecision",
    "OutcomeMatrix",
    "Task",
    "doubly_robust",
    "evaluate_records",
    "ips",
    "load_dataset",
    "run_kafka_replay",
    "run_replay",
    "snips",
    "task_context",
]
