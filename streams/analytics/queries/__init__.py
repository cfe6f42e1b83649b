"""Analytics views over the ClickHouse tables: one function per view, plain dicts out.

Every function takes a clickhouse-connect client and a half-open time window ``[since, until)``
(timezone-aware datetimes, or naive ones meaning UTC) and returns JSON-ready values (ISO timestamps,
floats, ints, ``None`` for "no data").

Exactness. The raw tables are ReplacingMergeTree on ``event_id`` and the sink delivers at least once,
so every view reads them with ``FINAL``: a redelivered trace is counted once. The rollups from
migrations 0005+ (``traces_daily``, ``traces_hourly``) are fed by materialized views, which see every
insert *including duplicates*, so they may over-count after a redelivery; they are only used by
:func:`daily` for long ranges (more than ``ROLLUP_AFTER_DAYS``) or when asked for explicitly.

Definitions (the dashboard, report and Grafana show the same ones):

- ``saved_usd`` = ``baseline_cost_usd - cost_usd``; ``baseline_cost_usd`` is the trace's column (what
  the configured frontier default would have cost for the same tokens). When a frontier ``Prices`` is
  given, traces written without a baseline (0 with tokens > 0) get one computed from those prices.
- A *session outcome* is the latest outcome (by ts) a session reported inside the window; success is
  its ``success`` value in [0, 1]. ``success_rate`` overall = mean over sessions with an outcome.
- Success by model / route / task type: the session's outcome credits each of its decisions, and a
  session counts once per distinct model (route, task type) among its decisions (made before
  ``until``). So a cascaded session that ended green credits both the cheap and the strong model.
- Quantiles are exact with linear interpolation (``quantilesExactInclusive``, numpy's default).
- Fallbacks are traces with ``attempts > 1``; errors are traces with ``status >= 400`` or an error.

Modules: ``sql`` (the shared clauses and helpers), ``traffic`` (summary, breakdowns, time series,
daily), ``history`` (sessions, decisions, policy versions), ``serving`` (overhead, fallbacks),
``variants`` (canary and shadow experiments); ``VIEWS`` names them for the API and the report.
"""


from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.analytics.queries.history import decisions, policy_versions, sessions
from streams.analytics.queries.serving import fallbacks, overhead
from streams.analytics.queries.sql import QUANTILES, Prices, frontier_prices, model_prices, window_dict
from streams.analytics.queries.traffic import (
    ROLLUP_AFTER_DAYS,
    TIER_NAMES,
    daily,
    model_tiers,
    models,
    pick_bucket_s,
    routes,
    summary,
    task_types,
    tier_mix,
    timeseries,
    with_tiers,
)
from streams.analytics.queries.variants import variants

VIEWS: dict[str, Any] = {
    "summary": summary,
    "models": models,
    "routes": routes,
    "task_types": task_types,
    "timeseries": timeseries,
    "sessions": sessions,
    "decisions": decisions,
    "policy_versions": policy_versions,
    "overhead": overhead,
    "fallbacks": fallbacks,
    "daily": daily,
    "variants": variants,
}
# Views that price tokens with every model's prices (``model_prices=``; the API passes them).
MODEL_PRICED = frozenset({"variants"})
# Views whose baseline depends on the frontier prices.
PRICED = frozenset({"summary", "models", "routes", "task_types", "timeseries", "sessions", "policy_versions", "daily"})


def run_view(
    client: Client, name: str, since: datetime, until: datetime, prices: Prices | None = None, **params: Any
) -> Any:
    """Run one view by name (the API and report use this); unknown names raise KeyError."""
    fn = VIEWS[name]
    if name in PRICED:
        params["prices"] = prices
    return fn(client, since, until, **params)


def names() -> Iterable[str]:
    return VIEWS.keys()


__all__ = [
    "MODEL_PRICED",
    "PRICED",
    "QUANTILES",
    "ROLLUP_AFTER_DAYS",
    "TIER_NAMES",
    "VIEWS",
    "Prices",
    "daily",
    "decisions",
    "fallbacks",
    "frontier_prices",
    "model_prices",
    "model_tiers",
    "models",
    "names",
    "overhead",
    "pick_bucket_s",
    "policy_versions",
    "routes",
    "run_view",
    "sessions",
    "summary",
    "task_types",
    "tier_mix",
    "timeseries",
    "variants",
    "window_dict",
    "with_tiers",
]
