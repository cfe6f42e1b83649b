"""Errors in the caller's dialect: every failure the gateway answers looks like the API the client speaks.

The shapes come from each dialect module's ``render_error`` (OpenAI: ``{"error": {...}}``, Anthropic:
``{"type": "error", "error": {...}}``); this module encodes them and reads provider error bodies so an
upstream error keeps its status and message when it is re-rendered for another dialect.
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
    dialect: str, status: int, message: str, *, param: str | None = None, error_type: str | None = None
) -> bytes:
    body = registry.get(dialect).render_error(status, message, error_type=error_type, param=param)
    return _ENCODER.encode(body)


async def send_error(
    send: Send,
    dialect: str,
    status: int,
    message: str,
    *,
    param: str | None = None,
    error_type: str | None = None,
    headers: RawHeaders | None = None,
) -> None:
    body = error_body(dialect, status, message, param=param, error_type=error_type)
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


async def decode_json_object(send: Send, dialect: str, raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None once the 400 went out in ``dialect``."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        await send_error(send, dialect, 400, f"request body is not valid JSON: {exc}")
        return None
    if not isinstance(body, dict):
        await send_error(send, dialect, 400, "request body must be a JSON object")
        return None
    return body
