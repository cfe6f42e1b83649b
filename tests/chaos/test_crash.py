"""Chaos with the real process: ``weave-router up`` killed with SIGKILL under load, then started again on
the same data dir. Every answer the callers got is stored in ClickHouse exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import time
from pathlib import Path

import httpx
import pytest
from _process import UpProcess, query_stopped, write_config
from _stack import Observed, drive

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(300)]


async def _stored_requests(url: str, at_least: int, timeout_s: float = 90.0) -> int:
    """Poll the service's own summary (bounded) until ``at_least`` requests are stored and it holds."""
    deadline = time.monotonic() + timeout_s
    n, last, since = -1, -2, time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                r = await http.get(url + "/v1/analytics/summary", params={"since": "1h"})
                n = int(r.json().get("requests", 0))
            except (httpx.HTTPError, ValueError):
                pass
            if n != last:
                last, since = n, time.monotonic()
            elif n >= at_least and time.monotonic() - since >= 2.0:
                break
            await asyncio.sleep(0.3)
    return n


async def test_up_killed_under_load_loses_no_answered_request(tmp_path: Path,
                                                              chaos_results: list[Observed]) -> None:
    t0 = time.monotonic()
    config = write_config(tmp_path / "weave-router.yaml")
    data = tmp_path / "data"
    first = UpProcess(data, config, tmp_path / "first.log")
    url = await asyncio.to_thread(first.start)
    n, kill_at = 300, 220

    async def kill() -> None:
        await asyncio.to_thread(first.kill)

    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(20.0), limits=httpx.Limits(max_connections=64)) as http:
            outcomes = await drive(http, url, n, rate=60.0, hooks={kill_at: kill})
    finally:
        first.stop()
    answered = {o.request_id for o in outcomes if o.kind in ("ok", "clean") and o.request_id}
    unanswered = sum(1 for o in outcomes if o.kind == "other")
    assert len(answered) >= kill_at // 2 and unanswered > 0, "the kill did not land under load"

    second = UpProcess(data, config, tmp_path / "second.log")
    try:
        url2 = await asyncio.to_thread(second.start)
        await _stored_requests(url2, len(answered))
    finally:
        await asyncio.to_thread(second.stop)
    replayed = "will be sent again" in second.log.read_text()
    rows = await asyncio.to_thread(query_stopped, data, (
        "SELECT 'trace', request_id, count() FROM traces FINAL GROUP BY request_id "
        "UNION ALL SELECT 'decision', request_id, count() FROM decisions FINAL GROUP BY request_id"))
    traces = {rid: c for kind, rid, c in rows if kind == "trace"}
    decisions = {rid: c for kind, rid, c in rows if kind == "decision"}

    problems = []
    if answered - traces.keys():
        problems.append(f"{len(answered - traces.keys())} answered requests have no trace")
    if answered - decisions.keys():
        problems.append(f"{len(answered - decisions.keys())} answered requests have no decision")
    dup = sum(c - 1 for c in traces.values()) + sum(c - 1 for c in decisions.values())
    if dup:
        problems.append(f"{dup} duplicate rows under FINAL")
    # A request cut by the kill after its trace was journaled is stored though nobody got its answer.
    extra = len(traces.keys() - answered)
    if extra > unanswered:
        problems.append(f"{extra} traces of requests never sent")
    obs = Observed("up SIGKILL", f"kill -9 of up after {kill_at} of {n} requests, restart on the same data dir",
                   n, sum(o.kind == "ok" for o in outcomes), sum(o.kind == "clean" for o in outcomes), unanswered,
                   len(traces), dup, time.monotonic() - t0,
                   notes=f"{len(answered)} answered, {extra} stored without an answer (in flight at the kill); "
                         f"journal replayed on restart: {replayed}", problems=problems)
    chaos_results.append(obs)
    assert not problems, problems
    assert replayed, "the restart found nothing to replay: the kill tested nothing"


async def _policy_version(http: httpx.AsyncClient, url: str, at_least: int, timeout_s: float = 90.0) -> int:
    """The policy version the gateway decides with (``POST /v1/route``), polled (bounded) until ``at_least``."""
    deadline = time.monotonic() + timeout_s
    version = -1
    while time.monotonic() < deadline:
        r = await http.post(url + "/v1/route", json={"model": "router/auto",
                                                     "messages": [{"role": "user", "content": "which model?"}]})
        version = int(r.json()["policy_version"])
        if version >= at_least:
            break
        await asyncio.sleep(0.5)
    return version


BUDGET_KEY = "sk-weave-budget-test"
CHAT = {"model": "router/auto", "messages": [{"role": "user", "content": "fix the failing test"}]}


async def test_a_restart_keeps_the_learned_policy_and_the_budget_spend(tmp_path: Path) -> None:
    """The embedded broker forgets router.policy on a restart, and spend lived in memory: the learner's
    local snapshot and the gateway's spend file keep both. A key with a (tiny) daily budget gets one
    answer, then 402, and still 402 after the restart."""
    config = write_config(tmp_path / "weave-router.yaml", virtual_keys=[{
        "name": "budgeted", "key_sha256": hashlib.sha256(BUDGET_KEY.encode()).hexdigest(), "usd_per_day": 1e-9}])
    budgeted = {"authorization": f"Bearer {BUDGET_KEY}"}
    data = tmp_path / "data"
    first = UpProcess(data, config, tmp_path / "first.log")
    try:
        url = await asyncio.to_thread(first.start)
        async with httpx.AsyncClient(timeout=20) as http:
            for s in range(6):
                sid = ""
                for turn in range(2):
                    r = await http.post(url + "/v1/chat/completions", headers={"x-session-id": f"learn-{s}"}, json={
                        "model": "router/auto", "messages": [{"role": "user", "content": f"fix test {s}.{turn}"}]})
                    assert r.status_code == 200, r.text
                    sid = r.headers["x-router-session"]
                r = await http.post(url + "/v1/feedback", json={"session_id": sid, "success": s % 2 == 0,
                                                                "tests_passed": 3, "tests_failed": s % 2})
                assert r.status_code in (200, 202), r.text
            learned = await _policy_version(http, url, at_least=1)
            assert (await http.post(url + "/v1/chat/completions", headers=budgeted, json=CHAT)).status_code == 200
            assert (await http.post(url + "/v1/chat/completions", headers=budgeted, json=CHAT)).status_code == 402
        assert learned >= 1, "nothing was learned: the restart would test nothing"
    finally:
        await asyncio.to_thread(first.stop)
    second = UpProcess(data, config, tmp_path / "second.log")
    try:
        url2 = await asyncio.to_thread(second.start)
        async with httpx.AsyncClient(timeout=20) as http:
            assert await _policy_version(http, url2, at_least=learned) >= learned
            refused = await http.post(url2 + "/v1/chat/completions", headers=budgeted, json=CHAT)
            assert refused.status_code == 402, refused.text
            assert (await http.post(url2 + "/v1/chat/completions", json=CHAT)).status_code == 200
    finally:
        await asyncio.to_thread(second.stop)
    assert stat.S_IMODE(next((data / "policy").glob("*.snapshot")).stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "budget-spend.json").stat().st_mode) == 0o600
