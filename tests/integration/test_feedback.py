"""POST /v1/feedback: outcomes are validated, published for the learner and reach the router's session."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from streams.config import load_settings
from streams.infra.runtime import feedback_handler, make_router
from streams.ingress.app import create_app
from streams.ingress.gateway import Gateway
from streams.providers.client import UpstreamClient


class RecordingEmitter:
    def __init__(self) -> None:
        self.outcomes: list[dict[str, Any]] = []

    def emit_outcome(self, outcome: dict[str, Any]) -> None:
        self.outcomes.append(outcome)


@pytest.fixture
def wired() -> tuple[httpx.AsyncClient, RecordingEmitter, Any]:
    settings = load_settings(env={})
    router = make_router(settings)
    emitter = RecordingEmitter()
    gateway = Gateway(settings, router, UpstreamClient(None))
    app = create_app(gateway, feedback_handler(router, emitter))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    return client, emitter, router


async def test_feedback_is_published_and_escalates_the_session(wired: Any) -> None:
    client, emitter, router = wired
    async with client:
        # The router knows the session once it decided for it.
        r = await client.post("/v1/route", json={"model": "router/auto", "messages": [{"role": "user", "content": "fix the bug"}]},
                              headers={"x-session-id": "task-7"})
        assert r.status_code == 200, r.text
        r = await client.post("/v1/feedback", json={"session_id": "task-7", "tests_passed": 3, "tests_failed": 2,
                                                    "cost_usd": 0.02, "metadata": {"suite": "unit"}})
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] is True and body["session_id"] == "task-7" and body["success"] == 0.0
    [outcome] = emitter.outcomes
    assert outcome["session_id"] == "task-7" and outcome["tests_failed"] == 2 and outcome["cost_usd"] == 0.02
    assert outcome["metadata"] == {"suite": "unit"} and outcome["event_id"] == body["event_id"]
    # The failed outcome counts against the router's session (what a cascade escalates on).
    assert router.sessions.get("task-7").failures == 1


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # Claude Code's session only in metadata.user_id; a plain SDK with no session at all (hashed).
        ({"model": "router/auto", "max_tokens": 64, "messages": [{"role": "user", "content": "fix the bug"}],
          "metadata": {"user_id": '{"device_id": "d", "session_id": "cc-meta-1"}'}}, {"anthropic-version": "2023-06-01"}),
        ({"model": "router/auto", "messages": [{"role": "user", "content": "fix the bug"}]}, {}),
    ],
    ids=["claude-code-metadata", "hashed"],
)
async def test_the_session_the_gateway_reports_is_the_one_feedback_reaches(
    wired: Any, body: dict[str, Any], headers: dict[str, str]
) -> None:
    client, _, router = wired
    dialect = "anthropic_messages" if "max_tokens" in body else "openai_chat"
    async with client:
        r = await client.post(f"/v1/route?dialect={dialect}", json=body, headers={"authorization": "Bearer k", **headers})
        assert r.status_code == 200, r.text
        sid = r.json()["session_id"]
        r = await client.post("/v1/feedback", json={"session_id": sid, "success": False})
    assert r.status_code == 202
    if "metadata" in body:
        assert sid == "cc-meta-1"
    assert router.sessions.get(sid).failures == 1


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"success": True}, "session_id"),
        ({"session_id": "s"}, "success"),
        ({"session_id": "s", "score": 3}, "score"),
        ({"session_id": "s", "success": True, "tests_passed": "many"}, "tests_passed"),
    ],
)
async def test_bad_feedback_is_a_400_naming_the_field(wired: Any, payload: dict[str, Any], param: str) -> None:
    client, emitter, _ = wired
    async with client:
        r = await client.post("/v1/feedback", json=payload)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"]
    assert emitter.outcomes == []


async def test_malformed_feedback_body(wired: Any) -> None:
    client, _, _ = wired
    async with client:
        r = await client.post("/v1/feedback", content=b"{not json")
        assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
        r = await client.post("/v1/feedback", json=[1, 2])
        assert r.status_code == 400


def test_feedback_by_request_id_credits_that_requests_session() -> None:
    from streams.analytics.metrics import RouterMetrics
    from streams.infra.observed import MeteredEventSink, RecentRequests

    recent = RecentRequests(capacity=2)
    sink = MeteredEventSink(None, RouterMetrics(), recent)
    for rid, sid in (("r1", "s1"), ("r2", "s2"), ("r3", "s3")):
        sink.emit_trace({"request_id": rid, "session_id": sid, "model": "m", "status": 200})
    emitter = RecordingEmitter()
    handle = feedback_handler(make_router(load_settings(env={})), emitter, recent)
    assert handle({"request_id": "r2", "success": True})["session_id"] == "s2"
    # Forgotten (bounded memory): the request id stands in for the session, as documented.
    assert handle({"request_id": "r1", "success": True})["session_id"] == "r1"
    assert [o["request_id"] for o in emitter.outcomes] == ["r2", "r1"]
