"""One serving core: the same request through the HTTP endpoint and through the Kafka router agent's
handler gives the same decision and the same trace (ids and timings aside), the failover loop and the
circuit breakers apply to both, and the trace is the typed one of ``trace.avsc`` with the key it was
served under."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _gateway_harness import ALL_DIALECTS, Stack, make_settings, running_stack

from streams.agents.records import decision_event
from streams.agents.route_agent import RouteHandler
from streams.events.codec import EventCodec
from streams.providers.client import UpstreamClient
from streams.routing.router import Router

from _gateway_harness import TestRouter  # isort: skip

PATH = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses", "anthropic_messages": "/v1/messages"}
# Differ by nature between two deliveries of the same request.
PER_DELIVERY = {"event_id", "ts_ms", "request_id", "decision_id", "latency_ms", "ttft_ms", "overhead_ms", "source"}
# The second delivery of the same conversation reads the prompt cache the first one wrote (a
# translated route gets the target's caching), so what it costs differs by that much.
PER_DELIVERY |= {"cached_tokens", "cost_usd", "baseline_cost_usd"}
CODEC = EventCodec()


def body_for(dialect: str, model: str, text: str = "rename variable x to count in utils.py") -> dict[str, Any]:
    if dialect == "openai_chat":
        return {"model": model, "messages": [{"role": "user", "content": text}]}
    if dialect == "openai_responses":
        return {"model": model, "input": text}
    if dialect == "gemini":  # over HTTP the model moves into the URL; a RouteRequest names it in the body
        return {"model": model, "contents": [{"role": "user", "parts": [{"text": text}]}]}
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]}


def http_path(dialect: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if dialect == "gemini":
        rest = {k: v for k, v in body.items() if k != "model"}
        return f"/v1beta/models/{body['model']}:generateContent", rest
    return PATH[dialect], body


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    settings = make_settings(reliability={"breaker": {"min_requests": 3, "error_rate": 0.5, "open_s": 30,
                                                      "window_s": 30, "latency_spike_factor": None}})
    with running_stack(settings) as st:
        yield st


def over_http(st: Stack, dialect: str, body: dict[str, Any], session: str, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(status, decision event, trace) of one HTTP request."""
    before = len(st.events.traces)
    # The very bytes the RouteRequest carries (the provider counts what it is sent).
    path, body = http_path(dialect, body)
    resp = httpx.post(st.url + path, content=json.dumps(body), timeout=30,
                      headers={"x-session-id": session, "user-agent": "weave-test", "content-type": "application/json",
                               **(headers or {})})
    assert len(st.events.traces) == before + 1
    decision, context = st.events.decisions[-1]
    return resp.status_code, decision_event(decision, **context), dict(st.events.traces[-1])


def over_kafka(st: Stack, handler: RouteHandler, dialect: str, body: dict[str, Any], session: str,
               hints: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(RouteResponse, decision event, trace) of one RouteRequest in execute mode."""
    request = {"event_id": "e", "ts_ms": 0, "request_id": f"r-{session}", "session_id": session,
               "dialect": dialect, "body": json.dumps(body), "hints": {"user-agent": "weave-test", **(hints or {})},
               "reply_topic": "replies", "mode": "execute"}
    outputs = asyncio.run_coroutine_threadsafe(handler.handle(request), st.loop).result(30)
    by_name = {name: value for _, _, name, value in outputs.events}
    for name, value in by_name.items():
        CODEC.encode(name, value)  # what the agent publishes must encode
    return by_name["RouteResponse"], by_name["Decision"], by_name["Trace"]


def kafka_handler(st: Stack, router: Any) -> RouteHandler:
    """The router agent's handler with a gateway of its own (as in a worker process) over the same sim."""
    client = UpstreamClient(st.sim_url)
    asyncio.run_coroutine_threadsafe(client.start(), st.loop).result(10)
    return RouteHandler(st.gateway.settings, router, client)


def same(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields two deliveries disagree on, per-delivery ones aside."""
    return {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if k not in PER_DELIVERY and a.get(k) != b.get(k)}


@pytest.mark.parametrize("dialect", ALL_DIALECTS)
@pytest.mark.parametrize("model", ["router/auto", "m-chat", "m-anth", "m-gem"])
def test_both_entry_points_give_the_same_decision_and_trace(stack: Stack, dialect: str, model: str) -> None:
    handler = kafka_handler(stack, TestRouter(stack.gateway.settings))
    body = body_for(dialect, model)
    session = f"same-{dialect}-{model}"
    status, http_decision, http_trace = over_http(stack, dialect, body, session)
    reply, kafka_decision, kafka_trace = over_kafka(stack, handler, dialect, body, session)
    assert status == reply["status"] == 200
    assert not same(http_decision, kafka_decision)
    assert not same(http_trace, kafka_trace)
    assert http_trace["source"] == "http" and kafka_trace["source"] == "kafka"
    assert kafka_trace["output_tokens"] > 0 and kafka_trace["cost_usd"] > 0
    assert http_trace["policy"] == kafka_trace["policy"] == ("test" if model == "router/auto" else "passthrough")
    assert http_trace["key_id"] == kafka_trace["key_id"] == "anonymous"
    assert reply["decision_id"] == kafka_trace["decision_id"] == kafka_decision["event_id"]


def test_the_real_router_decides_alike_for_both(stack: Stack) -> None:
    """Two fresh routers from the same settings, one behind each entry point: same task, same pick."""
    settings = stack.gateway.settings
    handler = kafka_handler(stack, Router(settings))
    http_router = Router(settings)
    stack.gateway.router, saved = http_router, stack.gateway.router
    try:
        body = body_for("anthropic_messages", "router/auto", "design the architecture of a billing service")
        _, http_decision, http_trace = over_http(stack, "anthropic_messages", body, "real-router")
        _, kafka_decision, kafka_trace = over_kafka(stack, handler, "anthropic_messages", body, "real-router")
    finally:
        stack.gateway.router = saved
    assert http_decision["policy"] == kafka_decision["policy"]
    assert http_decision["model"] == kafka_decision["model"] and http_decision["reason"] == kafka_decision["reason"]
    assert http_trace["task_type"] == kafka_trace["task_type"] != ""
    assert http_trace["client"] == kafka_trace["client"]


def test_kafka_requests_fail_over_like_http_ones(stack: Stack) -> None:
    """m-multi's first provider refuses connections: both entry points try the second (2 attempts)."""
    handler = kafka_handler(stack, TestRouter(stack.gateway.settings))
    body = body_for("openai_chat", "m-multi")
    status, _, http_trace = over_http(stack, "openai_chat", body, "multi-http")
    reply, _, kafka_trace = over_kafka(stack, handler, "openai_chat", body, "multi-kafka")
    assert status == reply["status"] == 200
    assert http_trace["provider"] == kafka_trace["provider"] == "p-chat"
    assert http_trace["attempts"] == kafka_trace["attempts"] == 2


def test_kafka_requests_open_the_breaker_and_fail_fast(stack: Stack) -> None:
    """A dead provider: after a few refused connections the Kafka path's breaker opens and the next
    request is answered 503 at once, in the request's dialect, instead of trying the dead provider."""
    handler = kafka_handler(stack, TestRouter(stack.gateway.settings))
    body = body_for("anthropic_messages", "m-dead")
    errors = [over_kafka(stack, handler, "anthropic_messages", body, f"dead-{i}")[0] for i in range(6)]
    assert errors[0]["status"] == 502 and "p-dead" in json.loads(errors[0]["body"])["error"]["message"]
    last = errors[-1]
    assert last["status"] == 503 and "circuit open" in last["error"]
    assert json.loads(last["body"])["type"] == "error"  # Anthropic's error shape
    assert handler.gateway.health()["components"]["breaker:p-dead/m-dead"] == "down"


def test_a_refused_request_gets_its_error_in_the_dialect_over_both(stack: Stack) -> None:
    handler = kafka_handler(stack, TestRouter(stack.gateway.settings))
    body = body_for("openai_responses", "no-such-model")
    status, _, _ = over_http_refused(stack, "openai_responses", body)
    request = {"event_id": "e", "ts_ms": 0, "request_id": "r-unknown", "session_id": "unknown",
               "dialect": "openai_responses", "body": json.dumps(body), "hints": {}, "reply_topic": "replies",
               "mode": "execute"}
    outputs = asyncio.run_coroutine_threadsafe(handler.handle(request), stack.loop).result(30)
    by_name = {name: value for _, _, name, value in outputs.events}
    assert status == by_name["RouteResponse"]["status"] == by_name["Trace"]["status"] == 404
    assert json.loads(by_name["RouteResponse"]["body"])["error"]["param"] == "model"


def over_http_refused(st: Stack, dialect: str, body: dict[str, Any]) -> tuple[int, None, None]:
    before = len(st.events.traces)
    resp = httpx.post(st.url + PATH[dialect], json=body, timeout=30)
    assert resp.json()["error"]["param"] == "model"
    assert len(st.events.traces) == before  # refused before a decision: no trace over HTTP
    return resp.status_code, None, None
