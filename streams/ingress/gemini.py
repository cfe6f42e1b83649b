"""The Gemini API dialect (gemini-cli, the google-genai SDKs): its serving core and ``/v1beta/models``.

    POST /v1beta/models/{model}:generateContent
    POST /v1beta/models/{model}:streamGenerateContent   (SSE, as with ``?alt=sse``)
    POST /v1beta/models/{model}:countTokens
    GET  /v1beta/models, /v1beta/models/{model}

The model and whether to stream are in the URL: ``GeminiCore.request_body`` puts them into the decoded
body before admission, where the dialect's parser reads them. The key comes from ``x-goog-api-key``
or the ``key`` query parameter (also ``Authorization: Bearer``). Every answer, errors included, is in
Google's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import msgspec

from streams.ingress.admission import BYTES_PER_TOKEN
from streams.ingress.context import client_key
from streams.ingress.core import ServingCore
from streams.ingress.errors import decode_json_object, read_request_body, send_error
from streams.ingress.gateway import Gateway
from streams.ingress.http import JSON_HEADERS, Receive, Scope, Send, header_map, send_bytes
from streams.ingress.pipeline import DialectIngress
from streams.translation.gemini.request import with_url_target

DIALECT = "gemini"
GENERATE = "generateContent"
STREAM = "streamGenerateContent"
COUNT = "countTokens"
_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
_encode = msgspec.json.encode


def split_target(target: str) -> tuple[str, str]:
    """``gemini-2.5-pro:generateContent`` -> (model, method); a ``models/`` prefix is tolerated."""
    model, _, method = target.rpartition(":")
    if not model:
        model, method = target, ""
    return model.removeprefix("models/"), method


def gemini_key(scope: Scope, headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``x-goog-api-key``, else ``?key=``, else the usual headers."""
    key = headers.get("x-goog-api-key")
    if key:
        return key
    query: bytes = scope.get("query_string", b"")
    if b"key=" in query:
        values = parse_qs(query.decode("latin-1")).get("key")
        if values and values[0]:
            return values[0]
    return client_key(headers)


class GeminiCore(ServingCore):
    dialect = DIALECT

    def caller_key(self, scope: Scope, headers: Mapping[str, str]) -> str | None:
        return gemini_key(scope, headers)

    def request_body(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
        model, method = split_target(scope.get("path_params", {}).get("target", ""))
        return with_url_target(body, model, stream=method == STREAM)


def _model_json(name: str, context_window: int | None = None) -> dict[str, Any]:
    return {
        "name": "models/" + name,
        "version": "001",
        "displayName": name,
        "description": "routed by weave-router" if context_window is None else "served by weave-router",
        "inputTokenLimit": context_window or 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": _METHODS,
    }


class GeminiModels:
    """``/v1beta/models`` and ``/v1beta/models/{target}``: the model list and one model (GET), the
    generation methods (POST, to the Gemini serving core) and ``countTokens``."""

    def __init__(self, gateway: Gateway, core: ServingCore) -> None:
        self.gw = gateway
        self.core = core
        self.generate = DialectIngress(core)
        names = [n for n in gateway.settings.routing.auto_models if not any(c in n for c in "*?[")]
        self._models = {n: _model_json(n) for n in names}
        for m in gateway.settings.models:
            self._models[m.name] = _model_json(m.name, m.context_window)
        self._listing = _encode({"models": list(self._models.values())})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = scope.get("path_params", {}).get("target")
        model, method = split_target(target) if target is not None else ("", "")
        if scope["method"] == "POST" and method in (GENERATE, STREAM):
            await self.generate(scope, receive, send)
            return
        headers = header_map(scope)
        if scope["method"] == "POST" and method == COUNT:
            await self._count_tokens(scope, receive, send, headers, model)
            return
        if await self._refuse_key(scope, headers, send):
            return
        if scope["method"] != "GET" or method:
            await send_error(send, DIALECT, 404, f"method {method or scope['method']!r} is not found on models/{model}")
        elif target is None:
            await send_bytes(send, 200, self._listing, JSON_HEADERS)
        elif model in self._models or self.gw.router.is_auto(model):
            await send_bytes(send, 200, _encode(self._models.get(model) or _model_json(model)), JSON_HEADERS)
        else:
            await send_error(send, DIALECT, 404, f"models/{model} is not found for API version v1beta")

    async def _refuse_key(self, scope: Scope, headers: Mapping[str, str], send: Send) -> bool:
        check = self.gw.reliability.authenticate(gemini_key(scope, headers), route=scope["path"])
        if check.ok:
            return False
        await send_error(send, DIALECT, check.status, check.message)
        return True

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send, headers: Mapping[str, str],
                            model: str) -> None:
        """An estimate, not the model's tokenizer (as ``/v1/messages/count_tokens``), for a model the
        gateway knows and the caller's key may use."""
        gw = self.gw
        raw = await read_request_body(receive, send, headers, DIALECT, gw.max_body_bytes, gw.read_timeout_s)
        if raw is None or await self._refuse_key(scope, headers, send):
            return
        if not gw.knows_model(model):
            await send_error(send, DIALECT, 404, f"models/{model} is not found for API version v1beta", param="model")
            return
        if await gw.refuse_model(gemini_key(scope, headers), model, DIALECT, send):
            return
        body = await decode_json_object(send, DIALECT, raw)
        if body is None:
            return
        inner = body.get("generateContentRequest")
        request = inner if isinstance(inner, dict) else body
        if not isinstance(request.get("contents"), list):
            await send_error(send, DIALECT, 400, "contents is not specified", param="contents")
            return
        tokens = max(1, len(raw) // BYTES_PER_TOKEN)
        out = {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
        await send_bytes(send, 200, _encode(out), JSON_HEADERS)
