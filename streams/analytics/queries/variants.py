"""Canary and shadow experiments: each arm's traffic and success, and the shadow choices' agreement
and estimated cost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.analytics.queries.sql import (
    GROUP_COLUMNS,
    QUANTILES,
    WINDOW,
    Prices,
    json_ready,
    quantile_fields,
    query_rows,
    window_dict,
    window_params,
)
from streams.analytics.queries.traffic import success_by

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
    params = window_params(since, until)
    var = GROUP_COLUMNS["variant"]
    qs = ", ".join(map(str, QUANTILES))
    ids = f"SELECT decision_id FROM traces FINAL WHERE {WINDOW}"
    traffic_sql = (
        "SELECT if(d.variant = '', 'control', d.variant) AS key, count() AS requests, "
        "uniqExact(t.session_id) AS sessions, sum(t.cost_usd) AS cost_usd, "
        "countIf(t.status >= 400 OR t.error IS NOT NULL) AS errors, "
        f"quantilesExactInclusive({qs})(t.overhead_ms) AS overhead_q, "
        f"quantilesExactInclusive({qs})(t.latency_ms) AS latency_q "
        f"FROM (SELECT session_id, decision_id, cost_usd, status, error, overhead_ms, latency_ms "
        f"FROM traces FINAL WHERE {WINDOW}) AS t "
        f"LEFT JOIN (SELECT event_id, variant FROM decisions FINAL WHERE event_id IN ({ids})) AS d "
        "ON d.event_id = t.decision_id GROUP BY key"
    )
    decisions_sql = (
        f"SELECT {var} AS key, count() AS decisions, uniqExact(session_id) AS decision_sessions "
        f"FROM decisions FINAL WHERE {WINDOW} GROUP BY key"
    )
    traffic = {str(r["key"]): r for r in query_rows(client, traffic_sql, params)}
    decided = {str(r["key"]): r for r in query_rows(client, decisions_sql, params)}
    success = success_by(client, "variant", params)
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
        row.update(quantile_fields("overhead_ms", t["overhead_q"] if t and requests else None))
        row.update(quantile_fields("latency_ms", t["latency_q"] if t and requests else None))
        arms.append(row)

    shadowed = f"FROM decisions FINAL WHERE {WINDOW} AND shadow_model IS NOT NULL"
    head = query_rows(
        client,
        f"SELECT count() AS decisions, countIf(shadow_model = model) AS agree, uniqExact(session_id) AS sessions "
        f"{shadowed}",
        params,
    )[0]
    pairs = query_rows(
        client,
        # (An alias named like the column would leak into the WHERE: ClickHouse substitutes aliases.)
        f"SELECT model, assumeNotNull(shadow_model) AS shadow, count() AS decisions {shadowed} "
        "GROUP BY model, shadow ORDER BY decisions DESC, model, shadow LIMIT 20",
        params,
    )
    prices = model_prices or {}
    names = sorted(prices)
    cost_params = window_params(
        since, until, m_names=names, m_in=[prices[n].price_in for n in names],
        m_out=[prices[n].price_out for n in names], m_cached=[prices[n].price_cached for n in names],
    )
    at = "indexOf({m_names:Array(String)}, d.shadow)"
    cost_row = query_rows(
        client,
        "SELECT count() AS requests, sum(t.cost_usd) AS cost_usd, "
        f"sum((greatest(toInt64(t.input_tokens) - toInt64(t.cached_tokens), 0) * arrayElement({{m_in:Array(Float64)}}, {at}) "
        f"+ t.cached_tokens * arrayElement({{m_cached:Array(Float64)}}, {at}) "
        f"+ t.output_tokens * arrayElement({{m_out:Array(Float64)}}, {at})) / 1e6) AS shadow_cost_usd, "
        f"countIf({at} = 0) AS unpriced "
        f"FROM (SELECT decision_id, cost_usd, input_tokens, output_tokens, cached_tokens FROM traces FINAL WHERE {WINDOW}) AS t "
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
    experiments = query_rows(
        client,
        "SELECT experiment, count() AS decisions, countIf(variant = 'canary') AS canary_decisions, "
        "countIf(shadow_model IS NOT NULL) AS shadow_decisions, min(ts) AS first_seen, max(ts) AS last_seen "
        f"FROM decisions FINAL WHERE {WINDOW} AND experiment != '' GROUP BY experiment ORDER BY experiment",
        params,
    )
    return json_ready({"window": window_dict(since, until), "experiments": experiments, "variants": arms, "shadow": shadow})
