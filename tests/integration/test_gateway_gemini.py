"""The gateway's Gemini API over real HTTP, as gemini-cli's genai client calls it: the model list, one
model, token counting, keys by header or ``?key=``, errors in Google's shape (never text/plain), a
structured-output request answered with JSON through another dialect's provider, streams that end
with a finishReason, and the trace of a Gemini request."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _gateway_harness import Stack, make_settings, running_stack, sse_frames, trace_for

KEY = "wr-gemini-test-key-0123456789abcdef"
ASK = {"contents": [{"role": "user", "parts": [{"text": "What does utils.py do?"}]}]}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("gemini-keys")
    settings = make_settings(
        data_dir=str(data_dir),
        reliability={"keys": {"require_key": True, "reload_interval_s": 0}},
        virtual_keys=[{"name": "dev", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}],
    )
    with running_stack(settings) as st:
        yield st


def google_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == status and isinstance(err["message"], str) and err["status"].isupper()
    return err


def test_model_list_and_one_model(stack: Stack) -> None:
    listing = httpx.get(stack.url + "/v1beta/models").json()["models"]
    names = [m["name"] for m in listing]
    assert "models/m-gem" in names and "models/m-anth" in names and "models/router/auto" in names
    assert all("generateContent" in m["supportedGenerationMethods"] for m in listing)
    one = httpx.get(stack.url + "/v1beta/models/m-gem")
    assert one.status_code == 200 and one.json()["name"] == "models/m-gem"
    assert google_error(httpx.get(stack.url + "/v1beta/models/no-such-model"), 404)["status"] == "NOT_FOUND"


def test_generate_content_whole_and_streamed(stack: Stack) -> None:
    resp = httpx.post(stack.url + "/v1beta/models/m-anth:generateContent?key=any", json=ASK, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-router-model"] == "m-anth" and stack.last().dialect == "anthropic_messages"
    out = resp.json()
    assert out["candidates"][0]["finishReason"] == "STOP" and out["candidates"][0]["content"]["parts"][0]["text"]
    assert out["modelVersion"] == "m-anth" and out["usageMetadata"]["promptTokenCount"] > 0
    trace = trace_for(stack, resp.headers["x-request-id"])
    assert (trace["client_dialect"], trace["provider_dialect"], trace["model"], trace["status"]) == (
        "gemini", "anthropic_messages", "m-anth", 200)

    streamed = httpx.post(stack.url + "/v1beta/models/m-chat:streamGenerateContent?alt=sse", json=ASK,
                          headers={"x-goog-api-key": "any"}, timeout=30)  # fmt: skip
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(data) for _, data in sse_frames(streamed.content)]
    assert len(chunks) > 1 and all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] > 0


@pytest.mark.parametrize("model", ["m-chat", "m-resp", "m-anth", "m-gem"])
def test_structured_output_comes_back_as_json(stack: Stack, model: str) -> None:
    """gemini-cli's model classifier waits for JSON of its schema (types spelled the Gemini way)."""
    schema = {"type": "OBJECT", "properties": {"reasoning": {"type": "STRING"}, "model_choice": {"type": "STRING"}},
              "required": ["reasoning", "model_choice"]}  # fmt: skip
    body = {**ASK, "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}}
    resp = httpx.post(stack.url + f"/v1beta/models/{model}:generateContent", json=body,
                      headers={"x-goog-api-key": "any"}, timeout=30)  # fmt: skip
    assert resp.status_code == 200, resp.text
    answer = json.loads(resp.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert isinstance(answer, dict) and {"reasoning", "model_choice"} <= set(answer)
    assert all(isinstance(answer[k], str) for k in ("reasoning", "model_choice"))


def test_count_tokens(stack: Stack) -> None:
    resp = httpx.post(stack.url + "/v1beta/models/m-gem:countTokens", json=ASK)
    assert resp.status_code == 200 and resp.json()["totalTokens"] > 0
    wrapped = httpx.post(stack.url + "/v1beta/models/m-gem:countTokens", json={"generateContentRequest": ASK})
    assert wrapped.json()["totalTokens"] > 0
    google_error(httpx.post(stack.url + "/v1beta/models/m-gem:countTokens", json={}), 400)
    google_error(httpx.post(stack.url + "/v1beta/models/no-such-model:countTokens", json=ASK), 404)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1beta/models/no-such-model:generateContent", ASK, 404),
        ("/v1beta/models/m-gem:embedContent", ASK, 404),
        ("/v1beta/models/m-gem:generateContent", {"contents": []}, 400),
        ("/v1beta/models/m-gem:generateContent", {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}, 400),
        ("/v1beta/models/m-gem:streamGenerateContent?alt=sse", b"{not json", 400),
    ],
)
def test_errors_are_in_googles_shape(stack: Stack, path: str, body: Any, status: int) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = httpx.post(stack.url + path, content=content, headers={"content-type": "application/json"}, timeout=30)
    google_error(resp, status)


def test_checks_shared_by_every_dialect_name_gemini_fields(stack: Stack) -> None:
    huge = {**ASK, "generationConfig": {"maxOutputTokens": 10**12}}
    resp = httpx.post(stack.url + "/v1beta/models/m-gem:generateContent", json=huge, timeout=30)
    err = google_error(resp, 400)
    assert err["status"] == "INVALID_ARGUMENT" and err["message"].startswith("generationConfig.maxOutputTokens")


def test_an_upstream_error_reaches_a_gemini_client_in_googles_shape(stack: Stack) -> None:
    resp = httpx.post(stack.url + "/v1beta/models/m-chat:generateContent", json=ASK, timeout=30,
                      headers={"x-sim-fault": "error:503"})  # fmt: skip
    assert google_error(resp, 503)["status"] == "UNAVAILABLE"
    # And the dead provider: no answer at all is a 502 in the same shape.
    dead = httpx.post(stack.url + "/v1beta/models/m-dead:streamGenerateContent?alt=sse", json=ASK, timeout=30)
    google_error(dead, 502)


def test_key_by_header_or_query_parameter(keyed: Stack) -> None:
    path = "/v1beta/models/m-gem:generateContent"
    assert google_error(httpx.post(keyed.url + path, json=ASK), 401)["status"] == "UNAUTHENTICATED"
    wrong = httpx.post(keyed.url + path, json=ASK, headers={"x-goog-api-key": "wr-wrong-key-00000000000000"})
    assert "wr-wrong-key" not in google_error(wrong, 401)["message"]  # a presented key is never echoed
    assert httpx.post(keyed.url + path, json=ASK, headers={"x-goog-api-key": KEY}, timeout=30).status_code == 200
    assert httpx.post(keyed.url + path + f"?key={KEY}", json=ASK, timeout=30).status_code == 200
    assert google_error(httpx.get(keyed.url + "/v1beta/models"), 401)
    assert httpx.get(keyed.url + f"/v1beta/models?key={KEY}").status_code == 200
    assert google_error(httpx.post(keyed.url + "/v1beta/models/m-gem:countTokens", json=ASK), 401)


@pytest.mark.parametrize(
    ("model", "fault"),
    # Relayed bytes are checked event by event; a translating parser skips a line it cannot read.
    [("m-gem", "disconnect:2"), ("m-gem", "malformed:2"), ("m-chat", "disconnect:2"), ("m-anth", "disconnect:2"),
     ("m-resp", "disconnect:2")],
)
def test_a_stream_broken_upstream_ends_in_a_google_error_event(stack: Stack, model: str, fault: str) -> None:
    """Relayed (m-gem) or translated, a provider stream that breaks ends with Google's error object,
    after the chunks that arrived whole; never a silent end gemini-cli would take for an answer."""
    resp = httpx.post(stack.url + f"/v1beta/models/{model}:streamGenerateContent?alt=sse", json=ASK, timeout=30,
                      headers={"x-sim-fault": fault})  # fmt: skip
    assert resp.status_code == 200
    chunks = [json.loads(data) for _, data in sse_frames(resp.content)]
    assert chunks and "error" in chunks[-1], chunks
    assert chunks[-1]["error"]["code"] == 502 and chunks[-1]["error"]["status"] == "UNAVAILABLE"
    assert all("candidates" in c and "finishReason" not in c["candidates"][0] for c in chunks[:-1])


@pytest.mark.parametrize("fault", ["429:1", "503"])
def test_a_gemini_providers_error_reaches_other_clients_in_their_shape(stack: Stack, fault: str) -> None:
    status = int(fault.split(":")[0])
    chat = httpx.post(stack.url + "/v1/chat/completions", timeout=30, headers={"x-sim-fault": fault},
                      json={"model": "m-gem", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert chat.status_code == status and stack.last().dialect == "gemini"
    assert chat.json()["error"]["message"] and chat.json()["error"]["type"]
    anthropic = httpx.post(stack.url + "/v1/messages", timeout=30, headers={"x-sim-fault": fault},
                           json={"model": "m-gem", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert anthropic.status_code == status and anthropic.json()["type"] == "error"
    if status == 429:
        assert chat.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"input": "hi"}),
        ("/v1/messages", {"max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}),
    ],
    ids=["openai_chat", "openai_responses", "anthropic_messages"],
)
def test_a_gemini_stream_cut_short_is_an_error_event_for_other_clients(
    stack: Stack, path: str, body: dict[str, Any]
) -> None:
    resp = httpx.post(stack.url + path, json={**body, "model": "m-gem", "stream": True}, timeout=30,
                      headers={"x-sim-fault": "disconnect:2"})  # fmt: skip
    assert resp.status_code == 200 and stack.last().dialect == "gemini"
    event, data = sse_frames(resp.content)[-1]
    last = json.loads(data)
    assert "error" in last or event in ("error", "response.failed"), (event, last)


@pytest.mark.parametrize("model", ["m-gem", "m-chat"])
def test_streamed_usage_reaches_the_trace(stack: Stack, model: str) -> None:
    """Relayed (read off the bytes) or translated, the trace counts what the last chunk says."""
    resp = httpx.post(stack.url + f"/v1beta/models/{model}:streamGenerateContent?alt=sse", json=ASK, timeout=30)
    usage = json.loads(sse_frames(resp.content)[-1][1])["usageMetadata"]
    trace = trace_for(stack, resp.headers["x-request-id"])
    assert trace["input_tokens"] == usage["promptTokenCount"] > 0
    assert trace["output_tokens"] == usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0) > 0
    assert trace["stream"] is True and trace["cost_usd"] > 0
