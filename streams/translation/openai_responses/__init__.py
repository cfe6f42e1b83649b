"""OpenAI Responses (``/v1/responses``) <-> canonical.

``request`` parses a client's body and renders an upstream's, ``response`` does the same for whole
responses and errors, ``stream`` for event streams, ``usage`` for token counts (also straight off
relayed bytes). ``CODEC`` is all of it behind ``DialectCodec``.
"""

from __future__ import annotations

from streams.translation.codec import DialectCodec
from streams.translation.openai_responses.request import DIALECT, parse_request, render_request, tool_namespaces
from streams.translation.openai_responses.response import parse_response, render_error, render_response
from streams.translation.openai_responses.stream import StreamParser, StreamWriter
from streams.translation.openai_responses.usage import body_usage, parse_usage, render_usage, usage_scanner

__all__ = [
    "CODEC",
    "DIALECT",
    "StreamParser",
    "StreamWriter",
    "body_usage",
    "parse_request",
    "parse_response",
    "parse_usage",
    "render_error",
    "render_request",
    "render_response",
    "render_usage",
    "tool_namespaces",
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
