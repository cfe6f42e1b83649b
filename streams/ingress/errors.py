"""Errors in the caller's dialect: every failure the gateway answers looks like the API the client speaks.

The shapes come from each dialect module's ``render_error`` (OpenAI: ``{"error": {...}}``, Anthropic:
``{"type": "error", "error": {...}}``, Gemini: ``{"error": {"code", "message", "status"}}``); our own
endpoints (feedback, route, analytics, health) answer ``{"error": {"message", "type", ...}}``
(``OWN``). ``dialect_for_path`` picks the shape when only the path is known (unknown paths, methods,
parser errors). This module also reads provider error bodies so an upstream error keeps its status and
message when it is re-rendered for another dialect, and holds the one JSON decoder of request bodies,
with depth and size limits checked before decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from streams.ingress.http import (
    JSON_HEADERS,
    BodyTimeout,
    BodyTooLarge,
    ClientGone,
    RawHeaders,
    Receive,
    Send,
    read_body,
    send_bytes,
)
from streams.translation import registry

_ENCODER = msgspec.json.Encoder()

OWN = "weave"  # the shape of our own endpoints (OpenAI-like: {"error": {"message", "type", ...}})
GEMINI = "gemini"
# Limits checked before decoding a JSON body. Real requests nest ~10-20 levels (tool schemas); a deeper
# one is an attack on the decoder's recursion. Decoding holds the event loop (msgspec keeps the GIL) for
# ~85 ns per string, ~50 ns per object or array and ~10 ns per number, so the budget, counted in those
# string-equivalents, bounds one decode (and freeing its result) to ~10 ms: above any real request (a
# 1M-token context of code is ~80k), far below a body of 480k tiny messages (2.4M).
MAX_JSON_DEPTH = 128
MAX_JSON_VALUES = 100_000
# Generous ceiling of max_tokens when no model limit applies (no model has a 10M-token output).
MAX_TOKENS_CEILING = 10_000_000
_KEEP_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{},"')

_GRPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                405: "INVALID_ARGUMENT", 408: "DEADLINE_EXCEEDED", 413: "INVALID_ARGUMENT",
                429: "RESOURCE_EXHAUSTED", 431: "INVALID_ARGUMENT", 500: "INTERNAL", 502: "UNAVAILABLE",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class BadRequest(Exception):
    """A request refused before it reached a dialect parser: status, message and the offending field."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def dialect_for_path(path: str) -> str:
    """The error shape a caller of ``path`` understands (for answers given before any endpoint ran)."""
    if path.startswith("/v1/chat/completions"):
        return "openai_chat"
    if path.startswith("/v1/responses"):
        return "openai_responses"
    if path.startswith("/v1/messages"):
        return "anthropic_messages"
    if path.startswith("/v1beta/") or ":generateContent" in path or ":streamGenerateContent" in path:
        return GEMINI
    return OWN


class _Err(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    param: str | None = None


class _ErrEnvelope(msgspec.Struct):
    error: _Err | str | None = None
    message: str | None = None
    detail: str | None = None


_DECODER = msgspec.json.Decoder(_ErrEnvelope)


def error_body(
    dialect: str, status: int, message: str, *, param: str | None = None, error_type: str | None = None,
    code: str | None = None,
) -> bytes:
    if dialect == OWN:
        dialect = "openai_chat"
    try:
        codec = registry.get(dialect)
    except ValueError:  # a dialect without a codec yet (Gemini): its documented error shape
        return _ENCODER.encode({"error": {"code": status, "message": message,
                                          "status": _GRPC_STATUS.get(status, "UNKNOWN")}})
    return _ENCODER.encode(codec.render_error(status, message, error_type=error_type, param=param, code=code))


async def send_error(
    send: Send,
    dialect: str,
    status: int,
    message: str,
    *,
    param: str | None = None,
    error_type: str | None = None,
    headers: RawHeaders | None = None,
    code: str | None = None,
) -> None:
    body = error_body(dialect, status, message, param=param, error_type=error_type, code=code)
    await send_bytes(send, status, body, JSON_HEADERS + headers if headers else JSON_HEADERS)


def parse_upstream_error(data: bytes, status: int) -> tuple[str, str | None, str | None]:
    """(message, error type, param) of a provider's error body, whatever its dialect."""
    try:
        env = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = data[:300].decode("utf-8", "replace").strip()
        return (text or f"upstream returned HTTP {status}"), None, None
    if isinstance(env.error, _Err):
        return env.error.message or f"upstream returned HTTP {status}", env.error.type, env.error.param
    message = env.error or env.message or env.detail or f"upstream returned HTTP {status}"
    return message, None, None


async def read_request_body(
    receive: Receive, send: Send, headers: Mapping[str, str], dialect: str, limit: int, timeout_s: float | None
) -> bytes | None:
    """The request body, or None once the refusal went out in ``dialect`` (413 too large, 408 too slow)
    or the client hung up. One place for the body rules every endpoint shares."""
    try:
        return await read_body(receive, headers.get("content-length"), limit, timeout_s)
    except BodyTooLarge as exc:
        await send_error(send, dialect, 413, str(exc))
    except BodyTimeout as exc:
        await send_error(send, dialect, 408, str(exc))
    except ClientGone:
        pass
    return None


def json_shape_problem(raw: bytes, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES) -> BadRequest | None:
    """Depth and decoding cost of a JSON text, estimated at C speed before decoding it.

    Quotes, brackets and commas are counted wherever they are, strings included, so the estimate errs
    high only on text dense with them. Depth is the number of rounds that peel adjacent ``[]``/``{}``
    pairs off the brackets alone: a balanced nest of depth d takes d rounds; when a round peels nothing
    (brackets inside strings unbalance the picture) the decoder's own recursion guard decides.
    """
    if len(raw) <= 2 * max_depth:  # too short to be deeper or costlier than the limits
        return None
    s = raw.translate(None, _KEEP_STRUCTURE)
    quotes = s.count(b'"')
    commas = s.count(b",")
    brackets = len(s) - quotes - commas
    values = quotes // 2 + brackets // 2 + commas // 8
    if values > max_values:
        return BadRequest(413, f"request body too complex: about {values} JSON values, the limit is {max_values}")
    if brackets <= 2 * max_depth:
        return None
    s = s.translate(None, b',"')
    for _ in range(max_depth):
        if not s:
            return None
        peeled = s.replace(b"[]", b"").replace(b"{}", b"")
        if len(peeled) == len(s):
            return None
        s = peeled
    if s and len(s.replace(b"[]", b"").replace(b"{}", b"")) < len(s):
        return BadRequest(400, f"request body nested too deeply: the limit is {max_depth} levels")
    return None


def load_json_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES) -> dict[str, Any]:
    """The body as a JSON object, or ``BadRequest`` saying why not (never RecursionError or a Unicode error)."""
    problem = json_shape_problem(raw, max_depth, max_values)
    if problem is not None:
        raise problem
    try:
        body = msgspec.json.decode(raw)
    except UnicodeDecodeError:
        raise BadRequest(400, "request body is not valid UTF-8") from None
    except RecursionError:  # the decoder's own guard, for depths the estimate could not see
        raise BadRequest(400, f"request body nested too deeply: the limit is {max_depth} levels") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return body


async def decode_json_object(send: Send, dialect: str, raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None once the 4xx went out in ``dialect``."""
    try:
        return load_json_object(raw)
    except BadRequest as exc:
        await send_error(send, dialect, exc.status, exc.message, param=exc.param)
        return None


def max_tokens_problem(value: int | None, limit: int | None, param: str = "max_tokens") -> BadRequest | None:
    """``max_tokens`` (or ``max_output_tokens``) must be a positive integer within ``limit`` (the model's
    context window for a named model, the largest configured one for an auto name)."""
    if value is None:
        return None
    ceiling = min(limit, MAX_TOKENS_CEILING) if limit else MAX_TOKENS_CEILING
    if value < 1:
        return BadRequest(400, f"{param} must be at least 1, got {value}", param)
    if value > ceiling:
        shown = value if value < 10**18 else f"a {len(str(value))}-digit number"
        return BadRequest(400, f"{param} must be at most {ceiling}, got {shown}", param)
    return None


def upstream_auth_failure(provider: str, status: int) -> BadRequest | None:
    """An upstream 401/403 means the router's own key for ``provider`` is wrong or lacks access: the
    caller's key is fine, so answer 502 naming the provider (the caller's SDK would otherwise report its
    own key as invalid). ``None`` for any other status."""
    if status not in (401, 403):
        return None
    what = "rejected the router's credentials" if status == 401 else "refused the router's credentials access"
    return BadRequest(502, f"upstream provider '{provider}' {what} (HTTP {status}); check its API key in the "
                           "router's configuration")
