"""The OpenAI Chat Completions dialect's serving core (OpenAI SDKs, aider, Cursor)."""

from __future__ import annotations

from typing import Any

from streams.ingress.core import ServingCore


class OpenAIChatCore(ServingCore):
    dialect = "openai_chat"

    def client_wants_usage(self, body: dict[str, Any]) -> bool:
        # Usage is always requested upstream; the client only sees the usage chunk when it asked for it.
        opts = body.get("stream_options")
        return isinstance(opts, dict) and bool(opts.get("include_usage"))
