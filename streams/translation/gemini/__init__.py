"""Google Gemini API (``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent``) <-> canonical.

What sets this dialect apart: the model and streaming are named by the URL, not the body; turns are
``user`` and ``model`` with typed parts; function results carry the function's name and no call id
unless the client set one (``parts.CallIds`` pairs them with their calls); thinking is a token
budget or a level; a stream is whole ``GenerateContentResponse`` chunks ending with a finishReason;
errors are Google's ``{"error": {"code", "message", "status"}}``.

Modules: ``parts`` (Gemini parts <-> canonical parts), ``request``, ``response`` (responses and
errors), ``stream`` (chunk streams both ways), ``usage`` (``usageMetadata``, also off relayed bytes),
``relay`` (the edits to a body relayed to a Gemini upstream); ``CODEC`` is all of it behind
``DialectCodec``.
"""

from __future__ import annotations

from streams.translation.codec import DialectCodec
from streams.translation.gemini.relay import rewrite_relayed
from streams.translation.gemini.request import DIALECT, parse_request, render_request
from streams.translation.gemini.response import parse_response, render_error, render_response, status_name
from streams.translation.gemini.stream import StreamParser, StreamWriter
from streams.translation.gemini.usage import body_usage, parse_usage, render_usage, seal_body, usage_scanner

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
    "status_name",
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
