"""``weave-router replay --through-kafka``: the replay's learning goes through the real topics and the
real learner agent (Faust worker) on the session's embedded broker, and reports the same figures as
the in-process replay of the same seed, next to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from streams.cli import app
from streams.evaluation.datasets import OutcomeMatrix, Task
from streams.evaluation.kafka_replay import run_kafka_replay
from streams.evaluation.report import render_comparison, write_json
from streams.routing.settings import BanditSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODELS = ["small", "medium", "large"]


def hand_matrix(n: int = 30, seed: int = 3) -> OutcomeMatrix:
    """n tasks x 3 models: the dearer the model, the likelier it succeeds (an agent-run-like cascade)."""
    rng = np.random.default_rng(seed)
    success = (rng.random((n, 3)) < np.array([0.4, 0.65, 0.9])).astype(float)
    cost = np.array([0.02, 0.1, 0.6]) * rng.uniform(0.5, 1.5, (n, 3))
    kinds = ("fix the parser", "add a cli flag", "rewrite the engine")
    tasks = [Task(f"t{i:02d}", f"{kinds[i % 3]} in module {i}", {"kind": kinds[i % 3]}) for i in range(n)]
    return OutcomeMatrix("hand30", tasks, MODELS, success, cost)


def test_replay_through_kafka_learns_every_attempt_and_reports_like_in_process(broker: str, tmp_path: Path) -> None:
    matrix = hand_matrix()
    cmp = run_kafka_replay(matrix, seeds=1, max_attempts=3, config=BanditSettings(seed=11),
                           bootstrap_servers=broker, embedded=True, max_lag=4)
    k, local, st = cmp.kafka, cmp.in_process, cmp.stats

    # Every decision was published, joined with its trace and outcome, and learned by the agent.
    attempts = round(k.attempts_per_task * k.tasks)
    assert st.decisions == attempts > matrix.n_tasks
    assert st.outcomes_learned == attempts
    assert st.timeouts == 0
    # The gateway's final policy came back over router.policy and holds exactly the attempts made.
    assert sum(st.learned_pulls.values()) == attempts
    for model in MODELS:
        assert st.learned_pulls[model] == round(k.models_chosen.get(model, 0.0) * k.tasks)
    assert st.policy_swaps >= 2
    # The staleness bound held: no decision was taken on a policy more than max_lag outcomes behind.
    assert st.max_seen_lag <= 4

    # Same figures as the in-process replay, on the same seed and task order.
    assert k.tasks == local.tasks == 30 and k.seeds == local.seeds == 1
    assert k.best_model == local.best_model and k.best_success_rate == local.best_success_rate
    for r in (k, local):
        assert 0.0 < r.success_rate <= 1.0 and r.cost_per_task > 0
        assert r.success_vs_best == pytest.approx(r.success_rate / r.best_success_rate)
        assert r.cost_vs_best == pytest.approx(r.cost_per_task / r.best_cost_per_task)
    # Batching and staleness may move the numbers a little, not the picture: both learn to save on
    # the dearest model while keeping most of its success.
    assert abs(k.success_rate - local.success_rate) <= 0.2
    assert k.cost_vs_best < 1.0 and local.cost_vs_best < 1.0

    out = json.loads(write_json(cmp, tmp_path / "r.json").read_text())
    assert out["success_rate"] == k.success_rate and out["in_process"]["success_rate"] == local.success_rate
    assert out["through_kafka"]["outcomes_learned"] == attempts
    console = Console(record=True, width=160)
    render_comparison(cmp, console)
    text = console.export_text()
    assert "through Kafka" in text and "in-process" in text and f"{attempts} outcomes learned" in text


def test_strict_mode_decides_every_attempt_on_a_policy_that_learned_all_earlier_outcomes(broker: str) -> None:
    matrix = hand_matrix(n=5, seed=5)
    cmp = run_kafka_replay(matrix, seeds=1, max_attempts=2, config=BanditSettings(seed=2),
                           bootstrap_servers=broker, embedded=True, max_lag=0)
    st = cmp.stats
    assert st.max_seen_lag == 0 and st.timeouts == 0
    assert st.outcomes_learned == st.decisions == sum(st.learned_pulls.values())
    assert st.waits == st.decisions - 1  # every decision but the first waited for the learner


def test_cli_replay_offers_through_kafka() -> None:
    result = CliRunner().invoke(app, ["replay", "--help"])
    assert result.exit_code == 0
    assert "--through-kafka" in result.output
