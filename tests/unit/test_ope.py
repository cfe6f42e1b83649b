"""Off-policy estimators on synthetic logs where the candidate's true value is known."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from streams.evaluation.ope import evaluate, read_records

ARMS = ["a", "b", "c"]
# mean reward of each arm by context group
MEANS = {0: {"a": 0.8, "b": 0.3, "c": 0.5}, 1: {"a": 0.2, "b": 0.9, "c": 0.4}}


def _log(n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    logging = np.array([0.5, 0.3, 0.2])  # uniform-ish logging policy, known propensities
    rows = []
    for _ in range(n):
        g = int(rng.integers(0, 2))
        j = int(rng.choice(3, p=logging))
        arm = ARMS[j]
        reward = float(rng.random() < MEANS[g][arm])
        rows.append({"context": {"g": float(g)}, "arm": arm, "propensity": float(logging[j]), "reward": reward})
    return rows


def candidate(context: Mapping[str, float], arms: list[str]) -> dict[str, float]:
    # picks the right arm 90% of the time in each group
    best = "a" if context.get("g", 0.0) == 0.0 else "b"
    return {a: (0.9 if a == best else 0.05) for a in arms}


# True value: each group half the time; 0.9 * best + 0.05 * others.
TRUTH = 0.5 * (0.9 * 0.8 + 0.05 * (0.3 + 0.5)) + 0.5 * (0.9 * 0.9 + 0.05 * (0.2 + 0.4))


def test_estimators_cover_the_truth() -> None:
    est = evaluate(_log(4000, 1), candidate)
    for name, e in est.items():
        assert e.covers(TRUTH), (name, e, TRUTH)
        assert e.high - e.low < 0.1, name
    # DR uses the reward model: it should be at least as tight as IPS here
    assert est["dr"].high - est["dr"].low <= est["ips"].high - est["ips"].low


def test_coverage_over_repeated_logs() -> None:
    hits = sum(evaluate(_log(800, s), candidate)["dr"].covers(TRUTH) for s in range(20))
    assert hits >= 16  # nominal 95%


def test_reads_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in _log(50, 2)))
    assert len(read_records(p)) == 50
