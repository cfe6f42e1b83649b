"""Checks every dialect endpoint shares once a request is parsed, so ``count_tokens`` and ``/v1/route``
refuse exactly what the endpoint they mirror refuses (the dialect parsers check types and roles; these
check what is only wrong in context: no messages, an absurd model name, ``max_tokens`` out of range).
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.config import ModelSettings, ProviderSettings
from streams.ingress.errors import BadRequest, max_tokens_problem
from streams.translation.canonical import CanonicalRequest

# Longer than any real model id (the longest known are ~60 characters), short enough for logs and headers.
MAX_MODEL_NAME = 256
# Far more than any agent's history (long Claude Code or Codex sessions carry a few thousand), few enough
# that the routing decision, which reads the whole conversation on the event loop, stays in milliseconds.
MAX_MESSAGES = 10_000
_MESSAGES_PARAM = {"openai_chat": "messages", "openai_responses": "input", "anthropic_messages": "messages",
                   "gemini": "contents"}
# OpenAI's own ceiling of Chat Completions' n.
MAX_CHOICES = 128
_MAX_TOKENS_PARAM = {"openai_chat": "max_tokens", "openai_responses": "max_output_tokens",
                     "anthropic_messages": "max_tokens", "gemini": "generationConfig.maxOutputTokens"}


def token_limit(models: Mapping[str, ModelSettings], name: str) -> int | None:
    """The most output a request for ``name`` may ask for: that model's context window, or for a name
    the router decides (auto) the largest configured one (the served model clamps further)."""
    model = models.get(name)
    if model is not None:
        return model.context_window
    return max((m.context_window for m in models.values()), default=None)


def request_problem(req: CanonicalRequest, dialect: str, models: Mapping[str, ModelSettings],
                    providers: Mapping[str, ProviderSettings]) -> BadRequest | None:
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
    return max_tokens_problem(req.max_tokens, token_limit(models, req.model),
                              _MAX_TOKENS_PARAM.get(dialect, "max_tokens")) or choices_problem(req, models, providers)


def choices_problem(req: CanonicalRequest, models: Mapping[str, ModelSettings],
                    providers: Mapping[str, ProviderSettings]) -> BadRequest | None:
    """Why Chat Completions' ``n`` cannot be honoured (400 naming ``n``), or None.

    Only a Chat Completions provider answers several choices in one call; the other dialects have no
    such field, so a translated request would silently come back with one. ``n > 1`` is passed on only
    when the caller named a configured model every provider of which speaks Chat Completions; for a
    name the router decides (it may pick any dialect, and fall back to another) it is refused.
    """
    if req.dialect != "openai_chat" or not req.extra or req.extra.get("n") is None:
        return None
    n = req.extra["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        return BadRequest(400, f"n must be an integer from 1 to {MAX_CHOICES}", "n")
    if n == 1:
        return None
    model = models.get(req.model)
    if model is None:
        return BadRequest(400, f"n={n} is not supported for '{req.model}': the router picks the model and its "
                               "provider may not speak Chat Completions; send n=1 (or omit it) and make n requests, "
                               "or name a Chat Completions model", "n")
    other = [p for p in model.providers if (ps := providers.get(p)) is None or ps.dialect != "openai_chat"]
    if other:
        return BadRequest(400, f"n={n} is not supported for '{req.model}': its provider '{other[0]}' does not "
                               "speak Chat Completions and answers one choice; send n=1 (or omit it)", "n")
    return None
