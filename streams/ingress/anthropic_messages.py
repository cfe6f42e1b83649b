"""The Anthropic Messages dialect (Claude Code, Anthropic SDKs): its serving core (``POST /v1/messages``,
also ``?beta=true``) and ``/v1/messages/count_tokens``."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.config import ModelSettings
from streams.ingress.admission import BYTES_PER_TOKEN
from streams.ingress.context import client_key
from streams.ingress.core import ServingCore
from streams.ingress.errors import BadRequest, load_json_object, read_request_body, send_error
from streams.ingress.exchange import Exchange
from streams.ingress.gateway import Gateway
from streams.ingress.http import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    header_map,
    parse_off_loop,
    send_bytes,
)
from streams.ingress.validation import request_problem
from streams.translation import registry
from streams.translation.anthropic_messages import rewrite_anthropic_beta
from streams.translation.canonical import TranslationError

DIALECT = "anthropic_messages"


class AnthropicMessagesCore(ServingCore):
    dialect = DIALECT

    def stream_options(self, ex: Exchange) -> dict[str, Any]:
        """A translated stream's message_start reports the prompt's size, as Anthropic's does (Claude
        Code reads it as the context in use): the provider's count when its stream starts with one
        (Gemini), else the body-size estimate admission uses; message_delta gives the final count."""
        return {**self.render_options(ex), "input_tokens": max(1, len(ex.raw) // BYTES_PER_TOKEN)}

    def rewrite_headers(self, headers: dict[str, str], model: ModelSettings) -> None:
        # Claude Code sends betas tuned to the model it asked for (interleaved thinking, 1M context...);
        # drop the ones the routed model does not support.
        beta = headers.get("anthropic-beta")
        if beta:
            rewritten = rewrite_anthropic_beta(beta, model.capabilities.thinking)
            if rewritten:
                headers["anthropic-beta"] = rewritten
            else:
                del headers["anthropic-beta"]


_encode = msgspec.json.encode


class CountTokensEndpoint:
    """An estimate, not the provider's tokenizer: agents use it to decide when to compact history.

    The body is validated exactly as ``/v1/messages`` validates it (same parser, same checks, same key
    scope on the model), so a request it counts is one the messages endpoint would take."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.tr = registry.get(DIALECT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        gw = self.gw
        raw = await read_request_body(receive, send, headers, DIALECT, gw.max_body_bytes, gw.read_timeout_s)
        if raw is None:
            return
        if await gw.refuse_key(scope, headers, DIALECT, send):
            return
        try:
            body = load_json_object(raw)
            req = await parse_off_loop(self.tr.parse_request, body, len(raw))
        except BadRequest as exc:
            await send_error(send, DIALECT, exc.status, exc.message, param=exc.param)
            return
        except TranslationError as exc:
            await send_error(send, DIALECT, exc.status, exc.message, param=exc.param)
            return
        problem = request_problem(req, DIALECT, gw.models, gw.providers)
        if problem is not None:
            await send_error(send, DIALECT, problem.status, problem.message, param=problem.param)
            return
        if await gw.refuse_model(client_key(headers), req.model, DIALECT, send):
            return
        if not gw.knows_model(req.model):
            await send_error(send, DIALECT, 404, f"model '{req.model}' not found", param="model")
            return
        size = sum(len(_encode(body.get(k))) for k in ("messages", "system", "tools") if body.get(k) is not None)
        tokens = max(1, size // BYTES_PER_TOKEN)
        await send_bytes(send, 200, _encode({"input_tokens": tokens}), JSON_HEADERS)
