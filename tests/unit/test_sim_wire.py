"""Exact event sequences of the simulator's three wire formats (it is the gateway's conformance oracle)."""

from __future__ import annotations

import json

from streams.providers.sim import wire_anthropic, wire_openai_chat, wire_openai_responses
from streams.providers.sim.behaviour import Plan, SimRequest, ToolCall
from streams.providers.sim.usage import Usage

TEXT_AND_CALL = Plan(
    thinking=[],
    text=["Let", " me", " check."],
    tool_calls=[ToolCall("abc", "Bash", '{"command":"pytest -q --maxfail=1"}')],
    stop="tool_use",
    output_tokens=12,
)
USAGE = Usage(input_tokens=100, output_tokens=12, cache_read=40, cache_write=10)


def _events(frames: list[tuple[bytes, int]]) -> list[tuple[str | None, dict | str]]:
    out: list[tuple[str | None, dict | str]] = []
    for data, _ in frames:
        lines = data.decode().strip().split("\n")
        event = lines[0][7:] if lines[0].startswith("event: ") else None
        payload = lines[-1][6:]
        out.append((event, payload if payload == "[DONE]" else json.loads(payload)))
    return out


def test_anthropic_stream_sequence() -> None:
    req = SimRequest(dialect="anthropic_messages", model="m", stream=True)
    events = _events(wire_anthropic.stream(TEXT_AND_CALL, req, USAGE, 1))
    names = [e for e, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", *["content_block_delta"] * 3, "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert all(e == p["type"] for e, p in events)  # type: ignore[index]
    start = events[0][1]["message"]  # type: ignore[index]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 50 and start["usage"]["cache_read_input_tokens"] == 40
    tool_start = events[7][1]["content_block"]  # type: ignore[index]
    assert tool_start == {"type": "tool_use", "id": "toolu_abc", "name": "Bash", "input": {}}
    partial = "".join(p["delta"]["partial_json"] for e, p in events[8:11])  # type: ignore[index]
    assert json.loads(partial) == {"command": "pytest -q --maxfail=1"}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}  # type: ignore[index]
    assert delta["usage"]["output_tokens"] == 12  # type: ignore[index]


def test_anthropic_non_streaming_message() -> None:
    req = SimRequest(dialect="anthropic_messages", model="m")
    msg = wire_anthropic.render(TEXT_AND_CALL, req, USAGE)
    assert [b["type"] for b in msg["content"]] == ["text", "tool_use"]
    assert msg["content"][1]["input"] == {"command": "pytest -q --maxfail=1"}
    assert msg["stop_reason"] == "tool_use" and msg["usage"]["cache_creation_input_tokens"] == 10


def test_chat_stream_sequence_with_usage() -> None:
    req = SimRequest(dialect="openai_chat", model="m", stream=True)
    body = {"stream_options": {"include_usage": True}}
    events = _events(wire_openai_chat.stream(TEXT_AND_CALL, req, USAGE, body, 1))
    assert all(e is None for e, _ in events) and events[-1][1] == "[DONE]"
    chunks = [p for _, p in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:4]) == "Let me check."  # type: ignore[index]
    opening = chunks[4]["choices"][0]["delta"]["tool_calls"][0]  # type: ignore[index]
    assert opening["id"] == "call_abc" and opening["function"] == {"name": "Bash", "arguments": ""}
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "tool_calls" and finish["usage"] is None  # type: ignore[index]
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens_details"]["cached_tokens"] == 40  # type: ignore[index]


def test_responses_stream_sequence() -> None:
    req = SimRequest(dialect="openai_responses", model="m", stream=True)
    events = _events(wire_openai_responses.stream(TEXT_AND_CALL, req, USAGE, {}, 1))
    names = [e for e, _ in events]
    assert names == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", *["response.function_call_arguments.delta"] * 3,
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))  # type: ignore[index]
    final = events[-1][1]["response"]  # type: ignore[index]
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "call_abc" and final["usage"]["total_tokens"] == 112


def test_responses_incomplete_on_max_tokens() -> None:
    plan = Plan([], ["a", " b"], [], "max_tokens", 2)
    req = SimRequest(dialect="openai_responses", model="m", stream=True)
    events = _events(wire_openai_responses.stream(plan, req, USAGE, {}, 1))
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}  # type: ignore[index]


def test_error_shapes() -> None:
    assert wire_anthropic.error_body(529, "x")["error"]["type"] == "overloaded_error"
    assert wire_anthropic.error_body(429, "x")["error"]["type"] == "rate_limit_error"
    assert wire_openai_chat.error_body(429, "x")["error"]["code"] == "rate_limit_exceeded"
    assert wire_openai_responses.error_body(500, "x")["error"]["type"] == "server_error"


def test_parsers_find_last_user_text_and_tool_results() -> None:
    anth = wire_anthropic.parse({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What does hello.py print?"}]},
            {"role": "system", "content": "reminder"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "print(1)"}]},
        ],
        "tools": [{"name": "Read", "input_schema": {}}, {"type": "web_search_20250305", "name": "web_search"}],
        "thinking": {"type": "adaptive"},
    })  # fmt: skip
    assert anth.last_user_text == "What does hello.py print?" and anth.after_tool_result
    assert anth.tool_result_text == "print(1)" and [t.name for t in anth.tools] == ["Read"] and anth.thinking
    resp = wire_openai_responses.parse({
        "model": "m",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "done"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {}}, {"type": "web_search"}],
        "parallel_tool_calls": False,
    })  # fmt: skip
    assert resp.last_user_text == "hi" and resp.after_tool_result and not resp.parallel_allowed
    chat = wire_openai_chat.parse({
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "max_tokens": 7,
    })  # fmt: skip
    assert chat.last_user_text == "q" and chat.tool_choice == "tool:f" and chat.max_tokens == 7
