"""Fuzz the gateway's HTTP layer in-process (httpx ASGITransport -> create_app -> real router -> the
simulated provider on loopback): arbitrary bytes, arbitrary JSON, near-valid requests of every dialect,
deep nesting and invalid UTF-8, with odd headers. Whatever arrives, the gateway never answers 500 (nor raises out of the app), and every
refusal is JSON. ``test_fuzz_wire`` does the same on a real socket, below the ASGI layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.config import Settings
from streams.ingress.app import create_app
from streams.ingress.gateway import Gateway
from streams.providers.client import UpstreamClient
from streams.providers.sim.config import SimConfig
from streams.providers.sim.server import running_sim
from streams.routing.router import Router
from tests.fuzz._fuzz import DERANDOMIZE, EXAMPLES, json_values, near_valid

MODELS = ["m-chat", "m-resp", "m-anth", "m-multi", "router/auto", "nope"]
POST_PATHS = {
    "/v1/chat/completions": "openai_chat",
    "/v1/responses": "openai_responses",
    "/v1/messages": "anthropic_messages",
    "/v1/messages/count_tokens": "anthropic_messages",
    "/v1/route": "openai_chat",
    "/v1beta/models/m-chat:generateContent": "gemini",
    "/v1beta/models/router/auto:streamGenerateContent?alt=sse": "gemini",
    "/v1beta/models/m-chat:countTokens": "gemini",
}


def gateway_settings() -> Settings:
    return Settings.model_validate({
        "server": {"max_body_bytes": 64 * 1024},
        "providers": [
            {"name": "p-chat", "dialect": "openai_chat", "base_url": "sim"},
            {"name": "p-resp", "dialect": "openai_responses", "base_url": "sim"},
            {"name": "p-anth", "dialect": "anthropic_messages", "base_url": "sim"},
            {"name": "p-dead", "dialect": "openai_chat", "base_url": "http://127.0.0.1:9/v1", "connect_timeout_s": 1},
        ],
        "models": [
            {"name": "m-chat", "provider": "p-chat", "price_in": 0.25, "price_out": 2.0, "tier": "cheap"},
            {"name": "m-resp", "provider": "p-resp", "price_in": 1.25, "price_out": 10.0},
            {"name": "m-anth", "provider": "p-anth", "price_in": 5.0, "price_out": 25.0, "tier": "frontier"},
            {"name": "m-multi", "provider": ["p-dead", "p-chat"], "upstream_model": "m-chat"},
        ],
        "routing": {"auto_models": ["router/auto"], "default_model": "m-anth"},
    })


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@st.composite
def http_request(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    path = draw(st.sampled_from([*POST_PATHS, "/v1/models", "/v1beta/models", "/health", "/"]))
    if path not in POST_PATHS:
        return "GET", path, b"", {}
    kind = draw(st.sampled_from(["near_valid", "near_valid", "near_valid", "json", "bytes", "truncated", "deep",
                                 "invalid_utf8"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "deep":
        depth = draw(st.sampled_from([129, 2_000, 30_000]))
        body = b'{"model": "m-chat", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    else:
        doc = draw(near_valid(POST_PATHS[path], MODELS))
        body = json.dumps(doc).encode()
        if kind == "truncated":
            body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
        elif kind == "invalid_utf8":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + body[at:]
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["content-type"] = draw(st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]))
    auth = draw(st.sampled_from(["none", "x-api-key", "bearer", "odd"]))
    if auth == "x-api-key":
        headers["x-api-key"] = draw(header_text)
    elif auth == "bearer":
        headers["authorization"] = "Bearer " + draw(header_text)
    elif auth == "odd":
        headers["authorization"] = draw(header_text)
    for name in ("x-claude-code-session-id", "session-id", "anthropic-beta", "x-test-route"):
        if draw(st.integers(0, 5)) == 0:
            headers[name] = draw(header_text)
    return "POST", path, body, headers


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def test_fuzz_http_never_500(loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]) -> None:
    stack = contextlib.AsyncExitStack()
    s = gateway_settings()
    sim_url = loop.run_until_complete(
        stack.enter_async_context(running_sim(SimConfig(ttft_ms=0, tokens_per_s=0, reply_tokens=8, chunk_tokens=4)))
    )
    gateway = Gateway(s, Router(s), UpstreamClient(sim_url))
    loop.run_until_complete(gateway.start())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://gw")
    statuses: dict[int, int] = {}

    async def call(method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with asyncio.timeout(30):
            return await client.request(method, path, content=body, headers=headers)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(req=http_request())
    def run(req: tuple[str, str, bytes, dict[str, str]]) -> None:
        resp = loop.run_until_complete(call(*req))
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        assert resp.status_code != 500, (req, resp.text[:500])
        assert 100 <= resp.status_code < 600
        if resp.status_code >= 400:  # every refusal in a dialect's JSON shape, never plain text
            assert resp.headers.get("content-type", "").startswith("application/json"), (req, resp.text[:300])
            assert "message" in resp.text, (req, resp.text[:300])

    try:
        run()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(gateway.close())
        loop.run_until_complete(stack.aclose())
    tried = sum(statuses.values())
    with capsys.disabled():
        print(f"\n[fuzz] HTTP gateway: {tried} requests, statuses {dict(sorted(statuses.items()))}")
    assert tried >= min(EXAMPLES, 50)
    assert statuses.get(200, 0) > 0  # the near-valid share really gets answered
