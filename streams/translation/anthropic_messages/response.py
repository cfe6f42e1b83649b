"""Anthropic Messages responses and errors: an upstream's message <-> canonical."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.anthropic_messages.blocks import render_part
from streams.translation.anthropic_messages.usage import parse_usage, render_usage
from streams.translation.canonical import (
    CanonicalResponse,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
)
from streams.translation.common import new_id, response_list, sealed_part

_encode = msgspec.json.encode

STOP_MAP: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "pause_turn": "end_turn",
    "refusal": "content_filter",
    "model_context_window_exceeded": "max_tokens",
}
STOP_OUT = {"content_filter": "refusal", "error": "end_turn"}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STATUS_OF_TYPE = {v: k for k, v in _ERROR_TYPES.items()}


def error_type_for(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    if status == 503:
        return "overloaded_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def parse_response(body: dict[str, Any]) -> CanonicalResponse:
    content = response_list(body, "content")
    parts: list[Part] = []
    for b in content:
        kind = b.get("type")
        if kind == "text":
            parts.append(TextPart(b.get("text") or ""))
        elif kind == "tool_use":
            parts.append(
                ToolCallPart(b.get("id") or new_id("toolu_"), b.get("name") or "", _encode(b.get("input", {})).decode())
            )
        elif kind == "thinking":
            parts.append(ThinkingPart(b.get("thinking") or "", signature=b.get("signature") or None))
        elif kind == "redacted_thinking":
            parts.append(ThinkingPart("", signature=b.get("data"), redacted=True))
    return CanonicalResponse(
        id=body.get("id") or new_id("msg_"),
        model=body.get("model") or "",
        parts=parts,
        stop_reason=STOP_MAP.get(body.get("stop_reason") or "end_turn", "end_turn"),
        stop_sequence=body.get("stop_sequence"),
        usage=parse_usage(body.get("usage")),
    )


def message_id(rid: str) -> str:
    return rid if rid.startswith("msg_") else new_id("msg_")


def render_response(
    resp: CanonicalResponse,
    *,
    model: str,
    keep_signatures: bool = True,
    client_tools: dict[str, Tool] | None = None,  # Anthropic has no tool namespaces or custom tools
) -> dict[str, Any]:
    # Another provider's signed reasoning is sealed with its maker, so it only ever goes back to it.
    parts = [sealed_part(p, resp.model) if isinstance(p, ThinkingPart) else p for p in resp.parts]
    content = [b for b in (render_part(p, keep_signatures) for p in parts) if b is not None]
    stop = STOP_OUT.get(resp.stop_reason, resp.stop_reason)
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": resp.stop_sequence,
        "usage": render_usage(resp.usage),
    }


def render_error(
    status: int, message: str, *, error_type: str | None = None, param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    # "api_error" is the generic default of StreamError: a more precise type follows from the status.
    known = error_type in STATUS_OF_TYPE and error_type != "api_error"
    kind = error_type if known else error_type_for(status)
    return {"type": "error", "error": {"type": kind, "message": message}}
