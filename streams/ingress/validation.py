"""Checks every dialect endpoint shares once a request is parsed, so ``count_tokens`` and ``/v1/route``
refuse exactly what the endpoint they mirror refuses (the dialect parsers check types and roles; these
check what is only wrong in context: no messages, an absurd model name, ``max_tokens`` out of range).
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.config import ModelSettings
from streams.ingress.errors import BadRequest, max_tokens_problem
from streams.translation.canonical import CanonicalRequest

# Longer than any real model id (the longest known are ~60 characters), short enough for logs and headers.
MAX_MODEL_NAME = 256
# Far more than any agent's history (long Claude Code or Codex sessions carry a few thousand), few enough
# that the routing decision, which reads the whole conversation on the event loop, stays in milliseconds.
MAX_MESSAGES = 10_000
_MESSAGES_PARAM = {"openai_chat": "messages", "openai_responses": "input", "anthropic_messages": "messages",
                   "gemini": "contents"}
_MAX_TOKENS_PARAM = {"openai_chat": "max_tokens", "openai_responses": "max_output_tokens",
                     "anthropic_messages": "max_tokens", "gemini": "generationConfig.maxOutputTokens"}


def token_limit(models: Mapping[str, ModelSettings], name: str) -> int | None:
    """The most output a request for ``name`` may ask for: that model's context window, or for a name
    the router decides (auto) the largest configured one (the served model clamps further)."""
    model = models.get(name)
    if model is not None:
        return model.context_window
    return max((m.context_window for m in models.values()), default=None)


def request_problem(req: CanonicalRequest, dialect: str, models: Mapping[str, ModelSettings]) -> BadRequest | None:
    """Why a parsed request must be refused (400 naming the field), or None."""
    if not req.model:
        return BadRequest(400, "model is required", "model")
    if len(req.model) > MAX_MODEL_NAME:
        return BadRequest(400, f"model name too long ({len(req.model)} characters; at most {MAX_MODEL_NAME})", "model")
    if not req.messages:
        param = _MESSAGES_PARAM.get(dialect, "messages")
        return BadRequest(400, f"{param} must contain at least one message", param)
    if len(req.messages) > MAX_MESSAGES:
        param = _MESSAGES_PARAM.get(dialect, "messages")
        return BadRequest(400, f"too many messages ({len(req.messages)}; at most {MAX_MESSAGES})", param)
    return max_tokens_problem(req.max_tokens, token_limit(models, req.model), _MAX_TOKENS_PARAM.get(dialect, "max_tokens"))
