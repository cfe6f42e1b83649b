"""POST /v1/responses: the OpenAI Responses dialect (Codex, OpenAI SDKs)."""

from __future__ import annotations

from typing import Any

from streams.ingress.pipeline import DialectIngress, Exchange
from streams.translation.openai_responses import tool_namespaces


class OpenAIResponsesIngress(DialectIngress):
    dialect = "openai_responses"

    def render_options(self, ex: Exchange) -> dict[str, Any]:
        # Codex groups tools in namespaces; calls of those (flattened upstream) must come back in them.
        namespaces = tool_namespaces(ex.req) if ex.req is not None else {}
        return {"tool_namespaces": namespaces} if namespaces else {}
