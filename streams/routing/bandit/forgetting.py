"""Forgetting: evidence loses half its weight every ``half_life`` of the clock.

The clock is whatever the caller passes to ``learn_outcome(ts=...)``: seconds in production, the
task index in a replay. Only the evidence decays (the part of each statistic above its prior), so
an arm forgotten for long returns to its catalogue prior, not to nothing.
"""

from __future__ import annotations

import numpy as np

from streams.routing.bandit.base import BanditState

# Forgetting rebases the statistics this many times per half-life (see ``Forgetting._rebase``).
REBASE_STEPS = 32


class Forgetting(BanditState):
    """Weighting of the statistics in time (a no-op without ``half_life``)."""

    def _decay_to(self, clock: float) -> float:
        """Weight of this learner's evidence when read at ``clock`` (1 without forgetting)."""
        if self.half_life is None or clock <= self._clock:
            return 1.0
        return float(0.5 ** ((clock - self._clock) / self.half_life))

    def _at(self, name: str, prior: str | None, j: int, factor: float) -> np.ndarray:
        """Arm ``j``'s statistic ``name`` with its evidence (the part above ``prior``) scaled."""
        value = getattr(self, name)[j]
        if factor == 1.0:
            return value
        base = getattr(self, prior)[j] if prior else 0.0
        return base + factor * (value - base)

    def _rebase(self, clock: float, *, force: bool = False) -> None:
        """Weigh every statistic at ``clock``: evidence shrinks towards the prior by the half-life.

        Done every ``half_life / REBASE_STEPS`` of the clock (or on a merge), not per outcome: it
        re-inverts every arm's precision. Between rebases an outcome is added with its exact weight
        relative to the current clock, so the sums stay exact whatever the rebase points.
        """
        if self.half_life is None or clock <= self._clock:
            return
        if not force and clock - self._clock < self.half_life / REBASE_STEPS:
            return
        f = 0.5 ** ((clock - self._clock) / self.half_life)
        self._A = self._A0 + f * (self._A - self._A0)
        self._b = self._b0 + f * (self._b - self._b0)
        self._cost_sum = self._cost_sum0 + f * (self._cost_sum - self._cost_sum0)
        self._cost_n = self._cost_n0 + f * (self._cost_n - self._cost_n0)
        self._cell = f * self._cell
        self._att = f * self._att
        self._S = self._S0 + f * (self._S - self._S0)
        self._s = self._s0 + f * (self._s - self._s0)
        if len(self.arms):
            self._cov = np.asarray(np.linalg.inv(self._A), dtype=np.float64)
            self._mu = np.einsum("aij,aj->ai", self._cov, self._b)
        self._scov = np.linalg.inv(self._S)
        self._smu = self._scov @ self._s
        self._clock = float(clock)
        self._retry_cache = None

    def _weight(self, ts: float | None) -> float:
        """Weight of an outcome observed at ``ts`` relative to the statistics' clock."""
        if self.half_life is None or ts is None:
            return 1.0
        self._rebase(float(ts))
        return float(0.5 ** ((self._clock - float(ts)) / self.half_life))
