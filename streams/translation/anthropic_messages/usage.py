"""Anthropic Messages token usage: parsed from a decoded message or event, read straight off relayed
bytes, and rendered for a client.

Anthropic reports ``input_tokens`` without the cached share; canonical ``input_tokens`` is the whole
prompt (``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.canonical import Usage
from streams.translation.common import WireError, as_struct, seal_signature
from streams.translation.scanner import UsageScanner, body_usage_with


class WireUsage(msgspec.Struct):
    # None = absent: a later event's counts are cumulative and may omit what an earlier one gave.
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _Message(msgspec.Struct):
    usage: WireUsage | None = None
    model: str | None = None


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
    if ev.type == "message_start" and ev.message and ev.message.model:
        scanner.origin = ev.message.model
    if ev.type in ("content_block_start", "content_block_delta") and scanner.origin:
        scanner.replacement = seal_event(data, scanner.origin)
    if ev.type == "message_start" and ev.message and ev.message.usage:
        merge_usage(ev.message.usage, scanner.usage)
    elif ev.usage:
        merge_usage(ev.usage, scanner.usage)
    if ev.type == "error":
        scanner.error = (ev.error.message if ev.error else None) or "upstream error"
    return False


def usage_scanner(*, drop_usage_chunk: bool = False) -> UsageScanner:
    """``drop_usage_chunk`` does not apply: Anthropic streams have no separate usage chunk. Events
    with a signature are read too, to seal it (``seal_event``)."""
    return UsageScanner(_read_event, markers=_SIGNED_MARKERS)


# Signed thinking relayed to an Anthropic client is sealed with the model that made it, as on a
# translated route: a signature is bound to its model, and a later turn the router sends to another
# model must go without it (``relay.rewrite_relayed`` unseals or drops it).
_SIGNED_MARKERS = (b"signature_delta", b"redacted_thinking")
_SIGNED_FIELD = {"thinking": "signature", "redacted_thinking": "data", "signature_delta": "signature"}


def _seal_block(block: Any, origin: str) -> bool:
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    key = _SIGNED_FIELD.get(kind) if isinstance(kind, str) else None
    value = block.get(key) if key else None
    if not isinstance(value, str) or not value or value.startswith("wr1."):
        return False
    block[key] = seal_signature(value, origin)
    return True


def seal_event(data: bytes, origin: str) -> bytes | None:
    """A content_block_start/delta event with its signature sealed; None when it has none."""
    if not any(m in data for m in _SIGNED_MARKERS):
        return None
    ev = msgspec.json.decode(data)
    if not isinstance(ev, dict):
        return None
    sealed = _seal_block(ev.get("delta"), origin) or _seal_block(ev.get("content_block"), origin)
    return msgspec.json.encode(ev) if sealed else None


def seal_body(data: bytes) -> bytes:
    """A whole relayed message with its thinking signatures sealed (the body as it was otherwise)."""
    if b'"signature"' not in data and b"redacted_thinking" not in data:
        return data
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not isinstance(body.get("content"), list):
        return data
    sealed = [_seal_block(b, body["model"]) for b in body["content"]]
    return msgspec.json.encode(body) if any(sealed) else data
