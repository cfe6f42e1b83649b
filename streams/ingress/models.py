"""GET /v1/models and GET /v1/models/{id}: the configured models plus the router's own auto names, in the
caller's shape.

The OpenAI SDK wants ``{"object": "list", "data": [{"id", "object": "model", ...}]}`` and one such model
object from ``models.retrieve(id)``; the Anthropic SDK (which sends ``anthropic-version``) wants
``{"data": [{"id", "type": "model", ...}], "has_more", ...}`` and one ``{"type": "model", ...}``. An id is
known when it is a configured model or a name the router decides for (``router/auto``, or one that
matches an ``auto_models`` pattern such as ``claude-*``); any other is a 404 in the caller's shape.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.ingress.context import client_key
from streams.ingress.errors import send_error
from streams.ingress.gateway import Gateway
from streams.ingress.http import JSON_HEADERS, Receive, Scope, Send, header_map, send_bytes

_CREATED = 1_767_225_600  # a fixed date (2026-01-01): the listing must not change between calls
_CREATED_AT = "2026-01-01T00:00:00Z"
_AUTO_OWNER = "weave-router"


def _listing(gateway: Gateway) -> list[tuple[str, str, Any]]:
    """(id, owner, model settings or None for an auto name)."""
    out: list[tuple[str, str, Any]] = []
    for name in gateway.settings.routing.auto_models:
        if not any(c in name for c in "*?["):
            out.append((name, _AUTO_OWNER, None))
    for m in gateway.settings.models:
        out.append((m.name, m.providers[0], m))
    return out


def _openai_model(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": owner}


def _anthropic_model(name: str) -> dict[str, Any]:
    return {"id": name, "type": "model", "display_name": name, "created_at": _CREATED_AT}


class ModelsEndpoint:
    """Both routes: the list (no ``model_id`` path parameter) and one model."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        items = _listing(gateway)
        self._owner = {name: owner for name, owner, _ in items}
        self._openai = msgspec.json.encode({"object": "list", "data": [_openai_model(n, o) for n, o, _ in items]})
        self._anthropic = msgspec.json.encode(
            {
                "data": [_anthropic_model(name) for name, _, _ in items],
                "has_more": False,
                "first_id": items[0][0] if items else None,
                "last_id": items[-1][0] if items else None,
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        anthropic = any(k == b"anthropic-version" for k, _ in scope["headers"])
        dialect = "anthropic_messages" if anthropic else "openai_chat"
        rel = self.gw.reliability
        model_id = scope.get("path_params", {}).get("model_id")
        headers = header_map(scope) if rel.keys is not None or rel.require_key else None
        if headers is not None and await self.gw.refuse_key(scope, headers, dialect, send):
            return
        if model_id is None:
            await send_bytes(send, 200, self._anthropic if anthropic else self._openai, JSON_HEADERS)
            return
        await self._one(model_id, dialect, headers, send)

    async def _one(self, model_id: str, dialect: str, headers: dict[str, str] | None, send: Send) -> None:
        gw = self.gw
        if not gw.knows_model(model_id):
            await send_error(send, dialect, 404, f"model '{model_id}' not found", param="model")
            return
        # A key scoped to some models sees only those (as a request for another would be refused).
        if headers is not None and await gw.refuse_model(client_key(headers), model_id, dialect, send):
            return
        if dialect == "anthropic_messages":
            body = _anthropic_model(model_id)
        else:
            # A name matched by an auto_models pattern (claude-opus-4-8) is the router's, like router/auto.
            body = _openai_model(model_id, self._owner.get(model_id, _AUTO_OWNER))
        await send_bytes(send, 200, msgspec.json.encode(body), JSON_HEADERS)
