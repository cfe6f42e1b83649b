"""The gateway's recent requests: each answered request's trace, by request id, for ``GET /v1/requests/{id}``.

What a client wants to know about the answer it just got (its cost, the model the router picked and
why) must be readable the moment the answer ends, streams included, and must not put ClickHouse or
Kafka on the request path: traces reach ClickHouse asynchronously, seconds later, and a gateway runs
without either. So the gateway keeps the traces it built, in memory, in arrival order, bounded twice:

* by count (``max_entries``, 10,000 by default): memory stays flat whatever the request rate (about
  0.75 KB per entry with the trace it keeps alive, ~7 MB at the cap, measured by
  ``tests/unit/test_recent_requests.py``). At an agent's pace that is hours of requests; at 1,000 req/s,
  ten seconds, which is still "the answer I just got".
* by age (``max_age_s``, 15 minutes by default): "recent" means recent on a quiet gateway too, and what
  a request revealed does not linger in a long-running process. Older requests: the analytics API.

Entries are per process (each gateway replica answers for the requests it served) and gone on restart.
One event loop adds and reads them, so no lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from streams.ingress.trace import Trace

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_AGE_S = 15 * 60.0


class RecentRequest:
    """One finished request: its trace, why the router chose its model, and when it was kept."""

    __slots__ = ("trace", "reason", "kept_at")

    def __init__(self, trace: Trace, reason: str, kept_at: float) -> None:
        self.trace = trace
        self.reason = reason
        self.kept_at = kept_at


class RecentRequests:
    """The last ``max_entries`` traces younger than ``max_age_s``, by request id."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 0 or max_age_s < 0:
            raise ValueError("max_entries and max_age_s must not be negative")
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[str, RecentRequest] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, trace: Trace, reason: str = "") -> None:
        """Keep ``trace`` (a request id seen again, as a Kafka redelivery, replaces the older entry)."""
        if self.max_entries == 0:
            return
        now = self._clock()
        entries = self._entries
        entries.pop(trace.request_id, None)
        entries[trace.request_id] = RecentRequest(trace, reason, now)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        self._expire(now)

    def get(self, request_id: str) -> RecentRequest | None:
        """The request's entry, or None when it is unknown or has expired."""
        self._expire(self._clock())
        return self._entries.get(request_id)

    def _expire(self, now: float) -> None:
        # Entries are in the order they were kept, so the expired ones are at the front: amortised O(1).
        entries = self._entries
        horizon = now - self.max_age_s
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.kept_at >= horizon:
                break
            entries.popitem(last=False)
