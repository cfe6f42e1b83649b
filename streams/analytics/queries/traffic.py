"""Traffic views: headline figures, the breakdowns by model / route / task type, the model mix by
tier, the time series, and cost per day (raw or from the daily rollup)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.analytics.queries.sql import (
    BEFORE,
    GROUP_COLUMNS,
    QUANTILES,
    SESSION_OUTCOMES,
    Prices,
    json_ready,
    price_params,
    quantile_fields,
    query_rows,
    traces_in_window,
    utc,
    window_dict,
    window_params,
)

ROLLUP_AFTER_DAYS = 31


def _traffic_sql(group: str | None, prices: Prices | None) -> str:
    """Requests, cost, baseline, tokens and overhead quantiles, optionally grouped by one column."""
    key = f"{group} AS key, " if group else ""
    tail = f" GROUP BY {group} ORDER BY requests DESC, key" if group else ""
    return (
        f"SELECT {key}count() AS requests, uniqExact(session_id) AS sessions, "
        "sum(cost_usd) AS cost_usd, sum(base_usd) AS baseline_cost_usd, "
        "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "sum(cached_tokens) AS cached_tokens, countIf(status >= 400 OR error IS NOT NULL) AS errors, "
        "countIf(attempts > 1) AS fallbacks, "
        f"quantilesExactInclusive({', '.join(map(str, QUANTILES))})(overhead_ms) AS overhead_q, "
        f"quantilesExactInclusive({', '.join(map(str, QUANTILES))})(latency_ms) AS latency_q "
        f"FROM {traces_in_window(prices)}{tail}"
    )


def _traffic_row(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["requests"])
    cost = float(row["cost_usd"]) if requests else 0.0
    baseline = float(row["baseline_cost_usd"]) if requests else 0.0
    out = {
        "requests": requests,
        "sessions": int(row["sessions"]),
        "cost_usd": cost,
        "baseline_cost_usd": baseline,
        "saved_usd": baseline - cost,
        "saved_pct": (baseline - cost) / baseline if baseline > 0 else None,
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "cached_tokens": int(row["cached_tokens"]),
        "errors": int(row["errors"]),
        "fallbacks": int(row["fallbacks"]),
    }
    out.update(quantile_fields("overhead_ms", row["overhead_q"] if requests else None))
    out.update(quantile_fields("latency_ms", row["latency_q"] if requests else None))
    return out


def success_by(client: Client, group: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per value of ``group`` (a decisions column): sessions with an outcome and their mean success."""
    col = GROUP_COLUMNS[group]
    sql = (
        f"WITH so AS ({SESSION_OUTCOMES}) "
        "SELECT d.key AS key, count() AS outcome_sessions, avg(so.success) AS success_rate "
        f"FROM (SELECT DISTINCT session_id, {col} AS key FROM decisions FINAL "
        f"WHERE {BEFORE} AND session_id IN (SELECT session_id FROM so)) AS d "
        "INNER JOIN so ON so.session_id = d.session_id GROUP BY key"
    )
    return {
        str(r["key"]): {"outcome_sessions": int(r["outcome_sessions"]), "success_rate": float(r["success_rate"])}
        for r in query_rows(client, sql, params)
    }


def _breakdown(
    client: Client, since: datetime, until: datetime, group: str, prices: Prices | None
) -> list[dict[str, Any]]:
    params = window_params(since, until, **price_params(prices))
    traffic = {str(r["key"]): _traffic_row(r) for r in query_rows(client, _traffic_sql(group, prices), params)}
    success = success_by(client, group, window_params(since, until))
    out = []
    for key in list(traffic) + sorted(set(success) - set(traffic)):
        row = {group: key, **traffic.get(key, _traffic_row(_EMPTY_TRAFFIC))}
        s = success.get(key)
        row["outcome_sessions"] = s["outcome_sessions"] if s else 0
        row["success_rate"] = s["success_rate"] if s else None
        out.append(row)
    return json_ready(out)


_EMPTY_TRAFFIC: dict[str, Any] = {
    "requests": 0, "sessions": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0, "input_tokens": 0,
    "output_tokens": 0, "cached_tokens": 0, "errors": 0, "fallbacks": 0, "overhead_q": None, "latency_q": None,
}



def summary(client: Client, since: datetime, until: datetime, prices: Prices | None = None) -> dict[str, Any]:
    """Headline figures for the window plus the same per model (``models``)."""
    params = window_params(since, until, **price_params(prices))
    traffic = _traffic_row(query_rows(client, _traffic_sql(None, prices), params)[0])
    so = query_rows(
        client,
        f"SELECT count() AS sessions, sum(outcomes) AS outcomes, avg(success) AS rate FROM ({SESSION_OUTCOMES})",
        window_params(since, until),
    )[0]
    outcome_sessions = int(so["sessions"])
    out: dict[str, Any] = {
        "window": window_dict(since, until),
        **traffic,
        "outcomes": int(so["outcomes"] or 0),
        "outcome_sessions": outcome_sessions,
        "success_rate": float(so["rate"]) if outcome_sessions else None,
        "models": models(client, since, until, prices),
    }
    return json_ready(out)


TIER_NAMES = ("frontier", "strong", "standard", "cheap")


def tier_mix(models_rows: Sequence[dict[str, Any]], tiers: dict[str, str]) -> list[dict[str, Any]]:
    """The model mix by catalogue tier: requests, share and cost per tier (``tiers``: model -> tier;
    a model no longer configured counts as ``unknown``), frontier first."""
    total = sum(int(r.get("requests") or 0) for r in models_rows)
    acc: dict[str, dict[str, Any]] = {}
    for r in models_rows:
        tier = tiers.get(str(r.get("model")), "unknown")
        row = acc.setdefault(tier, {"tier": tier, "requests": 0, "cost_usd": 0.0, "models": []})
        row["requests"] += int(r.get("requests") or 0)
        row["cost_usd"] += float(r.get("cost_usd") or 0.0)
        row["models"].append(r.get("model"))
    order = {t: i for i, t in enumerate(TIER_NAMES)}
    out = sorted(acc.values(), key=lambda row: order.get(row["tier"], len(order)))
    for row in out:
        row["share"] = row["requests"] / total if total else None
    return out


def with_tiers(summary_row: dict[str, Any], tiers: dict[str, str] | None) -> dict[str, Any]:
    """A summary with its mix by tier added (``tiers``: the configured model -> tier; none: as is)."""
    if tiers is None:
        return summary_row
    return {**summary_row, "tiers": tier_mix(summary_row.get("models", []), tiers)}


def model_tiers(settings: Any) -> dict[str, str] | None:
    return {m.name: m.tier for m in settings.models} if settings is not None else None


def models(client: Client, since: datetime, until: datetime, prices: Prices | None = None) -> list[dict[str, Any]]:
    """Per served model: traffic, cost, savings, tokens, overhead and success (see module doc)."""
    return _breakdown(client, since, until, "model", prices)


def routes(client: Client, since: datetime, until: datetime, prices: Prices | None = None) -> list[dict[str, Any]]:
    return _breakdown(client, since, until, "route", prices)


def task_types(client: Client, since: datetime, until: datetime, prices: Prices | None = None) -> list[dict[str, Any]]:
    return _breakdown(client, since, until, "task_type", prices)


def pick_bucket_s(since: datetime, until: datetime, points: int = 60) -> int:
    """A round bucket width giving about ``points`` buckets over the window."""
    span = max(1.0, (utc(until) - utc(since)).total_seconds())
    for width in (1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400):
        if span / width <= points:
            return width
    return 30 * 86400


def timeseries(
    client: Client, since: datetime, until: datetime, bucket_s: int | None = None, prices: Prices | None = None
) -> dict[str, Any]:
    """Per time bucket: requests, cost, baseline, savings, and the model mix (requests per model)."""
    bucket_s = bucket_s or pick_bucket_s(since, until)
    params = window_params(since, until, bucket=int(bucket_s), **price_params(prices))
    sql = (
        "SELECT toStartOfInterval(ts, toIntervalSecond({bucket:UInt32})) AS t, model, count() AS requests, "
        "sum(cost_usd) AS cost_usd, sum(base_usd) AS baseline_cost_usd, "
        "countIf(status >= 400 OR error IS NOT NULL) AS errors "
        f"FROM {traces_in_window(prices)} GROUP BY t, model ORDER BY t, model"
    )
    points: dict[Any, dict[str, Any]] = {}
    for r in query_rows(client, sql, params):
        p = points.setdefault(
            r["t"], {"t": r["t"], "requests": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0, "errors": 0, "models": {}}
        )
        p["requests"] += int(r["requests"])
        p["cost_usd"] += float(r["cost_usd"])
        p["baseline_cost_usd"] += float(r["baseline_cost_usd"])
        p["errors"] += int(r["errors"])
        p["models"][str(r["model"])] = int(r["requests"])
    series = []
    for p in points.values():
        p["saved_usd"] = p["baseline_cost_usd"] - p["cost_usd"]
        series.append(p)
    return json_ready({"window": window_dict(since, until), "bucket_s": bucket_s, "points": series})



def daily(
    client: Client, since: datetime, until: datetime, source: str = "auto", prices: Prices | None = None
) -> dict[str, Any]:
    """Cost and tokens per day and model. ``source``: ``raw`` (exact, FINAL), ``rollup`` (the
    ``traces_daily`` rollup: fast on long ranges, may over-count redelivered traces) or ``auto``
    (rollup when the window is longer than ROLLUP_AFTER_DAYS). Days are whole UTC days, so with the
    rollup the window is widened to the days it touches.
    """
    if source == "auto":
        source = "rollup" if utc(until) - utc(since) > timedelta(days=ROLLUP_AFTER_DAYS) else "raw"
    if source == "rollup":
        sql = (
            "SELECT day, model, sum(requests) AS requests, sum(input_tokens) AS input_tokens, "
            "sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, sum(baseline_cost_usd) AS baseline_cost_usd "
            "FROM traces_daily WHERE day >= toDate({since:DateTime64(3, 'UTC')}) "
            "AND day <= toDate({until:DateTime64(3, 'UTC')}) GROUP BY day, model ORDER BY day, model"
        )
        rows = query_rows(client, sql, window_params(since, until))
    elif source == "raw":
        sql = (
            "SELECT toDate(ts) AS day, model, count() AS requests, sum(input_tokens) AS input_tokens, "
            "sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, sum(base_usd) AS baseline_cost_usd "
            f"FROM {traces_in_window(prices)} GROUP BY day, model ORDER BY day, model"
        )
        rows = query_rows(client, sql, window_params(since, until, **price_params(prices)))
    else:
        raise ValueError(f"source must be auto, raw or rollup, not {source!r}")
    for r in rows:
        r["saved_usd"] = float(r["baseline_cost_usd"]) - float(r["cost_usd"])
    return json_ready({"window": window_dict(since, until), "source": source, "days": rows})
