"""Helpers every dialect package uses: field checks, ids, data URLs, the canonical request's extras.

Dialect packages import from here and from ``canonical``, never from one another. The last section
holds what OpenAI's two APIs (Chat Completions and Responses) share on the wire.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from streams.translation.canonical import (
    CanonicalRequest,
    Message,
    ResponseFormat,
    StreamError,
    ToolResultPart,
    TranslationError,
)

# Another dialect's user id (Claude Code puts a JSON blob there) only goes upstream when this short.
_FOREIGN_USER_MAX_LEN = 64

_decode_json = msgspec.json.decode


# ---------------------------------------------------------------- field checks (4xx on a bad request)


def expect(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise TranslationError(message, param=param)


def string_field(value: Any, param: str) -> str:
    expect(isinstance(value, str), f"{param} must be a string", param)
    return value


def int_field(value: Any, param: str) -> int | None:
    """An optional integer (``None`` when absent); a bool is not an integer here."""
    if value is None:
        return None
    expect(isinstance(value, int) and not isinstance(value, bool), f"{param} must be an integer", param)
    return int(value)


def number_field(value: Any, param: str) -> float | None:
    if value is None:
        return None
    expect(isinstance(value, int | float) and not isinstance(value, bool), f"{param} must be a number", param)
    return float(value)


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model is required", param="model")
    return model


# ---------------------------------------------------------------- ids and data URLs


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def split_data_url(url: str) -> tuple[str | None, str | None]:
    """``data:image/png;base64,AAA`` -> (``image/png``, ``AAA``); (None, None) for other URLs."""
    if not url.startswith("data:"):
        return None, None
    head, _, payload = url.partition(",")
    media_type = head[5:].split(";", 1)[0] or None
    return media_type, payload


def data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


# ---------------------------------------------------------------- the canonical request


def drop(req_extra: dict[str, Any], reason: str) -> None:
    """Note what a parser could not carry over (listed in the trace, never sent upstream)."""
    req_extra.setdefault("dropped", []).append(reason)


def extra_fields(req: CanonicalRequest, dialect: str) -> dict[str, Any]:
    """The client's own unknown fields, only relayed to an upstream of the same dialect."""
    if req.dialect != dialect or not req.extra:
        return {}
    return {k: v for k, v in req.extra.items() if k != "dropped"}


def user_for_upstream(req: CanonicalRequest, dialect: str) -> str | None:
    if req.user is None:
        return None
    if req.dialect == dialect or len(req.user) <= _FOREIGN_USER_MAX_LEN:
        return req.user
    return None


def append_tool_result(req: CanonicalRequest, result: ToolResultPart) -> None:
    """Consecutive tool results share one canonical ``tool`` message."""
    last = req.messages[-1] if req.messages else None
    if last is not None and last.role == "tool":
        last.parts.append(result)
    else:
        req.messages.append(Message("tool", [result]))


def parse_metadata_and_user(body: dict[str, Any], req: CanonicalRequest) -> None:
    """OpenAI-style top-level ``metadata`` (string map) and ``user``."""
    meta = body.get("metadata")
    if isinstance(meta, dict):
        req.metadata = {str(k): str(v) for k, v in meta.items()}
    if isinstance(body.get("user"), str):
        req.user = body["user"]


def effort_from_budget(budget: int | None) -> str:
    """A thinking token budget (Anthropic) as a reasoning effort (OpenAI)."""
    if budget is None:
        return "medium"
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 16384 else "high"


# ---------------------------------------------------------------- streams


def decode_event(data: str) -> dict[str, Any] | None:
    """One SSE event's JSON object; None for keep-alive garbage or anything that is not an object."""
    try:
        event = _decode_json(data)
    except msgspec.DecodeError:
        return None
    return event if isinstance(event, dict) else None


def stream_cut() -> StreamError:
    """The upstream body ended before the dialect's end-of-stream event."""
    return StreamError(message="upstream stream ended before completion", status=502)


class WireError(msgspec.Struct):
    """An error object as any of the three APIs writes it (only what the relay reads)."""

    message: str | None = None
    type: str | None = None
    code: str | int | None = None


# ---------------------------------------------------------------- shared by OpenAI Chat and Responses


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_type(status: int) -> str:
    if status in _OPENAI_ERROR_TYPES:
        return _OPENAI_ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def render_openai_error(
    status: int, message: str, *, error_type: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The error body of both OpenAI APIs."""
    kind = error_type or openai_error_type(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def parse_response_format(rf: Any, param: str) -> ResponseFormat | None:
    """Chat ``response_format`` and Responses ``text.format`` share this shape (schema nested or flat)."""
    if rf is None:
        return None
    expect(isinstance(rf, dict), f"{param} must be an object", param)
    kind = rf.get("type")
    if kind == "json_schema":
        js = rf.get("json_schema") if isinstance(rf.get("json_schema"), dict) else rf
        return ResponseFormat("json_schema", schema=js.get("schema"), name=js.get("name"), strict=js.get("strict"))
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    raise TranslationError(f"{param}.type {kind!r} is not supported", param=f"{param}.type")


class OpenAIInputDetails(msgspec.Struct):
    """``prompt_tokens_details`` (Chat) / ``input_tokens_details`` (Responses)."""

    cached_tokens: int | None = 0
    cache_write_tokens: int | None = 0


class OpenAIOutputDetails(msgspec.Struct):
    """``completion_tokens_details`` (Chat) / ``output_tokens_details`` (Responses)."""

    reasoning_tokens: int | None = 0
