"""The OpenAI Responses dialect's serving core (Codex, OpenAI SDKs)."""

from __future__ import annotations

from typing import Any

from streams.ingress.core import ServingCore
from streams.ingress.exchange import Exchange
from streams.translation.openai_responses import tool_namespaces


class OpenAIResponsesCore(ServingCore):
    dialect = "openai_responses"

    def render_options(self, ex: Exchange) -> dict[str, Any]:
        # Codex groups tools in namespaces; calls of those (flattened upstream) must come back in them.
        namespaces = tool_namespaces(ex.req) if ex.req is not None else {}
        return {"tool_namespaces": namespaces} if namespaces else {}
