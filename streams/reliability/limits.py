"""Per-key rate limits (token buckets: requests/min, tokens/min) and budgets (USD per UTC day / month).

Per request:  ``res = limits.check(key_id, cfg, est_tokens)``  -> refuse with ``res`` when not ``res.ok``
After it:     ``limits.record(key_id, cfg, tokens=..., cost_usd=..., est_tokens=...)``

Tokens are only known after the answer, so admission takes the estimate (input tokens) and ``record``
charges the difference; a bucket may go below zero, which then holds the next requests back until it
refills. Budgets are checked before the call against spend so far and charged after, so one request can
overshoot a budget by at most its own cost. Spend is in memory; ``save``/``load`` persist it (JSON,
atomic) so a restart does not reset a budget.

The refusal (``LimitResult``) carries everything the gateway needs to answer in the caller's dialect:
status (429 rate limit / 402 budget), an error type, a message naming the limit, and Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.reliability.settings import LimitSettings

Clock = Callable[[], float]
log = logging.getLogger("weave.limits")


class TokenBucket:
    """Capacity ``rate * burst_s`` refilling at ``rate_per_min / 60`` per second; may go into debt."""

    __slots__ = ("rate_per_s", "capacity", "level", "updated", "clock")

    def __init__(self, rate_per_min: float, burst_s: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.rate_per_s = rate_per_min / 60.0
        self.capacity = max(1.0, self.rate_per_s * burst_s)
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` could be taken (0 if now). More than capacity waits for a full bucket."""
        self._refill()
        need = min(amount, self.capacity)
        if self.level >= need:
            return 0.0
        return (need - self.level) / self.rate_per_s

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def remaining(self) -> int:
        self._refill()
        return max(0, int(self.level))


@dataclass(slots=True)
class LimitResult:
    """Admission answer. When not ``ok``: status 429 (rate) or 402 (budget), and what to tell the caller."""

    ok: bool
    status: int = 200
    error_type: str = ""  # "rate_limit_error" | "budget_exceeded"
    message: str = ""
    retry_after_s: float | None = None
    limit: str = ""  # which limit: requests_per_min | tokens_per_min | usd_per_day | usd_per_month
    remaining: dict[str, float] = field(default_factory=dict)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Raw ASGI headers: Retry-After (whole seconds, rounded up) and x-ratelimit-remaining-*."""
        out: list[tuple[bytes, bytes]] = []
        if self.retry_after_s is not None:
            out.append((b"retry-after", str(max(1, math.ceil(self.retry_after_s))).encode()))
        for name, value in self.remaining.items():
            out.append((f"x-ratelimit-remaining-{name}".encode(), str(int(value)).encode()))
        return out

    def error_type_for(self, dialect: str) -> str:
        """The error type each API uses for this refusal."""
        if self.status == 429:
            return "rate_limit_error" if dialect == "anthropic_messages" else "rate_limit_exceeded"
        if self.status == 402:
            return "billing_error" if dialect == "anthropic_messages" else "insufficient_quota"
        return self.error_type


OK = LimitResult(ok=True)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _day(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m-%d")


def _month(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m")


def _seconds_to_next_day(ts: float) -> float:
    d = _utc(ts)
    nxt = (d + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (nxt - d).total_seconds()


def _seconds_to_next_month(ts: float) -> float:
    d = _utc(ts)
    nxt = (d.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (nxt - d).total_seconds()


@dataclass(slots=True)
class _KeyState:
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    day: str = ""
    day_usd: float = 0.0
    month: str = ""
    month_usd: float = 0.0


class Limits:
    """All keys' buckets and spend. ``clock`` drives the buckets, ``wall`` the budget calendar."""

    def __init__(self, *, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self._keys: dict[str, _KeyState] = {}
        self.charges = 0  # spend changes so far: a saver writes the file only when this moved

    def _state(self, key_id: str, cfg: LimitSettings) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            st = self._keys[key_id] = _KeyState()
        # Buckets follow the key's current config (a key edited in the store gets new limits).
        if cfg.requests_per_min is None:
            st.requests = None
        elif st.requests is None or st.requests.rate_per_s != cfg.requests_per_min / 60.0:
            st.requests = TokenBucket(cfg.requests_per_min, cfg.burst_s, self.clock)
        if cfg.tokens_per_min is None:
            st.tokens = None
        elif st.tokens is None or st.tokens.rate_per_s != cfg.tokens_per_min / 60.0:
            st.tokens = TokenBucket(cfg.tokens_per_min, cfg.burst_s, self.clock)
        now = self.wall()
        if st.day != _day(now):
            st.day, st.day_usd = _day(now), 0.0
        if st.month != _month(now):
            st.month, st.month_usd = _month(now), 0.0
        return st

    def check(self, key_id: str, cfg: LimitSettings, est_tokens: int = 0) -> LimitResult:
        """Admit one request (taking 1 request and ``est_tokens`` tokens) or say why not."""
        if cfg.unlimited:
            return OK
        st = self._state(key_id, cfg)
        now = self.wall()
        if cfg.usd_per_day is not None and st.day_usd >= cfg.usd_per_day:
            return LimitResult(
                False, 402, "budget_exceeded",
                f"daily budget of ${cfg.usd_per_day:.2f} for this key is spent (${st.day_usd:.4f} today); "
                "it resets at 00:00 UTC",
                _seconds_to_next_day(now), "usd_per_day",
            )
        if cfg.usd_per_month is not None and st.month_usd >= cfg.usd_per_month:
            return LimitResult(
                False, 402, "budget_exceeded",
                f"monthly budget of ${cfg.usd_per_month:.2f} for this key is spent (${st.month_usd:.4f} this month); "
                "it resets on the 1st at 00:00 UTC",
                _seconds_to_next_month(now), "usd_per_month",
            )
        if st.requests is not None:
            wait = st.requests.wait_for(1)
            if wait > 0:
                return LimitResult(
                    False, 429, "rate_limit_error",
                    f"rate limit of {cfg.requests_per_min:g} requests per minute for this key exceeded; "
                    f"retry in {math.ceil(wait)} s",
                    wait, "requests_per_min", self._remaining(st),
                )
        if st.tokens is not None:
            wait = st.tokens.wait_for(max(1, est_tokens))
            if wait > 0:
                return LimitResult(
                    False, 429, "rate_limit_error",
                    f"rate limit of {cfg.tokens_per_min:g} tokens per minute for this key exceeded; "
                    f"retry in {math.ceil(wait)} s",
                    wait, "tokens_per_min", self._remaining(st),
                )
        if st.requests is not None:
            st.requests.take(1)
        if st.tokens is not None and est_tokens > 0:
            st.tokens.take(est_tokens)
        return LimitResult(True, remaining=self._remaining(st))

    @staticmethod
    def _remaining(st: _KeyState) -> dict[str, float]:
        out: dict[str, float] = {}
        if st.requests is not None:
            out["requests"] = st.requests.remaining()
        if st.tokens is not None:
            out["tokens"] = st.tokens.remaining()
        return out

    def record(
        self, key_id: str, cfg: LimitSettings, *, tokens: int = 0, cost_usd: float = 0.0, est_tokens: int = 0
    ) -> None:
        """After the answer: charge actual tokens (minus the estimate taken at admission) and spend."""
        if cfg.unlimited:
            return
        st = self._state(key_id, cfg)
        if st.tokens is not None and tokens != est_tokens:
            st.tokens.take(tokens - est_tokens)
        if cost_usd > 0 and math.isfinite(cost_usd):
            st.day_usd += cost_usd
            st.month_usd += cost_usd
            self.charges += 1

    def spend(self, key_id: str) -> dict[str, float]:
        st = self._keys.get(key_id)
        if st is None:
            return {"usd_today": 0.0, "usd_month": 0.0}
        now = self.wall()
        return {
            "usd_today": st.day_usd if st.day == _day(now) else 0.0,
            "usd_month": st.month_usd if st.month == _month(now) else 0.0,
        }

    # --- persistence of spend (buckets are short-lived and not worth saving) -----------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        data = {
            k: {"day": st.day, "day_usd": st.day_usd, "month": st.month, "month_usd": st.month_usd}
            for k, st in self._keys.items()
        }
        atomic_write_json(Path(path), data)

    def load(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        if not p.is_file():
            return
        data: dict[str, Any] = json.loads(p.read_text())
        for k, v in data.items():
            st = self._keys.setdefault(k, _KeyState())
            st.day, st.day_usd = str(v.get("day", "")), float(v.get("day_usd", 0.0))
            st.month, st.month_usd = str(v.get("month", "")), float(v.get("month_usd", 0.0))


async def keep_spend(limits: Limits, path: str | os.PathLike[str], every_s: float = 1.0) -> None:
    """Save ``limits``' spend to ``path`` whenever it changed, every ``every_s`` (cancel to stop; the
    caller saves once more at shutdown). A killed process loses at most the last interval."""
    saved = limits.charges
    while True:
        await asyncio.sleep(every_s)
        if limits.charges != saved:
            saved = limits.charges
            try:
                await asyncio.to_thread(limits.save, path)
            except OSError as exc:
                log.warning("cannot save budget spend to %s: %s", path, exc)


def atomic_write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    """Write JSON so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
