"""OpenAI Chat Completions wire format (``POST /v1/chat/completions``), written from the public API
reference independently of the gateway's translation code."""

from __future__ import annotations

import time
from typing import Any

from streams.providers.sim.plan import Plan, SimRequest, ToolSpec, json_format_schema
from streams.providers.sim.sse import Frame, chunk_tokens, data_frame, new_id, split_json
from streams.providers.sim.usage import PromptCache, Usage, estimate_tokens

DIALECT = "openai_chat"
DONE: Frame = (b"data: [DONE]\n\n", 0)
MALFORMED = b'data: {"id": "chatcmpl-broken", "object": "chat.completion.chunk", "choices": [{"delta": {"conte\n\n'
_FINISH = {"end": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


class WireError(ValueError):
    """A request the API would reject with 400; the message is shown to the client."""


# -- errors (shared with the Responses API: same company, same shape) ---------------------------------
_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


def error_body(status: int, message: str) -> dict[str, Any]:
    typ, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": typ, "param": None, "code": code}}


# -- request -------------------------------------------------------------------------------------------
def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def parse(body: dict[str, Any]) -> SimRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError("'messages' must be a non-empty array")
    req = SimRequest(dialect=DIALECT, model=model, stream=bool(body.get("stream")))
    if not all(isinstance(m, dict) for m in messages):
        raise WireError("each message must be an object")
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    # Trailing tool results (after the assistant's calls) mean: answer from them, do not call again.
    results: list[str] = []
    for msg in reversed(turns):
        if msg.get("role") not in ("tool", "function"):
            break
        results.append(_text_of(msg.get("content")))
    req.after_tool_result = bool(results)
    req.tool_result_text = "\n".join(reversed(results))
    req.last_user_text = next((_text_of(m.get("content")) for m in reversed(turns) if m.get("role") == "user"), "")
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") == "function" and isinstance(fn, dict) and fn.get("name"):
            req.tools.append(ToolSpec(str(fn["name"]), fn.get("parameters") or {}))
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        req.tool_choice = choice
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        req.tool_choice = "tool:" + str(choice["function"].get("name"))
    req.parallel_allowed = body.get("parallel_tool_calls", True) is not False
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    req.max_tokens = int(limit) if isinstance(limit, int) and limit > 0 else None
    req.json_schema = json_format_schema(body.get("response_format"))
    return req


def usage(body: dict[str, Any], raw: bytes, plan: Plan, cache: PromptCache) -> Usage:
    input_tokens = estimate_tokens(len(raw))
    cached = cache.openai(str(body.get("model")), body.get("prompt_cache_key"), input_tokens, raw)
    return Usage(input_tokens, plan.output_tokens, cache_read=cached)


def usage_json(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# -- response --------------------------------------------------------------------------------------------
def render(plan: Plan, req: SimRequest, u: Usage) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.text_str if plan.text or not plan.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if plan.tool_calls:
        message["tool_calls"] = [
            {"id": "call_" + c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in plan.tool_calls
        ]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[plan.stop]}],
        "usage": usage_json(u),
        "service_tier": "default",
        "system_fingerprint": "fp_weave_sim",
    }


def stream(plan: Plan, req: SimRequest, u: Usage, body: dict[str, Any], chunk_size: int) -> list[Frame]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": req.model,
        "service_tier": "default",
        "system_fingerprint": "fp_weave_sim",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, tokens: int = 0) -> Frame:
        payload = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            payload["usage"] = None  # every chunk but the last carries "usage": null
        return data_frame(payload, tokens)

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for text, n in chunk_tokens(plan.text, chunk_size):
        frames.append(chunk({"content": text}, tokens=n))
    for i, call in enumerate(plan.tool_calls):
        opening = {
            "index": i,
            "id": "call_" + call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        frames.append(chunk({"tool_calls": [opening]}))
        for piece in split_json(call.arguments):
            delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
            frames.append(chunk(delta, tokens=max(1, len(piece) // 4)))
    frames.append(chunk({}, _FINISH[plan.stop]))
    if include_usage:
        frames.append(data_frame({**base, "choices": [], "usage": usage_json(u)}))
    frames.append(DONE)
    return frames
