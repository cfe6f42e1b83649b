"""The dashboard in a real headless Chromium: the figures on the page equal the analytics API's, and it
refreshes live when new traffic lands. Saves a screenshot to artifacts/dashboard.png.

Needs the Debian ``chromium`` package and PyPI ``playwright`` (no ``playwright install``); skipped
cleanly without them.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.analytics import sample
from streams.analytics.preview import analytics_app, serving
from streams.config import load_settings
from streams.storage.clickhouse import connect
from streams.storage.migrations import migrate

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


def _client(tmp_path: Path, database: str) -> Any:
    """chDB allows one data dir per process: reuse the one already open (another test's) if any."""
    try:
        return connect(f"chdb://{tmp_path / 'ch'}", database)
    except Exception as exc:
        m = re.search(r"initialized with path '([^']+)'", str(exc))
        if not m:
            raise
        return connect(f"chdb://{m.group(1)}", database)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Any, sample.SampleData]]:
    database = f"t_dash_{uuid.uuid4().hex[:8]}"
    client = _client(tmp_path, database)
    migrate(client)
    data = sample.sample_data(datetime.now(UTC) - timedelta(minutes=2), sessions=36, seed=21)
    sample.insert(client, data)
    yield client, data
    client.command(f"DROP DATABASE IF EXISTS {database}")


def api(url: str, view: str, **params: Any) -> Any:
    query = "&".join(f"{k}={v}" for k, v in {"since": "24h", **params}.items())
    with urllib.request.urlopen(f"{url}/v1/analytics/{view}?{query}", timeout=10) as resp:
        return json.loads(resp.read())


def same(page_value: str | None, api_value: Any) -> bool:
    if api_value is None:
        return page_value in ("", None)
    if isinstance(api_value, str):
        return page_value == api_value
    return page_value is not None and math.isclose(float(page_value), float(api_value), rel_tol=1e-9, abs_tol=1e-12)


def test_dashboard_shows_the_api_figures_and_refreshes(store: tuple[Any, sample.SampleData]) -> None:
    client, data = store
    app = analytics_app(client, load_settings(env={}))
    with serving(app) as url, playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/dashboard?refresh=1", wait_until="domcontentloaded")
            page.wait_for_selector('body[data-loaded]:not([data-loaded="0"])', timeout=15_000)

            summary = api(url, "summary")
            assert summary["requests"] == len(data.traces) > 0
            kpis = {"kpi-requests": "requests", "kpi-sessions": "sessions", "kpi-cost": "cost_usd",
                    "kpi-baseline": "baseline_cost_usd", "kpi-saved": "saved_usd", "kpi-saved-pct": "saved_pct",
                    "kpi-success": "success_rate", "kpi-outcome-sessions": "outcome_sessions",
                    "kpi-overhead-p50": "overhead_ms_p50", "kpi-overhead-p99": "overhead_ms_p99",
                    "kpi-fallbacks": "fallbacks", "kpi-errors": "errors"}
            for element, field in kpis.items():
                assert same(page.get_attribute(f"#{element}", "data-value"), summary[field]), element
            assert page.inner_text("#kpi-requests") == f"{summary['requests']:,}"
            assert page.inner_text("#kpi-success") == f"{summary['success_rate'] * 100:.1f}%"
            assert page.inner_text("#kpi-frontier") == summary["frontier_model"]

            for m in summary["models"]:
                row = page.locator(f'#models-table tr[data-key="{m["model"]}"]')
                for field in ("requests", "cost_usd", "saved_usd", "success_rate", "overhead_ms_p99"):
                    assert same(row.locator(f'td[data-field="{field}"]').get_attribute("data-value"), m[field]), (m["model"], field)
            assert page.get_attribute("#models-table", "data-rows") == str(len(summary["models"]))

            for view, table, key in (("routes", "routes-table", "route"), ("task_types", "task-types-table", "task_type")):
                rows = api(url, view)
                assert page.get_attribute(f"#{table}", "data-rows") == str(len(rows))
                for r in rows:
                    row = page.locator(f'#{table} tr[data-key="{r[key]}"]')
                    assert same(row.locator('td[data-field="success_rate"]').get_attribute("data-value"), r["success_rate"])
                    assert same(row.locator('td[data-field="requests"]').get_attribute("data-value"), r["requests"])

            decisions = api(url, "decisions", limit=25)
            shown = page.locator("#decisions-table tbody tr")
            assert shown.count() == len(decisions)
            first = shown.first
            assert first.get_attribute("data-key") == decisions[0]["decision_id"]
            assert first.locator('td[data-field="reason"]').inner_text() == decisions[0]["reason"]

            policies = api(url, "policy_versions")
            assert page.get_attribute("#policy-table", "data-rows") == str(len(policies))
            overhead = api(url, "overhead")
            for r in overhead["by_dialect"]:
                cell = page.locator(f'#overhead-table tr[data-key="{r["client_dialect"]}"] td[data-field="overhead_ms_p99"]')
                assert same(cell.get_attribute("data-value"), r["overhead_ms_p99"])
            mix = set(page.get_attribute("#chart-mix", "data-models").split(","))
            assert mix == {m["model"] for m in summary["models"]}
            assert page.locator("#chart-cost svg polyline").count() == 2
            assert page.get_attribute("#status", "data-state") == "ok"

            shot = ROOT / "artifacts" / "dashboard.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)

            # Live: new traffic shows up without a reload.
            more = sample.sample_data(datetime.now(UTC) - timedelta(minutes=1), sessions=2, seed=77)
            for rows in (more.traces, more.decisions, more.outcomes):
                for r in rows:
                    r["session_id"] = "live-" + r["session_id"]
            sample.insert(client, more)
            want = str(len(data.traces) + len(more.traces))
            page.wait_for_function(
                f"document.getElementById('kpi-requests').dataset.value === '{want}'", timeout=15_000
            )
            assert not errors, errors
        finally:
            browser.close()
