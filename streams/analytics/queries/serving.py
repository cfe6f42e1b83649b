"""Serving health: router overhead and latency quantiles, failovers and errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.analytics.queries.sql import (
    QUANTILES,
    WINDOW,
    json_ready,
    quantile_fields,
    query_rows,
    window_dict,
    window_params,
)


def overhead(client: Client, since: datetime, until: datetime) -> dict[str, Any]:
    """Router overhead, total latency and time-to-first-token quantiles, overall and per client dialect."""
    qs = ", ".join(map(str, QUANTILES))
    cols = (
        f"count() AS requests, quantilesExactInclusive({qs})(overhead_ms) AS overhead_q, "
        "max(overhead_ms) AS overhead_max, avg(overhead_ms) AS overhead_mean, "
        f"quantilesExactInclusive({qs})(latency_ms) AS latency_q, "
        f"quantilesExactInclusiveIf({qs})(ttft_ms, stream) AS ttft_q"
    )

    def shape(r: dict[str, Any]) -> dict[str, Any]:
        n = int(r["requests"])
        out: dict[str, Any] = {"requests": n}
        out.update(quantile_fields("overhead_ms", r["overhead_q"] if n else None))
        out["overhead_ms_max"] = float(r["overhead_max"]) if n else None
        out["overhead_ms_mean"] = float(r["overhead_mean"]) if n else None
        out.update(quantile_fields("latency_ms", r["latency_q"] if n else None))
        out.update(quantile_fields("ttft_ms", r["ttft_q"] if n else None))
        return out

    params = window_params(since, until)
    overall = shape(query_rows(client, f"SELECT {cols} FROM traces FINAL WHERE {WINDOW}", params)[0])
    by = query_rows(client, f"SELECT client_dialect, {cols} FROM traces FINAL WHERE {WINDOW} GROUP BY client_dialect "
                       "ORDER BY client_dialect", params)
    return json_ready({
        "window": window_dict(since, until),
        "quantiles": list(QUANTILES),
        "overall": overall,
        "by_dialect": [{"client_dialect": r["client_dialect"], **shape(r)} for r in by],
    })


def fallbacks(client: Client, since: datetime, until: datetime, limit: int = 50) -> dict[str, Any]:
    """Failover and errors: traces with attempts > 1, errors by provider/status/error, recent ones.

    Circuit-breaker events show up here as errors whose message mentions the breaker (until a later
    change gives them their own events).
    """
    params = window_params(since, until, limit=int(limit))
    total = query_rows(
        client,
        "SELECT count() AS requests, countIf(attempts > 1) AS fallbacks, "
        "countIf(status >= 400 OR error IS NOT NULL) AS errors, "
        "countIf(positionCaseInsensitive(ifNull(error, ''), 'circuit') > 0) AS breaker_events "
        f"FROM traces FINAL WHERE {WINDOW}",
        params,
    )[0]
    by_provider = query_rows(
        client,
        "SELECT provider, model, count() AS fallbacks, avg(attempts) AS mean_attempts "
        f"FROM traces FINAL WHERE {WINDOW} AND attempts > 1 GROUP BY provider, model ORDER BY fallbacks DESC, provider, model",
        params,
    )
    errors = query_rows(
        client,
        "SELECT provider, status, ifNull(error, '') AS message, count() AS count, max(ts) AS last_ts "
        f"FROM traces FINAL WHERE {WINDOW} AND (status >= 400 OR error IS NOT NULL) "
        "GROUP BY provider, status, message ORDER BY count DESC, provider, status, message",
        params,
    )
    recent = query_rows(
        client,
        "SELECT ts, request_id, session_id, model, provider, attempts, status, error FROM traces FINAL "
        f"WHERE {WINDOW} AND (attempts > 1 OR status >= 400 OR error IS NOT NULL) ORDER BY ts DESC, event_id "
        "LIMIT {limit:UInt32}",
        params,
    )
    n = int(total["requests"])
    return json_ready({
        "window": window_dict(since, until),
        "requests": n,
        "fallbacks": int(total["fallbacks"]),
        "fallback_rate": int(total["fallbacks"]) / n if n else None,
        "errors": int(total["errors"]),
        "error_rate": int(total["errors"]) / n if n else None,
        "breaker_events": int(total["breaker_events"]),
        "by_provider": by_provider,
        "errors_by": errors,
        "recent": recent,
    })
