"""Anthropic Messages token usage: parsed from a decoded message or event, read straight off relayed
bytes, and rendered for a client.

Anthropic reports ``input_tokens`` without the cached share; canonical ``input_tokens`` is the whole
prompt (``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.canonical import Usage
from streams.translation.common import WireError, as_struct
from streams.translation.scanner import UsageScanner, body_usage_with


class WireUsage(msgspec.Struct):
    # None = absent: a later event's counts are cumulative and may omit what an earlier one gave.
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _Message(msgspec.Struct):
    usage: WireUsage | None = None


class _Event(msgspec.Struct):
    """A stream event or a whole body, decoded only as far as usage and errors go."""

    type: str | None = None
    message: _Message | None = None  # message_start
    usage: WireUsage | None = None  # message_delta, and the non-streaming body
    error: WireError | None = None


_event = msgspec.json.Decoder(_Event)


def merge_usage(u: WireUsage, into: Usage) -> None:
    """Overwrite what ``u`` gives: message_start's counts, then message_delta's cumulative ones."""
    if u.cache_read_input_tokens is not None:
        into.cached_input_tokens = u.cache_read_input_tokens
    if u.cache_creation_input_tokens is not None:
        into.cache_creation_input_tokens = u.cache_creation_input_tokens
    if u.input_tokens is not None:
        into.input_tokens = u.input_tokens + into.cached_input_tokens + into.cache_creation_input_tokens
    if u.output_tokens is not None:
        into.output_tokens = u.output_tokens


def update_usage(u: Any, into: Usage) -> None:
    """Merge a decoded ``usage`` object into ``into``; anything of another shape is ignored."""
    wire = as_struct(u, WireUsage)
    if wire is not None:
        merge_usage(wire, into)


def parse_usage(u: Any) -> Usage:
    usage = Usage()
    update_usage(u, usage)
    return usage


def render_usage(u: Usage) -> dict[str, Any]:
    fresh = max(0, u.input_tokens - u.cached_input_tokens - u.cache_creation_input_tokens)
    return {
        "input_tokens": fresh,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
    }


def _usage_of(body: _Event) -> Usage:
    usage = Usage()
    if body.usage:
        merge_usage(body.usage, usage)
    return usage


def body_usage(data: bytes) -> Usage | None:
    """Usage of a whole response body; None when it is not JSON at all."""
    return body_usage_with(_event, _usage_of, data)


def _read_event(data: bytes, scanner: UsageScanner) -> bool:
    ev = _event.decode(data)
    if ev.type == "message_stop":
        scanner.finished = True
    if ev.type == "message_start" and ev.message and ev.message.usage:
        merge_usage(ev.message.usage, scanner.usage)
    elif ev.usage:
        merge_usage(ev.usage, scanner.usage)
    if ev.type == "error":
        scanner.error = (ev.error.message if ev.error else None) or "upstream error"
    return False


def usage_scanner(*, drop_usage_chunk: bool = False) -> UsageScanner:
    """``drop_usage_chunk`` does not apply: Anthropic streams have no separate usage chunk."""
    return UsageScanner(_read_event)
