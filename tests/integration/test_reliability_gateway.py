"""The reliability layer through the real gateway and the real simulated provider on loopback: virtual
keys (401/403/revocation), rate limits and budgets (429/402), the concurrency cap (503/529), circuit
breakers with failover and recovery, 429-driven load moving between providers, slow clients (408), and
upstream keys never leaking into logs, traces or error bodies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from _gateway_harness import DIALECTS, Stack, make_settings, running_stack, trace_for

from streams.reliability.keys import KeyStore

PATH = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses", "anthropic_messages": "/v1/messages"}

DEV_KEY = "wr-dev-key-0123456789abcdefghij"
CHAT_ONLY_KEY = "wr-chat-only-0123456789abcdefgh"
DISABLED_KEY = "wr-disabled-0123456789abcdefghi"
LIMITED_KEY = "wr-limited-0123456789abcdefghij"
BUDGET_KEY = "wr-budget-0123456789abcdefghijk"

PROVIDERS: list[dict[str, Any]] = [
    {"name": "p-chat", "dialect": "openai_chat", "base_url": "sim"},
    {"name": "p-resp", "dialect": "openai_responses", "base_url": "sim"},
    {"name": "p-anth", "dialect": "anthropic_messages", "base_url": "sim"},
]
MODELS: list[dict[str, Any]] = [
    {"name": "m-chat", "provider": "p-chat", "price_in": 0.25, "price_out": 2.0},
    {"name": "m-resp", "provider": "p-resp", "price_in": 1.25, "price_out": 10.0},
    {"name": "m-anth", "provider": "p-anth", "price_in": 5.0, "price_out": 25.0, "tier": "frontier"},
]


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def body_for(dialect: str, model: str, **extra: Any) -> dict[str, Any]:
    if dialect == "openai_chat":
        return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    if dialect == "openai_responses":
        return {"model": model, "input": "hello", **extra}
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}], **extra}


def post(st: Stack, dialect: str, model: str, key: str | None, headers: dict[str, str] | None = None,
         **extra: Any) -> httpx.Response:
    h = dict(headers or {})
    if key is not None:
        h["x-api-key" if dialect == "anthropic_messages" else "authorization"] = (
            key if dialect == "anthropic_messages" else f"Bearer {key}")
    return httpx.post(st.url + PATH[dialect], json=body_for(dialect, model, **extra), headers=h, timeout=15)


def error_of(dialect: str, resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    if dialect == "anthropic_messages":
        assert body["type"] == "error"
    return body["error"]


# --- virtual keys, limits, budgets -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("keys")
    settings = make_settings(
        data_dir=str(data_dir),
        server={"max_body_bytes": 256 * 1024, "read_timeout_s": 0.5},
        reliability={"keys": {"require_key": True, "reload_interval_s": 0}},
        virtual_keys=[
            {"name": "dev", "key_sha256": sha(DEV_KEY)},
            {"name": "chat-only", "key_sha256": sha(CHAT_ONLY_KEY), "models": ["m-chat"]},
            {"name": "disabled", "key_sha256": sha(DISABLED_KEY), "disabled": True},
            {"name": "limited", "key_sha256": sha(LIMITED_KEY), "requests_per_min": 2},
            {"name": "budget", "key_sha256": sha(BUDGET_KEY), "usd_per_day": 1e-9},
        ],
    )
    with running_stack(settings) as st:
        yield st


@pytest.mark.parametrize("dialect", DIALECTS)
def test_key_required_is_401_in_dialect(keyed: Stack, dialect: str) -> None:
    for key in (None, "wr-not-a-real-key-000000000000000", DISABLED_KEY):
        resp = post(keyed, dialect, "m-chat", key)
        assert resp.status_code == 401
        err = error_of(dialect, resp)
        assert err["type"] == ("authentication_error" if dialect == "anthropic_messages" else err["type"])
        if key:
            assert key not in resp.text  # a presented key is never echoed
    assert post(keyed, dialect, "m-chat", DEV_KEY).status_code == 200


def test_sdks_see_authentication_errors(keyed: Stack) -> None:
    oai = openai.OpenAI(api_key="wrong", base_url=keyed.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model="m-chat", messages=[{"role": "user", "content": "hi"}])
    anth = anthropic.Anthropic(api_key="wrong", base_url=keyed.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        anth.messages.create(model="m-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    # The auxiliary endpoints are behind the key too.
    assert httpx.get(keyed.url + "/v1/models").status_code == 401
    assert httpx.get(keyed.url + "/v1/models", headers={"authorization": f"Bearer {DEV_KEY}"}).status_code == 200
    assert httpx.post(keyed.url + "/v1/route", json=body_for("openai_chat", "m-chat")).status_code == 401
    assert httpx.get(keyed.url + "/health").status_code == 200  # probes stay open


@pytest.mark.parametrize("dialect", DIALECTS)
def test_key_scoped_to_other_models_is_403(keyed: Stack, dialect: str) -> None:
    resp = post(keyed, dialect, "m-anth", CHAT_ONLY_KEY)
    assert resp.status_code == 403
    err = error_of(dialect, resp)
    assert "m-anth" in err["message"]
    if dialect == "anthropic_messages":
        assert err["type"] == "permission_error"
    ok = post(keyed, dialect, "m-chat", CHAT_ONLY_KEY)
    assert ok.status_code == 200
    assert trace_for(keyed, ok.headers["x-request-id"])["key_id"] == "cfg:chat-only"


def test_revoked_key_is_refused_without_restart(keyed: Stack) -> None:
    store = KeyStore.from_settings(keyed.gateway.settings)
    plain, key = store.create("temp")
    assert post(keyed, "openai_chat", "m-chat", plain).status_code == 200
    store.revoke(key.id)
    resp = post(keyed, "openai_chat", "m-chat", plain)
    assert resp.status_code == 401 and "revoked" in error_of("openai_chat", resp)["message"]
    assert plain not in resp.text


def test_rate_limit_is_429_with_retry_after_in_each_dialect(keyed: Stack) -> None:
    # 2 requests per minute: two pass, then every dialect is told to come back later, in its own shape.
    assert post(keyed, "openai_chat", "m-chat", LIMITED_KEY).status_code == 200
    assert post(keyed, "openai_chat", "m-chat", LIMITED_KEY).status_code == 200
    for dialect in DIALECTS:
        resp = post(keyed, dialect, "m-chat", LIMITED_KEY)
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) >= 1
        err = error_of(dialect, resp)
        assert err["type"] == ("rate_limit_error" if dialect == "anthropic_messages" else "rate_limit_exceeded")
        assert "requests per minute" in err["message"]
    anth = anthropic.Anthropic(api_key=LIMITED_KEY, base_url=keyed.url, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        anth.messages.create(model="m-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_budget_exceeded_is_402(keyed: Stack) -> None:
    assert post(keyed, "anthropic_messages", "m-chat", BUDGET_KEY).status_code == 200
    limits = keyed.gateway.reliability.limits
    deadline = time.monotonic() + 3
    while limits.spend("cfg:budget")["usd_today"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # spend is charged just after the response's last byte
    for dialect in DIALECTS:
        resp = post(keyed, dialect, "m-chat", BUDGET_KEY)
        assert resp.status_code == 402 and "retry-after" in resp.headers
        err = error_of(dialect, resp)
        assert err["type"] == ("billing_error" if dialect == "anthropic_messages" else "insufficient_quota")
        assert "budget" in err["message"]


def test_slow_client_body_is_408(keyed: Stack) -> None:
    host, port = keyed.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"authorization: Bearer " + DEV_KEY.encode() + b"\r\ncontent-length: 100\r\n\r\n{\"model\"")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 408")
    assert b"not received within" in data


# --- concurrency cap -----------------------------------------------------------------------------------


def test_concurrency_cap_sheds_a_burst_without_deadlock() -> None:
    settings = make_settings(
        server={"max_body_bytes": 256 * 1024, "max_concurrency": 2},
        reliability={"concurrency": {"max_queue": 1, "queue_timeout_s": 5, "overload_status": 529}},
    )
    with running_stack(settings) as st:

        async def burst(dialect: str, n: int) -> list[httpx.Response]:
            h = {"x-sim-fault": "timeout:0.6"}  # each admitted request holds its slot ~0.6 s
            async with httpx.AsyncClient(timeout=15) as c:
                return list(await asyncio.wait_for(asyncio.gather(*[
                    c.post(st.url + PATH[dialect], json=body_for(dialect, "m-chat"), headers=h) for _ in range(n)
                ]), 20))

        for dialect, shed_status in (("anthropic_messages", 529), ("openai_chat", 503)):
            t0 = time.monotonic()
            out = asyncio.run(burst(dialect, 6))
            statuses = sorted(r.status_code for r in out)
            assert statuses.count(200) == 3, statuses  # 2 in flight + 1 queued
            shed = [r for r in out if r.status_code != 200]
            assert len(shed) == 3 and all(r.status_code == shed_status for r in shed)
            assert all(int(r.headers["retry-after"]) >= 1 for r in shed)
            if dialect == "anthropic_messages":
                assert all(error_of(dialect, r)["type"] == "overloaded_error" for r in shed)
            assert time.monotonic() - t0 < 5  # shed fast, queued one served after the first slot frees
        assert st.gateway.reliability.concurrency.active == 0  # no slot leaked
        assert post(st, "openai_chat", "m-chat", None).status_code == 200


# --- circuit breaker, failover, recovery ------------------------------------------------------------


def test_breaker_opens_on_5xx_storm_fails_over_then_recovers() -> None:
    settings = make_settings(reliability={
        "breaker": {"min_requests": 4, "error_rate": 0.5, "open_s": 0.5, "close_after": 1, "window_s": 10,
                    "latency_spike_factor": None},
    })
    route = {"x-test-route": "m-chat,m-resp"}
    with running_stack(settings) as st:
        httpx.post(st.sim_url + "/sim/faults", json={"kind": "503", "count": 4, "model": "m-chat"})
        for _ in range(4):  # each: m-chat answers 503, the fallback model answers
            resp = post(st, "openai_chat", "router/auto", None, route)
            assert resp.status_code == 200 and resp.headers["x-router-model"] == "m-resp"
        health = httpx.get(st.url + "/health").json()
        assert health["status"] == "degraded"
        assert health["components"]["breaker:p-chat/m-chat"] == "down"
        assert [b["name"] for b in health["breakers"]] == ["p-chat/m-chat"]
        assert st.gateway.reliability.provider_states()["p-chat"] == "open"
        # Open: m-chat is not even tried any more.
        sent = len(st.client.records)
        resp = post(st, "anthropic_messages", "router/auto", None, route)
        assert resp.status_code == 200 and resp.headers["x-router-model"] == "m-resp"
        assert [r.provider for r in st.client.records[sent:]] == ["p-resp"]
        assert trace_for(st, resp.headers["x-request-id"])["attempts"] == 1
        # Asking for m-chat alone: fail fast, in dialect, with when to come back.
        resp = post(st, "anthropic_messages", "m-chat", None)
        assert resp.status_code == 503 and error_of("anthropic_messages", resp)["type"] == "overloaded_error"
        assert "circuit open" in resp.json()["error"]["message"] and "retry-after" in resp.headers
        refused = trace_for(st, resp.headers["x-request-id"])
        assert (refused["status"], refused["attempts"]) == (503, 0)  # nothing was sent upstream
        # After the cool-down: one probe (the storm is over) closes it again.
        time.sleep(0.6)
        assert httpx.get(st.url + "/health").json()["components"]["breaker:p-chat/m-chat"] == "degraded"
        resp = post(st, "openai_chat", "router/auto", None, route)
        assert resp.status_code == 200 and resp.headers["x-router-model"] == "m-chat"
        health = httpx.get(st.url + "/health").json()
        assert "breaker:p-chat/m-chat" not in health["components"] and health["status"] == "ok"


def test_429_moves_load_to_the_other_provider() -> None:
    settings = make_settings(
        models=[*MODELS, {"name": "m-mh", "provider": ["p-chat", "p-anth"], "upstream_model": "m-chat"}],
        providers=PROVIDERS,
        reliability={"balancer": {"explore": 0}},
    )
    with running_stack(settings) as st:
        httpx.post(st.sim_url + "/sim/faults",
                   json={"kind": "rate_limit", "retry_after": 30, "count": 1, "model": "m-chat",
                         "dialect": "openai_chat"})
        resp = post(st, "openai_chat", "m-mh", None)
        assert resp.status_code == 200 and resp.headers["x-router-provider"] == "p-anth"
        assert [(r.provider, r.status) for r in st.client.records] == [("p-chat", 429), ("p-anth", 200)]
        sent = len(st.client.records)
        for dialect in DIALECTS:
            resp = post(st, dialect, "m-mh", None)
            assert resp.status_code == 200 and resp.headers["x-router-provider"] == "p-anth"
        assert {r.provider for r in st.client.records[sent:]} == {"p-anth"}  # p-chat is cooling down


def test_stream_broken_before_first_byte_fails_over() -> None:
    with running_stack() as st:
        # The first provider's stream dies before its first event: nothing reached the client yet.
        httpx.post(st.sim_url + "/sim/faults",
                   json={"kind": "disconnect", "after_chunks": 0, "count": 1, "model": "m-chat"})
        body = body_for("openai_chat", "router/auto", stream=True)
        with httpx.stream("POST", st.url + PATH["openai_chat"], json=body,
                          headers={"x-test-route": "m-chat,m-resp"}, timeout=10) as resp:
            raw = resp.read()
            assert resp.status_code == 200 and resp.headers["x-router-model"] == "m-resp"
        assert b"[DONE]" in raw and b"error" not in raw
        trace = trace_for(st, resp.headers["x-request-id"])
        assert trace["attempts"] == 2 and trace["status"] == 200 and trace["error"] is None


# --- upstream keys never leak ---------------------------------------------------------------------------

SECRET = "upstream-secret-value-7f3a9c2e51"


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """A provider that quotes the key it was given in its error body, as real ones do on a bad key."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", "0")))
        auth = self.headers.get("authorization", "")
        status = 401 if "401" in self.path or self.headers.get("x-want") == "401" else 500
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_request_error"}})
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_upstream_keys_never_in_logs_or_errors(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WEAVE_TEST_UPSTREAM_KEY", SECRET)
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{echo.server_address[1]}/v1"
        providers = [
            {"name": "p-echo", "dialect": "openai_chat", "base_url": url, "api_key_env": "WEAVE_TEST_UPSTREAM_KEY"},
            {"name": "p-down", "dialect": "openai_chat", "base_url": "http://127.0.0.1:9/v1",
             "api_key_env": "WEAVE_TEST_UPSTREAM_KEY", "connect_timeout_s": 1},
            {"name": "p-simk", "dialect": "anthropic_messages", "base_url": "sim",
             "api_key_env": "WEAVE_TEST_UPSTREAM_KEY"},
        ]
        models = [
            {"name": "m-echo", "provider": "p-echo"},
            {"name": "m-down", "provider": "p-down"},
            {"name": "m-anth", "provider": "p-simk", "tier": "frontier"},
        ]
        settings = make_settings(providers=providers, models=models)
        caplog.set_level(logging.DEBUG)
        with running_stack(settings) as st:
            texts: list[str] = []
            for dialect in DIALECTS:
                for model, hdrs in (("m-echo", {}), ("m-echo", {"x-want": "401"}), ("m-down", {}),
                                    ("m-anth", {"x-sim-fault": "503"})):
                    for stream in (False, True):
                        resp = post(st, dialect, model, "client-key", hdrs, stream=stream)
                        assert resp.status_code >= 400
                        texts.append(resp.text + json.dumps(dict(resp.headers)))
            assert any("[REDACTED]" in t for t in texts)  # the echoed key was there, and was removed
            assert any(r.provider == "p-echo" and SECRET in r.headers.get("authorization", "")
                       for r in st.client.records)  # the key did go upstream
            time.sleep(0.1)
            traces = json.dumps(list(st.events.traces), default=str)
    finally:
        echo.shutdown()
        echo.server_close()
    assert all(SECRET not in t for t in texts)
    assert SECRET not in traces
    assert SECRET not in caplog.text
