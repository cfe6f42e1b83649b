"""Analytics over the ClickHouse tables: the views (``queries``), their HTTP API and dashboard,
Prometheus metrics, the report CLI, the demo traffic generator."""

from __future__ import annotations

from streams.analytics.api import analytics_routes
from streams.analytics.demo import run_demo, run_demo_async
from streams.analytics.metrics import RouterMetrics, metrics_route
from streams.analytics.report import run_report
from streams.analytics.window import parse_window

__all__ = [
    "RouterMetrics",
    "analytics_routes",
    "metrics_route",
    "parse_window",
    "run_demo",
    "run_demo_async",
    "run_report",
]
