"""POST /v1/route: decide only. The body is a request in any dialect; the answer is the Decision as
JSON, and no model is called. ``?dialect=`` names the dialect; without it the shape of the body tells.
The request is validated as the dialect's own endpoint validates it, and the key's model scope holds
for the model asked for and the one the router picked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from streams.ingress.context import client_key
from streams.ingress.errors import BadRequest, load_json_object, read_request_body, send_error
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
from streams.routing.sessions import session_identity
from streams.translation import registry
from streams.translation.canonical import TranslationError

DIALECTS = ("openai_chat", "openai_responses", "anthropic_messages")


def guess_dialect(body: dict[str, Any], headers: dict[str, str]) -> str:
    if "input" in body or "instructions" in body:
        return "openai_responses"
    if "anthropic-version" in headers or "system" in body or "anthropic-beta" in headers:
        return "anthropic_messages"
    return "openai_chat"


def _query_dialect(scope: Scope) -> str | None:
    qs: bytes = scope.get("query_string", b"")
    for pair in qs.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"dialect":
            return value.decode("latin-1")
    return None


class RouteEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        headers = header_map(scope)
        dialect = _query_dialect(scope)
        if dialect is not None and dialect not in DIALECTS:
            await send_error(send, "openai_chat", 400, f"unknown dialect '{dialect}'", param="dialect")
            return
        err_dialect = dialect or "openai_chat"
        raw = await read_request_body(receive, send, headers, err_dialect, gw.max_body_bytes, gw.read_timeout_s)
        if raw is None:
            return
        if await gw.refuse_key(scope, headers, err_dialect, send):
            return
        try:
            body = load_json_object(raw)
        except BadRequest as exc:
            await send_error(send, err_dialect, exc.status, exc.message, param=exc.param)
            return
        dialect = dialect or guess_dialect(body, headers)
        try:
            req = await parse_off_loop(registry.get(dialect).parse_request, body, len(raw))
        except TranslationError as exc:
            await send_error(send, dialect, exc.status, exc.message, param=exc.param)
            return
        problem = request_problem(req, dialect, gw.models, gw.providers)
        if problem is not None:
            await send_error(send, dialect, problem.status, problem.message, param=problem.param)
            return
        key = client_key(headers)
        if await gw.refuse_model(key, req.model, dialect, send):
            return
        missing = gw.override_problem(headers, req.model)
        if missing is not None:
            await send_error(send, dialect, 404, missing, param="model")
            return
        decision = gw.decide(req, headers, req.model, session_identity(headers, req, key))
        if decision is None:
            await send_error(send, dialect, 404, f"model '{req.model}' not found", param="model")
            return
        if decision.model != req.model and await gw.refuse_model(key, decision.model, dialect, send, req.model):
            return
        out = dataclasses.asdict(decision)
        model = gw.models.get(decision.model)
        out["requested_model"] = req.model
        out["dialect"] = dialect
        out["upstream_model"] = model.upstream if model else None
        provider = gw.providers.get(decision.provider)
        out["provider_dialect"] = provider.dialect if provider else None
        gw.emit_decision_only(decision, requested_model=req.model, client_dialect=dialect, source="route")
        await send_bytes(send, 200, msgspec.json.encode(out), JSON_HEADERS)
