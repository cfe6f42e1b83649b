"""All 16 client-dialect x provider-dialect pairs through the gateway with the official SDKs (Gemini:
over HTTP as gemini-cli's genai client sends it), sync and async, plain and streaming (SDK stream
helpers), over two turns (tool call, then tool result).

What the client sees must equal what the provider produced: text, tool-call ids/names/arguments, stop
reason and usage. "What the provider produced" is the provider's own response bytes, recorded on the
wire by the gateway's upstream client and read here by an independent accumulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from _gateway_harness import (
    ALL_DIALECTS,
    MODEL_FOR,
    Facts,
    Stack,
    facts_from_body,
    gemini_whole,
    provider_facts,
    running_stack,
    sse_frames,
)

TOOL = {
    "name": "Bash",
    "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
ASK = "List the python files in the repository"
TOOL_OUTPUT = "a.py\nb.py"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


# --- one request per client dialect, as a user of each SDK writes it --------------------------------


def _chat_kwargs(model: str, call: tuple[str, str, Any] | None) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
    if call:
        cid, name, args = call
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
        messages.append({"role": "tool", "tool_call_id": cid, "content": TOOL_OUTPUT})
    return {"model": model, "messages": messages, "tools": [{"type": "function", "function": TOOL}]}


def _responses_kwargs(model: str, call: tuple[str, str, Any] | None) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
    if call:
        cid, name, args = call
        items.append({"type": "function_call", "call_id": cid, "name": name, "arguments": json.dumps(args)})
        items.append({"type": "function_call_output", "call_id": cid, "output": TOOL_OUTPUT})
    return {"model": model, "input": items, "tools": [{"type": "function", **TOOL}]}


def _anthropic_kwargs(model: str, call: tuple[str, str, Any] | None) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
    if call:
        cid, name, args = call
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": cid, "name": name, "input": args}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": cid, "content": TOOL_OUTPUT}]})
    tool = {"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["parameters"]}
    return {"model": model, "max_tokens": 512, "messages": messages, "tools": [tool]}


def _gemini_request(model: str, call: tuple[str, str, Any] | None, stream: bool) -> dict[str, Any]:
    """What gemini-cli's genai client sends: the model and streaming in the URL, the key in a header;
    the function response names its function and, like gemini-cli, echoes the call's id."""
    contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": ASK}]}]
    if call:
        cid, name, args = call
        fn_call: dict[str, Any] = {"name": name, "args": args}
        fn_response: dict[str, Any] = {"name": name, "response": {"output": TOOL_OUTPUT}}
        if cid:
            fn_call["id"] = fn_response["id"] = cid
        contents.append({"role": "model", "parts": [{"functionCall": fn_call}]})
        contents.append({"role": "user", "parts": [{"functionResponse": fn_response}]})
    tool = {"name": TOOL["name"], "description": TOOL["description"], "parametersJsonSchema": TOOL["parameters"]}
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return {"url": f"/v1beta/models/{model}:{method}", "headers": {"x-goog-api-key": "client-key"},
            "json": {"contents": contents, "tools": [{"functionDeclarations": [tool]}]}}


def _gemini_answer(resp: httpx.Response, stream: bool) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    if not stream:
        return resp.json()
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(resp.content)
    assert all(event is None and data != "[DONE]" for event, data in frames)
    return gemini_whole([json.loads(data) for _, data in frames])


def call_sync(st: Stack, dialect: str, model: str, call: tuple[str, str, Any] | None, stream: bool) -> dict[str, Any]:
    if dialect == "gemini":
        with httpx.Client(base_url=st.url, timeout=30) as http:
            return _gemini_answer(http.post(**_gemini_request(model, call, stream)), stream)
    if dialect == "anthropic_messages":
        ac = anthropic.Anthropic(api_key="client-key", base_url=st.url, max_retries=0)
        kw = _anthropic_kwargs(model, call)
        if stream:
            with ac.messages.stream(**kw) as s:
                return s.get_final_message().model_dump()
        return ac.messages.create(**kw).model_dump()
    oc = openai.OpenAI(api_key="client-key", base_url=st.url + "/v1", max_retries=0)
    if dialect == "openai_chat":
        kw = _chat_kwargs(model, call)
        if stream:
            with oc.chat.completions.stream(**kw, stream_options={"include_usage": True}) as s:
                return s.get_final_completion().model_dump()
        return oc.chat.completions.create(**kw).model_dump()
    kw = _responses_kwargs(model, call)
    if stream:
        with oc.responses.stream(**kw) as s:
            return s.get_final_response().model_dump()
    return oc.responses.create(**kw).model_dump()


async def call_async(
    st: Stack, dialect: str, model: str, call: tuple[str, str, Any] | None, stream: bool
) -> dict[str, Any]:
    if dialect == "gemini":
        async with httpx.AsyncClient(base_url=st.url, timeout=30) as http:
            return _gemini_answer(await http.post(**_gemini_request(model, call, stream)), stream)
    if dialect == "anthropic_messages":
        async with anthropic.AsyncAnthropic(api_key="client-key", base_url=st.url, max_retries=0) as ac:
            kw = _anthropic_kwargs(model, call)
            if stream:
                async with ac.messages.stream(**kw) as s:
                    return (await s.get_final_message()).model_dump()
            return (await ac.messages.create(**kw)).model_dump()
    async with openai.AsyncOpenAI(api_key="client-key", base_url=st.url + "/v1", max_retries=0) as oc:
        if dialect == "openai_chat":
            kw = _chat_kwargs(model, call)
            if stream:
                async with oc.chat.completions.stream(**kw, stream_options={"include_usage": True}) as s:
                    return (await s.get_final_completion()).model_dump()
            return (await oc.chat.completions.create(**kw)).model_dump()
        kw = _responses_kwargs(model, call)
        if stream:
            async with oc.responses.stream(**kw) as s:
                return (await s.get_final_response()).model_dump()
        return (await oc.responses.create(**kw)).model_dump()


def check_same(st: Stack, client_dialect: str, provider_dialect: str, got: dict[str, Any], stream: bool) -> Facts:
    rec = st.last()
    assert rec.dialect == provider_dialect and rec.status == 200
    seen = facts_from_body(client_dialect, got)
    produced = provider_facts(rec, stream)
    if provider_dialect == "gemini" and client_dialect != "gemini":
        # Gemini's calls carry no id: the gateway made one up, which the client must get back next turn.
        assert all(cid for cid, _, _ in seen.tool_calls)
        seen = Facts(seen.text, [("", n, a) for _, n, a in seen.tool_calls], seen.stop,
                     seen.input_tokens, seen.output_tokens)
    assert seen == produced
    return facts_from_body(client_dialect, got)


PAIRS = [(c, p) for c in ALL_DIALECTS for p in ALL_DIALECTS]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("client_dialect", "provider_dialect"), PAIRS)
def test_sync_two_turns(stack: Stack, client_dialect: str, provider_dialect: str, stream: bool) -> None:
    model = MODEL_FOR[provider_dialect]
    first = check_same(stack, client_dialect, provider_dialect,
                       call_sync(stack, client_dialect, model, None, stream), stream)
    assert first.stop == "tool_use" and first.tool_calls and first.tool_calls[0][1] == "Bash"
    assert first.input_tokens > 0 and first.output_tokens > 0

    # Turn 2: the tool result goes back with the id the client saw; the provider must get that id.
    call = first.tool_calls[0]
    second = check_same(stack, client_dialect, provider_dialect,
                        call_sync(stack, client_dialect, model, call, stream), stream)
    assert second.stop == "end_turn" and not second.tool_calls and second.text.startswith("Done")
    assert call[0].encode() in stack.last().body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("client_dialect", "provider_dialect"), PAIRS)
async def test_async_two_turns(stack: Stack, client_dialect: str, provider_dialect: str, stream: bool) -> None:
    model = MODEL_FOR[provider_dialect]
    first = check_same(stack, client_dialect, provider_dialect,
                       await call_async(stack, client_dialect, model, None, stream), stream)
    assert first.stop == "tool_use"
    second = check_same(stack, client_dialect, provider_dialect,
                        await call_async(stack, client_dialect, model, first.tool_calls[0], stream), stream)
    assert second.stop == "end_turn" and second.text


@pytest.mark.parametrize("dialect", ALL_DIALECTS)
def test_same_dialect_equals_calling_the_sim_directly(stack: Stack, dialect: str) -> None:
    """Same dialect: the gateway's answer is the provider's, byte for byte where the ids are stable."""
    model = MODEL_FOR[dialect]
    via_gateway = facts_from_body(dialect, call_sync(stack, dialect, model, None, False))
    direct_stack = Stack(stack.sim_url, stack.sim_url, stack.gateway, stack.client, stack.events, stack.loop)
    direct = facts_from_body(dialect, call_sync(direct_stack, dialect, model, None, False))
    assert via_gateway == direct
