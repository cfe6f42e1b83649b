"""Codex's custom ``apply_patch`` tool through the gateway to the simulator on every provider dialect,
with the official OpenAI SDK (Responses), plain and streamed, over two turns.

The simulator is not scripted: it calls a tool only because the prompt asks for an edit, and answers a
plain question plainly. Other dialects get the tool as a function of one string ``input``; what comes
back to the client is a ``custom_tool_call`` whose ``input`` is the patch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from _gateway_harness import ALL_DIALECTS, MODEL_FOR, Stack, running_stack

GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\nend_patch: "*** End Patch" LF?\n'
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    },
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool.",
        "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR},
    },
]
EDIT = "Edit hello.py so that it prints bye"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


def _client(st: Stack, dialect: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="k", base_url=st.url + "/v1", max_retries=0, default_headers={"x-test-route": MODEL_FOR[dialect]}
    )


def _respond(st: Stack, dialect: str, items: list[dict[str, Any]], stream: bool) -> Any:
    client = _client(st, dialect)
    kwargs: dict[str, Any] = {"model": "router/auto", "input": items, "tools": TOOLS, "instructions": "You are Codex."}
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    if any(i.type == "custom_tool_call" for i in final.output):
        assert "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds
        assert not any(k.startswith("response.function_call_arguments") for k in kinds), kinds
    return final


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _upstream_tool(st: Stack) -> dict[str, Any]:
    """The apply_patch tool as the gateway sent it to the provider, in the provider's dialect."""
    body = json.loads(st.last().body)
    tools = body.get("tools") or []
    flat = [d for t in tools for d in t.get("functionDeclarations", [t])]  # Gemini groups them
    tool = next(t for t in flat if (t.get("function") or t).get("name") == "apply_patch")
    return tool.get("function") or tool


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("dialect", ALL_DIALECTS)
def test_an_edit_request_gets_a_custom_tool_call_with_the_patch(stack: Stack, dialect: str, stream: bool) -> None:
    resp = _respond(stack, dialect, [_user(EDIT)], stream)
    calls = [i for i in resp.output if i.type == "custom_tool_call"]
    assert [c.name for c in calls] == ["apply_patch"], resp.output
    patch = calls[0].input
    assert patch.startswith("*** Begin Patch\n*** Update File: hello.py\n") and patch.endswith("*** End Patch\n")
    assert stack.last().dialect == dialect
    tool = _upstream_tool(stack)
    if dialect == "openai_responses":
        assert tool["type"] == "custom" and tool["format"]["definition"] == GRAMMAR  # relayed as it was
    else:
        schema = tool.get("parameters") or tool.get("input_schema") or tool.get("parametersJsonSchema")
        assert json.dumps(schema["properties"]["input"]["type"]).lower() == '"string"', tool
        assert GRAMMAR in tool["description"]

    # Turn 2: Codex applied the patch and sends the call and its output back.
    history = [
        _user(EDIT),
        {"type": "custom_tool_call", "call_id": calls[0].call_id, "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call_output", "call_id": calls[0].call_id, "output": "Success. Updated hello.py"},
    ]
    done = _respond(stack, dialect, history, stream)
    assert done.output_text.startswith("Done: checked the tool output."), done.output
    assert not [i for i in done.output if i.type in ("custom_tool_call", "function_call")]
    sent = stack.last().body.decode()
    assert "Success. Updated hello.py" in sent and "*** Update File: hello.py" in sent


@pytest.mark.parametrize("dialect", ALL_DIALECTS)
def test_a_plain_question_calls_no_tool(stack: Stack, dialect: str) -> None:
    resp = _respond(stack, dialect, [_user("What is a closure in Python? Answer in one sentence.")], stream=True)
    assert resp.output_text and not [i for i in resp.output if i.type != "message"], resp.output


def test_a_chat_caller_with_a_custom_tool_gets_a_clear_400(stack: Stack) -> None:
    body = {
        "model": "router/auto",
        "messages": [{"role": "user", "content": EDIT}],
        "tools": [{"type": "custom", "custom": {"name": "apply_patch", "format": {"type": "text"}}}],
    }
    resp = httpx.post(stack.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer k"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "tools[0].type"
    assert "/v1/responses" in error["message"]
