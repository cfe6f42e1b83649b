"""Request/response translation: round trips, captured client requests, cross-dialect, bad input."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streams.translation import anthropic_messages as am
from streams.translation import openai_chat as oc
from streams.translation import openai_responses as rs
from streams.translation.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    DocumentPart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Thinking,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    TranslationError,
    Usage,
)
from streams.translation.common import open_signature
from streams.translation.gemini.request import with_url_target
from streams.translation.registry import DIALECTS, get
from tests._support import missing

CAPTURED = Path("/work/shared/reference/captured_requests")
DIALECT_OF_PATH = {
    "/v1/messages": "anthropic_messages",
    "/v1/chat/completions": "openai_chat",
    "/v1/responses": "openai_responses",
}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _untrim(o: Any) -> Any:
    """The captured bodies are trimmed: lists end in a "...<+N items>" marker that no client sends."""
    if isinstance(o, list):
        return [_untrim(x) for x in o if not (isinstance(x, str) and re.fullmatch(r"\.\.\.<\+\d+ items>", x))]
    if isinstance(o, dict):
        return {k: _untrim(v) for k, v in o.items()}
    return o


def captured(name: str) -> dict[str, Any]:
    path = CAPTURED / name
    if not path.is_file():
        missing(f"{path} not present")
    return _untrim(json.loads(path.read_text())["body"])


def _conversation(dialect: str) -> CanonicalRequest:
    return CanonicalRequest(
        model="client-model",
        dialect=dialect,  # type: ignore[arg-type]
        system=[TextPart("You are terse."), TextPart("Use tools.")],
        messages=[
            Message(
                "user", [TextPart("Weather in Paris and Rome?"), ImagePart(data="iVBORw0KGgo=", media_type="image/png")]
            ),
            Message(
                "assistant",
                [
                    TextPart("Checking both."),
                    ToolCallPart("call_1", "get_weather", '{"city":"Paris"}'),
                    ToolCallPart("call_2", "get_weather", '{"city":"Rome"}'),
                ],
            ),
            Message("tool", [ToolResultPart("call_1", [TextPart("18C")]), ToolResultPart("call_2", [TextPart("25C")])]),
            Message("assistant", [TextPart("Paris 18C, Rome 25C.")]),
            Message("user", [TextPart("Thanks")]),
        ],
        tools=[Tool("get_weather", "Current weather", WEATHER)],
        tool_choice=ToolChoice("auto", parallel=True),
        max_tokens=1000,
        temperature=0.5,
        top_p=0.9,
        stream=True,
    )


def test_openai_chat_round_trip() -> None:
    x = _conversation("openai_chat")
    x.stop = ["END"]
    x.thinking = Thinking(enabled=True, effort="low")
    x.response_format = ResponseFormat("json_schema", schema=WEATHER, name="w", strict=True)
    x.metadata = {"k": "v"}
    x.user = "u1"
    x.messages[1].parts.insert(0, ThinkingPart("let me think"))  # reasoning_content, same dialect only
    body = oc.render_request(x, "gpt-x")
    assert body["stream_options"] == {"include_usage": True}
    back = oc.parse_request(body)
    assert back.extra == {"stream_options": {"include_usage": True}}
    assert replace(back, extra={}) == replace(x, model="gpt-x")


def test_anthropic_round_trip() -> None:
    x = _conversation("anthropic_messages")
    x.temperature = None
    x.top_p = None
    x.stop = ["END"]
    x.thinking = Thinking(enabled=True, budget_tokens=2048)
    x.max_tokens = 8000
    x.user = '{"device_id":"abc"}'
    x.messages[1].parts.insert(0, ThinkingPart("hmm", signature="sig-1"))
    x.messages[1].parts.insert(1, ThinkingPart("", signature="opaque", redacted=True))
    x.messages[0].parts.append(DocumentPart(data="JVBERi0=", media_type="application/pdf", title="spec"))
    x.messages[2].parts[1].is_error = True
    x.messages.insert(3, Message("system", [TextPart("Mid-conversation reminder")]))
    body = am.render_request(x, "claude-x")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # tool results ride in a user message, before anything else in it
    assert body["messages"][2]["role"] == "user"
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "tool_result"]
    back = am.parse_request(body)
    assert replace(back, extra={}) == replace(x, model="claude-x")


def test_responses_round_trip() -> None:
    x = _conversation("openai_responses")
    x.thinking = Thinking(enabled=True, effort="high")
    x.response_format = ResponseFormat("json_object")
    x.metadata = {"k": "v"}
    x.messages[1].parts.insert(0, ThinkingPart("summary", signature="enc", id="rs_1"))
    x.messages[2].parts[0].content.append(ImagePart(url="https://x/y.png"))
    body = rs.render_request(x, "gpt-5")
    kinds = [i["type"] for i in body["input"]]
    assert kinds == ["message", "message", "reasoning", "message", "function_call", "function_call",
                     "function_call_output", "function_call_output", "message", "message"]  # fmt: skip
    back = rs.parse_request(body)
    assert replace(back, extra={}) == replace(x, model="gpt-5")


@pytest.mark.parametrize(
    "name",
    [
        "aider_chat_completions_stream.json",
        "anthropic_sdk_messages_stream_tools.json",
        "claude_code_haiku_messages.json",
        "claude_code_turn1_messages.json",
        "claude_code_turn2_tool_result_messages.json",
        "codex_turn1_responses.json",
        "codex_turn2_function_call_output_responses.json",
        "openai_sdk_chat_stream_tools.json",
        "openai_sdk_responses_stream.json",
    ],
)
def test_captured_requests_parse_and_translate_everywhere(name: str) -> None:
    path = CAPTURED / name
    if not path.is_file():
        missing("captured requests not present")
    dialect = DIALECT_OF_PATH[json.loads(path.read_text())["path"]]
    body = captured(name)
    req = get(dialect).parse_request(copy.deepcopy(body))
    assert req.dialect == dialect and req.messages

    def calls(r: CanonicalRequest) -> list[tuple[str, str]]:
        return [(p.id, p.name) for m in r.messages for p in m.parts if isinstance(p, ToolCallPart)]

    def results(r: CanonicalRequest) -> list[str]:
        return [p.tool_call_id for m in r.messages for p in m.parts if isinstance(p, ToolResultPart)]

    for codec in DIALECTS.values():
        wire = codec.render_request(req, "target", supports_thinking=True)
        if codec.dialect == "gemini":  # a Gemini body's model is in the URL
            wire = with_url_target(wire, "target", stream=req.stream)
        again = codec.parse_request(wire)
        assert calls(again) == calls(req) and results(again) == results(req)
        assert [t.name for t in again.tools] == [t.name for t in req.tools]
        assert "".join(p.text for p in again.system) == "".join(p.text for p in req.system)


def test_claude_code_system_message_and_tool_ids_to_openai_chat() -> None:
    req = am.parse_request(captured("claude_code_turn2_tool_result_messages.json"))
    assert [m.role for m in req.messages] == ["user", "system", "assistant", "tool"]
    assert len(req.system) == 3 and req.system[1].text.startswith("You are a Claude agent")
    body = oc.render_request(req, "gpt-4.1", supports_thinking=False)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "system", "system", "user", "system", "assistant", "tool"]
    call = body["messages"][5]["tool_calls"][0]
    assert call["id"] == "toolu_stub_1" and call["function"]["name"] == "Read"
    assert json.loads(call["function"]["arguments"]) == {"file_path": "/home/dev/project/hello.py"}
    assert body["messages"][6] == {"role": "tool", "tool_call_id": "toolu_stub_1", "content": "1\tprint('hello')\n2\t"}
    assert "reasoning_effort" not in body and body["max_tokens"] == 64000
    assert {t["function"]["name"] for t in body["tools"]} >= {"Bash", "Read"}
    assert body["stream_options"] == {"include_usage": True}
    with_thinking = oc.render_request(req, "o4-mini", supports_thinking=True)
    assert with_thinking["reasoning_effort"] == "high" and with_thinking["max_completion_tokens"] == 64000


def test_codex_function_call_output_to_anthropic() -> None:
    req = rs.parse_request(captured("codex_turn2_function_call_output_responses.json"))
    assert any("namespace" in d for d in req.extra["dropped"]) and any("web_search" in d for d in req.extra["dropped"])
    assert "close_agent" in {t.name for t in req.tools}
    assert rs.client_tools(req)["close_agent"].kind == "namespace:multi_agent_v1"
    body = am.render_request(req, "claude-sonnet", supports_thinking=True)
    assert len(body["system"]) == 3 and body["max_tokens"] == 4096
    assistant, result = body["messages"][-2], body["messages"][-1]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_stub_1", "name": "exec_command", "input": {"cmd": "cat hello.py"}}
        ],
    }
    assert result["role"] == "user" and result["content"][0]["tool_use_id"] == "call_stub_1"
    assert all(t.get("type") is None for t in body["tools"])  # no hosted tool leaks to Anthropic
    assert "store" not in body and "prompt_cache_key" not in body  # Responses-only fields stay behind


def test_signed_thinking_never_crosses_providers() -> None:
    req = _conversation("anthropic_messages")
    req.thinking = Thinking(enabled=True, budget_tokens=4096)
    req.max_tokens = 8000
    req.messages[1].parts.insert(0, ThinkingPart("private", signature="anthropic-sig"))
    chat = oc.render_request(req, "gpt")
    assert "reasoning_content" not in json.dumps(chat) and "anthropic-sig" not in json.dumps(chat)
    resp = rs.render_request(req, "gpt-5")
    assert "anthropic-sig" not in json.dumps(resp) and resp["reasoning"]["effort"] == "medium"
    # the other way: OpenAI reasoning is never sent to Anthropic, and thinking stays valid
    other = replace(copy.deepcopy(req), dialect="openai_responses")
    other.messages[1].parts[0] = ThinkingPart("summary", signature="openai-enc", id="rs_1")
    body = am.render_request(other, "claude")
    assert "openai-enc" not in json.dumps(body)
    # same dialect keeps it, unless the target model has no thinking
    kept = am.render_request(req, "claude")
    assert kept["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "private",
        "signature": "anthropic-sig",
    }
    no_thinking = am.render_request(req, "claude-3-haiku", supports_thinking=False)
    assert "thinking" not in no_thinking and "anthropic-sig" not in json.dumps(no_thinking)


def test_anthropic_thinking_turned_off_when_pending_tool_turn_has_no_thinking() -> None:
    req = _conversation("anthropic_messages")
    req.messages = req.messages[:3]  # ends with tool results of an assistant turn without thinking
    req.thinking = Thinking(enabled=True, budget_tokens=2048)
    req.max_tokens = 8000
    req.temperature = None
    req.top_p = None
    body = am.render_request(req, "claude")
    assert "thinking" not in body
    req.messages[1].parts.insert(0, ThinkingPart("t", signature="s"))
    assert am.render_request(req, "claude")["thinking"]["type"] == "enabled"


def test_anthropic_defaults_and_budget_clamp() -> None:
    req = CanonicalRequest(model="m", messages=[Message("user", [TextPart("hi")])], dialect="openai_chat")
    req.thinking = Thinking(enabled=True, effort="high")
    req.temperature = 0.2
    body = am.render_request(req, "claude")
    assert body["max_tokens"] == 4096
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4095}
    assert "temperature" not in body  # Anthropic rejects temperature != 1 with thinking
    req.max_tokens = 512  # too small for the minimum budget: no thinking rather than a 400
    assert "thinking" not in am.render_request(req, "claude")
    assert "thinking" not in am.render_request(req, "claude", supports_thinking=False)


def test_anthropic_adaptive_thinking_and_effort_relay() -> None:
    body = captured("claude_code_turn1_messages.json")
    req = am.parse_request(body)
    out = am.render_request(req, "claude-opus")
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"] == {"effort": "high"}
    assert out["context_management"] == body["context_management"]
    bare = am.render_request(req, "claude-3-5-haiku", supports_thinking=False)
    assert "thinking" not in bare and "output_config" not in bare and "context_management" not in bare


def test_tool_choice_and_response_format_cross_dialect() -> None:
    req = oc.parse_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": WEATHER}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": WEATHER}},
            "seed": 7,
        }
    )
    assert req.tool_choice == ToolChoice("tool", "f", parallel=False) and req.extra == {"seed": 7}
    a = am.render_request(req, "claude")
    assert a["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert "seed" not in a and "JSON" in a["system"][-1]["text"]
    r = rs.render_request(req, "gpt")
    assert r["tool_choice"] == {"type": "function", "name": "f"} and r["parallel_tool_calls"] is False
    assert r["text"]["format"] == {"type": "json_schema", "name": "n", "schema": WEATHER}
    assert oc.render_request(req, "gpt")["seed"] == 7  # same dialect keeps unknown fields


def test_tool_result_images_follow_tool_messages_in_chat() -> None:
    req = CanonicalRequest(
        model="m",
        dialect="anthropic_messages",
        messages=[
            Message("assistant", [ToolCallPart("toolu_1", "screenshot", "{}")]),
            Message(
                "tool", [ToolResultPart("toolu_1", [TextPart("here"), ImagePart(data="AAA", media_type="image/png")])]
            ),
        ],
    )
    msgs = oc.render_request(req, "gpt")["messages"]
    assert msgs[1] == {"role": "tool", "tool_call_id": "toolu_1", "content": "here"}
    assert msgs[2]["role"] == "user" and msgs[2]["content"][0]["image_url"]["url"] == "data:image/png;base64,AAA"


def test_foreign_tool_ids_are_made_valid_for_anthropic_consistently() -> None:
    req = CanonicalRequest(
        model="m",
        dialect="openai_chat",
        messages=[
            Message("user", [TextPart("go")]),
            Message("assistant", [ToolCallPart("call:1/x", "f", "not json")]),
            Message("tool", [ToolResultPart("call:1/x", [TextPart("ok")])]),
        ],
    )
    msgs = am.render_request(req, "claude")["messages"]
    assert msgs[1]["content"][0]["id"] == msgs[2]["content"][0]["tool_use_id"] == "call_1_x"
    assert msgs[1]["content"][0]["input"] == {"_raw_arguments": "not json"}


@pytest.mark.parametrize(
    ("dialect", "body", "param"),
    [
        ("openai_chat", {"model": "m"}, "messages"),
        ("openai_chat", {"messages": []}, "model"),
        ("openai_chat", {"model": "m", "messages": "hi"}, "messages"),
        ("openai_chat", {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            "openai_chat",
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {}}]}]},
            "messages[0].tool_calls[0].function.name",
        ),
        ("openai_chat", {"model": "m", "messages": [], "max_tokens": "10"}, "max_tokens"),
        ("openai_chat", {"model": "m", "messages": [], "tools": {}}, "tools"),
        ("anthropic_messages", {"model": "m", "messages": {}}, "messages"),
        ("anthropic_messages", {"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            "anthropic_messages",
            {"model": "m", "messages": [], "thinking": {"type": "enabled"}},
            "thinking.budget_tokens",
        ),
        (
            "anthropic_messages",
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        (
            "anthropic_messages",
            {"model": "m", "messages": [], "tool_choice": {"type": "sometimes"}},
            "tool_choice.type",
        ),
        ("openai_responses", {"model": "m"}, "input"),
        ("openai_responses", {"model": "m", "input": 3}, "input"),
        ("openai_responses", {"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ("openai_responses", {"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ],
)
def test_bad_input_names_the_field(dialect: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as exc:
        get(dialect).parse_request(body)
    assert exc.value.param == param and exc.value.status == 400


# ---------------------------------------------------------------- non-streaming responses

RESP = CanonicalResponse(
    id="r1",
    model="up",
    parts=[TextPart("Hi"), ToolCallPart("call_9", "get_weather", '{"city":"Oslo"}')],
    stop_reason="tool_use",
    usage=Usage(input_tokens=100, output_tokens=7, cached_input_tokens=40, reasoning_tokens=0),
)


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_response_round_trip(dialect: str) -> None:
    codec = get(dialect)
    body = codec.render_response(RESP, model="client-model")
    back = codec.parse_response(json.loads(json.dumps(body)))
    assert back.parts == RESP.parts and back.stop_reason == "tool_use" and back.usage == RESP.usage
    assert back.model == "client-model"


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "content_filter")],
)
def test_chat_finish_reasons(finish: str, stop: str) -> None:
    body = {"id": "c", "model": "m", "choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    assert oc.parse_response(body).stop_reason == stop
    assert oc.render_response(replace(RESP, stop_reason=stop), model="m")["choices"][0]["finish_reason"] == finish  # type: ignore[arg-type]


def test_anthropic_usage_and_stop_mapping() -> None:
    body = {
        "id": "msg_1",
        "model": "claude",
        "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "x"}],
        "stop_reason": "max_tokens",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 80,
            "cache_creation_input_tokens": 10,
        },
    }
    r = am.parse_response(body)
    assert r.usage == Usage(input_tokens=100, output_tokens=5, cached_input_tokens=80, cache_creation_input_tokens=10)
    assert r.stop_reason == "max_tokens" and r.parts[0] == ThinkingPart("t", signature="s")
    out = am.render_response(r, model="claude")
    assert out["usage"]["input_tokens"] == 10 and out["stop_reason"] == "max_tokens"
    # another provider's reasoning reaches an Anthropic client without a (fake) signature
    assert am.render_response(r, model="c", keep_signatures=False)["content"] == [{"type": "text", "text": "x"}]


def test_responses_incomplete_and_usage() -> None:
    body = {
        "id": "resp_1",
        "model": "gpt-5",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "s"}], "encrypted_content": "e"}],
        "usage": {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 9,
                  "output_tokens_details": {"reasoning_tokens": 9}},
    }  # fmt: skip
    r = rs.parse_response(body)
    assert r.stop_reason == "max_tokens"
    assert r.usage == Usage(input_tokens=50, output_tokens=9, cached_input_tokens=20, reasoning_tokens=9)
    assert r.parts == [ThinkingPart("s", signature="e", id="rs_1")]
    out = rs.render_response(r, model="gpt-5", keep_signatures=True)
    assert out["status"] == "incomplete"
    assert open_signature(out["output"][0]["encrypted_content"]) == ("e", "gpt-5", "rs_1")


def test_chat_usage_cached_tokens() -> None:
    u = {"prompt_tokens": 100, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 64},
         "completion_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip
    assert oc.parse_usage(u) == Usage(100, 3, cached_input_tokens=64, reasoning_tokens=2)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (503, "overloaded_error"),
    ],
)
def test_anthropic_error_body(status: int, kind: str) -> None:
    assert am.render_error(status, "boom") == {"type": "error", "error": {"type": kind, "message": "boom"}}


@pytest.mark.parametrize("dialect", ["openai_chat", "openai_responses"])
def test_openai_error_body(dialect: str) -> None:
    body = get(dialect).render_error(400, "messages must be a list", param="messages")
    assert body == {
        "error": {
            "message": "messages must be a list",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }
    assert get(dialect).render_error(429, "slow")["error"]["type"] == "rate_limit_error"
    assert get(dialect).render_error(502, "up")["error"]["type"] == "server_error"


def test_registry() -> None:
    assert set(DIALECTS) == {"openai_chat", "openai_responses", "anthropic_messages", "gemini"}
    assert get("anthropic_messages").parse_request is am.parse_request
    with pytest.raises(ValueError, match="unknown dialect"):
        get("bedrock")
