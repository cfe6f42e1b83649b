"""An event sink that feeds Prometheus metrics from each trace, then hands events on.

Metrics come from the same trace the sink stores, so /metrics and ClickHouse always agree, and the
gateway needs no second bookkeeping path. It also remembers which session each recent request belonged
to, so feedback that names only a ``request_id`` credits the right session.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from streams.analytics.metrics import RouterMetrics
from streams.routing.decision import Decision


class RecentRequests:
    """request_id → session_id of the last ``capacity`` requests served (bounded, oldest dropped)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._sessions: OrderedDict[str, str] = OrderedDict()

    def remember(self, request_id: str, session_id: str) -> None:
        self._sessions[request_id] = session_id
        if len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)

    def session_of(self, request_id: str) -> str | None:
        return self._sessions.get(request_id)


class MeteredEventSink:
    def __init__(self, inner: Any, metrics: RouterMetrics, recent: RecentRequests | None = None) -> None:
        self.inner = inner
        self.metrics = metrics
        self.recent = recent

    def emit_decision(self, decision: Decision, **context: Any) -> None:
        if self.inner is not None:
            self.inner.emit_decision(decision, **context)

    def emit_trace(self, trace: dict[str, Any]) -> None:
        self.metrics.observe_request(
            str(trace.get("client_dialect", "")), str(trace.get("model", "")), str(trace.get("provider", "")),
            int(trace.get("status", 0)), float(trace.get("latency_ms", 0.0)) / 1000,
            float(trace.get("overhead_ms", 0.0)) / 1000, int(trace.get("attempts", 1)),
            int(trace.get("input_tokens", 0)), int(trace.get("output_tokens", 0)),
            int(trace.get("cached_tokens", 0)), float(trace.get("cost_usd", 0.0)),
        )
        if self.recent is not None and trace.get("request_id") and trace.get("session_id"):
            self.recent.remember(str(trace["request_id"]), str(trace["session_id"]))
        if self.inner is not None:
            self.inner.emit_trace(trace)
