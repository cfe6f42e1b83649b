"""Retries with jittered exponential backoff that honour Retry-After, bounded in attempts and total time.

Two ways to use it:

- ``Backoff`` + ``RetryState``: the caller owns the loop (the gateway's failover loop), asks
  ``state.next_delay(retry_after)`` after a failed attempt and sleeps that long, or stops on ``None``.
- ``retry_call``: a ready loop around an async callable, for code that has no loop of its own.

Retry-After is honoured as a floor (we never come back earlier than the server asked), with a little
jitter on top so clients told the same value do not return in lock-step. A Retry-After longer than
``max_retry_after_s`` or than what is left of the total budget means: give up now and tell the caller.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

from streams.reliability.settings import RetrySettings

T = TypeVar("T")
Clock = Callable[[], float]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds ("120", "1.5") or an HTTP date.

    ``now`` is wall-clock epoch seconds (default ``time.time()``). Unparseable or negative: ``None``;
    a date in the past: 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # float() accepts "nan" and "inf"; neither is a wait.
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "-0000"
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def retry_after_from_headers(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Retry-After of a response: ``retry-after-ms`` (OpenAI/Anthropic) first, then ``retry-after``."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms") or headers.get("Retry-After-Ms")
    if ms is not None:
        try:
            v = float(ms) / 1000.0
            if 0 <= v < float("inf"):
                return v
        except ValueError:
            pass
    ra = headers.get("retry-after") or headers.get("Retry-After")
    return parse_retry_after(ra, now=now)


def retryable_status(status: int) -> bool:
    """408, 409 (Anthropic lock), 425, 429, 5xx except 501/505: worth another attempt."""
    return status in (408, 409, 425, 429) or (status >= 500 and status not in (501, 505))


class Backoff:
    """Delay schedule: attempt n (1 = first retry) waits ~ base * 2**(n-1), capped, jittered."""

    def __init__(self, settings: RetrySettings | None = None, rng: random.Random | None = None) -> None:
        self.s = settings or RetrySettings()
        self.rng = rng or random.Random()

    def backoff(self, retry: int) -> float:
        """Jittered delay before retry number ``retry`` (1-based), within [0, max_delay_s]."""
        cap = min(self.s.max_delay_s, self.s.base_delay_s * (2 ** min(max(retry - 1, 0), 30)))
        if self.s.jitter == "full":
            return self.rng.uniform(0, cap)
        if self.s.jitter == "equal":
            return cap / 2 + self.rng.uniform(0, cap / 2)
        return cap

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Delay before retry ``retry``; ``None`` when the server asks for a wait longer than we accept."""
        if retry_after is None:
            return self.backoff(retry)
        if retry_after > self.s.max_retry_after_s:
            return None
        # Floor at the server's value; up to 10% (max 1 s) of jitter on top.
        return retry_after + self.rng.uniform(0, min(1.0, 0.1 * retry_after))


@dataclass(slots=True)
class RetryState:
    """One request's retry bookkeeping: attempts made, time spent, and whether another attempt fits."""

    backoff: Backoff
    clock: Clock = time.monotonic
    started: float = -1.0
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def attempt(self) -> None:
        """Count an attempt (call before each try)."""
        self.attempts += 1

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Seconds to sleep before the next attempt, or ``None``: stop (attempts, budget or Retry-After)."""
        s = self.backoff.s
        if self.attempts >= s.max_attempts:
            return None
        delay = self.backoff.delay(self.attempts, retry_after)
        if delay is None:
            return None
        left = s.total_budget_s - (self.clock() - self.started)
        if delay > left:
            # Retry-After must be honoured in full or not at all; a plain backoff may be trimmed.
            if retry_after is not None or left <= 0:
                return None
            delay = left
        return delay


class RetryableError(Exception):
    """Raise from the callable given to ``retry_call`` to ask for another attempt."""

    def __init__(self, message: str = "retryable failure", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    settings: RetrySettings | None = None,
    rng: random.Random | None = None,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call ``fn`` until it returns; it raises ``RetryableError`` to retry. The last error is re-raised."""
    state = RetryState(Backoff(settings, rng), clock)
    while True:
        state.attempt()
        try:
            return await fn()
        except RetryableError as exc:
            delay = state.next_delay(exc.retry_after)
            if delay is None:
                raise
            await sleep(delay)
