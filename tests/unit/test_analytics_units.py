"""Pure parts of analytics: time windows, bucket widths, Prometheus metrics, report rendering."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from starlette.applications import Starlette
from starlette.testclient import TestClient

from streams.analytics import queries, report
from streams.analytics.metrics import RouterMetrics, metrics_route
from streams.analytics.window import WindowError, parse_span, parse_window
from streams.config import load_settings

NOW = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)


def test_windows_from_spans_iso_and_epoch() -> None:
    assert parse_window(None, None, NOW) == (NOW - timedelta(hours=24), NOW)
    assert parse_window("90m", None, NOW) == (NOW - timedelta(minutes=90), NOW)
    assert parse_window("1h", "2025-01-10T06:00:00Z", NOW) == (NOW - timedelta(hours=7), NOW - timedelta(hours=6))
    assert parse_window("2025-01-09", "now", NOW)[0] == datetime(2025, 1, 9, tzinfo=UTC)
    assert parse_window(str(NOW.timestamp() - 60), None, NOW)[0] == NOW - timedelta(minutes=1)
    assert parse_window("2025-01-10T12:00:00+01:00", None, NOW)[0] == NOW - timedelta(hours=1)  # to UTC
    assert parse_span("2w") == timedelta(days=14) and parse_span("soon") is None
    with pytest.raises(WindowError, match="cannot read time"):
        parse_window("last tuesday", None, NOW)
    with pytest.raises(WindowError, match="must be before"):
        parse_window("2025-01-11", None, NOW)


@pytest.mark.parametrize("span, width", [(timedelta(minutes=15), 15), (timedelta(hours=1), 60),
                                         (timedelta(hours=24), 1800), (timedelta(days=30), 43200)])
def test_bucket_width_gives_at_most_sixty_points(span: timedelta, width: int) -> None:
    assert queries.pick_bucket_s(NOW - span, NOW) == width
    assert span.total_seconds() / width <= 60


def test_frontier_prices_come_from_the_default_model() -> None:
    s = load_settings(env={})
    assert queries.frontier_prices(s) == queries.Prices(5.0, 25.0, 0.5)  # claude-opus-sim
    assert queries.frontier_prices(None) is None


def test_metrics_on_their_own_registry_and_route() -> None:
    a, b = RouterMetrics(), RouterMetrics()
    a.observe_request("openai_chat", "m1", "p1", 200, 0.8, 0.0004, attempts=2, input_tokens=100, output_tokens=20,
                      cost_usd=0.01)
    a.observe_request("openai_chat", "m1", "p1", 502, 0.1, 0.0003)
    a.set_breaker("p1", "open")
    a.set_buffer(17, 4096)
    a.set_consumer_lag("sink", "router.traces", 2, 5)
    body = TestClient(Starlette(routes=[metrics_route(a)])).get("/metrics")
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(body.text) for s in fam.samples}
    ok = (("dialect", "openai_chat"), ("model", "m1"), ("provider", "p1"), ("status", "200"))
    assert samples[("weave_router_requests_total", ok)] == 1
    assert samples[("weave_router_request_latency_seconds_count", ok)] == 1
    assert samples[("weave_router_router_overhead_seconds_count", (("dialect", "openai_chat"),))] == 2
    assert samples[("weave_router_router_overhead_seconds_bucket", (("dialect", "openai_chat"), ("le", "0.0005")))] == 2
    assert samples[("weave_router_fallbacks_total", (("model", "m1"), ("provider", "p1")))] == 1
    assert samples[("weave_router_circuit_breaker_state", (("provider", "p1"),))] == 2
    assert samples[("weave_router_producer_buffer_depth", ())] == 17
    assert samples[("weave_router_producer_spill_bytes", ())] == 4096
    assert samples[("weave_router_consumer_lag", (("group", "sink"), ("partition", "2"), ("topic", "router.traces")))] == 5
    assert b"weave_router_requests_total{" not in b.render()  # separate registries


class FakeSource:
    """Canned view results, as the API would return them."""

    def __init__(self) -> None:
        model = {"model": "cheap", "requests": 3, "cost_usd": 0.25, "baseline_cost_usd": 1.5, "saved_usd": 1.25,
                 "success_rate": 2 / 3, "overhead_ms_p50": 0.3, "overhead_ms_p99": 0.9, "input_tokens": 10,
                 "output_tokens": 5, "outcome_sessions": 3}
        t = "2025-01-10T11:00:00.000Z"
        self.data: dict[str, Any] = {
            "summary": {"window": {"since": t, "until": t}, "requests": 3, "sessions": 2, "cost_usd": 0.25,
                        "baseline_cost_usd": 1.5, "saved_usd": 1.25, "saved_pct": 1.25 / 1.5, "success_rate": 0.5,
                        "outcome_sessions": 2, "outcomes": 3, "overhead_ms_p50": 0.3, "overhead_ms_p99": 0.9,
                        "fallbacks": 1, "errors": 0, "models": [model]},
            "routes": [{"route": "default", **model}], "task_types": [{"task_type": "bugfix", **model}],
            "timeseries": {"points": [{"t": t, "requests": 3, "cost_usd": 0.25, "baseline_cost_usd": 1.5,
                                       "saved_usd": 1.25, "models": {"cheap": 3}}]},
            "overhead": {"overall": {"requests": 3, "overhead_ms_p50": 0.3, "overhead_ms_p90": 0.8, "overhead_ms_p99": 0.9},
                         "by_dialect": []},
            "policy_versions": [], "fallbacks": {"fallbacks": 1, "fallback_rate": 1 / 3, "errors": 0, "error_rate": 0.0,
                                                 "breaker_events": 0, "errors_by": []},
            "decisions": [{"session_id": "s1", "model": "cheap", "route": "default", "policy_version": 2,
                           "reason": "bandit: best utility", "session_success": 1.0}],
            "sessions": [],
        }

    def describe(self) -> str:
        return "fake"

    def view(self, name: str, since: datetime, until: datetime, **params: Any) -> Any:
        return self.data[name]


def test_report_tables_json_and_plots(tmp_path: Path) -> None:
    src = FakeSource()
    buf = io.StringIO()
    assert report.run_report(src, NOW - timedelta(hours=1), NOW, console=Console(file=buf, width=180)) == 0
    text = buf.getvalue()
    for fragment in ("$0.2500", "$1.25 (83.3%)", "50.0% of 2 sessions", "cheap", "66.7%", "bandit: best utility", "passed"):
        assert fragment in text, fragment
    buf = io.StringIO()
    assert report.run_report(src, NOW - timedelta(hours=1), NOW, as_json=True, plot_dir=tmp_path,
                             console=Console(file=buf)) == 0
    doc = json.loads(buf.getvalue())
    assert doc["saved_usd"] == 1.25 and "views" in doc  # the summary's totals at the top level
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.PLOTS)


def test_service_url_uses_loopback_for_wildcard_hosts() -> None:
    s = load_settings(env={})
    s.server.host = "0.0.0.0"
    assert report.service_url(s) == "http://127.0.0.1:8787"


def test_tier_mix_groups_models_by_catalogue_tier() -> None:
    from streams.analytics.queries import tier_mix

    rows = [{"model": "a", "requests": 6, "cost_usd": 1.0}, {"model": "b", "requests": 3, "cost_usd": 0.5},
            {"model": "gone", "requests": 1, "cost_usd": 0.1}]
    mix = tier_mix(rows, {"a": "cheap", "b": "frontier"})
    assert [t["tier"] for t in mix] == ["frontier", "cheap", "unknown"]
    assert [t["requests"] for t in mix] == [3, 6, 1] and [t["share"] for t in mix] == [0.3, 0.6, 0.1]
    assert mix[1]["models"] == ["a"] and mix[0]["cost_usd"] == 0.5
