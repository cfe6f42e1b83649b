"""Dialect -> its ``DialectCodec`` (see ``streams.translation.codec``)."""

from __future__ import annotations

from typing import cast

from streams.translation import anthropic_messages, gemini, openai_chat, openai_responses
from streams.translation.canonical import Dialect
from streams.translation.codec import DialectCodec

__all__ = ["DIALECTS", "DialectCodec", "get"]

DIALECTS: dict[Dialect, DialectCodec] = {
    codec.dialect: codec for codec in (openai_chat.CODEC, openai_responses.CODEC, anthropic_messages.CODEC, gemini.CODEC)
}


def get(dialect: Dialect | str) -> DialectCodec:
    try:
        return DIALECTS[cast(Dialect, dialect)]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}") from None
