"""Reference points of an outcome matrix (best single model, cheapest, oracle) and the cost-quality
curve's summary metrics (RouterBench AIQ, RouteLLM APGR)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streams.evaluation.datasets import OutcomeMatrix


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
