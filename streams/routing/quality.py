"""The quality target: keep a share of the reference model's success at the least cost.

``routing.quality_target = 0.95`` asks the router to keep 95% of the success the frontier default
would have had on the same traffic, and to spend as little as it can doing so. That is a
constrained problem over the traffic, not over one request: a prompt where the cheap model is
almost as good should go cheap, a prompt where it is much worse should not, and the line between
them depends on the whole mix. Its Lagrangian picks, per request, the arm maximising
``p(arm) - price * cost(arm)``; ``price`` is the largest one whose choices still meet the target on
the recent traffic.

``QualityCalibrator`` keeps that recent traffic: for each of the last ``window`` decisions, every
arm's posterior mean and std of success as they were estimated then, and one fixed standard normal
per arm. An arm believed worse than the reference arm is credited ``pessimism`` stds of the
difference less than its mean, so the router spends the quality budget only on arms it has
evidence for: its own uncertainty. It finds
the price by a grid search on those rows with the same Thompson draws the decisions make (the credit
plus ``scale * std * z``), so the calibrated mix is the mix the decisions produce: with ties (a
fresh router, where every prompt looks alike) a calibrated share of requests deviates, not all or
none, and that share is how a cheap model gets tried at all.

The calibrator is decision-side state (what this process served recently), not learned evidence:
it is not part of a snapshot or a merge, and a restored policy rebuilds it within ``window``
decisions.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WINDOW = 128
DEFAULT_EVERY = 128
PESSIMISM = 0.5
_PRICE_RANGE = (-6.0, 6.0)  # log10 bounds of the price per cost unit (relative or USD)
_GRID = 32


class QualityCalibrator:
    """Recent decisions' estimates and the Lagrange price of cost that meets the target on them."""

    def __init__(self, window: int = DEFAULT_WINDOW, every: int = DEFAULT_EVERY, seed: int | None = None) -> None:
        self.window = max(8, int(window))
        self.every = max(1, int(every))
        self._rng = np.random.default_rng(seed)
        self._mean: np.ndarray | None = None  # (window, arms)
        self._std: np.ndarray | None = None
        self._z: np.ndarray | None = None
        self._n = 0  # rows written in all
        self._since = 0  # rows since the price was computed
        self._price: float | None = None
        self._key: tuple[int, ...] = ()

    @property
    def last_price(self) -> float | None:
        """The price the last ``price`` call returned (None before the first)."""
        return self._price

    def observe(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Record one decision's estimates for every arm the bandit knows (columns = arm index)."""
        k = len(mean)
        if self._mean is None or self._mean.shape[1] != k:
            self._resize(k)
        assert self._mean is not None and self._std is not None and self._z is not None
        row = self._n % self.window
        self._mean[row] = mean
        self._std[row] = std
        self._z[row] = self._rng.standard_normal(k)
        self._n += 1
        self._since += 1

    def _resize(self, k: int) -> None:
        """Arms were added: keep the rows, new columns start unknown (mean 0: never chosen)."""
        mean, std = np.zeros((self.window, k)), np.zeros((self.window, k))
        z = self._rng.standard_normal((self.window, k))
        if self._mean is not None and self._std is not None and self._z is not None:
            c = min(k, self._mean.shape[1])
            mean[:, :c], std[:, :c], z[:, :c] = self._mean[:, :c], self._std[:, :c], self._z[:, :c]
        self._mean, self._std, self._z = mean, std, z

    def price(
        self, idx: np.ndarray, cost: np.ndarray, reference: int, target: float, scale: float
    ) -> float:
        """The price of one cost unit in success units for arms ``idx`` (costs ``cost``), where
        column ``reference`` of ``idx`` is the reference arm. Recomputed every ``every`` rows, and at
        rows 1, 2, 4, 8 ... while the window fills (the first requests must not set the price for the
        rest)."""
        key = tuple(int(i) for i in idx) + (reference,)
        filling = self._n < self.window and self._n & (self._n - 1) == 0  # rows 1, 2, 4, 8 ...
        if self._price is not None and key == self._key and not filling and self._since < self.every:
            return self._price
        self._since, self._key = 0, key
        self._price = self._solve(idx, cost, reference, target, scale)
        return self._price

    def _solve(self, idx: np.ndarray, cost: np.ndarray, reference: int, target: float, scale: float) -> float:
        rows = min(self._n, self.window)
        lo, hi = _PRICE_RANGE
        if rows == 0 or self._mean is None or self._std is None or self._z is None:
            return 10.0**lo
        mean, std, z = self._mean[:rows, idx], self._std[:rows, idx], self._z[:rows, idx]
        credit = pessimistic(mean, std, reference)
        draws = np.clip(credit + scale * std * z, 0.0, 1.0)
        need = target * float(mean[:, reference].sum())
        # Two passes over a log grid of prices, all prices at once: (grid, rows) arrays, one arm at a
        # time (a running arg-max over a handful of arms is cheaper than one over a 3-D array).
        best = lo
        for _ in range(2):
            grid = np.linspace(lo, hi, _GRID)
            kept = _kept(draws, credit, cost, (10.0**grid)[:, None])
            ok = np.flatnonzero(kept >= need)
            if ok.size == 0:
                return 10.0 ** grid[0]  # even the best arms miss the target: buy success at any price
            j = int(ok.max())  # the largest price that still meets the target (kept falls with price)
            best = float(grid[j])
            if j == _GRID - 1:
                break
            lo, hi = grid[j], grid[j + 1]
        return 10.0**best


def _kept(draws: np.ndarray, credit: np.ndarray, cost: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Per price (rows of ``prices``): the credited success of the arms the draws pick at that price."""
    best = draws[None, :, 0] - prices * cost[0]
    kept = np.broadcast_to(credit[None, :, 0], best.shape)
    for k in range(1, draws.shape[1]):
        value = draws[None, :, k] - prices * cost[k]
        better = value > best  # ties keep the earlier arm, as argmax does
        best = np.where(better, value, best)
        kept = np.where(better, credit[None, :, k], kept)
    return kept.sum(axis=1)


def pessimistic(mean: np.ndarray, std: np.ndarray, reference: int) -> np.ndarray:
    """Success credited to each arm (last axis): an arm believed worse than the reference is
    credited ``PESSIMISM`` stds of the difference less, so spending quality on it needs evidence,
    not only a hopeful estimate; an arm believed as good keeps its mean (the prior can say so)."""
    ref_mean = mean[..., reference : reference + 1]
    ref_std = std[..., reference : reference + 1]
    gap_std = np.sqrt(std**2 + ref_std**2)
    credit = np.where(mean < ref_mean, mean - PESSIMISM * gap_std, mean)
    return np.clip(credit, 0.0, 1.0)


def reference_column(arms: list[str], reference: str | None, prior_success: np.ndarray) -> int:
    """Where the reference arm is in ``arms``; if it is not eligible, the arm with the best prior."""
    if reference is not None:
        try:
            return arms.index(reference)
        except ValueError:
            pass
    return int(np.argmax(prior_success)) if len(prior_success) else 0


__all__ = ["QualityCalibrator", "pessimistic", "reference_column"]
