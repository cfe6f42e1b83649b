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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

ROLLUP_AFTER_DAYS = 31
QUANTILES = (0.5, 0.9, 0.99)

_W = "ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}"
_BEFORE = "ts < {until:DateTime64(3, 'UTC')}"
# The latest outcome per session inside the window (ties broken by event_id, so it is deterministic).
_SESSION_OUTCOMES = (
    "SELECT session_id, argMax(success, (ts, event_id)) AS success, count() AS outcomes, max(ts) AS outcome_ts "
    f"FROM outcomes FINAL WHERE {_W} GROUP BY session_id"
)
_GROUP_COLUMNS = {"model": "model", "route": "route", "task_type": "task_type", "provider": "provider",
                  "client_dialect": "client_dialect", "policy": "policy", "variant": "if(variant = '', 'control', variant)"}


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens of the frontier default (for traces that carry no baseline)."""

    price_in: float
    price_out: float
    price_cached: float = 0.0


def model_prices(settings: Any) -> dict[str, Prices]:
    """Every configured model's prices (what a shadow model would have cost over the same tokens)."""
    models = getattr(settings, "models", None) or []
    return {m.name: Prices(m.price_in, m.price_out, m.price_cached) for m in models}


def frontier_prices(settings: Any) -> Prices | None:
    """The frontier default's prices from ``Settings`` (None when no model is configured)."""
    name = settings.frontier_default() if settings is not None else None
    model = settings.model(name) if name else None
    return Prices(model.price_in, model.price_out, model.price_cached) if model else None


# ---- helpers ------------------------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _params(since: datetime, until: datetime, **extra: Any) -> dict[str, Any]:
    return {"since": _utc(since), "until": _utc(until), **extra}


def _json(value: Any) -> Any:
    """JSON-ready: ISO timestamps (UTC, 'Z'), NaN/inf -> None, tuples -> lists."""
    if isinstance(value, datetime):
        return _utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _rows(client: Client, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params)
    names = result.column_names
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def _baseline(prices: Prices | None) -> str:
    if prices is None:
        return "baseline_cost_usd"
    return (
        "if(baseline_cost_usd > 0 OR input_tokens + output_tokens = 0, baseline_cost_usd, "
        "(greatest(toInt64(input_tokens) - toInt64(cached_tokens), 0) * {p_in:Float64} "
        "+ cached_tokens * {p_cached:Float64} + output_tokens * {p_out:Float64}) / 1e6)"
    )


def _traces(prices: Prices | None) -> str:
    """Deduplicated traces in the window with their baseline as ``base_usd`` (a subquery, so that
    aggregates aliased like the raw columns never capture the baseline expression)."""
    return f"(SELECT *, {_baseline(prices)} AS base_usd FROM traces FINAL WHERE {_W})"


def _price_params(prices: Prices | None) -> dict[str, Any]:
    if prices is None:
        return {}
    return {"p_in": prices.price_in, "p_out": prices.price_out, "p_cached": prices.price_cached}


def _quantile_fields(prefix: str, values: Sequence[float] | None) -> dict[str, float | None]:
    values = list(values or [])
    out: dict[str, float | None] = {}
    for q, v in zip(QUANTILES, values + [math.nan] * (len(QUANTILES) - len(values)), strict=True):
        out[f"{prefix}_p{round(q * 100)}"] = None if v is None or math.isnan(v) else float(v)
    return out


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
        f"FROM {_traces(prices)}{tail}"
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
    out.update(_quantile_fields("overhead_ms", row["overhead_q"] if requests else None))
    out.update(_quantile_fields("latency_ms", row["latency_q"] if requests else None))
    return out


def _success_by(client: Client, group: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per value of ``group`` (a decisions column): sessions with an outcome and their mean success."""
    col = _GROUP_COLUMNS[group]
    sql = (
        f"WITH so AS ({_SESSION_OUTCOMES}) "
        "SELECT d.key AS key, count() AS outcome_sessions, avg(so.success) AS success_rate "
        f"FROM (SELECT DISTINCT session_id, {col} AS key FROM decisions FINAL "
        f"WHERE {_BEFORE} AND session_id IN (SELECT session_id FROM so)) AS d "
        "INNER JOIN so ON so.session_id = d.session_id GROUP BY key"
    )
    return {
        str(r["key"]): {"outcome_sessions": int(r["outcome_sessions"]), "success_rate": float(r["success_rate"])}
        for r in _rows(client, sql, params)
    }


def _breakdown(
    client: Client, since: datetime, until: datetime, group: str, prices: Prices | None
) -> list[dict[str, Any]]:
    params = _params(since, until, **_price_params(prices))
    traffic = {str(r["key"]): _traffic_row(r) for r in _rows(client, _traffic_sql(group, prices), params)}
    success = _success_by(client, group, _params(since, until))
    out = []
    for key in list(traffic) + sorted(set(success) - set(traffic)):
        row = {group: key, **traffic.get(key, _traffic_row(_EMPTY_TRAFFIC))}
        s = success.get(key)
        row["outcome_sessions"] = s["outcome_sessions"] if s else 0
        row["success_rate"] = s["success_rate"] if s else None
        out.append(row)
    return _json(out)


_EMPTY_TRAFFIC: dict[str, Any] = {
    "requests": 0, "sessions": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0, "input_tokens": 0,
    "output_tokens": 0, "cached_tokens": 0, "errors": 0, "fallbacks": 0, "overhead_q": None, "latency_q": None,
}


def window_dict(since: datetime, until: datetime) -> dict[str, str]:
    return {"since": _json(_utc(since)), "until": _json(_utc(until))}


# ---- views --------------------------------------------------------------------------------------


def summary(client: Client, since: datetime, until: datetime, prices: Prices | None = None) -> dict[str, Any]:
    """Headline figures for the window plus the same per model (``models``)."""
    params = _params(since, until, **_price_params(prices))
    traffic = _traffic_row(_rows(client, _traffic_sql(None, prices), params)[0])
    so = _rows(
        client,
        f"SELECT count() AS sessions, sum(outcomes) AS outcomes, avg(success) AS rate FROM ({_SESSION_OUTCOMES})",
        _params(since, until),
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
    return _json(out)


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
    span = max(1.0, (_utc(until) - _utc(since)).total_seconds())
    for width in (1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400):
        if span / width <= points:
            return width
    return 30 * 86400


def timeseries(
    client: Client, since: datetime, until: datetime, bucket_s: int | None = None, prices: Prices | None = None
) -> dict[str, Any]:
    """Per time bucket: requests, cost, baseline, savings, and the model mix (requests per model)."""
    bucket_s = bucket_s or pick_bucket_s(since, until)
    params = _params(since, until, bucket=int(bucket_s), **_price_params(prices))
    sql = (
        "SELECT toStartOfInterval(ts, toIntervalSecond({bucket:UInt32})) AS t, model, count() AS requests, "
        "sum(cost_usd) AS cost_usd, sum(base_usd) AS baseline_cost_usd, "
        "countIf(status >= 400 OR error IS NOT NULL) AS errors "
        f"FROM {_traces(prices)} GROUP BY t, model ORDER BY t, model"
    )
    points: dict[Any, dict[str, Any]] = {}
    for r in _rows(client, sql, params):
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
    return _json({"window": window_dict(since, until), "bucket_s": bucket_s, "points": series})


def sessions(
    client: Client, since: datetime, until: datetime, limit: int = 50, prices: Prices | None = None
) -> list[dict[str, Any]]:
    """Per task-session active in the window (most recent first): cost, savings, models, outcome."""
    params = _params(since, until, limit=int(limit), **_price_params(prices))
    sql = (
        "SELECT session_id, count() AS requests, sum(cost_usd) AS cost_usd, "
        "sum(base_usd) AS baseline_cost_usd, arraySort(groupUniqArray(model)) AS models, "
        "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "min(ts) AS first_ts, max(ts) AS last_ts, any(client) AS client "
        f"FROM {_traces(prices)} GROUP BY session_id ORDER BY last_ts DESC, session_id LIMIT {{limit:UInt32}}"
    )
    rows = _rows(client, sql, params)
    ids = [r["session_id"] for r in rows]
    outcomes: dict[str, dict[str, Any]] = {}
    if ids:
        # A session's latest outcome up to ``until``, even when reported after the window opened.
        osql = (
            "SELECT session_id, argMax(success, (ts, event_id)) AS success, count() AS outcomes "
            f"FROM outcomes FINAL WHERE {_BEFORE} AND session_id IN {{ids:Array(String)}} GROUP BY session_id"
        )
        outcomes = {r["session_id"]: r for r in _rows(client, osql, {"until": _utc(until), "ids": ids})}
    out = []
    for r in rows:
        o = outcomes.get(r["session_id"])
        out.append({
            **r,
            "saved_usd": float(r["baseline_cost_usd"]) - float(r["cost_usd"]),
            "outcomes": int(o["outcomes"]) if o else 0,
            "success": float(o["success"]) if o else None,
        })
    return _json(out)


def decisions(client: Client, since: datetime, until: datetime, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent routing decisions with their reasons, and the session's outcome when known."""
    sql = (
        "SELECT ts, event_id AS decision_id, request_id, session_id, model, provider, route, policy, "
        "policy_version, prompt_version, reason, confidence, propensity, task_type, fallbacks, source "
        f"FROM decisions FINAL WHERE {_W} ORDER BY ts DESC, event_id LIMIT {{limit:UInt32}}"
    )
    rows = _rows(client, sql, _params(since, until, limit=int(limit)))
    ids = sorted({r["session_id"] for r in rows})
    outcomes: dict[str, float] = {}
    if ids:
        osql = (
            "SELECT session_id, argMax(success, (ts, event_id)) AS success FROM outcomes FINAL "
            f"WHERE {_BEFORE} AND session_id IN {{ids:Array(String)}} GROUP BY session_id"
        )
        outcomes = {r["session_id"]: float(r["success"]) for r in _rows(client, osql, {"until": _utc(until), "ids": ids})}
    for r in rows:
        r["session_success"] = outcomes.get(r["session_id"])
    return _json(rows)


def policy_versions(
    client: Client, since: datetime, until: datetime, prices: Prices | None = None
) -> list[dict[str, Any]]:
    """Per (policy, version): decisions, sessions, first/last seen, model mix, cost of its traces, success."""
    params = _params(since, until)
    dsql = (
        "SELECT policy, policy_version, count() AS decisions, uniqExact(session_id) AS sessions, "
        "min(ts) AS first_seen, max(ts) AS last_seen, avg(confidence) AS mean_confidence, "
        "arraySort(groupUniqArray(model)) AS models "
        f"FROM decisions FINAL WHERE {_W} GROUP BY policy, policy_version ORDER BY policy_version DESC, policy"
    )
    tsql = (
        f"SELECT policy, policy_version, count() AS requests, sum(cost_usd) AS cost_usd, "
        f"sum(base_usd) AS baseline_cost_usd FROM {_traces(prices)} GROUP BY policy, policy_version"
    )
    ssql = (
        f"WITH so AS ({_SESSION_OUTCOMES}) "
        "SELECT d.policy AS policy, d.policy_version AS policy_version, count() AS outcome_sessions, "
        "avg(so.success) AS success_rate FROM (SELECT DISTINCT session_id, policy, policy_version FROM decisions "
        f"FINAL WHERE {_BEFORE} AND session_id IN (SELECT session_id FROM so)) AS d "
        "INNER JOIN so ON so.session_id = d.session_id GROUP BY policy, policy_version"
    )
    traffic = {(r["policy"], r["policy_version"]): r
               for r in _rows(client, tsql, _params(since, until, **_price_params(prices)))}
    success = {(r["policy"], r["policy_version"]): r for r in _rows(client, ssql, params)}
    out = []
    for r in _rows(client, dsql, params):
        key = (r["policy"], r["policy_version"])
        t, s = traffic.get(key), success.get(key)
        cost = float(t["cost_usd"]) if t else 0.0
        baseline = float(t["baseline_cost_usd"]) if t else 0.0
        out.append({
            **r,
            "requests": int(t["requests"]) if t else 0,
            "cost_usd": cost,
            "baseline_cost_usd": baseline,
            "saved_usd": baseline - cost,
            "outcome_sessions": int(s["outcome_sessions"]) if s else 0,
            "success_rate": float(s["success_rate"]) if s else None,
        })
    return _json(out)


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
        out.update(_quantile_fields("overhead_ms", r["overhead_q"] if n else None))
        out["overhead_ms_max"] = float(r["overhead_max"]) if n else None
        out["overhead_ms_mean"] = float(r["overhead_mean"]) if n else None
        out.update(_quantile_fields("latency_ms", r["latency_q"] if n else None))
        out.update(_quantile_fields("ttft_ms", r["ttft_q"] if n else None))
        return out

    params = _params(since, until)
    overall = shape(_rows(client, f"SELECT {cols} FROM traces FINAL WHERE {_W}", params)[0])
    by = _rows(client, f"SELECT client_dialect, {cols} FROM traces FINAL WHERE {_W} GROUP BY client_dialect "
                       "ORDER BY client_dialect", params)
    return _json({
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
    params = _params(since, until, limit=int(limit))
    total = _rows(
        client,
        "SELECT count() AS requests, countIf(attempts > 1) AS fallbacks, "
        "countIf(status >= 400 OR error IS NOT NULL) AS errors, "
        "countIf(positionCaseInsensitive(ifNull(error, ''), 'circuit') > 0) AS breaker_events "
        f"FROM traces FINAL WHERE {_W}",
        params,
    )[0]
    by_provider = _rows(
        client,
        "SELECT provider, model, count() AS fallbacks, avg(attempts) AS mean_attempts "
        f"FROM traces FINAL WHERE {_W} AND attempts > 1 GROUP BY provider, model ORDER BY fallbacks DESC, provider, model",
        params,
    )
    errors = _rows(
        client,
        "SELECT provider, status, ifNull(error, '') AS message, count() AS count, max(ts) AS last_ts "
        f"FROM traces FINAL WHERE {_W} AND (status >= 400 OR error IS NOT NULL) "
        "GROUP BY provider, status, message ORDER BY count DESC, provider, status, message",
        params,
    )
    recent = _rows(
        client,
        "SELECT ts, request_id, session_id, model, provider, attempts, status, error FROM traces FINAL "
        f"WHERE {_W} AND (attempts > 1 OR status >= 400 OR error IS NOT NULL) ORDER BY ts DESC, event_id "
        "LIMIT {limit:UInt32}",
        params,
    )
    n = int(total["requests"])
    return _json({
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


def daily(
    client: Client, since: datetime, until: datetime, source: str = "auto", prices: Prices | None = None
) -> dict[str, Any]:
    """Cost and tokens per day and model. ``source``: ``raw`` (exact, FINAL), ``rollup`` (the
    ``traces_daily`` rollup: fast on long ranges, may over-count redelivered traces) or ``auto``
    (rollup when the window is longer than ROLLUP_AFTER_DAYS). Days are whole UTC days, so with the
    rollup the window is widened to the days it touches.
    """
    if source == "auto":
        source = "rollup" if _utc(until) - _utc(since) > timedelta(days=ROLLUP_AFTER_DAYS) else "raw"
    if source == "rollup":
        sql = (
            "SELECT day, model, sum(requests) AS requests, sum(input_tokens) AS input_tokens, "
            "sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, sum(baseline_cost_usd) AS baseline_cost_usd "
            "FROM traces_daily WHERE day >= toDate({since:DateTime64(3, 'UTC')}) "
            "AND day <= toDate({until:DateTime64(3, 'UTC')}) GROUP BY day, model ORDER BY day, model"
        )
        rows = _rows(client, sql, _params(since, until))
    elif source == "raw":
        sql = (
            "SELECT toDate(ts) AS day, model, count() AS requests, sum(input_tokens) AS input_tokens, "
            "sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, sum(base_usd) AS baseline_cost_usd "
            f"FROM {_traces(prices)} GROUP BY day, model ORDER BY day, model"
        )
        rows = _rows(client, sql, _params(since, until, **_price_params(prices)))
    else:
        raise ValueError(f"source must be auto, raw or rollup, not {source!r}")
    for r in rows:
        r["saved_usd"] = float(r["baseline_cost_usd"]) - float(r["cost_usd"])
    return _json({"window": window_dict(since, until), "source": source, "days": rows})


_VARIANTS = ("control", "canary")


def variants(
    client: Client, since: datetime, until: datetime, model_prices: dict[str, Prices] | None = None
) -> dict[str, Any]:
    """Canary and shadow experiments (``streams.routing.experiments``) in the window.

    ``variants``: per arm (control, canary; a decision without a variant is control) the decisions,
    and from the traces joined to their decision by ``decision_id``: requests, sessions, cost, cost per
    session, errors and router overhead quantiles; success rate as in :func:`models` (a session's
    latest outcome credits the arm of its decisions). ``shadow``: decisions carrying a shadow choice,
    how often it equals the served model (``agreement``), and for the traced ones the served cost
    against the shadow model's prices over the same tokens (``shadow_cost_usd``; an estimate: another
    model would not have produced exactly the same tokens; None without ``model_prices``).
    """
    params = _params(since, until)
    var = _GROUP_COLUMNS["variant"]
    qs = ", ".join(map(str, QUANTILES))
    ids = f"SELECT decision_id FROM traces FINAL WHERE {_W}"
    traffic_sql = (
        "SELECT if(d.variant = '', 'control', d.variant) AS key, count() AS requests, "
        "uniqExact(t.session_id) AS sessions, sum(t.cost_usd) AS cost_usd, "
        "countIf(t.status >= 400 OR t.error IS NOT NULL) AS errors, "
        f"quantilesExactInclusive({qs})(t.overhead_ms) AS overhead_q, "
        f"quantilesExactInclusive({qs})(t.latency_ms) AS latency_q "
        f"FROM (SELECT session_id, decision_id, cost_usd, status, error, overhead_ms, latency_ms "
        f"FROM traces FINAL WHERE {_W}) AS t "
        f"LEFT JOIN (SELECT event_id, variant FROM decisions FINAL WHERE event_id IN ({ids})) AS d "
        "ON d.event_id = t.decision_id GROUP BY key"
    )
    decisions_sql = (
        f"SELECT {var} AS key, count() AS decisions, uniqExact(session_id) AS decision_sessions "
        f"FROM decisions FINAL WHERE {_W} GROUP BY key"
    )
    traffic = {str(r["key"]): r for r in _rows(client, traffic_sql, params)}
    decided = {str(r["key"]): r for r in _rows(client, decisions_sql, params)}
    success = _success_by(client, "variant", params)
    arms = []
    for key in list(_VARIANTS) + sorted((set(traffic) | set(decided) | set(success)) - set(_VARIANTS)):
        t, d, so = traffic.get(key), decided.get(key), success.get(key)
        requests = int(t["requests"]) if t else 0
        sessions = int(t["sessions"]) if t else 0
        cost = float(t["cost_usd"]) if t else 0.0
        row: dict[str, Any] = {
            "variant": key,
            "decisions": int(d["decisions"]) if d else 0,
            "requests": requests,
            "sessions": sessions,
            "cost_usd": cost,
            "cost_per_session_usd": cost / sessions if sessions else None,
            "errors": int(t["errors"]) if t else 0,
            "error_rate": int(t["errors"]) / requests if t and requests else None,
            "outcome_sessions": so["outcome_sessions"] if so else 0,
            "success_rate": so["success_rate"] if so else None,
        }
        row.update(_quantile_fields("overhead_ms", t["overhead_q"] if t and requests else None))
        row.update(_quantile_fields("latency_ms", t["latency_q"] if t and requests else None))
        arms.append(row)

    shadowed = f"FROM decisions FINAL WHERE {_W} AND shadow_model IS NOT NULL"
    head = _rows(
        client,
        f"SELECT count() AS decisions, countIf(shadow_model = model) AS agree, uniqExact(session_id) AS sessions "
        f"{shadowed}",
        params,
    )[0]
    pairs = _rows(
        client,
        # (An alias named like the column would leak into the WHERE: ClickHouse substitutes aliases.)
        f"SELECT model, assumeNotNull(shadow_model) AS shadow, count() AS decisions {shadowed} "
        "GROUP BY model, shadow ORDER BY decisions DESC, model, shadow LIMIT 20",
        params,
    )
    prices = model_prices or {}
    names = sorted(prices)
    cost_params = _params(
        since, until, m_names=names, m_in=[prices[n].price_in for n in names],
        m_out=[prices[n].price_out for n in names], m_cached=[prices[n].price_cached for n in names],
    )
    at = "indexOf({m_names:Array(String)}, d.shadow)"
    cost_row = _rows(
        client,
        "SELECT count() AS requests, sum(t.cost_usd) AS cost_usd, "
        f"sum((greatest(toInt64(t.input_tokens) - toInt64(t.cached_tokens), 0) * arrayElement({{m_in:Array(Float64)}}, {at}) "
        f"+ t.cached_tokens * arrayElement({{m_cached:Array(Float64)}}, {at}) "
        f"+ t.output_tokens * arrayElement({{m_out:Array(Float64)}}, {at})) / 1e6) AS shadow_cost_usd, "
        f"countIf({at} = 0) AS unpriced "
        f"FROM (SELECT decision_id, cost_usd, input_tokens, output_tokens, cached_tokens FROM traces FINAL WHERE {_W}) AS t "
        "INNER JOIN (SELECT event_id, assumeNotNull(shadow_model) AS shadow FROM decisions FINAL "
        f"WHERE shadow_model IS NOT NULL AND event_id IN ({ids})) AS d ON d.event_id = t.decision_id",
        cost_params,
    )[0]
    n, traced = int(head["decisions"]), int(cost_row["requests"])
    served_cost = float(cost_row["cost_usd"]) if traced else 0.0
    shadow_cost = float(cost_row["shadow_cost_usd"]) if traced and prices else (0.0 if not traced else None)
    shadow = {
        "decisions": n,
        "sessions": int(head["sessions"]),
        "agree": int(head["agree"]),
        "agreement": int(head["agree"]) / n if n else None,
        "requests": traced,
        "cost_usd": served_cost,
        "shadow_cost_usd": shadow_cost,
        "shadow_delta_usd": None if shadow_cost is None else shadow_cost - served_cost,
        "unpriced_requests": int(cost_row["unpriced"]) if traced and prices else traced,
        "pairs": [{"model": r["model"], "shadow_model": r["shadow"], "decisions": int(r["decisions"])} for r in pairs],
    }
    experiments = _rows(
        client,
        "SELECT experiment, count() AS decisions, countIf(variant = 'canary') AS canary_decisions, "
        "countIf(shadow_model IS NOT NULL) AS shadow_decisions, min(ts) AS first_seen, max(ts) AS last_seen "
        f"FROM decisions FINAL WHERE {_W} AND experiment != '' GROUP BY experiment ORDER BY experiment",
        params,
    )
    return _json({"window": window_dict(since, until), "experiments": experiments, "variants": arms, "shadow": shadow})


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
