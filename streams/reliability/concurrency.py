"""A concurrency cap with back-pressure: at most N requests in flight, a bounded FIFO queue behind them,
and a fast, explicit "overloaded" answer (503, or Anthropic's 529) when the queue is full or the wait too
long. Under overload the service keeps answering at capacity instead of collapsing.

    try:
        async with limiter.slot():
            ...  # the whole request, stream included
    except Overloaded as exc:
        ...  # exc.status, exc.message, exc.retry_after_s

The fast path (a free slot, nobody waiting) takes no lock and awaits nothing. A released slot is handed
straight to the oldest waiter, so waiters are served in order and a newcomer cannot jump the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from streams.reliability.settings import ConcurrencySettings


class Overloaded(Exception):
    """No slot: render ``status`` with ``message`` and a Retry-After of ``retry_after_s``."""

    def __init__(self, message: str, *, status: int = 503, retry_after_s: float = 1.0, reason: str = "queue_full"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.reason = reason  # queue_full | queue_timeout

    def error_type_for(self, dialect: str) -> str:
        if dialect == "anthropic_messages":
            return "overloaded_error"
        return "server_error" if self.status >= 500 else "rate_limit_exceeded"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(max(1, round(self.retry_after_s))).encode())]


class ConcurrencyLimiter:
    def __init__(
        self,
        max_concurrency: int,
        *,
        max_queue: int = 1024,
        queue_timeout_s: float = 10.0,
        overload_status: int = 503,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.overload_status = overload_status
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.rejected_total = 0
        self.timed_out_total = 0
        self.admitted_total = 0

    @classmethod
    def from_settings(cls, s: ConcurrencySettings, server_max_concurrency: int) -> ConcurrencyLimiter:
        return cls(
            s.max_concurrency or server_max_concurrency,
            max_queue=s.max_queue,
            queue_timeout_s=s.queue_timeout_s,
            overload_status=s.overload_status,
        )

    @property
    def queued(self) -> int:
        # Waiters leave the deque as soon as they are served, time out or are cancelled.
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a slot, waiting in line if needed; raises ``Overloaded`` when the line is full or too slow."""
        if self.active < self.max_concurrency and not self._waiters:
            self.active += 1
            self.admitted_total += 1
            return
        if self.queued >= self.max_queue:
            self.rejected_total += 1
            raise Overloaded(
                f"the router is overloaded ({self.active} requests in flight, {self.queued} waiting); retry shortly",
                status=self.overload_status, retry_after_s=1.0, reason="queue_full",
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await fut
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                # The slot arrived just as the wait expired: it is ours, so take it rather than leak it.
                self.admitted_total += 1
                return
            fut.cancel()
            self.timed_out_total += 1
            raise Overloaded(
                f"the router is overloaded: no capacity within {self.queue_timeout_s:g} s; retry shortly",
                status=self.overload_status, retry_after_s=max(1.0, self.queue_timeout_s / 2), reason="queue_timeout",
            ) from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            else:
                fut.cancel()
            raise
        finally:
            with contextlib.suppress(ValueError):
                if fut.cancelled():
                    self._waiters.remove(fut)
        self.admitted_total += 1

    def release(self) -> None:
        """Give the slot back: to the oldest live waiter if any (``active`` unchanged), else free it."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def snapshot(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "queued": self.queued,
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
            "admitted_total": self.admitted_total,
            "rejected_total": self.rejected_total,
            "timed_out_total": self.timed_out_total,
        }
