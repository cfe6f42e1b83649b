"""OpenAI Chat Completions (``/v1/chat/completions``) <-> canonical.

What sets this dialect apart: system and developer messages anywhere in ``messages``; tool results as
``tool`` messages carrying text only (images and documents follow as a user message); reasoning as
DeepSeek-style ``reasoning_content``; and usage in a stream only when ``stream_options.include_usage``
asks for it, so the router always asks upstream and cuts the extra chunk when the client did not.

Modules: ``request`` (client body -> canonical -> upstream body), ``response`` (whole responses and errors),
``stream`` (chunk streams both ways), ``usage`` (token counts, also off relayed bytes), ``relay``
(the edits to a body relayed to an upstream of this dialect); ``CODEC`` is all of it behind
``DialectCodec``.
"""

from __future__ import annotations

from streams.translation.codec import DialectCodec
from streams.translation.openai_chat.relay import rewrite_relayed
from streams.translation.openai_chat.request import DIALECT, parse_request, render_request
from streams.translation.openai_chat.response import parse_response, render_error, render_response
from streams.translation.openai_chat.stream import StreamParser, StreamWriter
from streams.translation.openai_chat.usage import body_usage, parse_usage, render_usage, usage_scanner

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
)
