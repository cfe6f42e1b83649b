"""Anthropic Messages (``/v1/messages``) <-> canonical.

``request`` parses a client's body and renders an upstream's, ``response`` does the same for whole
responses and errors, ``stream`` for event streams, ``usage`` for token counts (also straight off
relayed bytes). ``CODEC`` is all of it behind ``DialectCodec``.
"""

from __future__ import annotations

from streams.translation.anthropic_messages.request import DIALECT, parse_request, render_request, tool_id
from streams.translation.anthropic_messages.response import (
    error_type_for,
    parse_response,
    render_error,
    render_response,
)
from streams.translation.anthropic_messages.stream import StreamParser, StreamWriter
from streams.translation.anthropic_messages.usage import body_usage, parse_usage, render_usage, usage_scanner
from streams.translation.codec import DialectCodec

__all__ = [
    "CODEC",
    "DIALECT",
    "StreamParser",
    "StreamWriter",
    "body_usage",
    "error_type_for",
    "parse_request",
    "parse_response",
    "parse_usage",
    "render_error",
    "render_request",
    "render_response",
    "render_usage",
    "tool_id",
    "usage_scanner",
]

CODEC = DialectCodec(
    dialect=DIALECT,
    parse_request=parse_request,
    render_request=render_request,
    parse_response=parse_response,
    render_response=render_response,
    render_error=render_error,
    StreamParser=StreamParser,
    StreamWriter=StreamWriter,
    body_usage=body_usage,
    usage_scanner=usage_scanner,
)
