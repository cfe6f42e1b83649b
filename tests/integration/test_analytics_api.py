"""The analytics HTTP API, the report (direct and through the API) and the demo through a real gateway."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _gateway_harness import make_settings, running_stack
from rich.console import Console
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from streams.agents.feedback import build_outcome
from streams.analytics import queries, report, sample
from streams.analytics.demo import run_demo
from streams.analytics.preview import analytics_app, serving
from streams.config import load_settings
from streams.providers.sim.app import create_sim_app
from streams.storage.clickhouse import connect
from streams.storage.migrations import migrate

pytestmark = pytest.mark.integration

NOW = datetime(2025, 4, 2, 15, 0, tzinfo=UTC)
SINCE, UNTIL = NOW - timedelta(hours=3), NOW + timedelta(hours=1)
WINDOW = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}


@pytest.fixture(scope="module")
def store(chdb_url: str) -> Any:
    name = f"t_api_{uuid.uuid4().hex[:8]}"
    client = connect(chdb_url, name)
    migrate(client)
    sample.insert(client, sample.sample_data(NOW, sessions=20, seed=4))
    yield client
    client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="module")
def settings() -> Any:
    return load_settings(env={})


@pytest.fixture(scope="module")
def http(store: Any, settings: Any) -> TestClient:
    return TestClient(analytics_app(store, settings))


@pytest.mark.parametrize("view", list(queries.names()))
def test_every_view_serves_the_query_result(http: TestClient, store: Any, settings: Any, view: str) -> None:
    r = http.get(f"/v1/analytics/{view}", params=WINDOW)
    assert r.status_code == 200, r.text
    want = queries.run_view(store, view, SINCE, UNTIL, queries.frontier_prices(settings))
    body = r.json()
    if view == "summary":
        assert body.pop("frontier_model") == settings.frontier_default()
        tiers = {m.name: m.tier for m in settings.models}
        assert body.pop("tiers") == json.loads(json.dumps(queries.tier_mix(want["models"], tiers)))
    assert body == json.loads(json.dumps(want))


def test_view_parameters_and_bad_requests(http: TestClient) -> None:
    assert len(http.get("/v1/analytics/decisions", params={**WINDOW, "limit": 3}).json()) == 3
    assert http.get("/v1/analytics/timeseries", params={**WINDOW, "bucket_s": 900}).json()["bucket_s"] == 900
    assert http.get("/v1/analytics/daily", params={**WINDOW, "source": "rollup"}).json()["source"] == "rollup"
    for params in ({"since": "yesterday-ish"}, {**WINDOW, "limit": "ten"}, {"since": "2025-01-02", "until": "2025-01-01"}):
        r = http.get("/v1/analytics/decisions", params=params)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request"
    # relative windows: the sample lies > 24 h in the past, so the default window is empty
    assert http.get("/v1/analytics/summary").json()["requests"] == 0
    index = http.get("/v1/analytics").json()
    assert "/v1/analytics/summary" in index["views"] and "/v1/analytics/fallbacks" in index["views"]


def test_storage_errors_are_503_not_crashes(chdb_url: str) -> None:
    empty = connect(chdb_url, f"t_empty_{uuid.uuid4().hex[:8]}")  # no migrations: no tables
    try:
        r = TestClient(analytics_app(empty)).get("/v1/analytics/summary")
        assert r.status_code == 503 and r.json()["error"]["type"] == "storage_error"
    finally:
        empty.command(f"DROP DATABASE IF EXISTS {empty.database}")


def test_dashboard_and_assets_are_served(http: TestClient) -> None:
    page = http.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="kpi-cost"', 'id="kpi-saved"', 'id="models-table"', 'id="decisions-table"', 'id="policy-table"',
                    'id="routes-table"', 'id="task-types-table"', 'id="overhead-table"', "/dashboard/dashboard.js"):
        assert element in page.text
    js = http.get("/dashboard/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "/v1/analytics/" in js.text
    assert http.get("/dashboard/dashboard.css").status_code == 200


def _report(source: Any, **kwargs: Any) -> tuple[int, str]:
    buf = io.StringIO()
    code = report.run_report(source, SINCE, UNTIL, console=Console(file=buf, width=200), **kwargs)
    return code, buf.getvalue()


def test_report_reads_the_same_figures_directly_and_through_the_service(store: Any, settings: Any, tmp_path: Path) -> None:
    code, direct = _report(store, as_json=True, settings=settings)
    assert code == 0
    with serving(analytics_app(store, settings)) as url:
        assert report.open_source(settings, url) == url  # a service answers: read through it
        code, served = _report(url, as_json=True, plot_dir=tmp_path / "plots")
        assert code == 0
        code, text = _report(url)
    a, b = json.loads(direct), json.loads(served)
    b.pop("frontier_model")
    assert a == b
    summary = queries.summary(store, SINCE, UNTIL, queries.frontier_prices(settings))
    required = ("requests", "sessions", "outcomes", "cost_usd", "baseline_cost_usd", "saved_usd", "success_rate",
                "overhead_ms_p50", "overhead_ms_p99", "models")
    assert all(k in a for k in required)
    assert {k: a[k] for k in required} == {k: summary[k] for k in required}
    assert code == 0 and "Models" in text and summary["models"][0]["model"] in text
    assert f"${summary['saved_usd']:,.2f}" in text
    for name in report.PLOTS:
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_open_source_falls_back_to_the_store_when_no_service_answers(chdb_url: str, settings: Any) -> None:
    name = f"t_open_{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(update={"url": chdb_url, "database": name})})
    own.server.port = 9  # nothing listens on port 9 of loopback
    source = report.open_source(own)
    try:
        assert not isinstance(source, str)
        assert source.query("SELECT count() FROM traces").result_rows == [(0,)]  # migrated, empty
        code, text = _report(source, settings=own)
        assert code == 0 and "requests" in text
    finally:
        source.command(f"DROP DATABASE IF EXISTS {name}")
    assert report.main(own, since="not-a-time") == 2


def test_report_says_why_when_the_service_fails() -> None:
    code, _ = _report("http://127.0.0.1:9")
    assert code == 1


# ---- demo ----------------------------------------------------------------------------------------


def test_demo_drives_tool_loops_and_reports_outcomes() -> None:
    """Against the simulated provider plus a feedback recorder: every dialect, tool calls answered,
    the simulator's verdict reported as a valid feedback payload."""
    received: list[dict[str, Any]] = []

    async def feedback(request: Any) -> JSONResponse:
        received.append(build_outcome(await request.json()))
        return JSONResponse({"accepted": True}, status_code=202)

    app = create_sim_app()
    app.router.routes.append(Route("/v1/feedback", feedback, methods=["POST"]))
    with serving(app) as url:
        result = run_demo(url, sessions=6, concurrency=3, seed=2, console=Console(file=io.StringIO()))
    assert result["sessions"] == 6 and result["errors"] == 0 and result["verdict_missing"] == 0
    assert result["dialects"] == {"openai_chat": 2, "openai_responses": 2, "anthropic_messages": 2}
    assert result["tool_calls"] > 0 and result["requests"] > result["sessions"]  # tool loops happened
    assert result["feedback_sent"] == len(received) == result["passed"] + result["failed"] + result["retries"]
    sessions = {o["session_id"] for o in received}
    assert len(sessions) == 6 and all(s.startswith("demo-") for s in sessions)
    assert all(o["success"] in (0.0, 1.0) and o["metadata"]["task"].startswith("demo-task-") for o in received)


def test_demo_through_the_gateway_fills_analytics(store: Any) -> None:
    """The demo through the real gateway: its traces (as the sink would store them) add up to the
    demo's own count in the analytics summary."""
    with running_stack(make_settings()) as st:
        result = run_demo(st.url, sessions=3, concurrency=3, seed=9, feedback=False, console=Console(file=io.StringIO()))
        traces = list(st.events.traces)
    assert result["errors"] == 0, result["last_error"]
    assert result["verdict_missing"] == 0  # x-sim-task reached the simulator through the gateway
    assert len(traces) == result["requests"]
    rows = []
    for t in traces:
        row = dict(t)
        row["ts"] = datetime.fromtimestamp(row.pop("ts_ms") / 1000, tz=UTC)
        rows.append(row)
    # Only the columns the table has (newer trace fields arrive with their own migrations).
    columns = {r[0] for r in store.query("DESCRIBE TABLE traces").result_rows}
    names = [c for c in rows[0] if c in columns]
    assert {"event_id", "model", "cost_usd", "baseline_cost_usd", "overhead_ms"} <= set(names)
    store.insert("traces", [[r[c] for c in names] for r in rows], column_names=names)
    start = min(r["ts"] for r in rows)
    got = queries.summary(store, start, start + timedelta(minutes=5))
    assert got["requests"] == result["requests"]
    assert got["sessions"] == 3
    assert {r["client_dialect"] for r in rows} == {"openai_chat", "openai_responses", "anthropic_messages"}
