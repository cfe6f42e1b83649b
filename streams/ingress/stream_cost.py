"""The cost of a streamed answer, told at its end (a header cannot: it is known only after the last token).

Two carriers, both invisible to a client that does not look for them, on OpenAI Chat, OpenAI Responses
and Anthropic streams (Gemini's get neither: see below; ``GET /v1/requests/{id}`` has every stream's):

* ``usage.cost_usd`` in the stream's final usage object, where the dialect has one that official SDKs
  parse leniently and the official schema leaves open (no ``additionalProperties: false``):
  OpenAI Chat's usage chunk (only when the client asked ``stream_options.include_usage``), the
  ``response`` of Responses' ``response.completed`` / ``response.incomplete`` / ``response.failed``,
  Anthropic's ``message_delta``. The ``openai`` and ``anthropic`` SDKs keep unknown fields
  (``chunk.usage.cost_usd``, ``event.response.usage.cost_usd``, ``event.usage.cost_usd``).
* an SSE comment, the stream's last line: ``: x-router-cost-usd: 0.00001234``. Comment lines are part
  of the SSE format and the conforming parsers these dialects' clients use skip them (the openai and
  anthropic SDKs, Codex, Claude Code, the Vercel AI SDK's eventsource-parser); a raw reader (curl, a
  proxy's log) finds the same name and format as the whole answer's header.

Gemini streams carry neither. Google's clients do not parse SSE by the spec: @google/genai (gemini-cli)
matches ``^data: ...`` at the head of its buffer, so a comment stalls every event after it and fails
the stream ("Incomplete JSON segment at the end"), and google-genai (Python) decodes each non-empty
line as JSON. An extra field in ``usageMetadata`` is refused too: google-genai validates it with
``extra='forbid'`` and Go's protojson rejects unknown fields.

Rewriting an event costs a JSON decode and encode of that one event; the other events of a relayed
stream are only searched for a marker (one compiled-pattern search, ~0.1 µs), so the relay stays a
byte copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

COST_FIELD = "cost_usd"
COMMENT_NAME = b"x-router-cost-usd"

_decode = msgspec.json.decode
_encode = msgspec.json.encode

# The dialect's final usage object inside one decoded event, or None when the event has none.
UsageOf = Callable[[dict[str, Any]], "dict[str, Any] | None"]
# Truthy when some bytes may hold the final usage (a compiled pattern's ``search``: ~0.1 µs a chunk).
Marker = Callable[[bytes], object]


def _chat_usage(obj: dict[str, Any]) -> dict[str, Any] | None:
    usage = obj.get("usage")
    return usage if isinstance(usage, dict) else None


_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _responses_usage(obj: dict[str, Any]) -> dict[str, Any] | None:
    response = obj.get("response")
    if obj.get("type") not in _RESPONSES_FINAL or not isinstance(response, dict):
        return None
    usage = response.get("usage")
    return usage if isinstance(usage, dict) else None


def _anthropic_usage(obj: dict[str, Any]) -> dict[str, Any] | None:
    usage = obj.get("usage")
    return usage if obj.get("type") == "message_delta" and isinstance(usage, dict) else None


# Per dialect: what an event carrying the final usage must contain (so the other events pass untouched
# after one search), and where its usage object is. OpenAI Chat chunks carry ``"usage":null`` until the
# last one when include_usage is on: the marker wants the object. A quote inside a JSON string is
# escaped, so text that mentions these names does not match.
_FINAL_USAGE: dict[str, tuple[Marker, UsageOf]] = {
    "openai_chat": (re.compile(rb'"usage": ?\{').search, _chat_usage),
    "openai_responses": (re.compile(rb'"response\.(?:completed|incomplete|failed)"').search, _responses_usage),
    "anthropic_messages": (re.compile(rb'"message_delta"').search, _anthropic_usage),
}


def cost_comment(dialect: str, cost_usd: float) -> bytes:
    """The SSE comment that ends a stream of ``dialect`` (the header's name and format: 8 decimals), or
    nothing for a dialect whose clients choke on comments (Gemini)."""
    if dialect not in _FINAL_USAGE:
        return b""
    return b": " + COMMENT_NAME + b": " + f"{cost_usd:.8f}".encode() + b"\n\n"


def usage_marker(dialect: str) -> Marker | None:
    """The test the relay runs on each piece of a ``dialect`` stream (None: never any cost field)."""
    spec = _FINAL_USAGE.get(dialect)
    return spec[0] if spec is not None else None


def might_carry_usage(dialect: str, out: bytes) -> bool:
    """Could ``out`` (whole SSE events) hold the dialect's final usage? False for most events."""
    marker = usage_marker(dialect)
    return marker is not None and bool(marker(out))


def tag_usage(dialect: str, out: bytes, cost_usd: float) -> bytes:
    """``out`` (whole SSE events) with ``cost_usd`` put into the final usage object of the events that
    carry one; everything else byte for byte. An event that does not decode is left as it is (the
    relay's scanner decides what a malformed event means, not this)."""
    spec = _FINAL_USAGE.get(dialect)
    if spec is None or not spec[0](out):
        return out
    marker, usage_of = spec
    blocks = out.split(b"\n\n")
    changed = False
    for i, block in enumerate(blocks):
        if not marker(block):
            continue
        tagged = _tag_block(block, usage_of, cost_usd)
        if tagged is not None:
            blocks[i] = tagged
            changed = True
    return b"\n\n".join(blocks) if changed else out


def _tag_block(block: bytes, usage_of: UsageOf, cost_usd: float) -> bytes | None:
    """One SSE event with the cost in its usage, or None when it has no usage object to put it in."""
    lines = block.split(b"\n")
    data_at = [i for i, line in enumerate(lines) if line.startswith(b"data:")]
    if not data_at:
        return None
    # Several data lines make one value joined by newlines (the SSE rule); it goes back as one line.
    data = b"\n".join(lines[i][5:].removeprefix(b" ") for i in data_at)
    try:
        obj = _decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    usage = usage_of(obj)
    if usage is None:
        return None
    usage[COST_FIELD] = cost_usd
    first, drop = data_at[0], set(data_at[1:])
    lines[first] = b"data: " + _encode(obj)
    return b"\n".join(line for i, line in enumerate(lines) if i not in drop)
