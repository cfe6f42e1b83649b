"""Circuit breakers: stop sending traffic to a provider x model that is failing or suddenly slow.

closed --(error rate or latency spike over the window)--> open --(cool-down)--> half_open
half_open --(``close_after`` successful probes)--> closed;  half_open --(a failed probe)--> open (cool-down x2)

The window is a ring of time buckets, so recording is O(1) and memory is fixed whatever the traffic.
Everything reads time from an injectable monotonic clock: tests drive transitions without sleeping.
What counts as a failure is the caller's call (``is_failure`` is the usual rule: connect errors,
timeouts and 5xx; a 429 is back-pressure, handled by the balancer, not a sign the provider is broken).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from streams.reliability.settings import BreakerSettings

Clock = Callable[[], float]
State = Literal["closed", "open", "half_open"]


def is_failure(status: int | None) -> bool:
    """Usual breaker rule: no HTTP answer (``None``) or a 5xx. 4xx, 429 included, say nothing about health."""
    return status is None or status >= 500


@dataclass(slots=True)
class _Bucket:
    start: float = -1.0  # bucket's time slot (start time); -1 = empty
    total: int = 0
    errors: int = 0
    slow: int = 0
    lat_sum: float = 0.0
    lat_n: int = 0


class CircuitBreaker:
    """One breaker. ``allow()`` before a call, ``record()`` after it (exactly once per allowed call)."""

    def __init__(self, name: str, settings: BreakerSettings | None = None, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.s = settings or BreakerSettings()
        self.clock = clock
        self._width = self.s.window_s / self.s.buckets
        self._buckets = [_Bucket() for _ in range(self.s.buckets)]
        self._state: State = "closed"
        self._opened_at = 0.0
        self._cooldown = self.s.open_s
        self._probes: list[float] = []  # start times of in-flight probes (half-open)
        self._probe_ok = 0
        self._baseline: float | None = None  # long-run EWMA of successful call latency
        self._baseline_n = 0
        self.reason = ""  # why it last opened, for /health
        self.opened_total = 0

    # --- state ------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Current state; an open breaker whose cool-down is over reads as half_open."""
        if self._state == "open" and self.clock() - self._opened_at >= self._cooldown:
            self._state = "half_open"
            self._probes.clear()
            self._probe_ok = 0
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open this takes one probe slot, freed by ``record``."""
        if not self.available():
            return False
        if self.s.enabled and self.state == "half_open":
            now = self.clock()
            # A probe whose outcome never came back (cancelled request) must not wedge the breaker half-open.
            self._probes = [t for t in self._probes if now - t < self.s.probe_timeout_s]
            self._probes.append(now)
        return True

    def available(self) -> bool:
        """Like ``allow`` but takes no probe slot: for ordering candidates without committing to one."""
        if not self.s.enabled:
            return True
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self.clock()
        return sum(1 for t in self._probes if now - t < self.s.probe_timeout_s) < self.s.half_open_probes

    def record(self, ok: bool, latency_s: float | None = None) -> None:
        """Outcome of one call; ``latency_s`` is time to the upstream's first byte (headers)."""
        if not self.s.enabled:
            return
        state = self.state
        now = self.clock()
        if state == "half_open":
            if self._probes:
                self._probes.pop(0)
            if not ok or self._is_spike(latency_s):
                self._trip(now, "probe failed" if not ok else "probe slow", backoff=True)
                return
            self._probe_ok += 1
            if self._probe_ok >= self.s.close_after:
                self._close()
            return
        if state == "open":
            return  # a straggler from before the breaker opened: nothing to learn
        b = self._bucket(now)
        b.total += 1
        if not ok:
            b.errors += 1
        if latency_s is not None and ok:
            b.lat_sum += latency_s
            b.lat_n += 1
            if self.s.slow_call_s is not None and latency_s > self.s.slow_call_s:
                b.slow += 1
        self._evaluate(now, latency_s if ok else None)

    # --- internals ---------------------------------------------------------------------------------------

    def _bucket(self, now: float) -> _Bucket:
        slot = int(now // self._width)
        b = self._buckets[slot % len(self._buckets)]
        start = slot * self._width
        if b.start != start:
            b.start, b.total, b.errors, b.slow, b.lat_sum, b.lat_n = start, 0, 0, 0, 0.0, 0
        return b

    def _window(self, now: float) -> tuple[int, int, int, float, int]:
        lo = now - self.s.window_s
        total = errors = slow = lat_n = 0
        lat_sum = 0.0
        for b in self._buckets:
            if b.start >= 0 and b.start > lo - self._width and b.start <= now:
                total += b.total
                errors += b.errors
                slow += b.slow
                lat_sum += b.lat_sum
                lat_n += b.lat_n
        return total, errors, slow, lat_sum, lat_n

    def _is_spike(self, latency_s: float | None) -> bool:
        if latency_s is None:
            return False
        if self.s.slow_call_s is not None and latency_s > self.s.slow_call_s:
            return True
        f = self.s.latency_spike_factor
        return bool(f and self._baseline is not None and latency_s > f * self._baseline)

    def _evaluate(self, now: float, latency_s: float | None) -> None:
        total, errors, slow, lat_sum, lat_n = self._window(now)
        if total >= self.s.min_requests:
            if errors / total >= self.s.error_rate:
                self._trip(now, f"error rate {errors}/{total} over {self.s.window_s:g}s")
                return
            if self.s.slow_call_s is not None and slow / total >= self.s.slow_call_rate:
                self._trip(now, f"slow calls {slow}/{total} over {self.s.slow_call_s:g}s")
                return
        f = self.s.latency_spike_factor
        spiking = False
        if f and self._baseline is not None and lat_n >= self.s.min_requests:
            mean = lat_sum / lat_n
            if mean > f * self._baseline:
                self._trip(now, f"latency spike: mean {mean * 1000:.0f} ms vs baseline {self._baseline * 1000:.0f} ms")
                return
            spiking = mean > 0.5 * f * self._baseline
        if latency_s is not None and not spiking:
            # The baseline learns slowly and only from healthy-looking traffic, so a spike cannot hide
            # itself by dragging the baseline up.
            self._baseline_n += 1
            if self._baseline is None:
                if self._baseline_n >= self.s.latency_min_samples and lat_n:
                    self._baseline = lat_sum / lat_n
            else:
                self._baseline += 0.02 * (latency_s - self._baseline)

    def _trip(self, now: float, reason: str, *, backoff: bool = False) -> None:
        self._cooldown = min(self._cooldown * 2, self.s.max_open_s) if backoff else self.s.open_s
        self._state = "open"
        self._opened_at = now
        self._probes.clear()
        self._probe_ok = 0
        self.reason = reason
        self.opened_total += 1

    def _close(self) -> None:
        self._state = "closed"
        self._cooldown = self.s.open_s
        self._probes.clear()
        self._probe_ok = 0
        for b in self._buckets:
            b.start = -1.0  # the failures that opened it must not re-open it at once
        self.reason = ""

    def snapshot(self) -> dict[str, Any]:
        """State for metrics and /health."""
        now = self.clock()
        state = self.state
        total, errors, slow, lat_sum, lat_n = self._window(now)
        out: dict[str, Any] = {
            "name": self.name,
            "state": state,
            "requests": total,
            "errors": errors,
            "error_rate": round(errors / total, 4) if total else 0.0,
            "mean_latency_ms": round(lat_sum / lat_n * 1000, 2) if lat_n else None,
            "baseline_latency_ms": round(self._baseline * 1000, 2) if self._baseline is not None else None,
            "opened_total": self.opened_total,
        }
        if state != "closed":
            out["reason"] = self.reason
        if state == "open":
            out["retry_in_s"] = round(max(0.0, self._opened_at + self._cooldown - now), 2)
        return out


class CircuitBreakers:
    """The registry: one breaker per (provider, model), created on first use."""

    STATE_CODE: Mapping[str, int] = {"closed": 0, "half_open": 1, "open": 2}

    def __init__(self, settings: BreakerSettings | None = None, clock: Clock = time.monotonic) -> None:
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self._by_key: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, provider: str, model: str) -> CircuitBreaker:
        key = (provider, model)
        b = self._by_key.get(key)
        if b is None:
            b = self._by_key[key] = CircuitBreaker(f"{provider}/{model}", self.settings, self.clock)
        return b

    def allow(self, provider: str, model: str) -> bool:
        return self.get(provider, model).allow()

    def available(self, provider: str, model: str) -> bool:
        b = self._by_key.get((provider, model))
        return b is None or b.available()

    def record(self, provider: str, model: str, ok: bool, latency_s: float | None = None) -> None:
        self.get(provider, model).record(ok, latency_s)

    def state(self, provider: str, model: str) -> State:
        b = self._by_key.get((provider, model))
        return "closed" if b is None else b.state

    def snapshot(self) -> list[dict[str, Any]]:
        return [b.snapshot() for b in self._by_key.values()]

    def health(self) -> dict[str, str]:
        """``Gateway(health=...)`` probe: only breakers that are not closed are listed, as "degraded"/"down"."""
        out: dict[str, str] = {}
        for b in self._by_key.values():
            state = b.state
            if state != "closed":
                out[f"breaker:{b.name}"] = "down" if state == "open" else "degraded"
        return out
