"""OpenAI Responses token usage: parsed from a decoded response object, read straight off relayed
bytes, and rendered for a client. ``input_tokens`` includes the cached ones, as canonical does."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.canonical import Usage
from streams.translation.common import OpenAIInputDetails, OpenAIOutputDetails, WireError, as_struct, openai_usage
from streams.translation.scanner import UsageScanner, body_usage_with


class WireUsage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    input_tokens_details: OpenAIInputDetails | None = None
    output_tokens_details: OpenAIOutputDetails | None = None


class _ResponseObject(msgspec.Struct):
    usage: WireUsage | None = None
    status: str | None = None
    error: WireError | None = None


class _Event(msgspec.Struct):
    """A stream event or a whole body, decoded only as far as usage and errors go."""

    type: str | None = None
    response: _ResponseObject | None = None
    usage: WireUsage | None = None  # the non-streaming body has usage at top level
    error: WireError | None = None
    message: str | None = None  # the ``error`` stream event


_event = msgspec.json.Decoder(_Event)
_END_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def usage_of(u: WireUsage | None) -> Usage:
    if u is None:
        return Usage()
    return openai_usage(u.input_tokens, u.output_tokens, u.input_tokens_details, u.output_tokens_details)


def parse_usage(u: Any) -> Usage:
    """The ``usage`` object of a decoded response; zeros when absent or of another shape."""
    return usage_of(as_struct(u, WireUsage))


def render_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_input_tokens,
            "cache_write_tokens": u.cache_creation_input_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def body_usage(data: bytes) -> Usage | None:
    """Usage of a whole response body; None when it is not JSON at all."""
    return body_usage_with(_event, lambda body: usage_of(body.usage), data)


def _read_event(data: bytes, scanner: UsageScanner) -> bool:
    ev = _event.decode(data)
    if ev.type in _END_EVENTS:
        scanner.finished = True
    if ev.response is not None:
        if ev.response.usage:
            scanner.usage = usage_of(ev.response.usage)
        if ev.type == "response.failed" and ev.response.error:
            scanner.error = ev.response.error.message or "upstream error"
    if ev.type == "error":
        scanner.error = ev.message or (ev.error.message if ev.error else None) or "upstream error"
    return False


def usage_scanner(*, drop_usage_chunk: bool = False) -> UsageScanner:
    """``drop_usage_chunk`` does not apply: Responses streams have no separate usage chunk."""
    return UsageScanner(_read_event)
