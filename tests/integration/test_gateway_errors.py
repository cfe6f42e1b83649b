"""Bad input, unknown models, upstream errors, failover and broken streams: every failure reaches the
client in its own dialect (checked with the official SDKs' exception classes) with the right status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from _gateway_harness import DIALECTS, MODEL_FOR, Stack, running_stack, sse_frames, trace_for

PATH = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses", "anthropic_messages": "/v1/messages"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


@pytest.fixture(scope="module")
def oai(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)


@pytest.fixture(scope="module")
def anth(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="k", base_url=stack.url, max_retries=0)


def body_for(dialect: str, model: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    if dialect == "openai_chat":
        return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if dialect == "openai_responses":
        return {"model": model, "input": text, **extra}
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}], **extra}


def sdk_post(oai: openai.OpenAI, anth: anthropic.Anthropic, dialect: str, body: dict[str, Any],
             headers: dict[str, str] | None = None) -> Any:
    """A raw POST through the SDK, so its error mapping (status -> exception class) is what is tested."""
    opts = {"headers": headers} if headers else {}
    if dialect == "anthropic_messages":
        return anth.post("/v1/messages", body=body, cast_to=object, options=opts)
    return oai.post(PATH[dialect][3:], body=body, cast_to=object, options=opts)


def assert_dialect_error(dialect: str, resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status
    body = resp.json()
    if dialect == "anthropic_messages":
        assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"]
        return body["error"]
    assert body["error"]["message"] and body["error"]["type"]
    return body["error"]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_malformed_json_is_400_in_dialect(stack: Stack, dialect: str) -> None:
    resp = httpx.post(stack.url + PATH[dialect], content=b'{"model": "m-chat", "messages": [',
                      headers={"content-type": "application/json"})
    err = assert_dialect_error(dialect, resp, 400)
    assert "JSON" in err["message"]
    resp = httpx.post(stack.url + PATH[dialect], json=["not", "an", "object"])
    assert_dialect_error(dialect, resp, 400)


WRONG_TYPES = {
    "openai_chat": ({"model": "m-chat", "messages": "hello"}, "messages"),
    "openai_responses": ({"model": "m-chat", "input": 42}, "input"),
    "anthropic_messages": ({"model": "m-chat", "max_tokens": "lots", "messages": [{"role": "user", "content": "x"}]},
                           "max_tokens"),
}
MISSING = {
    "openai_chat": ({"model": "m-chat"}, "messages"),
    "openai_responses": ({"input": "hi"}, "model"),
    "anthropic_messages": ({"model": "m-chat", "max_tokens": 10}, "messages"),
}


@pytest.mark.parametrize("case", ["wrong_type", "missing"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_invalid_fields_are_400_naming_the_field(oai: openai.OpenAI, anth: anthropic.Anthropic, stack: Stack,
                                                 dialect: str, case: str) -> None:
    body, field = (WRONG_TYPES if case == "wrong_type" else MISSING)[dialect]
    cls = anthropic.BadRequestError if dialect == "anthropic_messages" else openai.BadRequestError
    sent_before = len(stack.client.records)
    with pytest.raises(cls) as info:
        sdk_post(oai, anth, dialect, body)
    assert info.value.status_code == 400
    assert field in str(info.value)
    assert len(stack.client.records) == sent_before  # refused without calling any provider


@pytest.mark.parametrize("dialect", DIALECTS)
def test_oversize_body_is_413(oai: openai.OpenAI, anth: anthropic.Anthropic, dialect: str) -> None:
    big = body_for(dialect, "m-chat", "x" * 300_000)  # the test limit is 256 KiB
    errors = anthropic.APIStatusError if dialect == "anthropic_messages" else openai.APIStatusError
    with pytest.raises(errors) as info:
        sdk_post(oai, anth, dialect, big)
    assert info.value.status_code == 413


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unknown_model_is_404(oai: openai.OpenAI, anth: anthropic.Anthropic, dialect: str) -> None:
    cls = anthropic.NotFoundError if dialect == "anthropic_messages" else openai.NotFoundError
    with pytest.raises(cls) as info:
        sdk_post(oai, anth, dialect, body_for(dialect, "no-such-model"))
    assert info.value.status_code == 404 and "model 'no-such-model' not found" in str(info.value)


# --- upstream errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_dialect", DIALECTS)
@pytest.mark.parametrize("client_dialect", DIALECTS)
def test_upstream_5xx_keeps_status_in_client_dialect(
    oai: openai.OpenAI, anth: anthropic.Anthropic, stack: Stack, client_dialect: str, provider_dialect: str
) -> None:
    body = body_for(client_dialect, MODEL_FOR[provider_dialect])
    cls = anthropic.InternalServerError if client_dialect == "anthropic_messages" else openai.InternalServerError
    with pytest.raises(cls) as info:
        sdk_post(oai, anth, client_dialect, body, {"x-sim-fault": "503"})
    assert info.value.status_code == 503
    assert "simulated upstream error" in str(info.value)
    assert info.value.response.headers["x-router-provider"] == f"p-{MODEL_FOR[provider_dialect][2:]}"


@pytest.mark.parametrize("client_dialect", DIALECTS)
def test_upstream_429_and_400(oai: openai.OpenAI, anth: anthropic.Anthropic, client_dialect: str) -> None:
    body = body_for(client_dialect, "m-resp")
    rate = anthropic.RateLimitError if client_dialect == "anthropic_messages" else openai.RateLimitError
    with pytest.raises(rate) as info:
        sdk_post(oai, anth, client_dialect, body, {"x-sim-fault": "429:3"})
    assert info.value.status_code == 429 and info.value.response.headers["retry-after"] == "3"
    bad = anthropic.BadRequestError if client_dialect == "anthropic_messages" else openai.BadRequestError
    with pytest.raises(bad):
        sdk_post(oai, anth, client_dialect, body, {"x-sim-fault": "400"})


def test_upstream_timeout_is_504() -> None:
    settings = __import__("_gateway_harness").make_settings()
    for p in settings.providers:
        p.first_byte_timeout_s = 0.3
        p.idle_timeout_s = 5
    with running_stack(settings) as st:
        resp = httpx.post(st.url + "/v1/chat/completions", json=body_for("openai_chat", "m-chat"),
                          headers={"x-sim-fault": "timeout:3"}, timeout=10)
        assert_dialect_error("openai_chat", resp, 504)


# --- failover before the first byte ---------------------------------------------------------------


def test_multi_homed_model_fails_over_to_its_next_provider(oai: openai.OpenAI, stack: Stack) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="m-multi", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-router-provider"] == "p-chat" and raw.headers["x-router-model"] == "m-multi"
    trace = trace_for(stack, raw.headers["x-request-id"])
    assert trace["attempts"] == 2 and trace["status"] == 200


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_model_in_another_dialect(oai: openai.OpenAI, stack: Stack, stream: bool) -> None:
    headers = {"x-test-route": "m-dead,m-resp"}
    msgs = [{"role": "user", "content": "hi"}]
    if stream:
        raw = oai.chat.completions.with_raw_response.create(model="router/auto", messages=msgs, extra_headers=headers,
                                                            stream=True)
        resp_headers = raw.headers
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        raw = oai.chat.completions.with_raw_response.create(model="router/auto", messages=msgs, extra_headers=headers)
        resp_headers = raw.headers
        text = raw.parse().choices[0].message.content
    assert text
    assert resp_headers["x-router-model"] == "m-resp" and resp_headers["x-router-provider"] == "p-resp"
    trace = trace_for(stack, resp_headers["x-request-id"])
    assert (trace["model"], trace["provider_dialect"], trace["attempts"]) == ("m-resp", "openai_responses", 2)


def test_fallback_after_upstream_503(anth: anthropic.Anthropic, stack: Stack) -> None:
    # One 503 for m-chat only, then the fallback model answers.
    httpx.post(stack.sim_url + "/sim/faults", json={"kind": "error", "status": 503, "model": "m-chat", "count": 1})
    raw = anth.messages.with_raw_response.create(
        model="router/auto", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-test-route": "m-chat,m-anth"})
    assert raw.parse().content[0].text and raw.headers["x-router-model"] == "m-anth"
    assert [r.status for r in stack.client.records[-2:]] == [503, 200]


def test_all_candidates_down_is_502(anth: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        anth.messages.create(model="m-dead", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502 and "p-dead" in str(info.value)


# --- errors after the first byte ------------------------------------------------------------------


def _stream_raw(stack: Stack, dialect: str, model: str, headers: dict[str, str]) -> tuple[bytes, str]:
    body = body_for(dialect, model, stream=True)
    with httpx.stream("POST", stack.url + PATH[dialect], json=body, headers=headers, timeout=10) as resp:
        assert resp.status_code == 200
        return resp.read(), resp.headers["x-request-id"]


@pytest.mark.parametrize("provider_dialect", DIALECTS)
@pytest.mark.parametrize("client_dialect", DIALECTS)
def test_mid_stream_disconnect_ends_with_clean_error_event(stack: Stack, client_dialect: str,
                                                           provider_dialect: str) -> None:
    raw, request_id = _stream_raw(stack, client_dialect, MODEL_FOR[provider_dialect], {"x-sim-fault": "disconnect:4"})
    frames = sse_frames(raw)
    if client_dialect == "anthropic_messages":
        assert frames[-1][0] == "error" and '"type":"error"' in frames[-1][1].replace(" ", "")
    elif client_dialect == "openai_responses":
        assert any(ev == "error" for ev, _ in frames) and frames[-1][0] == "response.failed"
    else:
        assert '"error"' in frames[-1][1]
    trace = trace_for(stack, request_id)
    assert trace["status"] == 502 and trace["error"]


def test_anthropic_sdk_raises_on_mid_stream_error(anth: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError), anth.messages.stream(
        model="m-chat", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-sim-fault": "disconnect:4"},
    ) as s:
        s.get_final_message()


def test_client_disconnect_stops_the_upstream_stream(stack: Stack) -> None:
    body = body_for("anthropic_messages", "m-chat", stream=True)
    with httpx.stream("POST", stack.url + "/v1/messages", json=body, headers={"x-sim-fault": "slow:20"}) as resp:
        next(resp.iter_raw())  # the stream started; now hang up
        request_id = resp.headers["x-request-id"]
    trace = trace_for(stack, request_id, timeout_s=5)
    assert trace["status"] == 499 and trace["latency_ms"] < 2000  # a full slow stream takes > 2 s
