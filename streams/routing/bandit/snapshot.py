"""Snapshots of the learned state: npz arrays plus a JSON header, no pickle.

Safe to read from a shared topic (``allow_pickle=False``), and exact: the covariances are saved, not
re-inverted, so a restored bandit decides bit-identically. Snapshots of older layouts (before the
task-type slots, before the retry counts, before the text block) are upgraded on restore.
"""

from __future__ import annotations

import io
import json
from typing import Self

import numpy as np

from streams.routing.bandit.base import BanditState
from streams.routing.bandit.layout import HEAD, LEGACY_HEAD, RETRY_BUCKETS
from streams.routing.bandit.priors import ArmPrior

SNAPSHOT_FORMAT = 1


class Snapshots(BanditState):
    """``snapshot()`` to bytes and ``restore(bytes)`` back."""

    def snapshot(self) -> bytes:
        """Serialise to bytes (npz + JSON header, no pickle: safe to read from a shared topic)."""
        meta = {
            "format": SNAPSHOT_FORMAT,
            "head": HEAD,
            "arms": self.arms,
            "version": self.version,
            "params": {
                "alpha": self.alpha,
                "beta": self.beta,
                "exploration": self.exploration,
                "dim": self.dim,
                "noise": self.noise,
                "context_prior_var": self.context_prior_var,
                "shared_prior_var": self.shared_prior_var,
                "retry_prior": self.retry_prior,
                "explore_scale": self.explore_scale,
                "retry_explore_scale": self.retry_explore_scale,
                "ucb_c": self.ucb_c,
                "draws": self.draws,
                "margin": self.margin,
                "cascade": self.cascade,
                "cost_scale": self.cost_scale,
                "seed": self.seed,
                "text_dim": self.text_dim,
                "text_weight": self.text_weight,
                "quality_target": self.quality_target,
                "reference_arm": self.reference_arm,
                "half_life": self.half_life,
            },
            "clock": self._clock,
            "priors": {
                a: [p.success, p.cost_usd, p.strength, p.cost_strength, dict(p.task_success)]
                for a, p in self.priors.items()
            },
            "rng": self._rng.bit_generator.state,
        }
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            A=self._A,
            A0=self._A0,
            b=self._b,
            b0=self._b0,
            cov=self._cov,
            mu=self._mu,
            S=self._S,
            s=self._s,
            scov=self._scov,
            smu=self._smu,
            cost_sum=self._cost_sum,
            cost_n=self._cost_n,
            cost_sum0=self._cost_sum0,
            cost_n0=self._cost_n0,
            pulls=self._pulls,
            att=self._att,
            cell=self._cell,
        )
        return buf.getvalue()

    @classmethod
    def restore(cls, data: bytes) -> Self:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"unknown bandit snapshot format {meta.get('format')!r}")
            priors = {a: ArmPrior(*v) for a, v in meta["priors"].items()}
            params = dict(meta["params"])
            params.setdefault("text_dim", 0)  # snapshots from before the text block had none
            bandit = cls(priors=priors, **params)
            bandit._clock = float(meta.get("clock", 0.0))
            bandit.arms = list(meta["arms"])
            bandit._index = {a: i for i, a in enumerate(bandit.arms)}
            bandit._A, bandit._A0 = z["A"].copy(), z["A0"].copy()
            bandit._b, bandit._b0 = z["b"].copy(), z["b0"].copy()
            bandit._cost_sum, bandit._cost_n = z["cost_sum"].copy(), z["cost_n"].copy()
            bandit._cost_sum0, bandit._cost_n0 = z["cost_sum0"].copy(), z["cost_n0"].copy()
            bandit._pulls = z["pulls"].copy()
            bandit._att = z["att"].copy()
            # Snapshots from before the retry count model have no cells: start them empty.
            n_arms = len(bandit.arms)
            bandit._cell = z["cell"].copy() if "cell" in z.files else np.zeros((n_arms, RETRY_BUCKETS + 1, 2))
            # The covariance is saved, not re-inverted, so a restored bandit decides bit-identically.
            bandit._cov, bandit._mu = z["cov"].copy(), z["mu"].copy()
            bandit._S, bandit._s = z["S"].copy(), z["s"].copy()
            bandit._scov, bandit._smu = z["scov"].copy(), z["smu"].copy()
        head = int(meta.get("head", LEGACY_HEAD))
        if head != HEAD:
            bandit._pad_head(head)
        bandit.version = int(meta["version"])
        bandit._rng.bit_generator.state = meta["rng"]
        return bandit

    def _pad_head(self, head: int) -> None:
        """Upgrade a restored snapshot written with an older, shorter head (before the task slots):
        insert the missing slots after its head, holding only their prior (nothing was learned
        there), which is exactly the state the new layout would have reached on the same data."""
        if not LEGACY_HEAD <= head < HEAD:
            raise ValueError(f"bandit snapshot has an unknown layout (head {head}, expected {HEAD})")
        at, k = head, HEAD - head
        new = np.arange(at, at + k)

        def vec(a: np.ndarray) -> np.ndarray:  # (..., d): the new slots hold 0
            return np.insert(a, [at] * k, 0.0, axis=-1)

        def mat(a: np.ndarray, diag: float) -> np.ndarray:  # (..., d, d): independent new slots
            a = np.insert(np.insert(a, [at] * k, 0.0, axis=-1), [at] * k, 0.0, axis=-2)
            a[..., new, new] = diag
            return a

        pv, sv = self.context_prior_var, self.shared_prior_var
        self._A, self._A0, self._cov = mat(self._A, 1 / pv), mat(self._A0, 1 / pv), mat(self._cov, pv)
        self._b, self._b0, self._mu = vec(self._b), vec(self._b0), vec(self._mu)
        self._S, self._scov = mat(self._S, 1 / sv), mat(self._scov, sv)
        self._s, self._smu = vec(self._s), vec(self._smu)
