"""Router headers, usage and cost, traces, the auxiliary endpoints (models, count_tokens, route, health,
HEAD /), and the captured requests of real agents replayed through the gateway with the real Router."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from _gateway_harness import DIALECTS, MODEL_FOR, Stack, running_stack, sse_frames, trace_for

from streams.config import load_settings
from streams.routing.router import Router

CAPTURED = Path("/work/shared/reference/captured_requests")
PATH = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses", "anthropic_messages": "/v1/messages"}
ROUTER_HEADERS = ("x-router-model", "x-router-provider", "x-router-decision-id", "x-router-session",
                  "x-router-overhead-ms")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


def body_for(dialect: str, model: str, **extra: Any) -> dict[str, Any]:
    if dialect == "openai_chat":
        return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    if dialect == "openai_responses":
        return {"model": model, "input": "hello", **extra}
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}], **extra}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider_dialect", DIALECTS)
@pytest.mark.parametrize("client_dialect", DIALECTS)
def test_router_headers_usage_cost_and_trace(stack: Stack, client_dialect: str, provider_dialect: str,
                                             stream: bool) -> None:
    model = MODEL_FOR[provider_dialect]
    body = body_for(client_dialect, model, stream=stream)
    resp = httpx.post(stack.url + PATH[client_dialect], json=body, headers={"x-claude-code-session-id": "sess-42"})
    assert resp.status_code == 200
    for name in ROUTER_HEADERS:
        assert resp.headers[name]
    assert resp.headers["x-router-model"] == model and resp.headers["x-router-session"] == "sess-42"
    assert 0 < float(resp.headers["x-router-overhead-ms"]) < 100

    trace = trace_for(stack, resp.headers["x-request-id"])
    settings = stack.gateway.settings
    m = settings.model(model)
    frontier = settings.model(settings.frontier_default() or "")
    assert m is not None and frontier is not None
    assert trace["input_tokens"] > 0 and trace["output_tokens"] > 0
    assert trace["cost_usd"] == pytest.approx(m.cost_usd(trace["input_tokens"], trace["output_tokens"],
                                                         trace["cached_tokens"]))
    assert trace["baseline_cost_usd"] == pytest.approx(
        frontier.cost_usd(trace["input_tokens"], trace["output_tokens"], trace["cached_tokens"]))
    expected = {"session_id": "sess-42", "decision_id": resp.headers["x-router-decision-id"], "status": 200,
                "client_dialect": client_dialect, "provider_dialect": provider_dialect, "model": model,
                "provider": resp.headers["x-router-provider"], "policy": "passthrough", "stream": stream,
                "source": "http", "attempts": 1, "error": None}
    assert {k: trace[k] for k in expected} == expected
    assert trace["ttft_ms"] <= trace["latency_ms"] and trace["overhead_ms"] > 0
    if not stream:
        assert float(resp.headers["x-router-cost-usd"]) == pytest.approx(trace["cost_usd"], abs=1e-8)
    decisions = [d for d, _ in stack.events.decisions if d.decision_id == trace["decision_id"]]
    assert len(decisions) == 1


@pytest.mark.parametrize("provider_dialect", DIALECTS)
def test_chat_stream_without_include_usage_gets_no_usage_chunk(stack: Stack, provider_dialect: str) -> None:
    """aider streams without stream_options: it must not see a usage chunk, yet the trace has usage."""
    body = body_for("openai_chat", MODEL_FOR[provider_dialect], stream=True)
    resp = httpx.post(stack.url + "/v1/chat/completions", json=body)
    frames = [json.loads(d) for _, d in sse_frames(resp.content) if d != "[DONE]"]
    assert frames and all(f.get("choices") for f in frames) and not any(f.get("usage") for f in frames)
    # [DONE] is the last event; only the cost comment (invisible to SSE parsers) follows it.
    assert sse_frames(resp.content)[-1][1] == "[DONE]"
    assert resp.content.rstrip().rsplit(b"\n", 1)[-1].startswith(b": x-router-cost-usd: ")
    trace = trace_for(stack, resp.headers["x-request-id"])
    assert trace["output_tokens"] > 0 and trace["input_tokens"] > 0


def test_models_listing_in_both_sdks(stack: Stack) -> None:
    ids = {m.id for m in openai.OpenAI(api_key="k", base_url=stack.url + "/v1").models.list()}
    assert {"router/auto", "m-chat", "m-resp", "m-anth"} <= ids
    ids = {m.id for m in anthropic.Anthropic(api_key="k", base_url=stack.url).models.list()}
    assert {"router/auto", "m-anth"} <= ids


def test_count_tokens(stack: Stack) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=stack.url, max_retries=0)
    small = client.messages.count_tokens(model="m-anth", messages=[{"role": "user", "content": "hi"}])
    big = client.messages.count_tokens(model="m-anth", messages=[{"role": "user", "content": "word " * 4000}])
    assert 0 < small.input_tokens < 20 and 4000 < big.input_tokens < 6000
    with pytest.raises(anthropic.BadRequestError):
        client.post("/v1/messages/count_tokens", body={"model": "m-anth"}, cast_to=object)


def test_route_decides_without_calling_a_model(stack: Stack) -> None:
    sent = len(stack.client.records)
    resp = httpx.post(stack.url + "/v1/route", json=body_for("openai_chat", "router/auto"),
                      headers={"x-test-route": "m-resp,m-chat"})
    assert resp.status_code == 200
    d = resp.json()
    assert (d["model"], d["provider"], d["fallbacks"], d["policy"]) == ("m-resp", "p-resp", ["m-chat"], "test")
    assert d["provider_dialect"] == "openai_responses" and d["decision_id"]
    resp = httpx.post(stack.url + "/v1/route", json=body_for("anthropic_messages", "m-chat"),
                      headers={"anthropic-version": "2023-06-01"})
    assert resp.json()["policy"] == "passthrough" and resp.json()["dialect"] == "anthropic_messages"
    resp = httpx.post(stack.url + "/v1/route?dialect=openai_responses", json=body_for("openai_responses", "nope"))
    assert resp.status_code == 404 and "nope" in resp.json()["error"]["message"]
    assert len(stack.client.records) == sent


def test_health_and_head_probe(stack: Stack) -> None:
    assert httpx.head(stack.url + "/").status_code == 200
    # Claude Code's other connectivity probe: a 404 here would read as "no service at this URL".
    head = httpx.head(stack.url + "/api/hello")
    assert head.status_code == 200 and head.content == b""
    got = httpx.get(stack.url + "/api/hello")
    assert got.status_code == 200 and got.json() == {"service": "weave-router"}
    assert httpx.post(stack.url + "/api/hello").status_code == 405
    resp = httpx.get(stack.url + "/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"
    assert resp.json()["components"]["gateway"] == "ok"
    stack.gateway.health_probe = lambda: {"kafka": "down", "clickhouse": "ok"}
    try:
        body = httpx.get(stack.url + "/health").json()
    finally:
        stack.gateway.health_probe = None
    assert body["status"] == "degraded" and body["components"]["kafka"] == "down"


# --- real agents' requests, real Router, default configuration -----------------------------------


@pytest.fixture(scope="module")
def default_stack() -> Iterator[Stack]:
    with running_stack(load_settings(env={}), router=Router) as st:
        yield st


def _untrim(obj: Any) -> Any:
    """The captures are trimmed: list items like "...<+12 items>" stand for elided entries."""
    if isinstance(obj, list):
        return [_untrim(x) for x in obj if not (isinstance(x, str) and x.startswith("...<+"))]
    if isinstance(obj, dict):
        return {k: _untrim(v) for k, v in obj.items()}
    return obj


def _replay(st: Stack, name: str) -> tuple[httpx.Response, dict[str, Any]]:
    cap = json.loads((CAPTURED / name).read_text())
    cap["body"] = _untrim(cap["body"])
    router = st.gateway.router
    if not (router.is_auto(cap["body"]["model"]) or cap["body"]["model"] in st.gateway.models):
        # Models the default config neither serves nor routes (gpt-4o-mini) would be a 404.
        cap["body"]["model"] = "router/auto"
    keep = {k: v for k, v in cap["headers"].items()
            if k.lower() not in ("host", "content-length", "accept-encoding", "connection")}
    query = "?" + "&".join(f"{k}={v}" for k, v in cap["query"].items()) if cap["query"] else ""
    resp = httpx.post(st.url + cap["path"] + query, json=cap["body"], headers=keep, timeout=30)
    return resp, cap


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURED.glob("*.json") if "head_probe" not in p.name))
def test_captured_agent_requests(default_stack: Stack, name: str) -> None:
    resp, cap = _replay(default_stack, name)
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["x-router-model"] in {m.name for m in default_stack.gateway.settings.models}
    trace = trace_for(default_stack, resp.headers["x-request-id"])
    assert trace["status"] == 200 and trace["output_tokens"] > 0 and trace["error"] is None
    session = cap["headers"].get("X-Claude-Code-Session-Id") or cap["headers"].get("session-id")
    if session:
        assert resp.headers["x-router-session"] == session
    if cap["body"].get("stream"):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert sse_frames(resp.content)


CLAUDE_CODE_NAMES = ("claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001", "claude-3-5-haiku-20241022",
                     "claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514")


@pytest.mark.parametrize("name", CLAUDE_CODE_NAMES)
def test_default_config_routes_every_claude_code_model_name(default_stack: Stack, name: str) -> None:
    body = {"model": name, "max_tokens": 256, "messages": [{"role": "user", "content": "fix the failing test"}],
            "tools": [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}]}
    resp = httpx.post(default_stack.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["type"] == "message" and resp.headers["x-router-model"] != name


@pytest.mark.parametrize("name", ["claude-haiku-4-5-20251001", "claude-3-5-haiku-20241022"])
def test_claude_code_background_haiku_calls_land_on_the_cheap_tier(default_stack: Stack, name: str) -> None:
    # The shape of Claude Code's side calls (a title, a summary): a haiku name, no tools, a small budget.
    body = {"model": name, "max_tokens": 512, "system": [{"type": "text", "text": "Write a 5-10 word title."}],
            "messages": [{"role": "user", "content": "the conversation so far: fix the login bug"}]}
    resp = httpx.post(default_stack.url + "/v1/messages", json=body,
                      headers={"anthropic-version": "2023-06-01", "x-claude-code-session-id": "bg-1"})
    assert resp.status_code == 200, resp.text[:300]
    tiers = {m.name: m.tier for m in default_stack.gateway.settings.models}
    assert tiers[resp.headers["x-router-model"]] == "cheap"
    decision = next(d for d, _ in default_stack.events.decisions
                    if d.decision_id == resp.headers["x-router-decision-id"])
    assert decision.route == "background" and decision.session_id == "bg-1"


def test_captured_haiku_request_is_routed_cheap(default_stack: Stack) -> None:
    resp, cap = _replay(default_stack, "claude_code_haiku_messages.json")
    assert resp.status_code == 200 and cap["body"]["model"].startswith("claude-haiku-")
    tiers = {m.name: m.tier for m in default_stack.gateway.settings.models}
    assert tiers[resp.headers["x-router-model"]] == "cheap"
