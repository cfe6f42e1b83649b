"""Anthropic Messages wire format (``POST /v1/messages``, ``/v1/messages/count_tokens``), as Claude
Code and the anthropic SDK use it."""

from __future__ import annotations

import json
from typing import Any

from streams.providers.sim.plan import Plan, SimRequest, ToolSpec, json_format_schema, json_instruction_schema
from streams.providers.sim.signatures import InvalidSignature, sign, valid
from streams.providers.sim.sse import Frame, chunk_tokens, named_frame, new_id, split_json
from streams.providers.sim.usage import PromptCache, Usage, estimate_tokens

DIALECT = "anthropic_messages"
MALFORMED = (
    b"event: content_block_delta\n"
    b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "bro\n\n'
)
_STOP = {"end": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class WireError(ValueError):
    """A request the API would reject with 400."""


def error_body(status: int, message: str) -> dict[str, Any]:
    typ = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": typ, "message": message}, "request_id": new_id("req_")}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _user_text_of(content: Any) -> str:
    # Claude Code sends its context as separate <system-reminder> text blocks of the user turn.
    if isinstance(content, list):
        content = [b for b in content if not (isinstance(b, dict) and str(b.get("text", "")).startswith("<system-"))]
    return _text_of(content)


def _tool_results(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [_text_of(b.get("content")) for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def parse(body: dict[str, Any], *, count_only: bool = False) -> SimRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError("model: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError("messages: Field required (a non-empty array)")
    if not count_only and not isinstance(body.get("max_tokens"), int):
        raise WireError("max_tokens: Field required")
    if not all(isinstance(m, dict) for m in messages):
        raise WireError("messages: each message must be an object")
    req = SimRequest(dialect=DIALECT, model=model, stream=bool(body.get("stream")))
    if not count_only:
        check_signatures(model, messages)
    # Claude Code puts role "system" messages inside `messages`; they are not turns.
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    if turns and turns[-1].get("role") == "user":
        results = _tool_results(turns[-1].get("content"))
        req.after_tool_result = bool(results)
        req.tool_result_text = "\n".join(results)
    for m in reversed(turns):
        if m.get("role") == "user":
            text = _user_text_of(m.get("content"))
            if text:
                req.last_user_text = text
                break
    for tool in body.get("tools") or []:
        # Custom tools carry input_schema; server tools (web_search_..., bash_...) are run by the API.
        if isinstance(tool, dict) and tool.get("name") and "input_schema" in tool:
            req.tools.append(ToolSpec(str(tool["name"]), tool.get("input_schema") or {}))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "none":
            req.tool_choice = "none"
        elif kind == "any":
            req.tool_choice = "required"
        elif kind == "tool" and choice.get("name"):
            req.tool_choice = "tool:" + str(choice["name"])
        req.parallel_allowed = not choice.get("disable_parallel_tool_use", False)
    req.max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else None
    thinking = body.get("thinking")
    req.thinking = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    config = body.get("output_config")
    req.json_schema = json_format_schema(config.get("format") if isinstance(config, dict) else None)
    if req.json_schema is None:  # asked in the system prompt instead (how other dialects' JSON mode arrives)
        req.json_schema = json_instruction_schema(_system_text(body.get("system")))
    return req


def check_signatures(model: str, messages: list[dict[str, Any]]) -> None:
    """Thinking blocks must come back as this model made them (Anthropic's 400 otherwise)."""
    for i, m in enumerate(messages):
        content = m.get("content")
        if m.get("role") != "assistant" or not isinstance(content, list):
            continue
        for j, b in enumerate(content):
            if not isinstance(b, dict):
                continue
            if b.get("type") == "thinking" and not valid(model, str(b.get("thinking", "")), b.get("signature")):
                raise InvalidSignature(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            if b.get("type") == "redacted_thinking" and not valid(model, "", b.get("data")):
                raise InvalidSignature(f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block")


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return ""


def input_tokens(raw_len: int) -> int:
    return estimate_tokens(raw_len)


def usage(body: dict[str, Any], raw: bytes, plan: Plan, cache: PromptCache) -> Usage:
    total = estimate_tokens(len(raw))
    read = write = 0
    if b'"cache_control"' in raw:  # cheap pre-check: most requests skip the prefix walk
        read, write = cache.anthropic(str(body.get("model")), body, total)
    return Usage(total, plan.output_tokens, cache_read=read, cache_write=write)


def usage_json(u: Usage, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        # Anthropic's input_tokens excludes the cached part.
        "input_tokens": max(0, u.input_tokens - u.cache_read - u.cache_write),
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": u.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def _blocks(plan: Plan, model: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if plan.thinking:
        text = plan.thinking_str
        blocks.append({"type": "thinking", "thinking": text, "signature": sign(model, text)})
    if plan.text or not plan.tool_calls:
        blocks.append({"type": "text", "text": plan.text_str})
    return blocks


def _tool_input(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


def render(plan: Plan, req: SimRequest, u: Usage) -> dict[str, Any]:
    content = _blocks(plan, req.model)
    for call in plan.tool_calls:
        content.append(
            {"type": "tool_use", "id": "toolu_" + call.id, "name": call.name, "input": _tool_input(call.arguments)}
        )
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": content,
        "stop_reason": _STOP[plan.stop],
        "stop_sequence": None,
        "usage": usage_json(u),
    }


def stream(plan: Plan, req: SimRequest, u: Usage, chunk_size: int) -> list[Frame]:
    start: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_json(u, output_tokens=1),
    }
    frames = [
        named_frame("message_start", {"type": "message_start", "message": start}),
        named_frame("ping", {"type": "ping"}),
    ]
    index = 0

    def block(opening: dict[str, Any], deltas: list[tuple[dict[str, Any], int]]) -> None:
        nonlocal index
        frames.append(
            named_frame(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}
            )
        )
        for delta, n in deltas:
            frames.append(
                named_frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}, n)
            )
        frames.append(named_frame("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if plan.thinking:
        deltas = [({"type": "thinking_delta", "thinking": t}, n) for t, n in chunk_tokens(plan.thinking, chunk_size)]
        deltas.append(({"type": "signature_delta", "signature": sign(req.model, plan.thinking_str)}, 0))
        block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
    if plan.text or not plan.tool_calls:
        block(
            {"type": "text", "text": ""},
            [({"type": "text_delta", "text": t}, n) for t, n in chunk_tokens(plan.text, chunk_size)],
        )
    for call in plan.tool_calls:
        block(
            {"type": "tool_use", "id": "toolu_" + call.id, "name": call.name, "input": {}},
            [
                ({"type": "input_json_delta", "partial_json": p}, max(1, len(p) // 4))
                for p in split_json(call.arguments)
            ],
        )
    final_usage = usage_json(u)
    del final_usage["cache_creation"], final_usage["service_tier"]
    frames.append(
        named_frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _STOP[plan.stop], "stop_sequence": None},
                "usage": final_usage,
            },
        )
    )
    frames.append(named_frame("message_stop", {"type": "message_stop"}))
    return frames
