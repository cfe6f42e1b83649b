"""Multi-homing: one model served by several providers (or several keys of one provider, each its own
provider entry in the config). The balancer orders a model's providers best-first for each request.

- ``latency``: lowest EWMA of time-to-first-byte first; a provider never measured goes first (it has to be
  measured once), and a small share of requests (``explore``) picks a random healthy peer so a stale EWMA
  gets refreshed.
- ``weighted``: weighted random order by ``ProviderSettings.weight``.

Either way a provider that answered 429 is cooled down (Retry-After, else ``cooldown_429_s``) and one whose
breaker is open goes to the back: load moves to the others, and comes back by itself when they recover.
The last resort stays in the list, so a request is never refused just because every peer is unhealthy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from streams.reliability.circuit import CircuitBreakers
from streams.reliability.settings import BalancerSettings

Clock = Callable[[], float]
C = TypeVar("C")


@dataclass(slots=True)
class _Stats:
    ewma_s: float | None = None
    cooldown_until: float = 0.0
    requests: int = 0
    throttled: int = 0
    failures: int = 0


class Balancer:
    def __init__(
        self,
        settings: BalancerSettings | None = None,
        breakers: CircuitBreakers | None = None,
        *,
        weights: Mapping[str, float] | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.s = settings or BalancerSettings()
        self.breakers = breakers
        self.weights = dict(weights or {})
        self.clock = clock
        self.rng = rng or random.Random()
        self._stats: dict[tuple[str, str], _Stats] = {}

    def _st(self, model: str, provider: str) -> _Stats:
        key = (model, provider)
        st = self._stats.get(key)
        if st is None:
            st = self._stats[key] = _Stats()
        return st

    def healthy(self, model: str, provider: str, now: float | None = None) -> bool:
        """Not cooling down after a 429 and breaker not open."""
        now = self.clock() if now is None else now
        st = self._stats.get((model, provider))
        if st is not None and st.cooldown_until > now:
            return False
        return self.breakers is None or self.breakers.available(provider, model)

    def order(self, model: str, providers: Sequence[str]) -> list[str]:
        """``providers`` of ``model``, best first for this request."""
        if len(providers) <= 1:
            return list(providers)
        now = self.clock()
        good = [p for p in providers if self.healthy(model, p, now)]
        bad = [p for p in providers if p not in good]
        good = self._weighted(good) if self.s.strategy == "weighted" else self._by_latency(model, good)
        # Unhealthy ones last, soonest-recovering first.
        bad.sort(key=lambda p: self._st(model, p).cooldown_until)
        return good + bad

    def order_candidates(self, cands: Sequence[C], key: Callable[[C], tuple[str, str]]) -> list[C]:
        """Reorder each run of consecutive candidates of the same model; models keep their order.

        ``key(c)`` gives ``(model_name, provider_name)``; fits ``failover.candidates()`` output with
        ``key=lambda c: (c[0].name, c[1].name)``.
        """
        out: list[C] = []
        i = 0
        while i < len(cands):
            model = key(cands[i])[0]
            j = i
            while j < len(cands) and key(cands[j])[0] == model:
                j += 1
            group = {key(c)[1]: c for c in cands[i:j]}
            out.extend(group[p] for p in self.order(model, list(group)))
            i = j
        return out

    def _by_latency(self, model: str, providers: list[str]) -> list[str]:
        if not providers:
            return providers
        unknown = [p for p in providers if self._st(model, p).ewma_s is None]
        known = sorted((p for p in providers if p not in unknown), key=lambda p: self._st(model, p).ewma_s or 0.0)
        ordered = unknown + known
        if len(ordered) > 1 and self.s.explore > 0 and self.rng.random() < self.s.explore:
            pick = self.rng.randrange(len(ordered))
            ordered.insert(0, ordered.pop(pick))
        return ordered

    def _weighted(self, providers: list[str]) -> list[str]:
        # Weighted sampling without replacement (Efraimidis-Spirakis keys).
        def key(p: str) -> float:
            w = max(self.weights.get(p, 1.0), 1e-9)
            return self.rng.random() ** (1.0 / w)

        return sorted(providers, key=key, reverse=True)

    def record(
        self,
        model: str,
        provider: str,
        *,
        status: int | None,
        latency_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Outcome of one attempt: ``status`` None for no HTTP answer; ``latency_s`` to first byte."""
        st = self._st(model, provider)
        st.requests += 1
        if status == 429:
            st.throttled += 1
            wait = self.s.cooldown_429_s if retry_after_s is None else retry_after_s
            st.cooldown_until = max(st.cooldown_until, self.clock() + min(wait, self.s.max_cooldown_s))
            return
        if status is None or status >= 500:
            st.failures += 1
            return
        if latency_s is not None and status < 400:
            a = self.s.ewma_alpha
            st.ewma_s = latency_s if st.ewma_s is None else a * latency_s + (1 - a) * st.ewma_s

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {
                "model": m,
                "provider": p,
                "ewma_ms": round(st.ewma_s * 1000, 2) if st.ewma_s is not None else None,
                "cooling_down_s": round(max(0.0, st.cooldown_until - now), 2),
                "requests": st.requests,
                "throttled": st.throttled,
                "failures": st.failures,
            }
            for (m, p), st in self._stats.items()
        ]
