"""``POST /v1/feedback``: a task-session's outcome (tests passed or failed) from the agent or CI.

The gateway validates and hands the outcome on through an injected ``FeedbackHandler`` (the service
wires one that publishes to ``router.outcomes`` and tells the router, so a failed session can escalate
at its next safe boundary). Errors use the OpenAI error shape: feedback is not part of either API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from streams.ingress.errors import decode_json_object, read_request_body, send_error
from streams.ingress.gateway import Gateway
from streams.ingress.http import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    send_bytes,
)

# Validates a payload, records it and returns the stored outcome; raises ValueError("field: why").
FeedbackHandler = Callable[[dict[str, Any]], dict[str, Any]]

_DIALECT = "openai_chat"


class FeedbackEndpoint:
    def __init__(self, gateway: Gateway, handler: FeedbackHandler | None) -> None:
        self.gw = gateway
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.handler is None:
            await send_error(send, _DIALECT, 503, "feedback is not enabled on this gateway (no event stream)")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw = await read_request_body(receive, send, headers, _DIALECT, self.gw.max_body_bytes, self.gw.read_timeout_s)
        if raw is None:
            return
        payload = await decode_json_object(send, _DIALECT, raw)
        if payload is None:
            return
        try:
            outcome = self.handler(payload)
        except ValueError as exc:
            field, _, why = str(exc).partition(": ")
            await send_error(send, _DIALECT, 400, str(exc), param=field if why else None)
            return
        body = {"accepted": True, "event_id": outcome.get("event_id"), "session_id": outcome.get("session_id"),
                "success": outcome.get("success")}
        await send_bytes(send, 202, msgspec.json.encode(body), JSON_HEADERS)
