"""OpenAI Responses token usage: parsed from a decoded response object, read straight off relayed
bytes, and rendered for a client. ``input_tokens`` includes the cached ones, as canonical does."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.canonical import Usage
from streams.translation.common import (
    OpenAIInputDetails,
    OpenAIOutputDetails,
    WireError,
    as_struct,
    openai_usage,
    seal_signature,
)
from streams.translation.scanner import UsageScanner, body_usage_with


class WireUsage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    input_tokens_details: OpenAIInputDetails | None = None
    output_tokens_details: OpenAIOutputDetails | None = None


class _ResponseObject(msgspec.Struct):
    usage: WireUsage | None = None
    model: str | None = None
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
    if ev.response is not None and ev.response.model and not scanner.origin:
        scanner.origin = ev.response.model
    if scanner.origin and _SEALED_FIELD in data:
        scanner.replacement = _sealed(msgspec.json.decode(data), scanner.origin)
    return False


def usage_scanner(*, drop_usage_chunk: bool = False) -> UsageScanner:
    """``drop_usage_chunk`` does not apply: Responses streams have no separate usage chunk. Events
    with encrypted reasoning are read too, to seal it."""
    return UsageScanner(_read_event, markers=(_SEALED_FIELD,))


# Encrypted reasoning relayed to a Responses client is sealed with the model that made it, as on a
# translated route: it goes back to that model only (``relay.rewrite_relayed`` unseals or drops it).
_SEALED_FIELD = b"encrypted_content"


def _seal_item(item: Any, origin: str) -> bool:
    if not isinstance(item, dict) or item.get("type") != "reasoning":
        return False
    value = item.get("encrypted_content")
    if not isinstance(value, str) or not value or value.startswith("wr1."):
        return False
    item["encrypted_content"] = seal_signature(value, origin, item.get("id"))
    return True


def _seal_output(response: Any, origin: str) -> bool:
    output = response.get("output") if isinstance(response, dict) else None
    return isinstance(output, list) and any([_seal_item(i, origin) for i in output])


def _sealed(ev: Any, origin: str) -> bytes | None:
    """A stream event (an output item, or a response object's output) with its reasoning sealed."""
    if not isinstance(ev, dict):
        return None
    sealed = _seal_item(ev.get("item"), origin) or _seal_output(ev.get("response"), origin)
    return msgspec.json.encode(ev) if sealed else None


def seal_body(data: bytes) -> bytes:
    """A whole relayed response with its encrypted reasoning sealed (else the bytes as they were)."""
    if _SEALED_FIELD not in data:
        return data
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return data
    return msgspec.json.encode(body) if _seal_output(body, body["model"]) else data
