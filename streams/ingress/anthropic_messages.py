"""The Anthropic Messages dialect (Claude Code, Anthropic SDKs): its serving core (``POST /v1/messages``,
also ``?beta=true``) and ``/v1/messages/count_tokens``."""

from __future__ import annotations

import msgspec

from streams.config import ModelSettings
from streams.ingress.admission import BYTES_PER_TOKEN
from streams.ingress.core import ServingCore
from streams.ingress.errors import read_request_body, send_error
from streams.ingress.gateway import Gateway
from streams.ingress.http import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    send_bytes,
)
from streams.translation.anthropic_messages import rewrite_anthropic_beta

DIALECT = "anthropic_messages"


class AnthropicMessagesCore(ServingCore):
    dialect = DIALECT

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


class _CountRequest(msgspec.Struct):
    model: str
    messages: list[msgspec.Raw]
    system: msgspec.Raw | None = None
    tools: list[msgspec.Raw] | None = None


_COUNT = msgspec.json.Decoder(_CountRequest)
_encode = msgspec.json.encode


class CountTokensEndpoint:
    """An estimate, not the provider's tokenizer: agents use it to decide when to compact history."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        gw = self.gw
        raw = await read_request_body(receive, send, headers, DIALECT, gw.max_body_bytes, gw.read_timeout_s)
        if raw is None:
            return
        if await gw.refuse_key(scope, headers, DIALECT, send):
            return
        try:
            req = _COUNT.decode(raw)
        except msgspec.ValidationError as exc:
            await send_error(send, DIALECT, 400, f"invalid request: {exc}")
            return
        except msgspec.DecodeError as exc:
            await send_error(send, DIALECT, 400, f"request body is not valid JSON: {exc}")
            return
        size = sum(len(m) for m in req.messages)
        size += len(req.system) if req.system is not None else 0
        size += sum(len(t) for t in req.tools) if req.tools else 0
        tokens = max(1, size // BYTES_PER_TOKEN)
        await send_bytes(send, 200, _encode({"input_tokens": tokens}), JSON_HEADERS)
