"""Off-policy evaluation: what would a candidate policy have earned on the logged decisions?

Each logged record holds the context, the arm the logging policy chose, that arm's propensity under
the logging policy, and the observed reward. Estimators: inverse propensity scoring (IPS),
self-normalised IPS (SNIPS) and doubly robust (DR, with a per-arm ridge reward model fitted by
cross-fitting). Confidence intervals by the normal approximation of the per-record terms (IPS, DR)
or a seeded bootstrap (SNIPS, a ratio).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# candidate(context, arms) -> probability of each arm under the candidate policy
CandidatePolicy = Callable[[Mapping[str, float], list[str]], Mapping[str, float]]
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    context: dict[str, float]
    arm: str
    propensity: float
    reward: float


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


def read_records(source: Iterable[Mapping[str, Any]] | str | Path) -> list[LoggedDecision]:
    """Records from an iterable of dicts (context, arm, propensity, reward) or a JSONL file."""
    if isinstance(source, str | Path):
        with Path(source).open() as f:
            rows: Iterable[Mapping[str, Any]] = [json.loads(line) for line in f if line.strip()]
    else:
        rows = source
    out = []
    for r in rows:
        p = float(r["propensity"])
        if not 0.0 < p <= 1.0:
            raise ValueError(f"propensity must be in (0, 1], got {p}")
        out.append(LoggedDecision(dict(r.get("context") or {}), str(r["arm"]), p, float(r["reward"])))
    return out


def _arms(records: list[LoggedDecision]) -> list[str]:
    return sorted({r.arm for r in records})


def _candidate_probs(records: list[LoggedDecision], candidate: CandidatePolicy, arms: list[str]) -> np.ndarray:
    probs = np.zeros((len(records), len(arms)))
    for i, r in enumerate(records):
        dist = candidate(r.context, arms)
        for j, a in enumerate(arms):
            probs[i, j] = float(dist.get(a, 0.0))
    return probs


def _normal_ci(terms: np.ndarray) -> Estimate:
    n = len(terms)
    mean = float(terms.mean()) if n else 0.0
    half = Z95 * float(terms.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(mean, mean - half, mean + half, n)


def ips(records: list[LoggedDecision], candidate: CandidatePolicy) -> Estimate:
    arms = _arms(records)
    probs = _candidate_probs(records, candidate, arms)
    col = {a: j for j, a in enumerate(arms)}
    w = np.array([probs[i, col[r.arm]] / r.propensity for i, r in enumerate(records)])
    rewards = np.array([r.reward for r in records])
    return _normal_ci(w * rewards)


def snips(
    records: list[LoggedDecision], candidate: CandidatePolicy, *, bootstrap: int = 500, seed: int = 0
) -> Estimate:
    arms = _arms(records)
    probs = _candidate_probs(records, candidate, arms)
    col = {a: j for j, a in enumerate(arms)}
    w = np.array([probs[i, col[r.arm]] / r.propensity for i, r in enumerate(records)])
    rewards = np.array([r.reward for r in records])
    value = float((w * rewards).sum() / w.sum()) if w.sum() > 0 else 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(records), size=(bootstrap, len(records)))
    ws, wr = w[idx].sum(axis=1), (w * rewards)[idx].sum(axis=1)
    boots = np.where(ws > 0, wr / np.where(ws > 0, ws, 1.0), 0.0)
    low, high = np.quantile(boots, [0.025, 0.975])
    return Estimate(value, float(low), float(high), len(records))


def _features(records: list[LoggedDecision]) -> tuple[np.ndarray, list[str]]:
    names = sorted({k for r in records for k in r.context})
    x = np.zeros((len(records), len(names) + 1))
    x[:, 0] = 1.0
    pos = {n: j + 1 for j, n in enumerate(names)}
    for i, r in enumerate(records):
        for k, v in r.context.items():
            x[i, pos[k]] = float(v)
    return x, names


def _fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    d = x.shape[1]
    return np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ y)


def doubly_robust(
    records: list[LoggedDecision], candidate: CandidatePolicy, *, folds: int = 2, ridge: float = 1.0
) -> Estimate:
    """DR: model estimate under the candidate + importance-weighted residual of the logged arm.

    The reward model (ridge regression per arm on the context) is cross-fitted: each record's
    prediction comes from a model fitted on the other folds, so its error does not leak in.
    """
    arms = _arms(records)
    probs = _candidate_probs(records, candidate, arms)
    x, _ = _features(records)
    rewards = np.array([r.reward for r in records])
    chosen = np.array([arms.index(r.arm) for r in records])
    prop = np.array([r.propensity for r in records])
    fold = np.arange(len(records)) % max(1, folds)
    pred = np.zeros((len(records), len(arms)))
    for f in range(max(1, folds)):
        test = fold == f
        train = ~test if folds > 1 else test
        for j in range(len(arms)):
            m = train & (chosen == j)
            if m.sum() == 0:
                continue
            coef = _fit_ridge(x[m], rewards[m], ridge)
            pred[test, j] = x[test] @ coef
    direct = (probs * pred).sum(axis=1)
    rows = np.arange(len(records))
    w = probs[rows, chosen] / prop
    terms = direct + w * (rewards - pred[rows, chosen])
    return _normal_ci(terms)


def evaluate(source: Iterable[Mapping[str, Any]] | str | Path, candidate: CandidatePolicy) -> dict[str, Estimate]:
    """All three estimators on one log."""
    records = read_records(source)
    if not records:
        raise ValueError("no logged decisions to evaluate")
    return {
        "ips": ips(records, candidate),
        "snips": snips(records, candidate),
        "dr": doubly_robust(records, candidate),
    }
