"""Prompt caching across translation: a session's second turn on a translated route reads the
provider's cache, and the caller sees it in its own dialect's usage fields.

The simulated provider caches as the real APIs do: OpenAI by ``prompt_cache_key`` (the shared
prefix of the previous request with that key), Anthropic up to ``cache_control`` breakpoints. So a
cached count on turn 2 only appears when the gateway gave the target its caching mechanism."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _gateway_harness import Stack, running_stack, sse_frames

# A long, stable prefix (system prompt and tools), as coding agents send.
SYSTEM = "You are a careful coding agent working in a Python repository. " * 60
TOOL_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


def post(st: Stack, path: str, body: dict[str, Any], session: str, **headers: str) -> httpx.Response:
    resp = httpx.post(st.url + path, json=body, headers={**HEADERS, "x-router-session": session, **headers},
                      timeout=30)
    assert resp.status_code == 200, resp.text
    return resp


def sent(st: Stack) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(st.last().body)
    return body


# ---------------------------------------------------------------- Anthropic caller -> OpenAI targets


def anthropic_body(turns: list[str], stream: bool = False) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = []
    for i, text in enumerate(turns):
        if i:
            msgs.append({"role": "assistant", "content": f"Done step {i}."})
        msgs.append({"role": "user", "content": text})
    return {"model": "router/auto", "max_tokens": 1024, "system": SYSTEM, "messages": msgs, "stream": stream,
            "tools": [{"name": "read_file", "description": "Read a file", "input_schema": TOOL_SCHEMA}]}


def anthropic_usage(resp: httpx.Response, stream: bool) -> dict[str, Any]:
    if not stream:
        usage: dict[str, Any] = resp.json()["usage"]
        return usage
    merged: dict[str, Any] = {}
    for _, data in sse_frames(resp.content):
        ev = json.loads(data)
        if ev.get("type") == "message_start":
            merged.update(ev["message"]["usage"])
        elif ev.get("type") == "message_delta":
            merged.update(ev["usage"])
    return merged


@pytest.mark.parametrize("target", ["m-resp", "m-chat"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_caller_on_an_openai_model_reads_the_cache_on_turn_2(stack: Stack, target: str, stream: bool) -> None:
    session = f"claude-{target}-{stream}"
    first = post(stack, "/v1/messages", anthropic_body(["Read utils.py"], stream), session, **{"x-test-route": target})
    key = sent(stack)["prompt_cache_key"]
    assert anthropic_usage(first, stream)["cache_read_input_tokens"] == 0
    second = post(stack, "/v1/messages", anthropic_body(["Read utils.py", "Now fix it"], stream), session,
                  **{"x-test-route": target})
    # one key per session, stable across turns, and not the client's session id itself
    assert sent(stack)["prompt_cache_key"] == key and session not in key
    usage = anthropic_usage(second, stream)
    assert usage["cache_read_input_tokens"] > 0
    assert usage["input_tokens"] > 0  # Anthropic's input_tokens leaves the cached part out


def test_two_sessions_get_two_cache_keys(stack: Stack) -> None:
    post(stack, "/v1/messages", anthropic_body(["Read a.py"]), "session-a", **{"x-test-route": "m-resp"})
    a = sent(stack)["prompt_cache_key"]
    post(stack, "/v1/messages", anthropic_body(["Read a.py"]), "session-b", **{"x-test-route": "m-resp"})
    assert sent(stack)["prompt_cache_key"] != a


def test_same_dialect_cache_control_is_relayed_and_read(stack: Stack) -> None:
    body = anthropic_body(["Read utils.py"])
    body["system"] = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    first = post(stack, "/v1/messages", body, "claude-native", **{"x-test-route": "m-anth"})
    assert sent(stack)["system"] == body["system"]
    assert first.json()["usage"]["cache_creation_input_tokens"] > 0
    second = post(stack, "/v1/messages", {**anthropic_body(["Read utils.py", "Fix it"]), "system": body["system"]},
                  "claude-native", **{"x-test-route": "m-anth"})
    assert second.json()["usage"]["cache_read_input_tokens"] > 0


# ---------------------------------------------------------------- OpenAI / Gemini callers -> Anthropic


def responses_body(turns: list[str], stream: bool = False, tag: str = "") -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i, text in enumerate(turns):
        if i:
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": f"Done step {i}."}]})
        items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    return {"model": "router/auto", "instructions": SYSTEM + tag, "input": items, "store": False, "stream": stream,
            "prompt_cache_key": "codex-thread-1",
            "tools": [{"type": "function", "name": "read_file", "parameters": TOOL_SCHEMA}]}


def responses_usage(resp: httpx.Response, stream: bool) -> dict[str, Any]:
    if not stream:
        usage: dict[str, Any] = resp.json()["usage"]
        return usage
    done = [json.loads(d) for _, d in sse_frames(resp.content)]
    final: dict[str, Any] = next(e for e in done if e.get("type") == "response.completed")["response"]["usage"]
    return final


@pytest.mark.parametrize("stream", [False, True])
def test_codex_on_an_anthropic_model_reads_the_cache_on_turn_2(stack: Stack, stream: bool) -> None:
    session = f"codex-anth-{stream}"
    first = post(stack, "/v1/responses", responses_body(["Read utils.py"], stream, session), session,
                 **{"x-test-route": "m-anth"})
    upstream = sent(stack)
    # breakpoints at the end of the tools, the system prompt and the conversation so far
    assert upstream["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert upstream["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert upstream["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    details = responses_usage(first, stream)["input_tokens_details"]
    assert details["cache_write_tokens"] > 0  # (the tools alone may be cached already by another test)
    second = post(stack, "/v1/responses", responses_body(["Read utils.py", "Now fix it"], stream, session), session,
                  **{"x-test-route": "m-anth"})
    usage = responses_usage(second, stream)
    assert details["cached_tokens"] < usage["input_tokens_details"]["cached_tokens"] <= usage["input_tokens"]


def test_chat_caller_on_an_anthropic_model_reads_the_cache_on_turn_2(stack: Stack) -> None:
    def body(turns: list[str]) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
        for i, text in enumerate(turns):
            if i:
                msgs.append({"role": "assistant", "content": f"Done step {i}."})
            msgs.append({"role": "user", "content": text})
        return {"model": "router/auto", "messages": msgs}

    post(stack, "/v1/chat/completions", body(["Read utils.py"]), "chat-anth", **{"x-test-route": "m-anth"})
    second = post(stack, "/v1/chat/completions", body(["Read utils.py", "Fix it"]), "chat-anth",
                  **{"x-test-route": "m-anth"})
    assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


@pytest.mark.parametrize("target", ["m-anth", "m-resp"])
def test_gemini_caller_reads_the_cache_on_turn_2_without_any_session_header(stack: Stack, target: str) -> None:
    def body(turns: list[str]) -> dict[str, Any]:
        contents: list[dict[str, Any]] = []
        for i, text in enumerate(turns):
            if i:
                contents.append({"role": "model", "parts": [{"text": f"Done step {i}."}]})
            contents.append({"role": "user", "parts": [{"text": text}]})
        return {"systemInstruction": {"parts": [{"text": SYSTEM + target}]}, "contents": contents}

    url = f"{stack.url}/v1beta/models/{target}:generateContent"
    first = httpx.post(url, json=body(["Read utils.py"]), timeout=30)
    assert first.status_code == 200, first.text
    assert "cachedContentTokenCount" not in first.json()["usageMetadata"]
    # the session is the conversation's own (its start): the same on turn 2
    second = httpx.post(url, json=body(["Read utils.py", "Fix it"]), timeout=30)
    assert second.status_code == 200, second.text
    meta = second.json()["usageMetadata"]
    assert 0 < meta["cachedContentTokenCount"] <= meta["promptTokenCount"]
