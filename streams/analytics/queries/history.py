"""What happened, most recent first: task-sessions with their outcomes, routing decisions with their
reasons, and the policy versions that made them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.analytics.queries.sql import (
    BEFORE,
    SESSION_OUTCOMES,
    WINDOW,
    Prices,
    json_ready,
    price_params,
    query_rows,
    traces_in_window,
    utc,
    window_params,
)


def sessions(
    client: Client, since: datetime, until: datetime, limit: int = 50, prices: Prices | None = None
) -> list[dict[str, Any]]:
    """Per task-session active in the window (most recent first): cost, savings, models, outcome."""
    params = window_params(since, until, limit=int(limit), **price_params(prices))
    sql = (
        "SELECT session_id, count() AS requests, sum(cost_usd) AS cost_usd, "
        "sum(base_usd) AS baseline_cost_usd, arraySort(groupUniqArray(model)) AS models, "
        "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "min(ts) AS first_ts, max(ts) AS last_ts, any(client) AS client "
        f"FROM {traces_in_window(prices)} GROUP BY session_id ORDER BY last_ts DESC, session_id LIMIT {{limit:UInt32}}"
    )
    rows = query_rows(client, sql, params)
    ids = [r["session_id"] for r in rows]
    outcomes: dict[str, dict[str, Any]] = {}
    if ids:
        # A session's latest outcome up to ``until``, even when reported after the window opened.
        osql = (
            "SELECT session_id, argMax(success, (ts, event_id)) AS success, count() AS outcomes "
            f"FROM outcomes FINAL WHERE {BEFORE} AND session_id IN {{ids:Array(String)}} GROUP BY session_id"
        )
        outcomes = {r["session_id"]: r for r in query_rows(client, osql, {"until": utc(until), "ids": ids})}
    out = []
    for r in rows:
        o = outcomes.get(r["session_id"])
        out.append({
            **r,
            "saved_usd": float(r["baseline_cost_usd"]) - float(r["cost_usd"]),
            "outcomes": int(o["outcomes"]) if o else 0,
            "success": float(o["success"]) if o else None,
        })
    return json_ready(out)


def decisions(client: Client, since: datetime, until: datetime, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent routing decisions with their reasons, and the session's outcome when known."""
    sql = (
        "SELECT ts, event_id AS decision_id, request_id, session_id, model, provider, route, policy, "
        "policy_version, prompt_version, reason, confidence, propensity, task_type, fallbacks, source "
        f"FROM decisions FINAL WHERE {WINDOW} ORDER BY ts DESC, event_id LIMIT {{limit:UInt32}}"
    )
    rows = query_rows(client, sql, window_params(since, until, limit=int(limit)))
    ids = sorted({r["session_id"] for r in rows})
    outcomes: dict[str, float] = {}
    if ids:
        osql = (
            "SELECT session_id, argMax(success, (ts, event_id)) AS success FROM outcomes FINAL "
            f"WHERE {BEFORE} AND session_id IN {{ids:Array(String)}} GROUP BY session_id"
        )
        outcomes = {r["session_id"]: float(r["success"]) for r in query_rows(client, osql, {"until": utc(until), "ids": ids})}
    for r in rows:
        r["session_success"] = outcomes.get(r["session_id"])
    return json_ready(rows)


def policy_versions(
    client: Client, since: datetime, until: datetime, prices: Prices | None = None
) -> list[dict[str, Any]]:
    """Per (policy, version): decisions, sessions, first/last seen, model mix, cost of its traces, success."""
    params = window_params(since, until)
    dsql = (
        "SELECT policy, policy_version, count() AS decisions, uniqExact(session_id) AS sessions, "
        "min(ts) AS first_seen, max(ts) AS last_seen, avg(confidence) AS mean_confidence, "
        "arraySort(groupUniqArray(model)) AS models "
        f"FROM decisions FINAL WHERE {WINDOW} GROUP BY policy, policy_version ORDER BY policy_version DESC, policy"
    )
    tsql = (
        f"SELECT policy, policy_version, count() AS requests, sum(cost_usd) AS cost_usd, "
        f"sum(base_usd) AS baseline_cost_usd FROM {traces_in_window(prices)} GROUP BY policy, policy_version"
    )
    ssql = (
        f"WITH so AS ({SESSION_OUTCOMES}) "
        "SELECT d.policy AS policy, d.policy_version AS policy_version, count() AS outcome_sessions, "
        "avg(so.success) AS success_rate FROM (SELECT DISTINCT session_id, policy, policy_version FROM decisions "
        f"FINAL WHERE {BEFORE} AND session_id IN (SELECT session_id FROM so)) AS d "
        "INNER JOIN so ON so.session_id = d.session_id GROUP BY policy, policy_version"
    )
    traffic = {(r["policy"], r["policy_version"]): r
               for r in query_rows(client, tsql, window_params(since, until, **price_params(prices)))}
    success = {(r["policy"], r["policy_version"]): r for r in query_rows(client, ssql, params)}
    out = []
    for r in query_rows(client, dsql, params):
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
    return json_ready(out)
