"""An event sink that feeds Prometheus metrics from each trace, then hands events on.

Metrics come from the same trace the sink stores, so /metrics and ClickHouse always agree, and the
gateway needs no second bookkeeping path.
"""

from __future__ import annotations

from typing import Any

from streams.analytics.metrics import RouterMetrics
from streams.routing.decision import Decision


class MeteredEventSink:
    def __init__(self, inner: Any, metrics: RouterMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

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
        if self.inner is not None:
            self.inner.emit_trace(trace)
