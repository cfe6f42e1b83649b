"""OpenAI Chat Completions token usage: parsed from a decoded body or chunk, read straight off relayed
bytes, and rendered for a client.

Canonical ``input_tokens`` counts every prompt token, cached ones included (``prompt_tokens``);
``cached_input_tokens`` is the cache-read share of it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation.canonical import Usage
from streams.translation.common import OpenAIInputDetails, OpenAIOutputDetails, WireError, as_struct, openai_usage
from streams.translation.scanner import UsageScanner, body_usage_with


class WireUsage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_cache_hit_tokens: int | None = 0  # DeepSeek's name for cached prompt tokens
    prompt_tokens_details: OpenAIInputDetails | None = None
    completion_tokens_details: OpenAIOutputDetails | None = None


class _Chunk(msgspec.Struct):
    """A whole body or one stream chunk, decoded only as far as usage and errors go."""

    usage: WireUsage | None = None
    choices: list[msgspec.Raw] | None = None
    error: WireError | None = None


_chunk = msgspec.json.Decoder(_Chunk)


def usage_of(u: WireUsage | None) -> Usage:
    if u is None:
        return Usage()
    return openai_usage(
        u.prompt_tokens,
        u.completion_tokens,
        u.prompt_tokens_details,
        u.completion_tokens_details,
        cache_hit_tokens=u.prompt_cache_hit_tokens,
    )


def parse_usage(u: Any) -> Usage:
    """The ``usage`` object of a decoded body or chunk; zeros when absent or of another shape."""
    return usage_of(as_struct(u, WireUsage))


def render_usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def body_usage(data: bytes) -> Usage | None:
    """Usage of a whole response body; None when it is not JSON at all."""
    return body_usage_with(_chunk, lambda body: usage_of(body.usage), data)


def _read_event(data: bytes, scanner: UsageScanner) -> bool:
    chunk = _chunk.decode(data)
    if chunk.error:
        scanner.error = chunk.error.message or "upstream error"
    if chunk.usage:
        scanner.usage = usage_of(chunk.usage)
        return scanner.drop_usage_chunk and not chunk.choices  # the usage-only chunk
    return False


def usage_scanner(*, drop_usage_chunk: bool = False) -> UsageScanner:
    return UsageScanner(_read_event, drop_usage_chunk=drop_usage_chunk)
