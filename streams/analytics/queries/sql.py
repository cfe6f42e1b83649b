"""The building blocks every analytics view shares: the window clause, the session outcomes, the
frontier baseline, prices, and rows out of ClickHouse as JSON-ready values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

QUANTILES = (0.5, 0.9, 0.99)
# The half-open window [since, until), and everything before its end, as query parameters.
WINDOW = "ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}"
BEFORE = "ts < {until:DateTime64(3, 'UTC')}"
# The latest outcome per session inside the window (ties broken by event_id, so it is deterministic).
SESSION_OUTCOMES = (
    "SELECT session_id, argMax(success, (ts, event_id)) AS success, count() AS outcomes, max(ts) AS outcome_ts "
    f"FROM outcomes FINAL WHERE {WINDOW} GROUP BY session_id"
)
# Decisions columns a view may group by, as SQL expressions (a decision without a variant is control).
GROUP_COLUMNS = {"model": "model", "route": "route", "task_type": "task_type", "provider": "provider",
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


def utc(t: datetime) -> datetime:
    """``t`` in UTC (a naive datetime means UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def window_params(since: datetime, until: datetime, **extra: Any) -> dict[str, Any]:
    """Query parameters of the window ``[since, until)`` (plus ``extra``)."""
    return {"since": utc(since), "until": utc(until), **extra}


def json_ready(value: Any) -> Any:
    """JSON-ready: ISO timestamps (UTC, 'Z'), NaN/inf -> None, tuples -> lists."""
    if isinstance(value, datetime):
        return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def query_rows(client: Client, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The result rows of ``sql`` as dicts keyed by column name."""
    result = client.query(sql, parameters=params)
    names = result.column_names
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def baseline_sql(prices: Prices | None) -> str:
    """A trace's frontier baseline cost: its column, or computed from ``prices`` when it has none."""
    if prices is None:
        return "baseline_cost_usd"
    return (
        "if(baseline_cost_usd > 0 OR input_tokens + output_tokens = 0, baseline_cost_usd, "
        "(greatest(toInt64(input_tokens) - toInt64(cached_tokens), 0) * {p_in:Float64} "
        "+ cached_tokens * {p_cached:Float64} + output_tokens * {p_out:Float64}) / 1e6)"
    )


def traces_in_window(prices: Prices | None) -> str:
    """Deduplicated traces in the window with their baseline as ``base_usd`` (a subquery, so that
    aggregates aliased like the raw columns never capture the baseline expression)."""
    return f"(SELECT *, {baseline_sql(prices)} AS base_usd FROM traces FINAL WHERE {WINDOW})"


def price_params(prices: Prices | None) -> dict[str, Any]:
    """The query parameters ``baseline_sql(prices)`` reads."""
    if prices is None:
        return {}
    return {"p_in": prices.price_in, "p_out": prices.price_out, "p_cached": prices.price_cached}


def quantile_fields(prefix: str, values: Sequence[float] | None) -> dict[str, float | None]:
    """``QUANTILES`` as ``<prefix>_p50``, ``_p90``, ``_p99`` fields (None where there is no data)."""
    values = list(values or [])
    out: dict[str, float | None] = {}
    for q, v in zip(QUANTILES, values + [math.nan] * (len(QUANTILES) - len(values)), strict=True):
        out[f"{prefix}_p{round(q * 100)}"] = None if v is None or math.isnan(v) else float(v)
    return out


def window_dict(since: datetime, until: datetime) -> dict[str, str]:
    """The window as JSON (UTC ISO timestamps)."""
    return {"since": json_ready(utc(since)), "until": json_ready(utc(until))}
