"""Dialect -> its codec (the pure functions and stream classes of one dialect module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from streams.translation import anthropic_messages, openai_chat, openai_responses
from streams.translation.canonical import CanonicalRequest, CanonicalResponse, Dialect


@dataclass(frozen=True, slots=True)
class DialectCodec:
    dialect: Dialect
    parse_request: Callable[[dict[str, Any]], CanonicalRequest]
    render_request: Callable[..., dict[str, Any]]
    parse_response: Callable[[dict[str, Any]], CanonicalResponse]
    render_response: Callable[..., dict[str, Any]]
    render_error: Callable[..., dict[str, Any]]
    # StreamParser(): .feed(event, data) -> list[StreamEvent], .close() -> list[StreamEvent]
    StreamParser: type
    # StreamWriter(model, *, include_usage=False, keep_signatures=False, tool_namespaces=None)
    StreamWriter: type


def _codec(dialect: Dialect, mod: ModuleType) -> DialectCodec:
    return DialectCodec(
        dialect=dialect,
        parse_request=mod.parse_request,
        render_request=mod.render_request,
        parse_response=mod.parse_response,
        render_response=mod.render_response,
        render_error=mod.render_error,
        StreamParser=mod.StreamParser,
        StreamWriter=mod.StreamWriter,
    )


DIALECTS: dict[Dialect, DialectCodec] = {
    "openai_chat": _codec("openai_chat", openai_chat),
    "openai_responses": _codec("openai_responses", openai_responses),
    "anthropic_messages": _codec("anthropic_messages", anthropic_messages),
}


def get(dialect: Dialect | str) -> DialectCodec:
    try:
        return DIALECTS[cast(Dialect, dialect)]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}") from None
