"""Anthropic Messages (``/v1/messages``) <-> canonical.

What sets this dialect apart: content blocks (``blocks``), tool results inside user messages, tool ids
restricted to ``[a-zA-Z0-9_-]`` (``tool_id``), signed thinking that only the model that made it may get
back (sealed with it on the way to the client), thinking switched off for a turn whose pending tool calls came without it, and input tokens
counted without the cached share.

Modules: ``request`` (client body -> canonical -> upstream body), ``response`` (messages and errors),
``stream`` (message/content_block events both ways), ``usage`` (token counts, also off relayed bytes), ``relay``
(the edits to a body relayed to an upstream of this dialect); ``CODEC`` is all of it behind
``DialectCodec``.
"""

from __future__ import annotations

from streams.translation.anthropic_messages.blocks import tool_id
from streams.translation.anthropic_messages.relay import rewrite_anthropic_beta, rewrite_relayed
from streams.translation.anthropic_messages.request import DIALECT, parse_request, render_request
from streams.translation.anthropic_messages.response import (
    error_type_for,
    parse_response,
    render_error,
    render_response,
)
from streams.translation.anthropic_messages.stream import StreamParser, StreamWriter
from streams.translation.anthropic_messages.usage import (
    body_usage,
    parse_usage,
    render_usage,
    seal_body,
    usage_scanner,
)
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
    "rewrite_anthropic_beta",
    "rewrite_relayed",
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
    rewrite_relayed=rewrite_relayed,
    seal_relayed=seal_body,
)
