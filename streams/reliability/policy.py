"""The reliability layer as the gateway sees it: one ``Reliability`` object built from ``Settings``, and a
failover policy that plugs breakers and the balancer into ``providers.failover.send_with_failover``.

Per request (see the module docstrings for each piece):

    check = rel.keys.verify(key, model=requested, route=path)        # when rel.keys is set
    admit = rel.limits.check(key_id, rel.limits_for(check.key), est_input_tokens)
    async with rel.concurrency.slot():                                # Overloaded -> 503/529
        cands = rel.order(gw.candidates(decision))                    # balancer: best provider first
        result = await send_with_failover(..., policy=rel.policy)     # breakers: skip open providers
    rel.limits.record(key_id, limits, tokens=..., cost_usd=..., est_tokens=...)

This module imports nothing from ingress or providers (they import us); the policy matches
``FailoverPolicy`` by shape.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from streams.reliability.balancer import Balancer
from streams.reliability.circuit import CircuitBreakers, is_failure
from streams.reliability.concurrency import ConcurrencyLimiter
from streams.reliability.keys import KeyCheck, KeyStore, VirtualKey
from streams.reliability.limits import Limits
from streams.reliability.redact import ContentLog, Redactor
from streams.reliability.retry import Backoff, RetryState
from streams.reliability.retry import retryable_status as _retryable_status
from streams.reliability.settings import LimitSettings, ReliabilitySettings

C = TypeVar("C")

# The answer for every request when no virtual keys are configured (open mode); never mutated.
_OPEN = KeyCheck(True)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class ReliabilityPolicy:
    """Drop-in for ``FailoverPolicy``: breakers gate candidates, outcomes feed breakers and balancer."""

    def __init__(self, breakers: CircuitBreakers, balancer: Balancer) -> None:
        self.breakers = breakers
        self.balancer = balancer

    def retryable_status(self, status: int) -> bool:
        return _retryable_status(status)

    def retryable_error(self, error: Any) -> bool:
        return True  # every transport error before the first byte is worth another candidate

    def allow(self, model: _Named, provider: _Named) -> bool:
        """Takes a half-open probe slot when it says yes: call it just before the attempt."""
        return self.breakers.allow(provider.name, model.name)

    def available(self, model: _Named, provider: _Named) -> bool:
        """Like ``allow`` without taking a probe slot: for filtering a candidate list up front."""
        return self.breakers.available(provider.name, model.name)

    def record(
        self,
        model: _Named,
        provider: _Named,
        ok: bool,
        *,
        status: int | None = -1,
        latency_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Outcome of one attempt. ``status``: HTTP status, ``None`` for a transport error; when not given
        (the plain ``FailoverPolicy.record`` call) it is inferred from ``ok``, and a 429 then reads as a
        failure, so pass it."""
        if status == -1:
            status = 200 if ok else None
        self.breakers.record(provider.name, model.name, not is_failure(status), latency_s)
        self.balancer.record(model.name, provider.name, status=status, latency_s=latency_s, retry_after_s=retry_after_s)


class Reliability:
    """Everything reliability-related for one gateway process (no module-level state)."""

    def __init__(
        self,
        settings: ReliabilitySettings | None = None,
        *,
        server_max_concurrency: int = 512,
        keys: KeyStore | None = None,
        require_key: bool | None = None,
        weights: Mapping[str, float] | None = None,
        redactor: Redactor | None = None,
        log_content: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = s = settings or ReliabilitySettings()
        self.clock = clock
        self.keys = keys
        self.require_key = s.keys.require_key if require_key is None else require_key
        self.limits = Limits(clock=clock, wall=wall)
        self.concurrency = ConcurrencyLimiter.from_settings(s.concurrency, server_max_concurrency)
        self.breakers = CircuitBreakers(s.breaker, clock)
        self.balancer = Balancer(s.balancer, self.breakers, weights=weights, clock=clock, rng=rng)
        self.backoff = Backoff(s.retry, rng)
        self.policy = ReliabilityPolicy(self.breakers, self.balancer)
        self.redactor = redactor or Redactor()
        self.content_log = ContentLog(log_content, self.redactor)

    @classmethod
    def from_settings(cls, settings: Any, *, env: Mapping[str, str] | None = None, **kwargs: Any) -> Reliability:
        """From the top-level ``Settings`` (``reliability`` section optional until it is wired in)."""
        rel: ReliabilitySettings = getattr(settings, "reliability", None) or ReliabilitySettings()
        keys = None
        store = Path(rel.keys.store_file)
        store = store if store.is_absolute() else Path(settings.data_dir) / store
        if rel.keys.require_key or getattr(settings, "virtual_keys", None) or store.is_file():
            keys = KeyStore.from_settings(settings, env=env)
        return cls(
            rel,
            server_max_concurrency=settings.server.max_concurrency,
            keys=keys,
            weights={p.name: p.weight for p in settings.providers},
            redactor=Redactor.from_settings(settings, env),
            log_content=settings.server.log_content,
            **kwargs,
        )

    def authenticate(self, api_key: str | None, *, model: str | None = None, route: str | None = None) -> KeyCheck:
        """The caller's virtual key, or why the request is refused (401/403).

        A known key must be active and in scope, whatever the mode. An unknown key (or none) is refused
        only with ``require_key``; otherwise it passes as ``key=None`` (open mode, as without virtual keys).
        """
        if self.keys is None:
            if self.require_key:
                return KeyCheck(False, None, 401, "authentication_error", "no virtual keys are configured")
            return _OPEN
        check = self.keys.verify(api_key, model=model, route=route)
        if check.ok or check.key is not None or self.require_key:
            return check
        return _OPEN

    @staticmethod
    def authorize_model(key: VirtualKey | None, model: str) -> KeyCheck | None:
        """Model scope of an already verified key (``authenticate`` ran before the body was parsed):
        ``None`` when allowed, else the 403 to answer with. Scope is on the model the caller asked for."""
        if key is None or not key.models or key.allows_model(model):
            return None
        return KeyCheck(False, key, 403, "permission_error", f"API key {key.id} may not use model '{model}'", "model")

    @staticmethod
    def authorize_served(key: VirtualKey | None, model: str, requested: str | None = None) -> KeyCheck | None:
        """Model scope on the model actually served (the router's pick for an auto name, or a fallback):
        ``None`` when allowed, else the 403. A key scoped to ``gpt-5*`` that asks for an auto name must not
        be served ``claude-opus``."""
        if key is None or not key.models or key.allows_model(model):
            return None
        via = f" (routed from '{requested}')" if requested and requested != model else ""
        return KeyCheck(False, key, 403, "permission_error",
                        f"API key {key.id} may not use model '{model}'{via}", "model")

    @staticmethod
    def allowed_candidates(key: VirtualKey | None, cands: Sequence[C]) -> list[C]:
        """``(model, provider)`` candidates the key may be served (fallbacks included); all without scope."""
        if key is None or not key.models:
            return list(cands)
        return [c for c in cands if key.allows_model(c[0].name)]  # type: ignore[index]

    def limits_for(self, key: VirtualKey | None) -> LimitSettings:
        """A key's own limits when it has any, else ``reliability.default_limits``."""
        if key is not None and not key.limits.unlimited:
            return key.limits
        return self.settings.default_limits

    def order(self, cands: Sequence[C]) -> list[C]:
        """``failover.candidates()`` output with each model's providers in balancer order."""
        if len(cands) <= 1:
            return list(cands)  # the common single-provider case: nothing to order
        return self.balancer.order_candidates(cands, key=lambda c: (c[0].name, c[1].name))  # type: ignore[index]

    def retry_state(self) -> RetryState:
        return RetryState(self.backoff, self.clock)

    def health(self) -> dict[str, str]:
        """``Gateway(health=...)`` probe entries: open breakers, and the queue when requests wait."""
        out = self.breakers.health()
        if self.concurrency.queued:
            out["concurrency"] = "degraded"
        return out

    def provider_states(self) -> dict[str, str]:
        """Worst breaker state per provider (over its models): what the per-provider metric shows."""
        rank = CircuitBreakers.STATE_CODE
        out: dict[str, str] = {}
        for b in self.breakers.snapshot():
            provider = b["name"].split("/", 1)[0]
            state = b["state"]
            if rank[state] >= rank.get(out.get(provider, "closed"), 0):
                out[provider] = state
        return out

    def snapshot(self) -> dict[str, Any]:
        """For /health details and metrics."""
        return {
            "breakers": self.breakers.snapshot(),
            "balancer": self.balancer.snapshot(),
            "concurrency": self.concurrency.snapshot(),
        }
