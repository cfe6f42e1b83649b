"""Helpers every dialect package uses: field checks, ids, data URLs, the canonical request's extras.

Dialect packages import from here and from ``canonical``, never from one another. The last section
holds what OpenAI's two APIs (Chat Completions and Responses) share on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any, TypeVar

import msgspec

from streams.translation.canonical import (
    CanonicalRequest,
    Dialect,
    Message,
    ResponseFormat,
    StreamError,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    TranslationError,
    Usage,
)

# Another dialect's user id (Claude Code puts a JSON blob there) only goes upstream when this short.
_FOREIGN_USER_MAX_LEN = 64

_decode_json = msgspec.json.decode
Wire = TypeVar("Wire", bound=msgspec.Struct)


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


def required_list(obj: dict[str, Any], key: str) -> list[Any]:
    value: Any = obj.get(key)
    expect(isinstance(value, list), f"{key} must be a list", key)
    return value


def optional_list(obj: dict[str, Any], key: str) -> list[Any] | None:
    return None if obj.get(key) is None else required_list(obj, key)


def new_request(body: Any, dialect: Dialect, known: frozenset[str]) -> CanonicalRequest:
    """The canonical request a parser fills in: the body and its model checked, the fields the
    dialect does not know kept in ``extra`` (relayed to an upstream of the same dialect only)."""
    expect(isinstance(body, dict), "request body must be a JSON object", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model is required", param="model")
    extra = {k: v for k, v in body.items() if k not in known}
    return CanonicalRequest(model=model, messages=[], dialect=dialect, extra=extra)


def response_list(body: Any, key: str) -> list[Any]:
    """The list a response body's content is in (``choices``, ``output``, ``content``)."""
    expect(isinstance(body, dict), "response body must be a JSON object", "body")
    return required_list(body, key)


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


def add_system_text(req: CanonicalRequest, texts: list[TextPart], *, leading: bool) -> None:
    """System/developer text: the system prompt while no other message came before it, else a
    mid-conversation system message (Claude Code and Codex both send those)."""
    if leading:
        req.system.extend(texts)
    else:
        req.messages.append(Message("system", list(texts)))


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
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        req.cache_key = key  # also left in ``extra``: the session is read from it


def session_cache_key(session_id: str) -> str:
    """A prompt cache key for a session: stable across its turns, and not the session id itself
    (which may be a client's header value) going to a provider."""
    return "wr-" + hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def openai_cache_key(req: CanonicalRequest, body: dict[str, Any]) -> None:
    """OpenAI caches by prefix per ``prompt_cache_key``: a translated conversation gets its session's."""
    if req.cache_key and "prompt_cache_key" not in body:
        body["prompt_cache_key"] = req.cache_key


def effort_from_budget(budget: int | None) -> str:
    """A thinking token budget (Anthropic) as a reasoning effort (OpenAI)."""
    if budget is None:
        return "medium"
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 16384 else "high"


# Effort names differ by API: Anthropic's top is "max", OpenAI's "xhigh"; Gemini levels stop at "high".
_OPENAI_EFFORT = {"max": "xhigh"}
_ANTHROPIC_EFFORT = {"minimal": "low", "xhigh": "max", "none": "low"}


def openai_effort(effort: str) -> str:
    """A canonical effort as OpenAI's ``reasoning.effort`` / ``reasoning_effort`` value."""
    return _OPENAI_EFFORT.get(effort, effort)


def anthropic_effort(effort: str) -> str:
    """A canonical effort as Anthropic's ``output_config.effort`` (low | medium | high | max)."""
    return _ANTHROPIC_EFFORT.get(effort, effort)


# ---------------------------------------------------------------- signed reasoning across providers

# Signed reasoning (Anthropic signatures, OpenAI encrypted_content) is only valid for the model that
# made it. When it reaches a client of another dialect we seal it with its maker's name, so the next
# turn can send it back byte-for-byte to that model and drop it for any other. A sealed value is
# "wr1." + base64url(JSON [model, item id]) + "." + the provider's own value.
_SEAL = "wr1."
_DATE_SUFFIX = re.compile(r"(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2})$")


def seal_signature(signature: str, origin: str, item_id: str | None = None) -> str:
    head = base64.urlsafe_b64encode(msgspec.json.encode([origin, item_id])).rstrip(b"=").decode()
    return f"{_SEAL}{head}.{signature}"


def open_signature(value: str) -> tuple[str, str | None, str | None]:
    """(the provider's value, the model that made it, its reasoning item id) of a possibly sealed
    value; an unsealed one has no known maker."""
    if not value.startswith(_SEAL):
        return value, None, None
    head, sep, signature = value[len(_SEAL) :].partition(".")
    if not sep:
        return value, None, None
    try:
        origin, item_id = _decode_json(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError, msgspec.DecodeError):
        return value, None, None
    if not isinstance(origin, str) or not (item_id is None or isinstance(item_id, str)):
        return value, None, None
    return signature, origin, item_id


SEALED_MARK = b'"' + _SEAL.encode()  # how a sealed value starts inside raw JSON


def relayed_signature(value: str, upstream_model: str) -> tuple[str, str | None] | None:
    """A same-dialect client's signature value as ``upstream_model`` may get it: (the provider's
    value, its reasoning item id), or None when another model made it."""
    signature, origin, item_id = open_signature(value)
    return (signature, item_id) if signature_fits(origin, True, upstream_model) else None


def signed_part(text: str, value: Any, *, redacted: bool = False, item_id: Any = None) -> ThinkingPart:
    """A client's reasoning block with its (possibly sealed) signature opened; a signature that is not
    a string is no signature (no provider would take it back)."""
    item_id = item_id if isinstance(item_id, str) else None
    if not isinstance(value, str) or not value:
        return ThinkingPart(text, redacted=redacted, id=item_id)
    signature, origin, sealed_id = open_signature(value)
    return ThinkingPart(text, signature=signature, redacted=redacted, id=sealed_id or item_id, origin=origin)


def sealed_part(p: ThinkingPart, origin: str) -> ThinkingPart:
    """A provider's reasoning as a client of another dialect gets it: its signature sealed."""
    if not p.signature:
        return p
    return ThinkingPart(p.text, seal_signature(p.signature, origin, p.id), p.redacted, p.id, origin)


def model_family(model: str) -> str:
    """A model name without its snapshot date: APIs answer ``claude-x-20251101`` for ``claude-x``."""
    return _DATE_SUFFIX.sub("", model.strip().lower())


def signature_fits(origin: str | None, native: bool, upstream_model: str) -> bool:
    """May reasoning signed by ``origin`` go to ``upstream_model``? A sealed one only to its maker;
    an unsealed one (``origin`` None) only on its own dialect (``native``), where it came from."""
    if origin is None:
        return native
    return model_family(origin) == model_family(upstream_model)


# ---------------------------------------------------------------- streams


def decode_event(data: str) -> dict[str, Any] | None:
    """One SSE event's JSON object; None for keep-alive garbage or anything that is not an object."""
    try:
        event = _decode_json(data)
    except msgspec.DecodeError:
        return None
    return event if isinstance(event, dict) else None


def as_struct(value: Any, wire: type[Wire]) -> Wire | None:
    """A decoded JSON object as a typed wire struct; None when it is absent or of another shape."""
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, wire)
    except msgspec.ValidationError:
        return None


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
    status: int, message: str, *, error_type: str | None = None, param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The error body of both OpenAI APIs."""
    kind = error_type or openai_error_type(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


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


def openai_usage(
    input_tokens: int | None,
    output_tokens: int | None,
    input_details: OpenAIInputDetails | None,
    output_details: OpenAIOutputDetails | None,
    cache_hit_tokens: int | None = None,
) -> Usage:
    """Both OpenAI APIs count cached tokens inside the input, as canonical ``Usage`` does."""
    din = input_details or OpenAIInputDetails()
    dout = output_details or OpenAIOutputDetails()
    return Usage(
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cached_input_tokens=din.cached_tokens or cache_hit_tokens or 0,
        cache_creation_input_tokens=din.cache_write_tokens or 0,
        reasoning_tokens=dout.reasoning_tokens or 0,
    )


class OpenAIInputDetails(msgspec.Struct):
    """``prompt_tokens_details`` (Chat) / ``input_tokens_details`` (Responses)."""

    cached_tokens: int | None = 0
    cache_write_tokens: int | None = 0


class OpenAIOutputDetails(msgspec.Struct):
    """``completion_tokens_details`` (Chat) / ``output_tokens_details`` (Responses)."""

    reasoning_tokens: int | None = 0
