"""Updating the posteriors from outcomes, and merging two learners' updates exactly.

Closed-form Gaussian posteriors keep only sufficient statistics (precision ``A`` and vector ``b``
per arm, cost sums, counts), so an outcome is a rank-one update (the covariance follows by
Sherman-Morrison) and two learners merge exactly: ``A = A1 + A2 - A_prior``. The success model is
an online ``river.linear_model.BayesianLinearRegression`` in spirit (same Bishop closed form), kept
in our own arrays for exact merges, cheap snapshots and vectorised scoring over all arms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from streams.routing.bandit.forgetting import Forgetting
from streams.routing.bandit.layout import ATTEMPT_KEY, MAX_ATTEMPT_SLOTS, RETRY_BUCKETS


class Posteriors(Forgetting):
    """``learn_one`` / ``learn_outcome`` / ``learn_many`` and ``merge`` over the shared state."""

    def learn_one(self, context: dict[str, float], arm: str, reward: float) -> None:
        """Learn from a scalar reward ``U``: split into success and cost with the arm's cost estimate.

        Prefer ``learn_outcome`` when success and cost are known separately (they are in the
        replay and the learner agent); this keeps the River-style single-reward interface. The
        reward here is ``alpha * success - beta * cost_usd`` (USD, whatever ``cost_scale``), as
        the router computes it: it only carries the success back, so any consistent unit works.
        """
        i = self._ensure_arm(arm)
        cost = float(self._cost_sum[i] / self._cost_n[i])
        success = (reward + self.beta * cost) / self.alpha if self.alpha else 0.0
        self._learn(i, self._vector(context), success, None)
        self._learn_attempt(context, i, success, cost)

    def learn_outcome(
        self, context: Mapping[str, float], arm: str, success: float, cost_usd: float, ts: float | None = None
    ) -> None:
        """Learn from one observed outcome: ``success`` in [0, 1] and what the call cost.

        ``ts`` is when it was observed (any clock: seconds in production, the task index in a
        replay); with ``half_life`` set, older evidence counts less.
        """
        i = self._ensure_arm(arm)
        weight = self._weight(ts)
        self._learn(i, self._vector(context), float(success), float(cost_usd), weight)
        self._learn_attempt(context, i, float(success), float(cost_usd), weight)

    def learn_many(self, records: Iterable[tuple[Any, ...]]) -> int:
        """``learn_outcome`` for each ``(context, arm, success, cost_usd[, ts])`` in order; returns how many.

        Bit-for-bit the state the sequential calls reach (the learner relies on it: batching must
        not change what it learns). The vector and scalar sums (``b``, ``s``, costs, counts) are
        accumulated with ``np.add.at``, which applies repeated indices one after another in order,
        so every float addition happens in the same order as in the loop; the matrices (``A``, ``S``,
        and the Sherman-Morrison covariance updates, which depend on each other) are updated record by
        record with the loop's own operations. The means are only read at the end, so they are
        computed once per touched arm instead of once per record.
        """
        timed: list[tuple[Any, ...]] = [tuple(r) for r in records]
        n = len(timed)
        if n == 0:
            return 0
        if self.half_life is not None and any(len(r) > 4 for r in timed):
            # Timestamped outcomes under forgetting: each carries its own weight, so one by one.
            for r in timed:
                self.learn_outcome(r[0], r[1], r[2], r[3], r[4] if len(r) > 4 else None)
            return n
        rows = [(r[0], r[1], r[2], r[3]) for r in timed]  # without forgetting the clock does not matter
        idx = np.fromiter((self._ensure_arm(arm) for _, arm, _, _ in rows), dtype=np.intp, count=n)
        X = np.stack([self._vector(ctx) for ctx, _, _, _ in rows])
        success = [float(r[2]) for r in rows]
        costs = np.array([float(r[3]) for r in rows])
        w = 1.0 / self.noise
        coef = np.array([w * s for s in success])  # the loop's ``w * success`` (a Python float)
        wsx = coef[:, None] * X
        np.add.at(self._b, idx, wsx)
        np.add.at(self._s[None], np.zeros(n, dtype=np.intp), wsx)
        A, S, covs, scov = self._A, self._S, self._cov, self._scov
        # np.outer(a, b) is multiply(a[:, None], b[None, :]); calling multiply directly skips its
        # wrapper (same products, same bits).
        mul = np.multiply
        cols, rows_ = X[:, :, None], X[:, None, :]
        for k in range(n):
            x, i = X[k], idx[k]
            xx = w * mul(cols[k], rows_[k])  # the loop computes this twice (A and S); same value
            A[i] += xx
            S += xx
            cov = covs[i]
            cx = cov @ x
            cov -= mul(cx[:, None], cx[None, :]) * (w / (1.0 + w * (x @ cx)))  # Sherman-Morrison, as in _learn
            sx = scov @ x
            scov -= mul(sx[:, None], sx[None, :]) * (w / (1.0 + w * (x @ sx)))
        for i in dict.fromkeys(idx.tolist()):
            self._mu[i] = self._cov[i] @ self._b[i]
        self._smu = scov @ self._s
        np.add.at(self._cost_sum, idx, costs)
        np.add.at(self._cost_n, idx, 1.0)
        np.add.at(self._pulls, idx, 1.0)
        self.version += n
        # _learn_attempt, batched the same way.
        ks = [int(ctx.get(ATTEMPT_KEY, 0) or 0) for ctx, _, _, _ in rows]
        att = [(k, (1.0, s, float(c), self._cost_sum0[i] / self._cost_n0[i]))
               for k, s, c, i in zip(ks, success, costs.tolist(), idx.tolist(), strict=True)
               if 0 < k <= MAX_ATTEMPT_SLOTS]
        if att:
            np.add.at(self._att, np.array([k for k, _ in att], dtype=np.intp), np.array([v for _, v in att]))
        buckets = np.array([min(max(k, 1), RETRY_BUCKETS) for k in ks], dtype=np.intp)
        cells = np.array([(1.0, min(max(s, 0.0), 1.0)) for s in success])
        np.add.at(self._cell, (idx, buckets), cells)
        return n

    def _learn_attempt(
        self, context: Mapping[str, float], i: int, success: float, cost: float, weight: float = 1.0
    ) -> None:
        k = int(context.get(ATTEMPT_KEY, 0) or 0)
        # ``weight * x`` is ``x`` exactly at weight 1, so unweighted learning stays bit-identical
        # to ``learn_many``.
        if 0 < k <= MAX_ATTEMPT_SLOTS:
            self._att[k] += (weight, weight * success, weight * cost, weight * self._cost_sum0[i] / self._cost_n0[i])
        # Bucket 1 holds first attempts (and decisions outside a cascade): the reference strength.
        self._cell[i, min(max(k, 1), RETRY_BUCKETS)] += (weight, weight * min(max(success, 0.0), 1.0))

    def _learn(self, i: int, x: np.ndarray, success: float, cost: float | None, weight: float = 1.0) -> None:
        w = weight / self.noise
        self._A[i] += w * np.outer(x, x)
        self._b[i] += w * success * x
        cov = self._cov[i]
        cx = cov @ x
        cov -= np.outer(cx, cx) * (w / (1.0 + w * (x @ cx)))  # Sherman-Morrison
        self._mu[i] = cov @ self._b[i]
        self._S += w * np.outer(x, x)
        self._s += w * success * x
        sx = self._scov @ x
        self._scov -= np.outer(sx, sx) * (w / (1.0 + w * (x @ sx)))
        self._smu = self._scov @ self._s
        if cost is not None:
            self._cost_sum[i] += weight * cost
            self._cost_n[i] += weight
        self._pulls[i] += 1.0
        self.version += 1

    def merge(self, other: Posteriors, base: Posteriors | None = None) -> None:
        """Add ``other``'s updates to ours: exact on the sufficient statistics.

        Both learners must share the same priors; if both started from a snapshot that already
        held data, pass it as ``base`` so that data is not counted twice. With forgetting, every
        side is first weighted at the latest clock of the three, so the sum is what one learner
        that saw every outcome would hold.
        """
        if other.dim != self.dim or other.noise != self.noise or other.text_dim != self.text_dim:
            raise ValueError("cannot merge bandits with different dim/noise/text_dim")
        clock = max(self._clock, other._clock, base._clock if base is not None else self._clock)
        if self.half_life is not None:
            self._rebase(clock, force=True)
        fo = other._decay_to(clock)
        fb = base._decay_to(clock) if base is not None else 1.0
        for arm in other.arms:
            self._ensure_arm(arm)
        for arm in other.arms:
            i, j = self._index[arm], other._index[arm]
            k = base._index.get(arm) if base is not None else None

            def delta(name: str, prior: str | None, _j: int = j, _k: int | None = k) -> np.ndarray:
                got = other._at(name, prior, _j, fo)
                if _k is None or base is None:
                    return got - (getattr(other, prior)[_j] if prior else 0.0)
                return got - base._at(name, prior, _k, fb)

            self._A[i] += delta("_A", "_A0")
            self._b[i] += delta("_b", "_b0")
            self._cost_sum[i] += delta("_cost_sum", "_cost_sum0")
            self._cost_n[i] += delta("_cost_n", "_cost_n0")
            self._cell[i] += delta("_cell", None)
            self._pulls[i] += other._pulls[j] - (base._pulls[k] if base is not None and k is not None else 0.0)
            self._cov[i] = np.linalg.inv(self._A[i])
            self._mu[i] = self._cov[i] @ self._b[i]
        self._att += fo * other._att - (fb * base._att if base is not None else 0.0)
        if base is not None:
            ref_s = base._S0 + fb * (base._S - base._S0)
            ref_sv = base._s0 + fb * (base._s - base._s0)
        else:
            ref_s, ref_sv = other._S0, other._s0
        self._S += other._S0 + fo * (other._S - other._S0) - ref_s
        self._s += other._s0 + fo * (other._s - other._s0) - ref_sv
        self._scov = np.linalg.inv(self._S)
        self._smu = self._scov @ self._s
        self.version += other.version - (base.version if base is not None else 0)
        self._retry_cache = None
