"""The ``variants`` view (canary vs control, shadow agreement and cost) against figures computed in Python.

Known rows go into a fresh chDB database: decisions of both arms (some with a shadow choice, some
written before migration 0007, i.e. with an empty variant), their traces, session outcomes (a failed
then a passed one), a redelivered duplicate and rows outside the window.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.analytics import queries
from streams.analytics.queries import Prices

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SINCE, UNTIL = NOW - timedelta(hours=2), NOW + timedelta(hours=1)
PRICES = {
    "big": Prices(5.0, 25.0, 0.5),
    "small": Prices(0.5, 2.0, 0.05),
    "tiny": Prices(0.1, 0.4, 0.0),
}
DEC_COLS = ["event_id", "ts", "request_id", "session_id", "model", "provider", "route", "policy", "propensity",
            "variant", "experiment", "shadow_model", "shadow_policy"]
TRACE_COLS = ["event_id", "ts", "request_id", "session_id", "decision_id", "model", "provider", "status", "error",
              "overhead_ms", "latency_ms", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"]
OUT_COLS = ["event_id", "ts", "session_id", "success"]


def cost(model: str, i: int, o: int, c: int) -> float:
    p = PRICES[model]
    return (max(i - c, 0) * p.price_in + c * p.price_cached + o * p.price_out) / 1e6


def make_rows(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    decisions, traces, outcomes = [], [], []
    for s in range(30):
        sid = f"s{s}"
        variant = "canary" if s % 4 == 0 else ("" if s % 7 == 0 else "control")  # "": before 0007
        shadowed = variant == "control" and s % 2 == 1
        start = NOW - timedelta(minutes=90) + timedelta(minutes=2 * s)
        for k in range(rng.randint(1, 4)):
            did = f"d{s}-{k}"
            model = rng.choice(["small", "tiny"]) if variant == "canary" else rng.choice(["big", "small"])
            shadow = rng.choice(["small", "tiny", "big", "unknown-model"]) if shadowed else None
            ts = start + timedelta(seconds=20 * k)
            decisions.append({
                "event_id": did, "ts": ts, "request_id": f"r{s}-{k}", "session_id": sid, "model": model,
                "provider": "p", "route": "default", "policy": "bandit", "propensity": 0.5, "variant": variant,
                "experiment": "cand-v2" if variant else "", "shadow_model": shadow,
                "shadow_policy": "fixed" if shadow else None,
            })
            if k == 3:
                continue  # a decide-only decision: no trace
            i, o, c = rng.randint(1000, 50_000), rng.randint(50, 3000), rng.randint(0, 800)
            status = 500 if rng.random() < 0.1 else 200
            traces.append({
                "event_id": f"t{s}-{k}", "ts": ts + timedelta(milliseconds=5), "request_id": f"r{s}-{k}",
                "session_id": sid, "decision_id": did, "model": model, "provider": "p", "status": status,
                "error": "upstream" if status >= 400 else None, "overhead_ms": rng.uniform(0.1, 2.0),
                "latency_ms": rng.uniform(100, 900), "input_tokens": i, "output_tokens": o, "cached_tokens": c,
                "cost_usd": cost(model, i, o, c),
            })
        if s % 3 != 2:
            outcomes.append({"event_id": f"o{s}a", "ts": start + timedelta(minutes=1), "session_id": sid,
                             "success": 0.0})
            if s % 2 == 0:
                outcomes.append({"event_id": f"o{s}b", "ts": start + timedelta(minutes=1, seconds=30),
                                 "session_id": sid, "success": 1.0})
    return decisions, traces, outcomes


def insert(client: Any, table: str, cols: list[str], rows: list[dict[str, Any]]) -> None:
    client.insert(table, [[r[c] for c in cols] for r in rows], column_names=cols)


def q_inclusive(values: list[float], q: float) -> float | None:
    xs = sorted(values)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def expected(decisions: list[dict[str, Any]], traces: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> dict:
    arm = {d["event_id"]: (d["variant"] or "control") for d in decisions}
    by_id = {d["event_id"]: d for d in decisions}
    latest: dict[str, tuple[datetime, float]] = {}
    for o in outcomes:
        if o["session_id"] not in latest or o["ts"] > latest[o["session_id"]][0]:
            latest[o["session_id"]] = (o["ts"], o["success"])
    out: dict[str, dict[str, Any]] = {}
    for v in ("control", "canary"):
        ts = [t for t in traces if arm[t["decision_id"]] == v]
        sessions = {t["session_id"] for t in ts}
        arm_sessions = {d["session_id"] for d in decisions if arm[d["event_id"]] == v}
        succ = [latest[s][1] for s in arm_sessions if s in latest]
        c = sum(t["cost_usd"] for t in ts)
        out[v] = {
            "decisions": sum(1 for d in decisions if arm[d["event_id"]] == v),
            "requests": len(ts), "sessions": len(sessions), "cost_usd": c,
            "cost_per_session_usd": c / len(sessions),
            "errors": sum(t["status"] >= 400 for t in ts),
            "outcome_sessions": len(succ), "success_rate": sum(succ) / len(succ),
            "overhead_ms_p50": q_inclusive([t["overhead_ms"] for t in ts], 0.5),
            "overhead_ms_p99": q_inclusive([t["overhead_ms"] for t in ts], 0.99),
        }
    sh = [d for d in decisions if d["shadow_model"]]
    traced = [t for t in traces if by_id[t["decision_id"]]["shadow_model"]]
    shadow_cost = sum(
        cost(by_id[t["decision_id"]]["shadow_model"], t["input_tokens"], t["output_tokens"], t["cached_tokens"])
        for t in traced if by_id[t["decision_id"]]["shadow_model"] in PRICES
    )
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    for d in sh:
        pairs[(d["model"], d["shadow_model"])] += 1
    out["shadow"] = {
        "decisions": len(sh), "agree": sum(d["model"] == d["shadow_model"] for d in sh),
        "sessions": len({d["session_id"] for d in sh}),
        "requests": len(traced), "cost_usd": sum(t["cost_usd"] for t in traced), "shadow_cost_usd": shadow_cost,
        "unpriced_requests": sum(by_id[t["decision_id"]]["shadow_model"] not in PRICES for t in traced),
        "pairs": dict(pairs),
    }
    return out


def test_variants_view_matches_independent_figures(clickhouse: Any) -> None:
    decisions, traces, outcomes = make_rows(random.Random(11))
    want = expected(decisions, traces, outcomes)
    insert(clickhouse, "decisions", DEC_COLS, decisions)
    insert(clickhouse, "traces", TRACE_COLS, traces)
    insert(clickhouse, "outcomes", OUT_COLS, outcomes)
    # A redelivered decision and trace (same event ids) and rows outside the window change nothing.
    insert(clickhouse, "decisions", DEC_COLS, decisions[:3])
    insert(clickhouse, "traces", TRACE_COLS, traces[:3])
    old = {**decisions[0], "event_id": "old", "ts": SINCE - timedelta(hours=5), "shadow_model": "big"}
    insert(clickhouse, "decisions", DEC_COLS, [old])
    insert(clickhouse, "traces", TRACE_COLS, [{**traces[0], "event_id": "t-old", "decision_id": "old",
                                               "ts": SINCE - timedelta(hours=5)}])

    got = queries.variants(clickhouse, SINCE, UNTIL, PRICES)
    arms = {r["variant"]: r for r in got["variants"]}
    assert list(arms) == ["control", "canary"]
    for v in ("control", "canary"):
        for key, value in want[v].items():
            assert arms[v][key] == pytest.approx(value, rel=1e-9), (v, key)
    sh, w = got["shadow"], want["shadow"]
    for key in ("decisions", "agree", "sessions", "requests", "unpriced_requests"):
        assert sh[key] == w[key], key
    assert sh["agreement"] == pytest.approx(w["agree"] / w["decisions"])
    assert sh["cost_usd"] == pytest.approx(w["cost_usd"], rel=1e-9)
    assert sh["shadow_cost_usd"] == pytest.approx(w["shadow_cost_usd"], rel=1e-9)
    assert sh["shadow_delta_usd"] == pytest.approx(w["shadow_cost_usd"] - w["cost_usd"], rel=1e-9)
    assert {(p["model"], p["shadow_model"]): p["decisions"] for p in sh["pairs"]} == w["pairs"]
    exp = {e["experiment"]: e for e in got["experiments"]}
    assert set(exp) == {"cand-v2"}
    assert exp["cand-v2"]["canary_decisions"] == want["canary"]["decisions"]
    assert exp["cand-v2"]["shadow_decisions"] == w["decisions"]

    # Without prices the shadow cost is unknown, not zero; an empty window is all zeros.
    assert queries.variants(clickhouse, SINCE, UNTIL)["shadow"]["shadow_cost_usd"] is None
    empty = queries.variants(clickhouse, NOW + timedelta(days=1), NOW + timedelta(days=2), PRICES)
    assert [r["requests"] for r in empty["variants"]] == [0, 0]
    assert empty["shadow"]["decisions"] == 0 and empty["shadow"]["agreement"] is None


async def test_variants_view_is_served_by_the_analytics_api(clickhouse: Any) -> None:
    import httpx
    from starlette.applications import Starlette

    from streams.analytics.api import analytics_routes
    from streams.config import load_settings

    settings = load_settings(env={})
    decisions, traces, outcomes = make_rows(random.Random(3))
    for d in decisions:  # price the shadow with the configured models
        d["shadow_model"] = "deepseek-sim" if d["shadow_model"] else None
    insert(clickhouse, "decisions", DEC_COLS, decisions)
    insert(clickhouse, "traces", TRACE_COLS, traces)
    app = Starlette(routes=analytics_routes(lambda: clickhouse, settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        resp = await http.get("/v1/analytics/variants", params={"since": SINCE.isoformat(), "until": UNTIL.isoformat()})
        index = await http.get("/v1/analytics")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    deepseek = settings.model("deepseek-sim")
    assert deepseek is not None
    traced = [t for t in traces if any(d["event_id"] == t["decision_id"] and d["shadow_model"] for d in decisions)]
    want = sum(deepseek.cost_usd(t["input_tokens"], t["output_tokens"], t["cached_tokens"]) for t in traced)
    assert body["shadow"]["shadow_cost_usd"] == pytest.approx(want, rel=1e-9)
    assert body["shadow"]["unpriced_requests"] == 0
    assert "/v1/analytics/variants" in index.json()["views"]


def test_offline_evaluation_reads_logged_decisions_with_rewards(clickhouse: Any) -> None:
    from streams.evaluation.offline import load_clickhouse

    cols = ["event_id", "ts", "session_id", "model", "policy", "propensity", "features", "context"]
    t0 = NOW - timedelta(minutes=30)
    decisions = [
        # session a: two routed decisions, then an explicit one (not the policy's: left out)
        {"event_id": "a1", "ts": t0, "session_id": "a", "model": "small", "policy": "bandit", "propensity": 0.4,
         "features": '{"task": "debugging"}', "context": {"bias": 1.0, "x": 0.5}},
        {"event_id": "a2", "ts": t0 + timedelta(seconds=5), "session_id": "a", "model": "big", "policy": "bandit",
         "propensity": 0.8, "features": "{}", "context": {}},
        {"event_id": "a3", "ts": t0 + timedelta(seconds=9), "session_id": "a", "model": "big", "policy": "explicit",
         "propensity": 1.0, "features": "{}", "context": {}},
        # session b: no outcome, so no reward: left out
        {"event_id": "b1", "ts": t0, "session_id": "b", "model": "tiny", "policy": "rules", "propensity": 1.0,
         "features": "{}", "context": {}},
        # session c: decided before the window
        {"event_id": "c1", "ts": SINCE - timedelta(hours=1), "session_id": "c", "model": "tiny", "policy": "rules",
         "propensity": 1.0, "features": "{}", "context": {}},
    ]
    insert(clickhouse, "decisions", cols, decisions)
    tcols = ["event_id", "ts", "session_id", "decision_id", "cost_usd"]
    insert(clickhouse, "traces", tcols, [
        {"event_id": "ta1", "ts": t0, "session_id": "a", "decision_id": "a1", "cost_usd": 0.01},
        {"event_id": "ta1b", "ts": t0, "session_id": "a", "decision_id": "a1", "cost_usd": 0.02},  # a retry
        {"event_id": "ta2", "ts": t0, "session_id": "a", "decision_id": "a2", "cost_usd": 0.3},
    ])
    insert(clickhouse, "outcomes", OUT_COLS, [
        {"event_id": "oa1", "ts": t0 + timedelta(minutes=1), "session_id": "a", "success": 0.0},
        {"event_id": "oa2", "ts": t0 + timedelta(minutes=2), "session_id": "a", "success": 1.0},
        {"event_id": "oc", "ts": t0, "session_id": "c", "success": 1.0},
    ])
    records = load_clickhouse(clickhouse, SINCE, UNTIL, alpha=2.0, beta=10.0)
    assert [(r.arm, r.propensity) for r in records] == [("small", 0.4), ("big", 0.8)]
    assert records[0].reward == pytest.approx(2.0 * 1.0 - 10.0 * 0.03)
    assert records[1].reward == pytest.approx(2.0 - 10.0 * 0.3)
    assert records[0].features == {"task": "debugging"} and records[0].context == {"bias": 1.0, "x": 0.5}
