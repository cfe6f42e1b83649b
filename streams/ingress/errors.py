"""Errors in the caller's dialect: every failure the gateway answers looks like the API the client speaks.

The shapes come from each dialect module's ``render_error`` (OpenAI: ``{"error": {...}}``, Anthropic:
``{"type": "error", "error": {...}}``); this module encodes them and reads provider error bodies so an
upstream error keeps its status and message when it is re-rendered for another dialect.
"""

from __future__ import annotations

import msgspec

from streams.ingress.http import JSON_HEADERS, RawHeaders, Send, send_bytes
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
