"""GET /v1/models: the configured models plus the router's own auto names, in the caller's shape.

The OpenAI SDK wants ``{"object": "list", "data": [{"id", "object": "model", ...}]}``; the Anthropic SDK
(which sends ``anthropic-version``) wants ``{"data": [{"id", "type": "model", ...}], "has_more", ...}``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.ingress.gateway import Gateway
from streams.ingress.http import JSON_HEADERS, Receive, Scope, Send, send_bytes

_CREATED = 1_767_225_600  # a fixed date (2026-01-01): the listing must not change between calls


def _listing(gateway: Gateway) -> list[tuple[str, str, Any]]:
    """(id, owner, model settings or None for an auto name)."""
    out: list[tuple[str, str, Any]] = []
    for name in gateway.settings.routing.auto_models:
        if not any(c in name for c in "*?["):
            out.append((name, "weave-router", None))
    for m in gateway.settings.models:
        out.append((m.name, m.providers[0], m))
    return out


class ModelsEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        items = _listing(gateway)
        self._openai = msgspec.json.encode(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": _CREATED, "owned_by": owner}
                    for name, owner, _ in items
                ],
            }
        )
        self._anthropic = msgspec.json.encode(
            {
                "data": [
                    {
                        "id": name,
                        "type": "model",
                        "display_name": name,
                        "created_at": "2026-01-01T00:00:00Z",
                    }
                    for name, _, _ in items
                ],
                "has_more": False,
                "first_id": items[0][0] if items else None,
                "last_id": items[-1][0] if items else None,
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        anthropic = any(k == b"anthropic-version" for k, _ in scope["headers"])
        if self.gw.reliability.keys is not None or self.gw.reliability.require_key:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            if await self.gw.refuse_key(scope, headers, "anthropic_messages" if anthropic else "openai_chat", send):
                return
        await send_bytes(send, 200, self._anthropic if anthropic else self._openai, JSON_HEADERS)
