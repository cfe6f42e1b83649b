"""OpenAI Responses (``/v1/responses``) <-> canonical.

What sets this dialect apart: a list of typed input items (messages, ``function_call``,
``function_call_output``, ``reasoning`` with ``encrypted_content``); Codex's tool ``namespace``s,
flattened into function tools and restored on the way back (``client_tools``); custom (freeform) tools,
offered to other dialects as functions of one string and returned as ``custom_tool_call``s; hosted tools kept
for a same-dialect upstream only; no stop sequences.

Modules: ``request`` (client body -> canonical -> upstream body), ``response`` (response objects and errors),
``stream`` (``response.*`` events both ways), ``usage`` (token counts, also off relayed bytes), ``relay``
(the edits to a body relayed to an upstream of this dialect); ``CODEC`` is all of it behind
``DialectCodec``.
"""

from __future__ import annotations

from streams.translation.codec import DialectCodec
from streams.translation.openai_responses.relay import rewrite_relayed
from streams.translation.openai_responses.request import DIALECT, client_tools, parse_request, render_request
from streams.translation.openai_responses.response import parse_response, render_error, render_response
from streams.translation.openai_responses.stream import StreamParser, StreamWriter
from streams.translation.openai_responses.usage import (
    body_usage,
    parse_usage,
    render_usage,
    seal_body,
    usage_scanner,
)

__all__ = [
    "CODEC",
    "DIALECT",
    "StreamParser",
    "StreamWriter",
    "body_usage",
    "client_tools",
    "parse_request",
    "parse_response",
    "parse_usage",
    "render_error",
    "render_request",
    "render_response",
    "render_usage",
    "rewrite_relayed",
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
