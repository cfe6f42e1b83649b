"""The Gemini dialect: gemini-cli's requests to every other dialect and back, function responses
without ids paired with their calls, thinking config, responses, errors and the same-dialect relay."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from streams.translation import anthropic_messages as am
from streams.translation import gemini as gm
from streams.translation import openai_chat as oc
from streams.translation import openai_responses as rs
from streams.translation.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Message,
    StreamEnd,
    StreamError,
    TextPart,
    Thinking,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    TranslationError,
    Usage,
)
from streams.translation.fastpath import rewrite_body
from streams.translation.gemini.request import with_url_target
from streams.translation.sse import SSEDecoder

SHELL = {
    "name": "run_shell_command",
    "description": "Runs a shell command.",
    "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
READ = {
    "name": "read_file",
    "description": "Reads a file.",
    "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}, "required": ["path"]},
}


def cli_turn2() -> dict[str, Any]:
    """A gemini-cli turn after two calls of the same tool: calls signed, no ids anywhere."""
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "What is in a.txt and b.txt?"}]},
            {"role": "model", "parts": [
                {"text": "Reading both.", "thought": True},
                {"functionCall": {"name": "read_file", "args": {"path": "a.txt"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "read_file", "args": {"path": "b.txt"}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "read_file", "response": {"output": "alpha"}}},
                {"functionResponse": {"name": "read_file", "response": {"error": "no such file"}}},
            ]},
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are an interactive CLI agent."}]},
        "tools": [{"functionDeclarations": [SHELL, READ]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {
            "temperature": 0, "topP": 1, "maxOutputTokens": 2048, "topK": 64,
            "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192},
        },
    }  # fmt: skip


def parse(body: dict[str, Any], model: str = "gemini-2.5-pro", stream: bool = False) -> CanonicalRequest:
    return gm.parse_request(with_url_target(copy.deepcopy(body), model, stream=stream))


def test_gemini_cli_request_to_canonical() -> None:
    req = parse(cli_turn2(), stream=True)
    assert (req.model, req.stream, req.dialect) == ("gemini-2.5-pro", True, "gemini")
    assert [p.text for p in req.system] == ["You are an interactive CLI agent."]
    assert [m.role for m in req.messages] == ["user", "assistant", "tool"]
    thought, first, second = req.messages[1].parts
    assert isinstance(thought, ThinkingPart) and thought.text == "Reading both."
    assert isinstance(first, ToolCallPart) and isinstance(second, ToolCallPart)
    assert first.id != second.id and json.loads(second.arguments) == {"path": "b.txt"}
    ok, failed = req.messages[2].parts
    assert isinstance(ok, ToolResultPart) and isinstance(failed, ToolResultPart)
    # No ids in Gemini: the results answer the calls in order.
    assert (ok.tool_call_id, failed.tool_call_id) == (first.id, second.id)
    assert ok.content == [TextPart("alpha")] and not ok.is_error
    assert failed.content == [TextPart("no such file")] and failed.is_error
    assert [t.name for t in req.tools] == ["run_shell_command", "read_file"]
    assert req.tools[1].parameters == {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    assert (req.max_tokens, req.temperature, req.top_p) == (2048, 0.0, 1.0)
    assert req.thinking == Thinking(enabled=True, budget_tokens=8192, effort="medium")
    assert any("googleSearch" in d for d in req.extra["dropped"])
    # The same history sent again next turn gets the same ids (upstream prompt caches keep hitting).
    assert [p.id for p in parse(cli_turn2()).messages[1].parts if isinstance(p, ToolCallPart)] == [first.id, second.id]


def test_function_response_ids_when_the_client_sets_them() -> None:
    body = cli_turn2()
    body["contents"][1]["parts"][1]["functionCall"]["id"] = "read_file__1"
    body["contents"][1]["parts"][2]["functionCall"]["id"] = "read_file__2"
    # Answered out of order, by id.
    body["contents"][2]["parts"][0]["functionResponse"]["id"] = "read_file__2"
    body["contents"][2]["parts"][1]["functionResponse"]["id"] = "read_file__1"
    results = parse(body).messages[2].parts
    assert [p.tool_call_id for p in results if isinstance(p, ToolResultPart)] == ["read_file__2", "read_file__1"]


@pytest.mark.parametrize("target", [am, oc, rs], ids=lambda m: m.DIALECT)
def test_gemini_tool_round_trip_reaches_every_dialect(target: Any) -> None:
    req = parse(cli_turn2())
    wire = target.render_request(req, "upstream-model", supports_thinking=True)
    back = target.parse_request(wire)
    calls = [(p.id, p.name) for m in back.messages for p in m.parts if isinstance(p, ToolCallPart)]
    results = [p.tool_call_id for m in back.messages for p in m.parts if isinstance(p, ToolResultPart)]
    assert [n for _, n in calls] == ["read_file", "read_file"]
    assert results == [i for i, _ in calls]  # every result still answers its own call
    assert [t.name for t in back.tools] == ["run_shell_command", "read_file"]
    assert "".join(p.text for p in back.system) == "You are an interactive CLI agent."
    if target is not am:  # Anthropic turns thinking off when the pending calls came without its thinking
        assert back.thinking is not None and back.thinking.enabled


def anthropic_history() -> dict[str, Any]:
    return {
        "model": "claude-x", "max_tokens": 1000, "system": "Be brief.",
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": "list files"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "ls it", "signature": "anthropic-sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
                {"type": "text", "text": "and now?"},
            ]},
        ],
    }  # fmt: skip


def test_other_dialect_history_to_gemini() -> None:
    body = gm.render_request(am.parse_request(anthropic_history()), "gemini-3-pro-preview")
    assert "model" not in body and "stream" not in body  # both go into the URL
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    call = body["contents"][1]["parts"]
    # Anthropic's signed thinking means nothing to Gemini; the call gets the signature Gemini 3 accepts
    # for calls it did not make.
    assert call == [{"functionCall": {"id": "toolu_1", "name": "Bash", "args": {"command": "ls"}},
                     "thoughtSignature": "skip_thought_signature_validator"}]  # fmt: skip
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"id": "toolu_1", "name": "Bash", "response": {"output": "a.txt"}}},
        {"text": "and now?"},
    ]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "Bash"
    assert body["generationConfig"] == {
        "maxOutputTokens": 1000, "thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": True},
    }  # fmt: skip


def test_thinking_and_structured_output_across_dialects() -> None:
    chat = oc.parse_request({
        "model": "m", "messages": [{"role": "user", "content": "json please"}], "reasoning_effort": "high",
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    })  # fmt: skip
    gc = gm.render_request(chat, "gemini-2.5-flash")
    assert gc["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    assert gc["generationConfig"]["responseMimeType"] == "application/json"
    assert gc["generationConfig"]["responseJsonSchema"] == {"type": "object"}
    assert gc["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert "thinkingConfig" not in gm.render_request(chat, "m", supports_thinking=False).get("generationConfig", {})
    # A Gemini client's thinking config reaches OpenAI and Anthropic as effort and budget.
    # gemini-cli's classifier spells JSON Schema types the Gemini way ("OBJECT"); OpenAI needs "object".
    cli = parse({"contents": [{"parts": [{"text": "hi"}]}],
                 "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW"}, "responseMimeType": "application/json",
                                      "responseJsonSchema": {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}}})  # fmt: skip
    assert rs.render_request(cli, "gpt-5")["reasoning"]["effort"] == "low"
    assert am.render_request(cli, "claude")["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert oc.render_request(cli, "gpt")["response_format"]["json_schema"]["schema"] == {
        "type": "object", "properties": {"ok": {"type": "boolean"}},
    }  # fmt: skip
    off = parse({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}})
    assert off.thinking is not None and not off.thinking.enabled and "thinking" not in am.render_request(off, "c")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        ({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]}, "contents[0].parts[0].functionCall.name"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}},
         "generationConfig.candidateCount"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as err:
        parse(body)
    assert err.value.param == param and err.value.status == 400


def test_response_from_gemini_without_call_ids() -> None:
    body = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": True},
            {"text": "Running it."},
            {"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}, "thoughtSignature": "c2ln"},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 7, "thoughtsTokenCount": 3,
                          "cachedContentTokenCount": 20, "totalTokenCount": 60},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc",
    }  # fmt: skip
    resp = gm.parse_response(body)
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=50, output_tokens=10, cached_input_tokens=20, reasoning_tokens=3)
    call = resp.parts[2]
    assert isinstance(call, ToolCallPart) and call.id and call.name == "run_shell_command"
    chat = oc.render_response(resp, model="router/auto")
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    assert chat["choices"][0]["message"]["tool_calls"][0]["id"] == call.id
    assert am.render_response(resp, model="m")["usage"]["cache_read_input_tokens"] == 20


def test_response_to_a_gemini_client() -> None:
    resp = CanonicalResponse(
        id="msg_1", model="claude",
        parts=[ThinkingPart("hm", signature="anthropic-sig"), TextPart("Editing."),
               ToolCallPart("toolu_9", "replace", '{"file_path":"a.py","old_string":"1","new_string":"2"}')],
        stop_reason="tool_use", usage=Usage(input_tokens=10, output_tokens=6, cached_input_tokens=4, reasoning_tokens=2),
    )  # fmt: skip
    out = gm.render_response(resp, model="gemini-2.5-pro")
    candidate = out["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    assert candidate["content"]["parts"] == [
        {"text": "hm", "thought": True},
        {"text": "Editing."},
        {"functionCall": {"id": "toolu_9", "name": "replace",
                          "args": {"file_path": "a.py", "old_string": "1", "new_string": "2"}}},
    ]  # fmt: skip
    assert out["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 2,
                                    "cachedContentTokenCount": 4, "totalTokenCount": 16}  # fmt: skip
    assert out["modelVersion"] == "gemini-2.5-pro"
    # A Gemini client's next turn answers the call by name (and id): the result pairs with it.
    nxt = parse({"contents": [
        {"role": "user", "parts": [{"text": "fix a.py"}]},
        candidate["content"],
        {"role": "user", "parts": [{"functionResponse": {"id": "toolu_9", "name": "replace", "response": {"output": "ok"}}}]},
    ]})  # fmt: skip
    assert am.render_request(nxt, "c")["messages"][2]["content"][0]["tool_use_id"] == "toolu_9"


def test_errors_in_googles_shape() -> None:
    assert gm.render_error(404, "model 'x' not found", param="model") == {
        "error": {"code": 404, "message": "model 'x' not found", "status": "NOT_FOUND"}
    }
    assert gm.render_error(429, "slow down", error_type="rate_limit_error")["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert gm.render_error(401, "invalid API key")["error"]["status"] == "UNAUTHENTICATED"
    assert gm.render_error(529, "overloaded")["error"]["status"] == "INTERNAL"
    # A Gemini error event mid-stream becomes a canonical error with its status.
    events = gm.StreamParser().feed(None, json.dumps({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}))
    assert events == [StreamError("busy", status=503)]


def test_a_blocked_prompt_ends_the_stream_as_content_filter() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
    events = gm.StreamParser().feed(None, json.dumps(blocked))
    assert isinstance(events[-1], StreamEnd) and events[-1].stop_reason == "content_filter"
    assert events[-1].usage.input_tokens == 7
    assert gm.parse_response(blocked).stop_reason == "content_filter"
    scanner = gm.usage_scanner()
    scanner.feed(b"data: " + json.dumps(blocked).encode() + b"\n\n")
    assert scanner.finished and scanner.usage.input_tokens == 7  # a relayed blocked prompt is a complete stream


def test_stream_without_finish_reason_is_cut() -> None:
    parser = gm.StreamParser()
    assert parser.feed(None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "He"}]}}]}))
    assert isinstance(parser.close()[-1], StreamError)


def test_stream_writer_ends_with_finish_reason_and_usage() -> None:
    writer = gm.StreamWriter("gemini-2.5-pro")
    events = am.StreamParser()
    raw = b"".join(
        writer.write(ev)
        for ev in [
            *events.feed("message_start", json.dumps({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}})),
            *events.feed("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 0}})),
            *events.feed("message_stop", json.dumps({"type": "message_stop"})),
        ]
    )  # fmt: skip
    chunks = [json.loads(d) for _, d in SSEDecoder().feed(raw)]
    assert len(chunks) == 1  # nothing said: one final chunk, still with its finishReason and usage
    assert chunks[0]["candidates"][0] == {"content": {"role": "model", "parts": []}, "index": 0, "finishReason": "STOP"}
    assert chunks[0]["usageMetadata"]["promptTokenCount"] == 5
    assert writer.stop_reason == "end_turn" and isinstance(writer.usage, Usage)


def test_same_dialect_relay_forwards_the_body_without_model_or_stream() -> None:
    raw = json.dumps(cli_turn2()).encode()
    out = msgspec.json.decode(rewrite_body(raw, "gemini", "gemini-flash-sim", supports_thinking=True, ensure_usage=True))
    assert out == cli_turn2()
    no_thinking = msgspec.json.decode(rewrite_body(raw, "gemini", "m", supports_thinking=False, ensure_usage=True))
    assert "thinkingConfig" not in no_thinking["generationConfig"]
    assert no_thinking["generationConfig"]["topK"] == 64
    # A Kafka RouteRequest names the model in the body: it is not relayed.
    named = json.dumps({**cli_turn2(), "model": "router/auto", "stream": False}).encode()
    assert "model" not in msgspec.json.decode(rewrite_body(named, "gemini", "m", supports_thinking=True, ensure_usage=True))


def test_relayed_stream_usage_and_end() -> None:
    scanner = gm.usage_scanner()
    final = {"candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11}}  # fmt: skip
    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}],
             "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}  # fmt: skip
    raw = b"data: " + json.dumps(first).encode() + b"\r\n\r\ndata: " + json.dumps(final).encode() + b"\r\n\r\n"
    assert scanner.feed(raw).count(b"data: ") == 2
    assert scanner.finished and scanner.usage == Usage(input_tokens=9, output_tokens=2)
    assert gm.body_usage(json.dumps(final).encode()) == Usage(input_tokens=9, output_tokens=2)
    assert gm.body_usage(b"{not json") is None


def test_consecutive_turns_of_one_role_are_merged() -> None:
    req = CanonicalRequest(model="m", messages=[
        Message("user", [TextPart("a")]), Message("system", [TextPart("be careful")]), Message("user", [TextPart("b")]),
    ], tools=[Tool("f")])  # fmt: skip
    assert gm.render_request(req, "m")["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "be careful"}, {"text": "b"}]}
    ]


def test_stream_round_trip_through_canonical() -> None:
    """Gemini chunks -> canonical -> Gemini chunks keep text, thoughts, calls, finish and usage."""
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me see", "thought": True}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "write_file", "args": {"file_path": "x", "content": "y"}}, "thoughtSignature": "s"},
        ]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 8, "thoughtsTokenCount": 2, "totalTokenCount": 40}},
    ]  # fmt: skip
    parser, writer = gm.StreamParser(), gm.StreamWriter("gemini-2.5-pro")
    events = [ev for c in chunks for ev in parser.feed(None, json.dumps(c))] + parser.close()
    assert isinstance(events[-1], StreamEnd) and events[-1].stop_reason == "tool_use"
    out = [json.loads(d) for _, d in SSEDecoder().feed(b"".join(writer.write(e) for e in events))]
    parts = [p for c in out for p in c["candidates"][0]["content"]["parts"]]
    assert "".join(p["text"] for p in parts if "text" in p and not p.get("thought")) == "Hello"
    assert [p["functionCall"]["name"] for p in parts if "functionCall" in p] == ["write_file"]
    assert out[-1]["candidates"][0]["finishReason"] == "STOP"
    assert out[-1]["usageMetadata"] == chunks[-1]["usageMetadata"]
