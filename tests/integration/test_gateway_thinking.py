"""Signed reasoning across a session that changes models: the simulated provider signs each model's
reasoning with that model's key and refuses, with the real API's 400, a signature it did not make.
So a turn that reaches another model is only a 200 when the gateway dropped the first model's
signatures, and a turn back to the first model keeps them byte-for-byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _gateway_harness import Stack, make_settings, running_stack, sse_frames

from streams.providers.sim.signatures import sign
from streams.translation.common import open_signature

THINKING = {"tools": True, "thinking": True}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    settings = make_settings(
        models=[
            {"name": "m-anth", "provider": "p-anth", "price_in": 5.0, "price_out": 25.0, "capabilities": THINKING},
            {"name": "m-anth2", "provider": "p-anth", "price_in": 1.0, "price_out": 5.0, "capabilities": THINKING},
            {"name": "m-resp", "provider": "p-resp", "price_in": 1.25, "price_out": 10.0, "capabilities": THINKING},
            {"name": "m-resp2", "provider": "p-resp", "price_in": 0.25, "price_out": 2.0, "capabilities": THINKING},
            {"name": "m-gem", "provider": "p-gem", "price_in": 0.3, "price_out": 2.5, "capabilities": THINKING},
            {"name": "m-gem2", "provider": "p-gem", "price_in": 0.1, "price_out": 0.4, "capabilities": THINKING},
            {"name": "m-chat", "provider": "p-chat", "price_in": 0.25, "price_out": 2.0},
        ],
        routing={"auto_models": ["router/auto"], "default_model": "m-anth"},
    )
    with running_stack(settings) as st:
        yield st


def messages(st: Stack, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(st.url + "/v1/messages", json={"model": "router/auto", **body},
                      headers={"x-test-route": model, "anthropic-version": "2023-06-01"}, timeout=30)


def responses(st: Stack, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(st.url + "/v1/responses", json={"model": "router/auto", **body},
                      headers={"x-test-route": model}, timeout=30)


def sent(st: Stack) -> bytes:
    return st.last().body


# ---------------------------------------------------------------- an Anthropic client (Claude Code)

ANTH_THINKING = {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}}


def claude_turn1(st: Stack, model: str, *, stream: bool = False) -> list[dict[str, Any]]:
    """Turn 1 on ``model``; the history Claude Code would send on turn 2."""
    first = {"role": "user", "content": "Plan the refactor of the parser module."}
    resp = messages(st, model, {**ANTH_THINKING, "messages": [first], "stream": stream})
    assert resp.status_code == 200, resp.text
    content = _assembled_anthropic(resp.content) if stream else resp.json()["content"]
    assert content[0]["type"] == "thinking" and content[0]["signature"], content
    return [first, {"role": "assistant", "content": content}, {"role": "user", "content": "Go on."}]


def _assembled_anthropic(raw: bytes) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for _, data in sse_frames(raw):
        ev = json.loads(data)
        if ev.get("type") == "content_block_start":
            blocks.append(dict(ev["content_block"]))
        elif ev.get("type") == "content_block_delta":
            d, b = ev["delta"], blocks[ev["index"]]
            if d["type"] == "thinking_delta":
                b["thinking"] += d["thinking"]
            elif d["type"] == "signature_delta":
                b["signature"] += d["signature"]
            elif d["type"] == "text_delta":
                b["text"] += d["text"]
    return blocks


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("other", ["m-anth2", "m-resp", "m-gem", "m-chat"])
def test_anthropic_signatures_never_reach_another_model(stack: Stack, other: str, stream: bool) -> None:
    history = claude_turn1(stack, "m-anth", stream=stream)
    block = history[1]["content"][0]
    own = sign("m-anth", block["thinking"])
    resp = messages(stack, other, {**ANTH_THINKING, "messages": history})
    # m-anth2 speaks the client's dialect too: it would answer "Invalid `signature`" had it got m-anth's
    assert resp.status_code == 200, resp.text
    assert own.encode() not in sent(stack) and b"wr1." not in sent(stack)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_signatures_go_back_to_their_model_unchanged(stack: Stack, stream: bool) -> None:
    history = claude_turn1(stack, "m-anth", stream=stream)
    block = history[1]["content"][0]
    # The client holds the signature sealed with its model (it is opaque to clients anyway) ...
    assert open_signature(block["signature"])[:2] == (sign("m-anth", block["thinking"]), "m-anth")
    resp = messages(stack, "m-anth", {**ANTH_THINKING, "messages": history})
    assert resp.status_code == 200, resp.text  # ... and the simulator verified the one it gets back
    upstream = json.loads(sent(stack))
    assert upstream["messages"][1]["content"][0] == {**block, "signature": sign("m-anth", block["thinking"])}


def test_a_turn_elsewhere_and_back_keeps_the_first_models_signatures(stack: Stack) -> None:
    history = claude_turn1(stack, "m-anth")
    resp = messages(stack, "m-resp", {**ANTH_THINKING, "messages": history})
    assert resp.status_code == 200, resp.text
    history += [{"role": "assistant", "content": resp.json()["content"]}, {"role": "user", "content": "Finish."}]
    resp = messages(stack, "m-anth", {**ANTH_THINKING, "messages": history})
    assert resp.status_code == 200, resp.text
    upstream = json.loads(sent(stack))["messages"]
    thinking = [b for m in upstream if m["role"] == "assistant" for b in m["content"] if b["type"] == "thinking"]
    # m-anth's own block is back, m-resp's reasoning is not
    assert [b["signature"] for b in thinking] == [sign("m-anth", history[1]["content"][0]["thinking"])]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_reasoning_through_an_anthropic_client_goes_back_only_to_its_model(stack: Stack, stream: bool) -> None:
    history = claude_turn1(stack, "m-resp", stream=stream)
    block = history[1]["content"][0]
    # Claude Code holds the OpenAI model's reasoning as a thinking block it can send back.
    resp = messages(stack, "m-resp", {**ANTH_THINKING, "messages": history})
    assert resp.status_code == 200, resp.text  # the simulator decrypted its own item
    items = [i for i in json.loads(sent(stack))["input"] if i.get("type") == "reasoning"]
    assert items and items[0]["encrypted_content"] == sign("m-resp", block["thinking"])
    # Another model, even of the client's own dialect, never gets it.
    for other in ("m-anth", "m-gem"):
        resp = messages(stack, other, {**ANTH_THINKING, "messages": history})
        assert resp.status_code == 200, resp.text
        assert items[0]["encrypted_content"].encode() not in sent(stack)
        assert b"wr1." not in sent(stack)


def test_the_simulator_refuses_a_signature_its_model_did_not_make(stack: Stack) -> None:
    history = claude_turn1(stack, "m-anth")
    history[1]["content"][0]["signature"] = sign("m-anth2", history[1]["content"][0]["thinking"])
    resp = httpx.post(stack.sim_url + "/v1/messages", json={"model": "m-anth", **ANTH_THINKING, "messages": history},
                      headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "messages.1.content.0: Invalid `signature` in `thinking` block"


def test_the_simulator_refuses_other_models_reasoning_in_every_api(stack: Stack) -> None:
    key = {"authorization": "Bearer k", "x-goog-api-key": "k"}
    item = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}],
            "encrypted_content": sign("m-resp2", "t")}  # fmt: skip
    resp = httpx.post(stack.sim_url + "/v1/responses", json={"model": "m-resp", "input": [item]}, headers=key)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "The encrypted content for item rs_1 could not be verified."
    call = {"functionCall": {"name": "run_shell", "args": {}}, "thoughtSignature": sign("m-gem2", "run_shell")}
    contents = [{"role": "user", "parts": [{"text": "x"}]}, {"role": "model", "parts": [call]}]
    resp = httpx.post(stack.sim_url + "/v1beta/models/m-gem:generateContent", json={"contents": contents}, headers=key)
    assert resp.status_code == 400 and resp.json()["error"]["message"] == "Corrupted thought signature."


# ---------------------------------------------------------------- an OpenAI Responses client (Codex)

CODEX = {"store": False, "reasoning": {"effort": "high"}, "include": ["reasoning.encrypted_content"]}


def codex_turn1(st: Stack, model: str, *, stream: bool = False) -> list[dict[str, Any]]:
    first = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Plan the refactor."}]}
    resp = responses(st, model, {**CODEX, "input": [first], "stream": stream})
    assert resp.status_code == 200, resp.text
    if stream:
        events = [json.loads(data) for _, data in sse_frames(resp.content)]
        done = [ev for ev in events if ev.get("type") == "response.completed"]
        output = done[0]["response"]["output"]
    else:
        output = resp.json()["output"]
    reasoning = [i for i in output if i["type"] == "reasoning"]
    assert reasoning and reasoning[0].get("encrypted_content"), output
    nxt = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go on."}]}
    return [first, *output, nxt]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_thinking_through_codex_goes_back_to_its_model_byte_for_byte(stack: Stack, stream: bool) -> None:
    history = codex_turn1(stack, "m-anth", stream=stream)
    resp = responses(stack, "m-anth", {**CODEX, "input": history})
    assert resp.status_code == 200, resp.text  # the simulator verified m-anth's signature
    thinking = json.loads(sent(stack))["messages"][1]["content"][0]
    assert thinking["type"] == "thinking" and thinking["signature"] == sign("m-anth", thinking["thinking"])


@pytest.mark.parametrize("other", ["m-anth2", "m-resp", "m-gem"])
def test_anthropic_thinking_through_codex_is_dropped_for_another_model(stack: Stack, other: str) -> None:
    history = codex_turn1(stack, "m-anth")
    resp = responses(stack, other, {**CODEX, "input": history})
    assert resp.status_code == 200, resp.text  # m-anth2 would answer "Invalid `signature`" otherwise
    body = sent(stack)
    assert b"wr1." not in body and b'"signature"' not in body


@pytest.mark.parametrize("stream", [False, True])
def test_codex_reasoning_goes_back_to_its_own_model_only(stack: Stack, stream: bool) -> None:
    history = codex_turn1(stack, "m-resp", stream=stream)
    (item,) = [i for i in history if i.get("type") == "reasoning"]
    original = sign("m-resp", item["summary"][0]["text"])
    assert open_signature(item["encrypted_content"])[:2] == (original, "m-resp")  # sealed for Codex
    resp = responses(stack, "m-resp", {**CODEX, "input": history})
    assert resp.status_code == 200, resp.text  # the simulator decrypted its own item
    (back,) = [i for i in json.loads(sent(stack))["input"] if i.get("type") == "reasoning"]
    assert back["encrypted_content"] == original
    # another model of the same API would answer "could not be verified" had it got the item
    resp = responses(stack, "m-resp2", {**CODEX, "input": history})
    assert resp.status_code == 200, resp.text
    assert original.encode() not in sent(stack) and b"wr1." not in sent(stack)


# ---------------------------------------------------------------- a Gemini client (gemini-cli)

SHELL = {"name": "run_shell", "description": "Runs a command",
         "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}}}  # fmt: skip


def gemini(st: Stack, model: str, contents: list[dict[str, Any]], stream: bool = False) -> httpx.Response:
    body = {"contents": contents, "tools": [{"functionDeclarations": [SHELL]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": -1}}}  # fmt: skip
    verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return httpx.post(f"{st.url}/v1beta/models/{model}:{verb}", json=body, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_thought_signatures_go_back_only_to_their_model(stack: Stack, stream: bool) -> None:
    first = [{"role": "user", "parts": [{"text": "Run the tests."}]}]
    resp = gemini(stack, "m-gem", first, stream)
    assert resp.status_code == 200, resp.text
    if stream:
        parts = [p for _, d in sse_frames(resp.content) for c in json.loads(d)["candidates"]
                 for p in c["content"]["parts"]]  # fmt: skip
    else:
        parts = resp.json()["candidates"][0]["content"]["parts"]
    call = next(p for p in parts if "functionCall" in p)
    original = sign("m-gem", call["functionCall"]["name"])
    assert open_signature(call["thoughtSignature"])[:2] == (original, "m-gem")
    result = {"functionResponse": {"name": call["functionCall"]["name"], "response": {"output": "ok"}}}
    history = [*first, {"role": "model", "parts": parts}, {"role": "user", "parts": [result]}]
    resp = gemini(stack, "m-gem", history)
    assert resp.status_code == 200, resp.text  # the simulator verified its own signature
    assert original.encode() in sent(stack) and b"wr1." not in sent(stack)
    # another Gemini model answers "Corrupted thought signature." to it: it gets the accepted marker
    resp = gemini(stack, "m-gem2", history)
    assert resp.status_code == 200, resp.text
    assert original.encode() not in sent(stack) and b"skip_thought_signature_validator" in sent(stack)


# ---------------------------------------------------------------- effort across dialects


@pytest.mark.parametrize(
    ("effort", "openai", "gemini_budget"), [("low", "low", 1024), ("high", "high", 24576), ("max", "xhigh", 32768)]
)
def test_anthropic_effort_reaches_other_dialects_as_their_effort(
    stack: Stack, effort: str, openai: str, gemini_budget: int
) -> None:
    body = {"max_tokens": 4096, "thinking": {"type": "adaptive"}, "output_config": {"effort": effort},
            "messages": [{"role": "user", "content": "Plan it."}]}
    assert messages(stack, "m-resp", body).status_code == 200
    assert json.loads(sent(stack))["reasoning"]["effort"] == openai
    assert messages(stack, "m-gem", body).status_code == 200
    assert json.loads(sent(stack))["generationConfig"]["thinkingConfig"]["thinkingBudget"] == gemini_budget
