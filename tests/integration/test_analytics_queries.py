"""Every analytics figure against the same figure computed independently in plain Python.

Known traffic (``streams.analytics.sample``: sessions with tool loops, failovers, upstream errors,
outcomes that fail then pass) goes into the session's chDB; redelivered duplicates and rows outside
the window are added on top, so the expected values also prove deduplication and windowing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.analytics import queries, sample
from streams.analytics.queries import Prices

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SINCE, UNTIL = NOW - timedelta(hours=3), NOW + timedelta(hours=1)


# ---- independent computation --------------------------------------------------------------------


def q_inclusive(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default percentile)."""
    xs = sorted(values)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def in_window(rows: list[dict[str, Any]], since: datetime = SINCE, until: datetime = UNTIL) -> list[dict[str, Any]]:
    return [r for r in rows if since <= r["ts"] < until]


def session_outcomes(outcomes: list[dict[str, Any]]) -> dict[str, float]:
    """Latest outcome per session (ties by event_id), outcomes already windowed."""
    latest: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        cur = latest.get(o["session_id"])
        if cur is None or (o["ts"], o["event_id"]) > (cur["ts"], cur["event_id"]):
            latest[o["session_id"]] = o
    return {sid: o["success"] for sid, o in latest.items()}


def success_by(data: sample.SampleData, key: str) -> dict[str, tuple[int, float]]:
    so = session_outcomes(in_window(data.outcomes))
    pairs = {(d["session_id"], d[key]) for d in data.decisions if d["ts"] < UNTIL and d["session_id"] in so}
    acc: dict[str, list[float]] = defaultdict(list)
    for sid, value in pairs:
        acc[value].append(so[sid])
    return {k: (len(v), sum(v) / len(v)) for k, v in acc.items()}


def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def traffic(traces: list[dict[str, Any]]) -> dict[str, Any]:
    cost = sum(t["cost_usd"] for t in traces)
    base = sum(t["baseline_cost_usd"] for t in traces)
    over = [t["overhead_ms"] for t in traces]
    return {
        "requests": len(traces),
        "sessions": len({t["session_id"] for t in traces}),
        "cost_usd": cost,
        "baseline_cost_usd": base,
        "saved_usd": base - cost,
        "input_tokens": sum(t["input_tokens"] for t in traces),
        "output_tokens": sum(t["output_tokens"] for t in traces),
        "errors": sum(1 for t in traces if t["status"] >= 400 or t["error"] is not None),
        "fallbacks": sum(1 for t in traces if t["attempts"] > 1),
        "overhead_ms_p50": q_inclusive(over, 0.5),
        "overhead_ms_p90": q_inclusive(over, 0.9),
        "overhead_ms_p99": q_inclusive(over, 0.99),
        "latency_ms_p99": q_inclusive([t["latency_ms"] for t in traces], 0.99),
    }


def assert_figures(got: dict[str, Any], want: dict[str, Any], label: str) -> None:
    for k, v in want.items():
        if isinstance(v, float) or v is None:
            assert close(got[k], v), f"{label}.{k}: {got[k]} != {v}"
        else:
            assert got[k] == v, f"{label}.{k}: {got[k]} != {v}"


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(chdb_url: str) -> Any:
    """One database with the sample traffic, redelivered duplicates and out-of-window rows."""
    import uuid

    from streams.storage.clickhouse import connect
    from streams.storage.migrations import migrate

    database = f"t_analytics_{uuid.uuid4().hex[:8]}"
    client = connect(chdb_url, database)
    migrate(client)
    data = sample.sample_data(NOW, sessions=30, seed=11)
    sample.insert(client, data)
    # At-least-once delivery: the sink writes some events twice (same event_id).
    sample.insert(client, sample.SampleData(data.traces[:7], data.decisions[:5], data.outcomes[:4]))
    # Old traffic outside the window (distinct ids): must not count.
    old = sample.sample_data(NOW - timedelta(days=2), sessions=5, seed=99)
    for rows in (old.traces, old.decisions, old.outcomes):
        for r in rows:
            r["session_id"] = "old-" + r["session_id"]
    sample.insert(client, old)
    yield client, data
    client.command(f"DROP DATABASE IF EXISTS {database}")


# ---- tests --------------------------------------------------------------------------------------


def test_sample_has_the_cases_the_definitions_cover(loaded: Any) -> None:
    _, data = loaded
    traces = in_window(data.traces)
    assert any(t["attempts"] > 1 for t in traces) and any(t["status"] >= 400 for t in traces)
    assert any(t["model"] != d["model"] for t, d in zip(data.traces, data.decisions, strict=True))  # failover
    outcomes_per_session = defaultdict(int)
    for o in data.outcomes:
        outcomes_per_session[o["session_id"]] += 1
    assert max(outcomes_per_session.values()) == 2  # fail, then pass after escalation
    assert len(outcomes_per_session) < 30  # some sessions never report


def test_summary_matches_independent_figures(loaded: Any) -> None:
    client, data = loaded
    got = queries.summary(client, SINCE, UNTIL)
    traces = in_window(data.traces)
    want = traffic(traces)
    assert_figures(got, want, "summary")
    outcomes = in_window(data.outcomes)
    so = session_outcomes(outcomes)
    assert got["outcomes"] == len(outcomes)
    assert got["outcome_sessions"] == len(so)
    assert close(got["success_rate"], sum(so.values()) / len(so))
    assert close(got["saved_pct"], want["saved_usd"] / want["baseline_cost_usd"])
    assert got["window"] == {"since": "2025-03-01T09:00:00.000Z", "until": "2025-03-01T13:00:00.000Z"}


def test_summary_models_match_per_model_figures(loaded: Any) -> None:
    client, data = loaded
    got = {m["model"]: m for m in queries.summary(client, SINCE, UNTIL)["models"]}
    traces = in_window(data.traces)
    success = success_by(data, "model")
    assert set(got) == {t["model"] for t in traces} | set(success)
    for model, row in got.items():
        assert_figures(row, traffic([t for t in traces if t["model"] == model]), model)
        n, rate = success.get(model, (0, None))
        assert row["outcome_sessions"] == n
        assert close(row["success_rate"], rate), model
    assert sum(m["requests"] for m in got.values()) == len(traces)
    # requests are ordered most-used first
    counts = [m["requests"] for m in queries.models(client, SINCE, UNTIL)]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("view, key", [(queries.routes, "route"), (queries.task_types, "task_type")])
def test_routes_and_task_types(loaded: Any, view: Callable[..., Any], key: str) -> None:
    client, data = loaded
    traces = in_window(data.traces)
    success = success_by(data, key)
    rows = {r[key]: r for r in view(client, SINCE, UNTIL)}
    assert set(rows) == {t[key] for t in traces}
    for value, row in rows.items():
        assert_figures(row, traffic([t for t in traces if t[key] == value]), f"{key}={value}")
        n, rate = success.get(value, (0, None))
        assert row["outcome_sessions"] == n and close(row["success_rate"], rate)


def test_timeseries_buckets_and_model_mix(loaded: Any) -> None:
    client, data = loaded
    got = queries.timeseries(client, SINCE, UNTIL, bucket_s=600)
    assert got["bucket_s"] == 600
    want: dict[str, dict[str, Any]] = {}
    for t in in_window(data.traces):
        start = datetime.fromtimestamp(int(t["ts"].timestamp()) // 600 * 600, tz=UTC)
        key = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        p = want.setdefault(key, {"requests": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0, "models": defaultdict(int)})
        p["requests"] += 1
        p["cost_usd"] += t["cost_usd"]
        p["baseline_cost_usd"] += t["baseline_cost_usd"]
        p["models"][t["model"]] += 1
    assert [p["t"] for p in got["points"]] == sorted(want)
    for p in got["points"]:
        w = want[p["t"]]
        assert p["requests"] == w["requests"] and p["models"] == dict(w["models"])
        assert close(p["cost_usd"], w["cost_usd"]) and close(p["baseline_cost_usd"], w["baseline_cost_usd"])
        assert close(p["saved_usd"], w["baseline_cost_usd"] - w["cost_usd"])


def test_sessions_cost_and_outcome(loaded: Any) -> None:
    client, data = loaded
    got = queries.sessions(client, SINCE, UNTIL, limit=100)
    traces = in_window(data.traces)
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in traces:
        by_session[t["session_id"]].append(t)
    latest = session_outcomes([o for o in data.outcomes if o["ts"] < UNTIL])
    assert {s["session_id"] for s in got} == set(by_session)
    assert [s["last_ts"] for s in got] == sorted((s["last_ts"] for s in got), reverse=True)
    for s in got:
        ts = by_session[s["session_id"]]
        assert s["requests"] == len(ts)
        assert close(s["cost_usd"], sum(t["cost_usd"] for t in ts))
        assert close(s["saved_usd"], sum(t["baseline_cost_usd"] - t["cost_usd"] for t in ts))
        assert s["models"] == sorted({t["model"] for t in ts})
        assert s["success"] == latest.get(s["session_id"])
    assert len(queries.sessions(client, SINCE, UNTIL, limit=3)) == 3


def test_recent_decisions_with_reasons(loaded: Any) -> None:
    client, data = loaded
    got = queries.decisions(client, SINCE, UNTIL, limit=5)
    want = sorted(in_window(data.decisions), key=lambda d: (d["ts"], d["event_id"]), reverse=True)[:5]
    assert [d["decision_id"] for d in got] == [d["event_id"] for d in want]
    latest = session_outcomes([o for o in data.outcomes if o["ts"] < UNTIL])
    for g, w in zip(got, want, strict=True):
        assert g["reason"] == w["reason"] and g["model"] == w["model"] and g["policy_version"] == w["policy_version"]
        assert g["session_success"] == latest.get(w["session_id"])


def test_policy_versions(loaded: Any) -> None:
    client, data = loaded
    got = {r["policy_version"]: r for r in queries.policy_versions(client, SINCE, UNTIL)}
    decisions = in_window(data.decisions)
    traces = in_window(data.traces)
    success = success_by(data, "policy_version")
    assert list(got) == sorted({d["policy_version"] for d in decisions}, reverse=True)
    for version, row in got.items():
        ds = [d for d in decisions if d["policy_version"] == version]
        ts = [t for t in traces if t["policy_version"] == version]
        assert row["decisions"] == len(ds) and row["sessions"] == len({d["session_id"] for d in ds})
        assert row["models"] == sorted({d["model"] for d in ds})
        assert row["requests"] == len(ts) and close(row["cost_usd"], sum(t["cost_usd"] for t in ts))
        n, rate = success.get(version, (0, None))
        assert row["outcome_sessions"] == n and close(row["success_rate"], rate)


def test_overhead_quantiles_overall_and_by_dialect(loaded: Any) -> None:
    client, data = loaded
    got = queries.overhead(client, SINCE, UNTIL)
    traces = in_window(data.traces)
    for label, rows in [("all", traces)] + [(d, [t for t in traces if t["client_dialect"] == d]) for d in sample.DIALECTS]:
        row = got["overall"] if label == "all" else next(r for r in got["by_dialect"] if r["client_dialect"] == label)
        assert row["requests"] == len(rows)
        for q in (0.5, 0.9, 0.99):
            p = f"p{round(q * 100)}"
            assert close(row[f"overhead_ms_{p}"], q_inclusive([t["overhead_ms"] for t in rows], q)), (label, p)
            assert close(row[f"latency_ms_{p}"], q_inclusive([t["latency_ms"] for t in rows], q)), (label, p)
            assert close(row[f"ttft_ms_{p}"], q_inclusive([t["ttft_ms"] for t in rows if t["stream"]], q)), (label, p)
        assert close(row["overhead_ms_max"], max(t["overhead_ms"] for t in rows))


def test_fallbacks_and_errors(loaded: Any) -> None:
    client, data = loaded
    got = queries.fallbacks(client, SINCE, UNTIL)
    traces = in_window(data.traces)
    fb = [t for t in traces if t["attempts"] > 1]
    errs = [t for t in traces if t["status"] >= 400 or t["error"] is not None]
    assert got["fallbacks"] == len(fb) and close(got["fallback_rate"], len(fb) / len(traces))
    assert got["errors"] == len(errs) and got["breaker_events"] == sum("circuit" in (t["error"] or "") for t in traces)
    assert sum(r["fallbacks"] for r in got["by_provider"]) == len(fb)
    assert {(r["provider"], r["status"], r["message"]): r["count"] for r in got["errors_by"]} == {
        k: sum(1 for t in errs if (t["provider"], t["status"], t["error"]) == k)
        for k in {(t["provider"], t["status"], t["error"]) for t in errs}
    }
    assert len(got["recent"]) == len({t["event_id"] for t in fb + errs})


def test_empty_window_gives_zeros_and_nulls(loaded: Any) -> None:
    client, _ = loaded
    since = datetime(2020, 1, 1, tzinfo=UTC)
    got = queries.summary(client, since, since + timedelta(hours=1))
    assert got["requests"] == 0 and got["cost_usd"] == 0.0 and got["models"] == []
    assert got["success_rate"] is None and got["overhead_ms_p50"] is None and got["saved_pct"] is None
    assert queries.timeseries(client, since, since + timedelta(hours=1))["points"] == []
    assert queries.fallbacks(client, since, since + timedelta(hours=1))["fallback_rate"] is None


def test_missing_baseline_is_priced_at_the_frontier(loaded: Any) -> None:
    """Traces written without a baseline get one from the frontier prices when the caller gives them."""
    client, _ = loaded
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    rows = [
        {"event_id": "nb-1", "ts": t0, "session_id": "nb", "model": "deepseek-sim", "input_tokens": 10_000,
         "output_tokens": 2_000, "cached_tokens": 4_000, "cost_usd": 0.001, "baseline_cost_usd": 0.0, "status": 200},
        {"event_id": "nb-2", "ts": t0, "session_id": "nb", "model": "deepseek-sim", "input_tokens": 100,
         "output_tokens": 10, "cached_tokens": 0, "cost_usd": 0.0001, "baseline_cost_usd": 0.5, "status": 200},
    ]
    client.insert("traces", [list(r.values()) for r in rows], column_names=list(rows[0]))
    window = (t0, t0 + timedelta(minutes=1))
    assert close(queries.summary(client, *window)["baseline_cost_usd"], 0.5)
    prices = Prices(price_in=5.0, price_out=25.0, price_cached=0.5)
    want = 0.5 + (6_000 * 5.0 + 4_000 * 0.5 + 2_000 * 25.0) / 1e6
    got = queries.summary(client, *window, prices)
    assert close(got["baseline_cost_usd"], want) and close(got["saved_usd"], want - 0.0011)
    assert close(queries.daily(client, *window, source="raw", prices=prices)["days"][0]["baseline_cost_usd"], want)
