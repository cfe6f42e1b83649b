"""``GET /v1/requests/{request_id}``: what one recent request cost, which model served it and why.

The id is the ``x-request-id`` header of the answer (streams have it too: it is known before the first
byte). The answer comes from the gateway's in-memory recent traces (``streams.ingress.recent``), so it
is there the moment the answer's last byte is, a stream's as soon as the stream ends, with no
ClickHouse or Kafka involved; an unknown or expired id is a 404 in our (OpenAI-style) error shape.

Who may read it: the caller that made the request (identified exactly as the request was: its virtual
key, or the auth hook's key id), or a key with the ``analytics`` scope (which may read every trace
anyway). Anyone else gets the same 404 as for an unknown id, so an id's existence is not revealed. A
request made without any attribution (none in practice under ``require_key``) is readable by anyone
only when keys are not required. The body has no key, prompt or answer text: ids, names, numbers, and
the error message through the redactor (a provider may quote the key it was sent).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from streams.ingress.auth import ClientIdentity
from streams.ingress.errors import OWN, send_error
from streams.ingress.gateway import Gateway
from streams.ingress.gemini import gemini_key
from streams.ingress.http import JSON_HEADERS, Receive, Scope, Send, header_map, send_bytes
from streams.ingress.recent import RecentRequest
from streams.reliability.keys import VirtualKey

OBJECT = "router.request"
_encode = msgspec.json.encode


def may_read(entry: RecentRequest, identity: ClientIdentity, vkey: VirtualKey | None, require_key: bool) -> bool:
    """May this caller read this request's trace? (False answers 404, as for an unknown id.)"""
    if vkey is not None and vkey.allows_scope("analytics"):
        return True
    owner = entry.trace.key_id
    if owner is None:
        return not require_key
    return owner == identity.key_id


def request_document(entry: RecentRequest, redact: Callable[[str], str]) -> dict[str, Any]:
    """The JSON answer: the trace's fields that describe the request, grouped as a client reads them."""
    t = entry.trace
    return {
        "id": t.request_id,
        "object": OBJECT,
        "created_at": datetime.fromtimestamp(t.ts_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "status": t.status,
        "error": redact(t.error) if t.error else None,
        "stream": t.stream,
        "model": t.model,
        "provider": t.provider,
        "client_dialect": t.client_dialect,
        "provider_dialect": t.provider_dialect,
        "cost_usd": t.cost_usd,
        "baseline_cost_usd": t.baseline_cost_usd,
        "usage": {"input_tokens": t.input_tokens, "output_tokens": t.output_tokens, "cached_tokens": t.cached_tokens},
        "latency_ms": round(t.latency_ms, 3),
        "ttft_ms": round(t.ttft_ms, 3),
        "overhead_ms": round(t.overhead_ms, 3),
        "attempts": t.attempts,
        "session_id": t.session_id,
        "decision": {
            "id": t.decision_id,
            "reason": entry.reason,
            "policy": t.policy,
            "policy_version": t.policy_version,
            "route": t.route,
        },
        "task_type": t.task_type,
        "client": t.client,
        "key_id": t.key_id,
        "source": t.source,
    }


class RequestInfoEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw, rel = self.gw, self.gw.reliability
        headers = header_map(scope)
        key = gemini_key(scope, headers)  # the usual headers, and Gemini's: the key its request was made with
        # The key must be valid; the route check comes below, since an analytics-only key may read too.
        check = rel.authenticate(key)
        if not check.ok:
            await send_error(send, OWN, check.status, check.message, param=check.param)
            return
        vkey = check.key
        path = scope["path"]
        if vkey is not None and not (vkey.allows_scope("models") or vkey.allows_scope("analytics")):
            await send_error(send, OWN, 403, f"API key {vkey.id} lacks the 'models' or 'analytics' scope needed "
                                             f"for {path}")
            return
        if vkey is not None and not vkey.allows_route(path):
            await send_error(send, OWN, 403, f"API key {vkey.id} may not use {path}")
            return
        identity = gw.identify(key, headers, vkey)
        if identity is None:
            await send_error(send, OWN, 401, "invalid API key")
            return
        rid = scope.get("path_params", {}).get("request_id", "")
        entry = gw.recent.get(rid)
        if entry is None or not may_read(entry, identity, vkey, rel.require_key):
            await send_error(send, OWN, 404, f"no recent request with id '{rid}' (requests are kept "
                                             f"{gw.recent.max_age_s / 60:g} minutes, the last "
                                             f"{gw.recent.max_entries} of them)", param="request_id")
            return
        body = _encode(request_document(entry, rel.redactor.redact))
        await send_bytes(send, 200, body, [*JSON_HEADERS, (b"cache-control", b"no-store")])
