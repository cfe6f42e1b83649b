"""The dashboard in a real headless Chromium: the figures on the page equal the analytics API's, and it
refreshes live when new traffic lands.

Two stacks: a real ``weave-router up`` (embedded broker, chDB, simulator, gateway, agents, sink) that
has served the ``weave-router demo``'s traffic (all three dialects, tool loops, feedback) — its page is
saved to artifacts/dashboard.png — and a preview app over a synthetic sample with several models and
real savings (artifacts/dashboard-sample.png), which the all-frontier default stack cannot show.

The browser tests need the Debian ``chromium`` package and PyPI ``playwright`` (no ``playwright
install``); they skip cleanly without them. The demo CLI test needs neither.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _service import child_env, running_up

from streams.analytics import sample
from streams.analytics.preview import analytics_app, serving
from streams.config import load_settings
from streams.storage.clickhouse import connect
from streams.storage.migrations import migrate
from tests._support import missing

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 60
DEMO_TIMEOUT_S = 60  # the issue: the default demo fills the dashboard within a minute of `up`
STORED_TIMEOUT_S = 20
_DEMO_LINE = re.compile(
    r"demo finished: (?P<sessions>\d+) sessions, (?P<requests>\d+) requests, (?P<tool_calls>\d+) tool calls "
    r"in (?P<elapsed>[\d.]+)s; passed (?P<passed>\d+), failed (?P<failed>\d+) .*?, "
    r"(?P<outcomes>\d+) outcomes reported, (?P<errors>\d+) errors"
)


@pytest.fixture(scope="module")
def playwright_sync() -> Any:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is not installed")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


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


def open_dashboard(browser: Any, url: str, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/dashboard?refresh=1", wait_until="domcontentloaded")
    page.wait_for_selector('body[data-loaded]:not([data-loaded="0"])', timeout=15_000)
    return page


def check_page_matches_api(page: Any, url: str) -> dict[str, Any]:
    """Every figure, table row and chart series on the page equals the analytics API's; the summary."""
    summary = api(url, "summary")
    kpis = {"kpi-requests": "requests", "kpi-sessions": "sessions", "kpi-cost": "cost_usd",
            "kpi-baseline": "baseline_cost_usd", "kpi-saved": "saved_usd", "kpi-saved-pct": "saved_pct",
            "kpi-success": "success_rate", "kpi-outcome-sessions": "outcome_sessions", "kpi-outcomes": "outcomes",
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
            got = row.locator(f'td[data-field="{field}"]').get_attribute("data-value")
            assert same(got, m[field]), (m["model"], field)
    assert page.get_attribute("#models-table", "data-rows") == str(len(summary["models"]))
    # The mix by tier: every served request counted once, under its model's catalogue tier.
    assert sum(t["requests"] for t in summary["tiers"]) == summary["requests"]
    assert page.get_attribute("#tiers-table", "data-rows") == str(len(summary["tiers"]))
    for t in summary["tiers"]:
        row = page.locator(f'#tiers-table tr[data-key="{t["tier"]}"]')
        assert same(row.locator('td[data-field="requests"]').get_attribute("data-value"), t["requests"])

    for view, table, key in (("routes", "routes-table", "route"), ("task_types", "task-types-table", "task_type")):
        rows = api(url, view)
        assert page.get_attribute(f"#{table}", "data-rows") == str(len(rows))
        for r in rows:
            row = page.locator(f'#{table} tr[data-key="{r[key]}"]')
            assert same(row.locator('td[data-field="success_rate"]').get_attribute("data-value"), r["success_rate"])
            assert same(row.locator('td[data-field="requests"]').get_attribute("data-value"), r["requests"])

    # Recent decisions: the same rows in the same order, each with its model, reason and session outcome.
    decisions = api(url, "decisions", limit=25)
    shown = page.locator("#decisions-table tbody tr")
    assert shown.count() == len(decisions) > 0
    for i, d in enumerate(decisions):
        row = shown.nth(i)
        assert row.get_attribute("data-key") == d["decision_id"]
        assert row.locator('td[data-field="model"]').inner_text() == d["model"]
        assert d["reason"] and row.locator('td[data-field="reason"]').inner_text() == d["reason"]
        assert same(row.locator('td[data-field="session_success"]').get_attribute("data-value"), d["session_success"])

    policies = api(url, "policy_versions")
    assert page.get_attribute("#policy-table", "data-rows") == str(len(policies))
    overhead = api(url, "overhead")
    assert page.get_attribute("#overhead-table", "data-rows") == str(len(overhead["by_dialect"]))
    for r in overhead["by_dialect"]:
        cell = page.locator(f'#overhead-table tr[data-key="{r["client_dialect"]}"] td[data-field="overhead_ms_p99"]')
        assert same(cell.get_attribute("data-value"), r["overhead_ms_p99"])
    mix = set(page.get_attribute("#chart-mix", "data-models").split(","))
    assert mix == {m["model"] for m in summary["models"]}
    assert page.locator("#chart-cost svg polyline").count() == 2
    assert page.get_attribute("#status", "data-state") == "ok"
    return summary


def screenshot(page: Any, name: str) -> Path:
    shot = ROOT / "artifacts" / name
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a populated page, not a blank one
    return shot


# -- a real `weave-router up` that has served the demo --------------------------------------------------
@dataclass(frozen=True)
class Stack:
    url: str
    log: Path


@dataclass(frozen=True)
class DemoRun:
    output: str
    seconds: float
    figures: dict[str, int]


def _child_env() -> dict[str, str]:
    return {**child_env(), "COLUMNS": "250"}  # no console wrapping in the lines the tests read


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One ``weave-router up`` on a free port with its own data dir, stopped with SIGTERM."""
    with running_up(tmp_path_factory.mktemp("weave-dash"), START_TIMEOUT_S) as (url, log):
        yield Stack(url, log)


def _demo_command() -> list[str]:
    script = Path(sys.executable).with_name("weave-router")  # the installed console script, as a user runs it
    return [str(script)] if script.exists() else [sys.executable, "-m", "streams.cli"]


def run_demo_cli(stack: Stack, *args: str) -> DemoRun:
    """``weave-router demo --base-url URL [args]`` as a subprocess; its output and summary figures."""
    started = time.monotonic()
    proc = subprocess.run([*_demo_command(), "demo", "--base-url", stack.url, *args], env=_child_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_S + 30)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"demo exited {proc.returncode}:\n{output}\n--- service log ---\n{stack.log.read_text()}"
    m = _DEMO_LINE.search(output)
    assert m, f"no summary line in the demo's output:\n{output}"
    figures = {k: int(v) for k, v in m.groupdict().items() if k != "elapsed"}
    return DemoRun(output, seconds, figures)


@pytest.fixture(scope="module")
def demo_run(stack: Stack) -> DemoRun:
    """The demo with its default sessions, once for the module."""
    return run_demo_cli(stack)


def wait_stored(url: str, requests: int, outcomes: int) -> dict[str, Any]:
    """Poll (bounded) until ClickHouse holds exactly the demo's requests, decisions and outcomes."""
    deadline = time.monotonic() + STORED_TIMEOUT_S
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        summary = api(url, "summary")
        decisions = sum(p["decisions"] for p in api(url, "policy_versions"))
        if summary["requests"] == requests == decisions and summary["outcomes"] == outcomes > 0:
            return summary
        time.sleep(0.3)
    raise AssertionError(f"ClickHouse did not reach {requests} requests / {outcomes} outcomes: {summary}")


def test_demo_cli_drives_the_stack_within_a_minute(stack: Stack, demo_run: DemoRun) -> None:
    f = demo_run.figures
    assert demo_run.seconds < DEMO_TIMEOUT_S, demo_run.output
    assert f["sessions"] == 24 and f["errors"] == 0, demo_run.output  # the default session count
    assert f["tool_calls"] > 0 and f["requests"] > f["sessions"], demo_run.output  # tool loops ran
    assert f["passed"] + f["failed"] == f["sessions"] and f["outcomes"] >= f["sessions"], demo_run.output
    assert "model mix: " in demo_run.output and "no simulator verdict" not in demo_run.output
    # The demo waits until its run is in ClickHouse before it says so.
    assert "ClickHouse (all stored): " + f"{f['requests']} of this run's requests, {f['outcomes']} outcomes" \
        in demo_run.output, demo_run.output
    assert f"dashboard: {stack.url}/dashboard" in demo_run.output
    # Outcomes joined the sessions the router decided for: every demo session has its success.
    summary = wait_stored(stack.url, f["requests"], f["outcomes"])
    assert summary["sessions"] == summary["outcome_sessions"] == f["sessions"]
    assert summary["success_rate"] == pytest.approx(f["passed"] / f["sessions"])
    dialects = {r["client_dialect"]: r["requests"] for r in api(stack.url, "overhead")["by_dialect"]}
    assert set(dialects) == {"openai_chat", "openai_responses", "anthropic_messages"}
    assert sum(dialects.values()) == f["requests"]
    # Traces carry the classified task type the decisions have (requests and success on the same rows).
    tasks = api(stack.url, "task_types")
    assert tasks and all(r["task_type"] and r["requests"] > 0 for r in tasks), tasks


def test_dashboard_of_a_stack_that_served_the_demo(stack: Stack, demo_run: DemoRun, playwright_sync: Any) -> None:
    f = demo_run.figures
    wait_stored(stack.url, f["requests"], f["outcomes"])
    errors: list[str] = []
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = open_dashboard(browser, stack.url, errors)
            summary = check_page_matches_api(page, stack.url)
            assert summary["requests"] == f["requests"] and summary["outcome_sessions"] == f["sessions"]
            assert page.get_attribute("#overhead-table", "data-rows") == "3"  # all three dialects served
            assert summary["cost_usd"] > 0 and summary["models"]
            screenshot(page, "dashboard.png")

            # Live: two more real sessions show up without a reload.
            more = run_demo_cli(stack, "--sessions", "2").figures
            assert more["sessions"] == 2 and more["errors"] == 0
            want = str(f["requests"] + more["requests"])
            page.wait_for_function(
                f"document.getElementById('kpi-requests').dataset.value === '{want}'", timeout=15_000
            )
            assert not errors, errors
        finally:
            browser.close()


# -- a synthetic sample with several models and savings ------------------------------------------------
@pytest.fixture
def store(chdb_url: str) -> Iterator[tuple[Any, sample.SampleData]]:
    database = f"t_dash_{uuid.uuid4().hex[:8]}"
    client = connect(chdb_url, database)
    migrate(client)
    data = sample.sample_data(datetime.now(UTC) - timedelta(minutes=2), sessions=36, seed=21)
    sample.insert(client, data)
    yield client, data
    client.command(f"DROP DATABASE IF EXISTS {database}")


def test_dashboard_of_a_sample_with_many_models(store: tuple[Any, sample.SampleData], playwright_sync: Any) -> None:
    client, data = store
    app = analytics_app(client, load_settings(env={}))
    errors: list[str] = []
    with serving(app) as url, playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = open_dashboard(browser, url, errors)
            summary = check_page_matches_api(page, url)
            assert summary["requests"] == len(data.traces) > 0
            assert len(summary["models"]) > 1 and summary["saved_usd"] > 0
            screenshot(page, "dashboard-sample.png")

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
