"""Codex's custom (freeform) tools across translation: offered to every dialect as a function of one
string, the calls coming back as ``custom_tool_call`` items (whole and streamed), history both ways."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from streams.translation import anthropic_messages as am
from streams.translation import gemini as gm
from streams.translation import openai_chat as oc
from streams.translation import openai_responses as rs
from streams.translation.canonical import CanonicalResponse, TextPart, ToolCallPart, TranslationError, Usage
from streams.translation.custom_tools import MAX_GRAMMAR_CHARS, InputStream, unwrap_input, wrap_input
from streams.translation.registry import get
from streams.translation.sse import SSEDecoder
from tests._openapi import OpenAPISpec, official_spec

GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use `apply_patch` to edit files. This is a FREEFORM tool.",
    "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR},
}
EXEC = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}
# Quotes, backslashes, a tab, non-ASCII and a character outside the BMP: everything JSON escapes.
PATCH = '*** Begin Patch\n*** Update File: hello.py\n@@\n-print("hi")\n+print("bye \\ \té 🎉")\n*** End Patch\n'


@pytest.fixture(scope="module")
def spec() -> OpenAPISpec:
    return official_spec()


def codex_body(**extra: Any) -> dict[str, Any]:
    """Codex's second turn: it called apply_patch, and sends the result back."""
    return {
        "model": "router/auto",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Make hello.py say bye"}]},
            {"type": "custom_tool_call", "call_id": "call_p1", "name": "apply_patch", "input": PATCH},
            {"type": "custom_tool_call_output", "call_id": "call_p1", "output": "Success. Updated hello.py"},
        ],
        "tools": [EXEC, APPLY_PATCH],
        "stream": True,
        **extra,
    }


# -- the request: every provider dialect gets a function of one string ----------------------------------
def test_custom_tool_is_a_function_of_one_string_with_the_grammar_in_its_description() -> None:
    req = rs.parse_request(codex_body())
    tool = next(t for t in req.tools if t.name == "apply_patch")
    assert tool.parameters == {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's whole input, as plain text."}},
        "required": ["input"],
    }
    assert tool.description.startswith("Use `apply_patch` to edit files.")
    assert "`input` string argument" in tool.description and GRAMMAR in tool.description
    assert not any("apply_patch" in d for d in req.extra.get("dropped", []))


def test_anthropic_provider_gets_the_tool_the_call_and_its_result() -> None:
    body = am.render_request(rs.parse_request(codex_body()), "claude-sonnet")
    tool = next(t for t in body["tools"] if t["name"] == "apply_patch")
    assert tool["input_schema"]["required"] == ["input"] and GRAMMAR in tool["description"]
    call, result = body["messages"][1], body["messages"][2]
    assert call["content"] == [{"type": "tool_use", "id": "call_p1", "name": "apply_patch", "input": {"input": PATCH}}]
    assert result["content"][0]["tool_use_id"] == "call_p1"
    assert "Success. Updated hello.py" in json.dumps(result["content"][0]["content"])


def test_chat_provider_gets_the_tool_the_call_and_its_result() -> None:
    body = oc.render_request(rs.parse_request(codex_body()), "gpt-4o")
    tool = next(t["function"] for t in body["tools"] if t["function"]["name"] == "apply_patch")
    assert tool["parameters"]["properties"]["input"]["type"] == "string" and GRAMMAR in tool["description"]
    call = next(m for m in body["messages"] if m.get("tool_calls"))
    assert call["tool_calls"][0]["function"]["name"] == "apply_patch"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH}
    result = next(m for m in body["messages"] if m["role"] == "tool")
    assert result["tool_call_id"] == "call_p1" and "Success" in json.dumps(result["content"])


def test_gemini_provider_gets_the_tool_the_call_and_its_result() -> None:
    body = gm.render_request(rs.parse_request(codex_body()), "gemini-2.5-pro")
    decls = [d for t in body["tools"] for d in t.get("functionDeclarations", [])]
    tool = next(d for d in decls if d["name"] == "apply_patch")
    assert GRAMMAR in tool["description"]
    parts = [p for c in body["contents"] for p in c["parts"]]
    call = next(p["functionCall"] for p in parts if "functionCall" in p)
    assert call["name"] == "apply_patch" and call["args"] == {"input": PATCH}
    response = next(p["functionResponse"] for p in parts if "functionResponse" in p)
    assert response["name"] == "apply_patch" and "Success" in json.dumps(response["response"])


def test_responses_provider_gets_custom_tools_and_items_back_as_they_were() -> None:
    body = rs.render_request(am.parse_request(am.render_request(rs.parse_request(codex_body()), "c")), "gpt-5")
    # Through Anthropic's wire the tool is a plain function; straight from canonical it is custom again:
    assert {t["type"] for t in body["tools"]} == {"function"}
    body = rs.render_request(rs.parse_request(codex_body(tool_choice={"type": "custom", "name": "apply_patch"})), "m")
    assert next(t for t in body["tools"] if t["name"] == "apply_patch") == APPLY_PATCH
    assert body["input"][2] == {"type": "custom_tool_call", "call_id": "call_p1", "name": "apply_patch", "input": PATCH}
    assert body["input"][3] == {
        "type": "custom_tool_call_output",
        "call_id": "call_p1",
        "output": "Success. Updated hello.py",
    }
    assert body["tool_choice"] == {"type": "custom", "name": "apply_patch"}


def test_a_huge_grammar_is_cut_in_the_description() -> None:
    tool = {**APPLY_PATCH, "format": {"type": "grammar", "syntax": "regex", "definition": "a" * 100_000}}
    req = rs.parse_request(codex_body(tools=[tool]))
    assert MAX_GRAMMAR_CHARS < len(req.tools[0].description) < MAX_GRAMMAR_CHARS + 500
    assert req.tools[0].description.endswith("(grammar truncated)")


def test_a_text_format_custom_tool_has_no_grammar() -> None:
    tool = {"type": "custom", "name": "note", "format": {"type": "text"}}
    req = rs.parse_request(codex_body(tools=[tool]))
    assert "grammar" not in req.tools[0].description
    assert rs.render_request(req, "m")["tools"] == [
        {"type": "custom", "name": "note", "description": "", "format": {"type": "text"}}
    ]


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        (
            {"type": "custom", "name": "x", "format": {"type": "grammar", "syntax": "lark"}},
            "tools[0].format.definition",
        ),
        ({"type": "custom", "name": "x", "format": {"type": "json"}}, "tools[0].format.type"),
        ({"type": "custom", "format": {"type": "text"}}, "tools[0].name"),
        ({"type": "custom", "name": "x", "format": "lark"}, "tools[0].format"),
    ],
)
def test_a_bad_custom_tool_is_a_400_naming_the_field(tool: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as exc:
        rs.parse_request(codex_body(tools=[tool]))
    assert exc.value.status == 400 and exc.value.param == param


def test_chat_caller_with_a_custom_tool_is_refused_clearly() -> None:
    body = {
        "model": "router/auto",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "custom", "custom": {"name": "apply_patch", "format": {"type": "text"}}}],
    }
    with pytest.raises(TranslationError) as exc:
        oc.parse_request(body)
    assert exc.value.status == 400 and exc.value.param == "tools[0].type"
    assert "Responses API" in exc.value.message
    assert oc.render_error(400, exc.value.message, param=exc.value.param)["error"]["type"] == "invalid_request_error"


# -- the answer: a call of the function form comes back as a custom_tool_call ---------------------------
def _answer(arguments: str) -> CanonicalResponse:
    return CanonicalResponse(
        id="msg_1",
        model="claude-up",
        parts=[
            TextPart("Patching."),
            ToolCallPart("toolu_1", "apply_patch", arguments),
            ToolCallPart("toolu_2", "exec_command", '{"cmd":"ls"}'),
        ],
        stop_reason="tool_use",
        usage=Usage(10, 5),
    )


def test_whole_answer_returns_a_custom_tool_call_with_the_raw_input(spec: OpenAPISpec) -> None:
    tools = rs.client_tools(rs.parse_request(codex_body()))
    out = rs.render_response(_answer(json.dumps({"input": PATCH})), model="router/auto", client_tools=tools)["output"]
    assert [i["type"] for i in out] == ["message", "custom_tool_call", "function_call"]
    custom = out[1]
    assert custom["input"] == PATCH and custom["call_id"] == "toolu_1" and custom["name"] == "apply_patch"
    assert custom["id"].startswith("ctc_") and custom["status"] == "completed" and "arguments" not in custom
    assert spec.errors("CustomToolCallResource", custom) == []


@pytest.mark.parametrize(
    ("arguments", "text"),
    [('{"patch": "P"}', "P"), ("*** Begin Patch\n", "*** Begin Patch\n"), ("{}", ""), ('"P"', "P")],
)
def test_a_model_that_shapes_the_arguments_otherwise_still_gives_its_text(arguments: str, text: str) -> None:
    assert unwrap_input(arguments) == text


def test_upstream_custom_tool_call_parses_to_the_function_form() -> None:
    body = {
        "id": "resp_1",
        "model": "gpt-5",
        "status": "completed",
        "output": [
            {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "apply_patch", "input": PATCH}
        ],
    }
    resp = rs.parse_response(body)
    assert resp.parts == [ToolCallPart("call_9", "apply_patch", wrap_input(PATCH))] and resp.stop_reason == "tool_use"
    rendered = am.render_response(resp, model="m")
    assert rendered["content"][0]["input"] == {"input": PATCH}


# -- streamed answers ---------------------------------------------------------------------------------
def _anthropic_stream(arguments: str, chunk: int) -> bytes:
    frames: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_up", "type": "message", "role": "assistant",
         "model": "claude-up", "content": [], "stop_reason": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "apply_patch", "input": {}}}),
    ]  # fmt: skip
    for i in range(0, len(arguments), chunk):
        delta = {"type": "input_json_delta", "partial_json": arguments[i : i + chunk]}
        frames.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    frames += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in frames)


def _translate(src: str, raw: bytes, **writer_kw: Any) -> bytes:
    dec, parser = SSEDecoder(), get(src).StreamParser()
    writer = get("openai_responses").StreamWriter("router/auto", **writer_kw)
    out = b""
    for i in range(0, len(raw), 13):
        for event, data in dec.feed(raw[i : i + 13]):
            out += b"".join(writer.write(ev) for ev in parser.feed(event, data))
    return out + b"".join(writer.write(ev) for ev in parser.close())


def _events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in SSEDecoder().feed(body)]


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_streamed_call_of_the_function_form_streams_a_custom_tool_call(spec: OpenAPISpec, chunk: int) -> None:
    tools = rs.client_tools(rs.parse_request(codex_body()))
    body = _translate("anthropic_messages", _anthropic_stream(json.dumps({"input": PATCH}), chunk), client_tools=tools)
    events = _events(body)
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "custom_tool_call" and added["item"]["input"] == ""
    deltas = [e for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert deltas and "".join(e["delta"] for e in deltas) == PATCH
    (done,) = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == PATCH and done["item_id"] == added["item"]["id"] == deltas[0]["item_id"]
    assert not any(e["type"].startswith("response.function_call") for e in events)
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item["type"] == "custom_tool_call" and item["input"] == PATCH and item["status"] == "completed"
    for e, schema in (
        (deltas[0], "ResponseCustomToolCallInputDeltaEvent"),
        (done, "ResponseCustomToolCallInputDoneEvent"),
    ):
        assert spec.stream_event_errors(e) == (schema, [])
    assert spec.errors("CustomToolCallResource", item) == []
    # What the official SDK reassembles from the stream:
    final = _sdk_final(body)
    (call,) = [i for i in final.output if i.type == "custom_tool_call"]
    assert (call.call_id, call.name, call.input) == ("toolu_1", "apply_patch", PATCH)


def test_streamed_arguments_of_another_shape_still_end_in_the_whole_input() -> None:
    tools = rs.client_tools(rs.parse_request(codex_body()))
    body = _translate("anthropic_messages", _anthropic_stream(json.dumps({"patch": PATCH}), 5), client_tools=tools)
    events = _events(body)
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == PATCH  # nothing while it streamed, all of it at the end
    assert next(e for e in events if e["type"] == "response.custom_tool_call_input.done")["input"] == PATCH


def test_without_the_clients_tools_a_call_stays_a_function_call() -> None:
    body = _translate("anthropic_messages", _anthropic_stream(json.dumps({"input": PATCH}), 9))
    item = next(e for e in _events(body) if e["type"] == "response.output_item.done")["item"]
    assert item["type"] == "function_call" and json.loads(item["arguments"]) == {"input": PATCH}


def test_upstream_custom_tool_call_stream_becomes_the_function_form() -> None:
    def ev(kind: str, **payload: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n"

    item = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "apply_patch", "input": ""}
    half = len(PATCH) // 2
    raw = (
        ev("response.created", response={"id": "resp_1", "model": "gpt-5"})
        + ev("response.output_item.added", output_index=0, item=item)
        + ev("response.custom_tool_call_input.delta", output_index=0, item_id="ctc_1", delta=PATCH[:half])
        + ev("response.custom_tool_call_input.delta", output_index=0, item_id="ctc_1", delta=PATCH[half:])
        + ev("response.custom_tool_call_input.done", output_index=0, item_id="ctc_1", input=PATCH)
        + ev("response.output_item.done", output_index=0, item={**item, "input": PATCH, "status": "completed"})
        + ev("response.completed", response={"id": "resp_1", "status": "completed", "usage": None})
    ).encode()
    writer = am.StreamWriter("m")
    dec, parser = SSEDecoder(), rs.StreamParser()
    out = b"".join(writer.write(e) for event, data in dec.feed(raw) for e in parser.feed(event, data))
    partial = "".join(d["delta"]["partial_json"] for d in _events(out) if d["type"] == "content_block_delta")
    assert json.loads(partial) == {"input": PATCH} and writer.stop_reason == "tool_use"
    # and back to a Responses client that declared the tool, custom again:
    tools = rs.client_tools(rs.parse_request(codex_body()))
    back = _events(_translate("openai_responses", raw, client_tools=tools))
    assert next(e for e in back if e["type"] == "response.custom_tool_call_input.done")["input"] == PATCH


# -- the incremental decoder ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arguments", [wrap_input(PATCH), json.dumps({"input": PATCH}), ' { "input" : ' + json.dumps(PATCH) + "}"]
)
def test_input_stream_decodes_any_split_of_the_arguments(arguments: str) -> None:
    for size in (1, 2, 3, 6, 11):
        stream = InputStream()
        text = "".join(stream.feed(arguments[i : i + size]) for i in range(0, len(arguments), size))
        assert text == PATCH, size


def test_input_stream_gives_nothing_for_other_shapes() -> None:
    for arguments in ('{"patch": "x"}', '["x"]', "*** Begin Patch"):
        stream = InputStream()
        assert "".join(stream.feed(c) for c in arguments) == ""


# -- helpers -------------------------------------------------------------------------------------------
def _sdk_final(body: bytes) -> Any:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="k",
        base_url="http://router/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )
    with client.responses.stream(model="m", input="x") as s:
        return s.get_final_response()


def test_a_custom_tool_in_a_namespace_comes_back_custom_in_its_namespace() -> None:
    ns = {"type": "namespace", "name": "edits", "tools": [APPLY_PATCH]}
    tools = rs.client_tools(rs.parse_request(codex_body(tools=[EXEC, ns])))
    out = rs.render_response(_answer(wrap_input(PATCH)), model="m", client_tools=tools)["output"]
    custom = next(i for i in out if i.get("name") == "apply_patch")
    assert (custom["type"], custom["namespace"], custom["input"]) == ("custom_tool_call", "edits", PATCH)
    assert "namespace" not in next(i for i in out if i.get("name") == "exec_command")
