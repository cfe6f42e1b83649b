"""Server-sent-event framing shared by the dialects."""

from __future__ import annotations

import os
from typing import Any

import msgspec

# (bytes on the wire, output tokens carried): the app paces token-bearing frames at tokens_per_s.
Frame = tuple[bytes, int]

_encode = msgspec.json.Encoder().encode


def dumps(payload: Any) -> bytes:
    return _encode(payload)


def data_frame(payload: Any, tokens: int = 0) -> Frame:
    """A ``data:``-only event (OpenAI Chat Completions)."""
    return b"data: " + _encode(payload) + b"\n\n", tokens


def named_frame(event: str, payload: Any, tokens: int = 0) -> Frame:
    """An ``event:`` + ``data:`` pair (Anthropic Messages, OpenAI Responses)."""
    return b"event: " + event.encode() + b"\ndata: " + _encode(payload) + b"\n\n", tokens


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def chunk_tokens(tokens: list[str], size: int) -> list[tuple[str, int]]:
    """Group output tokens into stream deltas of ``size`` tokens: (text, token count)."""
    if size <= 1:
        return [(t, 1) for t in tokens]
    return [("".join(tokens[i : i + size]), len(tokens[i : i + size])) for i in range(0, len(tokens), size)]


def split_json(text: str, size: int = 12) -> list[str]:
    """Tool-call arguments arrive as a few partial-JSON fragments, as real APIs send them."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
