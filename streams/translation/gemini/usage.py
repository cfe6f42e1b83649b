"""Gemini token usage (``usageMetadata``): parsed from a decoded response or chunk, read straight off
relayed bytes, and rendered for a client.

Gemini's ``promptTokenCount`` includes the cached share (``cachedContentTokenCount``), as canonical
``input_tokens`` does; its ``candidatesTokenCount`` excludes the thinking tokens
(``thoughtsTokenCount``), which canonical ``output_tokens`` includes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.canonical import Usage
from streams.translation.common import as_struct, seal_signature
from streams.translation.gemini.parts import SYNTHETIC_THOUGHT_SIGNATURE
from streams.translation.scanner import UsageScanner, body_usage_with


class WireUsage(msgspec.Struct):
    promptTokenCount: int | None = 0
    candidatesTokenCount: int | None = 0
    cachedContentTokenCount: int | None = 0
    thoughtsTokenCount: int | None = 0
    toolUsePromptTokenCount: int | None = 0


class WireStatus(msgspec.Struct):
    """Google's error object: ``{"code": 404, "message": "...", "status": "NOT_FOUND"}``."""

    message: str | None = None
    code: int | None = None
    status: str | None = None


class _Candidate(msgspec.Struct):
    finishReason: str | None = None


class _PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class _Chunk(msgspec.Struct):
    """A whole response or one stream chunk, decoded only as far as usage, the end and errors go."""

    usageMetadata: WireUsage | None = None
    candidates: list[_Candidate] | None = None
    promptFeedback: _PromptFeedback | None = None
    error: WireStatus | None = None
    modelVersion: str | None = None


_chunk = msgspec.json.Decoder(_Chunk)


def usage_of(u: WireUsage | None) -> Usage:
    if u is None:
        return Usage()
    thoughts = u.thoughtsTokenCount or 0
    return Usage(
        input_tokens=(u.promptTokenCount or 0) + (u.toolUsePromptTokenCount or 0),
        output_tokens=(u.candidatesTokenCount or 0) + thoughts,
        cached_input_tokens=u.cachedContentTokenCount or 0,
        reasoning_tokens=thoughts,
    )


def parse_usage(u: Any) -> Usage:
    """The ``usageMetadata`` object of a decoded response or chunk; zeros when absent or of another shape."""
    return usage_of(as_struct(u, WireUsage))


def render_usage(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": max(0, u.output_tokens - u.reasoning_tokens),
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_input_tokens:
        out["cachedContentTokenCount"] = u.cached_input_tokens
    return out


def body_usage(data: bytes) -> Usage | None:
    """Usage of a whole response body; None when it is not JSON at all."""
    return body_usage_with(_chunk, lambda body: usage_of(body.usageMetadata), data)


def _read_event(data: bytes, scanner: UsageScanner) -> bool:
    chunk = _chunk.decode(data)
    if chunk.error:
        scanner.error = chunk.error.message or "upstream error"
        scanner.finished = True
    if chunk.usageMetadata:
        scanner.usage = usage_of(chunk.usageMetadata)  # each chunk's counts are the running totals
    if any(c.finishReason for c in chunk.candidates or ()) or (chunk.promptFeedback and chunk.promptFeedback.blockReason):
        scanner.finished = True  # no end marker: the last chunk has a finishReason (or says the prompt was blocked)
    if chunk.modelVersion and not scanner.origin:
        scanner.origin = chunk.modelVersion
    if scanner.origin and _SIGNED in data:
        body = msgspec.json.decode(data)
        if _seal_candidates(body, scanner.origin):
            scanner.replacement = msgspec.json.encode(body)
    return False


def usage_scanner(*, drop_usage_chunk: bool = False) -> UsageScanner:
    """``drop_usage_chunk`` does not apply: Gemini streams have no separate usage chunk. Chunks with
    a thought signature are sealed (``seal_body``)."""
    return UsageScanner(_read_event, markers=(_SIGNED,))


# A thought signature relayed to a Gemini client is sealed with the model that made it: Gemini
# answers "Corrupted thought signature." to another model's (``relay.rewrite_relayed`` unseals it
# for its model, and puts the marker Gemini accepts on a call that lost its signature).
_SIGNED = b"thoughtSignature"


def _seal_candidates(body: Any, origin: str) -> bool:
    sealed = False
    candidates = body.get("candidates") if isinstance(body, dict) else None
    for cand in candidates if isinstance(candidates, list) else ():
        content = cand.get("content") if isinstance(cand, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            value = part.get("thoughtSignature") if isinstance(part, dict) else None
            if isinstance(value, str) and value and value != SYNTHETIC_THOUGHT_SIGNATURE and not value.startswith("wr1."):
                part["thoughtSignature"] = seal_signature(value, origin)
                sealed = True
    return sealed


def seal_body(data: bytes) -> bytes:
    """A whole relayed response with its thought signatures sealed (else the bytes as they were)."""
    if _SIGNED not in data:
        return data
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data
    origin = body.get("modelVersion") if isinstance(body, dict) else None
    if not isinstance(origin, str) or not origin or not _seal_candidates(body, origin):
        return data
    return msgspec.json.encode(body)
