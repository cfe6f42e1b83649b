"""Migrations 0005+ (rollups fed by materialized views) and the Grafana dashboard, on chDB.

Rollups agree with exact ``FINAL`` reads of the raw tables while nothing is redelivered, are
backfilled when added to a store that already holds traces, and over-count redelivered traces (the
documented reason the API reads raw tables for exact figures). Every Grafana panel's SQL runs after
macro substitution, and its headline figures equal the analytics API's.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.analytics import queries, sample
from streams.infra.package_data import files_ending
from streams.storage.clickhouse import connect
from streams.storage.migrations import load_migrations, migrate, migrations_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 5, 10, 6, 0, tzinfo=UTC)
# The sample spans midnight-crossing days when started at 06:00 with a 30 h span.
SPAN = timedelta(hours=30)
SINCE, UNTIL = NOW - SPAN - timedelta(hours=1), NOW + timedelta(hours=1)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@pytest.fixture
def database(chdb_url: str) -> Any:
    name = f"t_rollup_{uuid.uuid4().hex[:8]}"
    client = connect(chdb_url, name)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {name}")


def rollup_daily(client: Any) -> dict[tuple[str, str], dict[str, Any]]:
    rows = queries.daily(client, SINCE, UNTIL, source="rollup")["days"]
    return {(r["day"], r["model"]): r for r in rows}


def test_new_migrations_are_numbered_after_the_foundation() -> None:
    names = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    assert names[:4] == ["0001_traces", "0002_decisions", "0003_outcomes", "0004_dead_letters"]
    assert "0005_traces_daily" in names and "0006_traces_hourly" in names


def test_migrate_refuses_a_folder_without_migrations(database: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no ClickHouse migrations"):
        migrate(database, tmp_path)
    assert database.query("EXISTS TABLE traces").result_rows == [(0,)]


def test_rollups_agree_with_final_reads_then_overcount_redeliveries(database: Any) -> None:
    client = database
    applied = migrate(client)
    assert "0005_traces_daily" in applied and "0006_traces_hourly" in applied
    assert migrate(client) == []  # idempotent
    data = sample.sample_data(NOW, sessions=40, seed=5, span=SPAN)
    sample.insert(client, data)
    raw = {(r["day"], r["model"]): r for r in queries.daily(client, SINCE, UNTIL, source="raw")["days"]}
    assert len({day for day, _ in raw}) >= 2  # crosses midnight
    # Independent: plain Python over the rows.
    want: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for t in data.traces:
        w = want[(t["ts"].date().isoformat(), t["model"])]
        w["requests"] += 1
        w["cost_usd"] += t["cost_usd"]
        w["baseline_cost_usd"] += t["baseline_cost_usd"]
        w["input_tokens"] += t["input_tokens"]
    rolled = rollup_daily(client)
    assert set(raw) == set(rolled) == set(want)
    for key, w in want.items():
        for source in (raw[key], rolled[key]):
            assert source["requests"] == w["requests"] and source["input_tokens"] == w["input_tokens"]
            assert close(source["cost_usd"], w["cost_usd"]) and close(source["baseline_cost_usd"], w["baseline_cost_usd"])
    # Hourly rollup: requests and distinct sessions per hour and model, and t-digest overhead near exact.
    hourly = client.query(
        "SELECT hour, model, sum(requests), uniqMerge(sessions), quantilesTDigestMerge(0.5, 0.9, 0.99)(overhead_state) "
        "FROM traces_hourly GROUP BY hour, model"
    ).result_rows
    exp: dict[tuple[datetime, str], list[dict[str, Any]]] = defaultdict(list)
    for t in data.traces:
        exp[(t["ts"].replace(minute=0, second=0, microsecond=0, tzinfo=None), t["model"])].append(t)
    assert {(h, m) for h, m, *_ in hourly} == set(exp)
    for hour, model, requests, sessions, q in hourly:
        rows = exp[(hour, model)]
        assert requests == len(rows) and sessions == len({t["session_id"] for t in rows})
        overheads = [t["overhead_ms"] for t in rows]
        assert min(overheads) - 1e-3 <= q[0] <= max(overheads) + 1e-3
    # A redelivered batch: raw FINAL reads stay exact, the rollup counts it again.
    dup = data.traces[:6]
    sample.insert(client, sample.SampleData(traces=dup))
    raw_after = {(r["day"], r["model"]): r for r in queries.daily(client, SINCE, UNTIL, source="raw")["days"]}
    assert set(raw_after) == set(raw)
    for key, r in raw.items():
        assert raw_after[key]["requests"] == r["requests"] and close(raw_after[key]["cost_usd"], r["cost_usd"])
    rolled_after = rollup_daily(client)
    extra = sum(r["requests"] for r in rolled_after.values()) - sum(r["requests"] for r in rolled.values())
    assert extra == len(dup)
    # auto: short windows are exact, long ones use the rollup
    assert queries.daily(client, SINCE, UNTIL)["source"] == "raw"
    assert queries.daily(client, NOW - timedelta(days=90), UNTIL)["source"] == "rollup"


def test_rollup_migrations_backfill_existing_traces(database: Any, tmp_path: Path) -> None:
    client = database
    foundation = tmp_path / "foundation"
    foundation.mkdir()
    for path in files_ending(migrations_dir(), ".sql")[:4]:  # 0001..0004, before the rollups
        (foundation / path.name).write_text(path.read_text())
    migrate(client, foundation)
    data = sample.sample_data(NOW, sessions=12, seed=3, span=SPAN)
    sample.insert(client, data)
    sample.insert(client, sample.SampleData(traces=data.traces[:4]))  # stored twice before the rollup exists
    assert migrate(client)[:2] == ["0005_traces_daily", "0006_traces_hourly"]
    rolled = rollup_daily(client)
    raw = {(r["day"], r["model"]): r for r in queries.daily(client, SINCE, UNTIL, source="raw")["days"]}
    assert set(rolled) == set(raw)
    for key, r in raw.items():
        assert rolled[key]["requests"] == r["requests"] and close(rolled[key]["cost_usd"], r["cost_usd"])
    total = client.query("SELECT sum(requests) FROM traces_hourly").result_rows[0][0]
    assert total == len(data.traces)


# ---- Grafana -------------------------------------------------------------------------------------


def grafana_sql(sql: str, since: datetime, until: datetime, interval_s: int = 300) -> str:
    """Expand the grafana-clickhouse-datasource macros the way the plugin does."""
    f, t = int(since.timestamp()), int(until.timestamp())
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({f}) AND \1 <= toDateTime({t})", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", rf"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s} second)", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({f})").replace("$__toTime", f"toDateTime({t})")
    sql = sql.replace("$__interval_s", str(interval_s))
    assert "$" not in sql, f"unexpanded macro in {sql}"
    return sql


def test_grafana_dashboard_panels_run_and_match_the_api(database: Any) -> None:
    client = database
    migrate(client)
    data = sample.sample_data(NOW, sessions=20, seed=8, span=timedelta(hours=2))
    sample.insert(client, data)
    dash = json.loads((ROOT / "deploy" / "grafana" / "weave-router.json").read_text())
    assert dash["uid"] == "weave-router" and dash["panels"]
    assert any(i["pluginId"] == "grafana-clickhouse-datasource" for i in dash["__inputs"])
    since, until = NOW - timedelta(hours=3), NOW + timedelta(hours=1)
    results: dict[str, list[tuple[Any, ...]]] = {}
    ids = set()
    for panel in dash["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["datasource"]["type"] == "grafana-clickhouse-datasource"
        for target in panel["targets"]:
            rows = client.query(grafana_sql(target["rawSql"], since, until)).result_rows
            assert rows, f"panel {panel['title']!r} returned nothing"
            results[panel["title"]] = rows
    summary = queries.summary(client, since, until)
    assert results["Requests"][0][0] == summary["requests"]
    assert close(results["Cost"][0][0], summary["cost_usd"])
    assert close(results["Saved vs frontier"][0][0], summary["saved_usd"])
    assert close(results["Success rate"][0][0], summary["success_rate"])
    p50, p99 = results["Router overhead p50 / p99"][0]
    assert close(p50, summary["overhead_ms_p50"]) and close(p99, summary["overhead_ms_p99"])
    by_route = {r["route"]: r for r in queries.routes(client, since, until)}
    for route, sessions, rate in results["Success by route"]:
        assert by_route[route]["outcome_sessions"] == sessions and close(by_route[route]["success_rate"], rate)
    by_model = {m["model"]: m for m in summary["models"]}
    for model, sessions, rate in results["Success by model"]:
        assert by_model[model]["outcome_sessions"] == sessions and close(by_model[model]["success_rate"], rate)
    assert sum(r[2] for r in results["Model mix"]) == summary["requests"]
