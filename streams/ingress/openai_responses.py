"""The OpenAI Responses dialect's serving core (Codex, OpenAI SDKs)."""

from __future__ import annotations

from typing import Any

from streams.ingress.core import ServingCore
from streams.ingress.exchange import Exchange
from streams.translation.openai_responses import client_tools


class OpenAIResponsesCore(ServingCore):
    dialect = "openai_responses"

    def render_options(self, ex: Exchange) -> dict[str, Any]:
        # Codex groups tools in namespaces and offers custom (freeform) tools; calls of those (sent
        # upstream as plain functions) must come back as Codex declared them.
        tools = client_tools(ex.req) if ex.req is not None else {}
        return {"client_tools": tools} if tools else {}
