"""OpenAI Chat Completions responses and errors: an upstream's chat.completion <-> canonical."""

from __future__ import annotations

import time
from typing import Any

from streams.translation.canonical import (
    CanonicalResponse,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
)
from streams.translation.common import new_id, render_openai_error, response_list
from streams.translation.openai_chat.request import text_parts, tool_call
from streams.translation.openai_chat.usage import parse_usage, render_usage

FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "error": "stop",
}

render_error = render_openai_error


def parse_response(body: dict[str, Any]) -> CanonicalResponse:
    choices = response_list(body, "choices")
    parts: list[Part] = []
    finish = None
    if choices:
        choice = choices[0]
        msg = choice.get("message") or {}
        finish = choice.get("finish_reason")
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ThinkingPart(reasoning))
        content = msg.get("content")
        if isinstance(content, str) and content:
            parts.append(TextPart(content))
        elif isinstance(content, list):
            parts.extend(text_parts(content, "choices[0].message.content"))
        if msg.get("refusal"):
            parts.append(TextPart(msg["refusal"]))
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function") or {}
            parts.append(ToolCallPart(tc.get("id") or new_id("call_"), fn.get("name") or "", fn.get("arguments") or ""))
    stop = FINISH_TO_STOP.get(finish or "stop", "end_turn")
    if stop == "end_turn" and any(isinstance(p, ToolCallPart) for p in parts):
        stop = "tool_use"
    return CanonicalResponse(
        id=body.get("id") or new_id("chatcmpl-"),
        model=body.get("model") or "",
        parts=parts,
        stop_reason=stop,
        usage=parse_usage(body.get("usage")),
    )


def render_response(
    resp: CanonicalResponse,
    *,
    model: str,
    keep_signatures: bool = False,
    client_tools: dict[str, Tool] | None = None,
) -> dict[str, Any]:
    """``keep_signatures`` and ``client_tools`` do not apply: Chat has neither signed reasoning nor
    tool namespaces, and refuses custom tools."""
    texts = [p.text for p in resp.parts if isinstance(p, TextPart)]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    calls = [tool_call(p) for p in resp.parts if isinstance(p, ToolCallPart)]
    if calls:
        msg["tool_calls"] = calls
    reasoning = "".join(p.text for p in resp.parts if isinstance(p, ThinkingPart))
    if reasoning:
        msg["reasoning_content"] = reasoning
    rid = resp.id if resp.id.startswith("chatcmpl") else "chatcmpl-" + resp.id
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": msg, "finish_reason": STOP_TO_FINISH[resp.stop_reason], "logprobs": None}],
        "usage": render_usage(resp.usage),
    }
