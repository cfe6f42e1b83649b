"""``weave-router evaluate``: off-policy estimates of a candidate config on a logged JSONL whose truth is known."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from test_routing_fixtures import default_settings

from streams.evaluation import offline
from streams.evaluation.offline import CandidateModel, Record, evaluate_records, load_jsonl, main
from streams.routing.experiments import candidate_settings

OPUS, CHEAP = "claude-opus-sim", "deepseek-sim"
SUCCESS = {"debugging": {OPUS: 0.9, CHEAP: 0.3}, "feature": {OPUS: 0.9, CHEAP: 0.8}}
COST = {OPUS: 0.05, CHEAP: 0.005}
P_OPUS = {"debugging": 0.3, "feature": 0.6}  # the logging policy: stochastic, context-dependent
# The candidate: the strong model for debugging, the cheap one otherwise.
CANDIDATE_YAML = """\
routing:
  routes:
    - name: by-task
      pattern: rules
      rules:
        - {when: {task: debugging}, model: claude-opus-sim}
        - {when: {}, model: deepseek-sim}
"""


def truth_candidate() -> float:
    return 0.5 * (SUCCESS["debugging"][OPUS] - COST[OPUS]) + 0.5 * (SUCCESS["feature"][CHEAP] - COST[CHEAP])


def truth_logged() -> float:
    total = 0.0
    for task, p in P_OPUS.items():
        total += 0.5 * (p * (SUCCESS[task][OPUS] - COST[OPUS]) + (1 - p) * (SUCCESS[task][CHEAP] - COST[CHEAP]))
    return total


def write_log(path: Path, n: int = 4000, seed: int = 5, as_outcomes: bool = False) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            task = rng.choice(["debugging", "feature"])
            arm = OPUS if rng.random() < P_OPUS[task] else CHEAP
            propensity = P_OPUS[task] if arm == OPUS else 1 - P_OPUS[task]
            success = float(rng.random() < SUCCESS[task][arm])
            row: dict[str, Any] = {"arm": arm, "propensity": propensity,
                                   "context": {"bias": 1.0, f"task={task}": 1.0},
                                   "features": {"task": task, "client": "claude_code"}}
            if as_outcomes:
                row.update(success=success, cost_usd=COST[arm])
            else:
                row["reward"] = success - COST[arm]
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def candidate_file(tmp_path: Path) -> Path:
    p = tmp_path / "candidate.yaml"
    p.write_text(CANDIDATE_YAML)
    return p


def test_estimates_recover_the_candidates_known_value(tmp_path: Path, candidate_file: Path) -> None:
    settings = default_settings()
    records = load_jsonl(write_log(tmp_path / "log.jsonl"))
    ev = evaluate_records(records, CandidateModel(candidate_settings(settings, candidate_file)))
    truth = truth_candidate()
    for name, est in (("ips", ev.ips), ("snips", ev.snips), ("dr", ev.dr)):
        assert est.covers(truth), (name, est, truth)
        assert abs(est.value - truth) < 0.04, (name, est.value, truth)
    assert ev.logged.covers(truth_logged())
    assert ev.dr.low > ev.logged.high  # the candidate is clearly better, and the estimates see it
    assert ev.n == 4000 and 0.3 * ev.n < ev.ess < ev.n
    assert ev.support == 1.0
    # The logging policy picks the candidate's arm with P(opus | debugging) or P(cheap | feature).
    assert ev.agreement == pytest.approx(0.5 * P_OPUS["debugging"] + 0.5 * (1 - P_OPUS["feature"]), abs=0.03)


def test_outcome_columns_give_the_same_rewards_with_the_configured_weights(tmp_path: Path) -> None:
    a = load_jsonl(write_log(tmp_path / "a.jsonl"), alpha=1.0, beta=1.0)
    b = load_jsonl(write_log(tmp_path / "b.jsonl", as_outcomes=True), alpha=1.0, beta=1.0)
    assert [r.reward for r in a] == pytest.approx([r.reward for r in b])
    c = load_jsonl(tmp_path / "b.jsonl", alpha=2.0, beta=10.0)
    assert c[0].reward == pytest.approx(2.0 * (b[0].reward + COST[b[0].arm]) - 10.0 * COST[b[0].arm])


def test_bandit_candidate_probabilities_are_a_distribution_over_capable_arms() -> None:
    s = default_settings(bandit={"sigma": 0.0, "seed": 1})
    model = CandidateModel(s, draws=64, seed=3)
    rec = Record(CHEAP, 0.5, 1.0, {"bias": 1.0}, {"task": "feature", "tools_offered": 3})
    dist = model.distribution(rec)
    assert sum(dist.values()) == pytest.approx(1.0)
    assert set(dist) <= {m.name for m in s.models}
    assert CandidateModel(s, draws=64, seed=3).distribution(rec) == dist  # seeded: repeatable
    ucb = CandidateModel(default_settings(bandit={"exploration": "ucb", "sigma": 0.0}))
    assert list(ucb.distribution(rec).values()) == [1.0]
    # sigma above any confidence: always the frontier default.
    safe = CandidateModel(default_settings(bandit={"sigma": 1.0}), draws=16)
    picked = safe.distribution(rec)
    assert picked.get(s.frontier_default(), 0.0) > 0.0


def test_main_prints_json_with_every_estimate(tmp_path: Path, candidate_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log.jsonl", n=600)
    assert main(default_settings(), candidate_file, "7d", log, True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 600 and set(out) >= {"logged", "ips", "snips", "dr", "ess"}
    assert out["dr"]["low"] < out["dr"]["value"] < out["dr"]["high"]


def test_main_renders_a_table(tmp_path: Path, candidate_file: Path) -> None:
    console = Console(record=True, width=140)
    assert main(default_settings(), candidate_file, file=write_log(tmp_path / "l.jsonl", n=300), console=console) == 0
    text = console.export_text()
    assert "candidate: doubly robust" in text and "logged policy" in text and "effective sample size" in text


def test_main_reports_bad_input(tmp_path: Path, candidate_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = default_settings()
    assert main(s, tmp_path / "missing.yaml", file=write_log(tmp_path / "l.jsonl", n=10)) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(s, candidate_file, file=empty) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"arm": OPUS, "propensity": 0.0, "reward": 1}) + "\n")
    assert main(s, candidate_file, file=bad) == 2
    assert "propensity" in capsys.readouterr().err


def test_without_a_file_a_running_service_owning_chdb_asks_for_one(
    tmp_path: Path, candidate_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import streams.analytics.report as report

    monkeypatch.setattr(report, "service_answers", lambda url, timeout_s=2.0: True)
    s = default_settings()
    s = s.model_copy(update={"data_dir": str(tmp_path), "clickhouse": s.clickhouse.model_copy(update={"url": None})})
    assert offline.main(s, candidate_file, "7d", None, False) == 2
    err = capsys.readouterr().err
    assert "--file" in err and "running Weave Router" in err
