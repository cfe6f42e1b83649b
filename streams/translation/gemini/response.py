"""Gemini responses and errors: an upstream's ``GenerateContentResponse`` <-> canonical.

Errors are Google's shape, ``{"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}``.
"""

from __future__ import annotations

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
from streams.translation.common import new_id
from streams.translation.gemini.parts import call_arguments, given_call_id, render_call, render_thought
from streams.translation.gemini.usage import parse_usage, render_usage

FINISH_TO_STOP: dict[str, StopReason] = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
}
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "STOP",
    "tool_use": "STOP",
    "stop_sequence": "STOP",
    "max_tokens": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "error": "OTHER",
}
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    431: "INVALID_ARGUMENT",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")


def render_error(
    status: int, message: str, *, error_type: str | None = None, param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Google's error object; ``error_type``, ``param`` and ``code`` have no place in it (the status name says
    what kind of error it is)."""
    return {"error": {"code": status, "message": message, "status": status_name(status)}}


def stop_reason(finish: str | None, has_calls: bool) -> StopReason:
    stop = FINISH_TO_STOP.get(finish or "STOP", "end_turn")
    return "tool_use" if stop == "end_turn" and has_calls else stop


def candidate_parts(content: Any, parts: list[Part]) -> None:
    """A candidate's ``content.parts`` appended as canonical parts (text, thoughts, calls)."""
    raw = content.get("parts") if isinstance(content, dict) else None
    for p in raw if isinstance(raw, list) else ():
        if not isinstance(p, dict):
            continue
        fn = p.get("functionCall")
        if isinstance(fn, dict):
            cid = given_call_id(fn) or new_id("call_")
            parts.append(ToolCallPart(cid, str(fn.get("name") or ""), call_arguments(fn.get("args"))))
        elif isinstance(p.get("text"), str):
            if p.get("thought") is True:
                parts.append(ThinkingPart(p["text"]))
            elif p["text"]:
                parts.append(TextPart(p["text"]))


def parse_response(body: dict[str, Any]) -> CanonicalResponse:
    if not isinstance(body, dict):
        raise ValueError("response body must be a JSON object")
    candidates = body.get("candidates")
    parts: list[Part] = []
    finish: str | None = None
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        first = candidates[0]
        candidate_parts(first.get("content"), parts)
        finish = first.get("finishReason")
    elif isinstance(body.get("promptFeedback"), dict) and body["promptFeedback"].get("blockReason"):
        finish = "PROHIBITED_CONTENT"  # the prompt itself was blocked: no candidate at all
    elif not isinstance(candidates, list):
        raise ValueError("response has no candidates")
    return CanonicalResponse(
        id=body.get("responseId") or new_id(""),
        model=body.get("modelVersion") or "",
        parts=parts,
        stop_reason=stop_reason(finish, any(isinstance(p, ToolCallPart) for p in parts)),
        usage=parse_usage(body.get("usageMetadata")),
    )


def render_parts(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            if p.text:
                out.append({"text": p.text})
        elif isinstance(p, ThinkingPart):
            # Thought text only: a signature from another provider means nothing to a Gemini client.
            thought = render_thought(ThinkingPart(p.text))
            if thought is not None:
                out.append(thought)
        elif isinstance(p, ToolCallPart):
            out.append(render_call(p))
    return out


def response_id(rid: str) -> str:
    return rid if rid and not rid.startswith(("msg_", "chatcmpl", "resp_")) else new_id("")[:22]


def render_response(
    resp: CanonicalResponse,
    *,
    model: str,
    keep_signatures: bool = False,
    client_tools: dict[str, Tool] | None = None,
) -> dict[str, Any]:
    """``keep_signatures`` and ``client_tools`` do not apply: what reaches a Gemini client through
    translation came from another provider, and Gemini has neither tool namespaces nor custom tools."""
    candidate = {
        "content": {"role": "model", "parts": render_parts(resp.parts)},
        "finishReason": STOP_TO_FINISH[resp.stop_reason],
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": render_usage(resp.usage),
        "modelVersion": model,
        "responseId": response_id(resp.id),
    }
