"""The OpenAI Responses dialect's serving core (Codex, OpenAI SDKs), chained turns included.

A response's conversation is kept (``response_store``) just before the reply's last bytes leave, so a
client that chains at once finds it: the request's input items (earlier turns already in) and the
response object, taken from the whole body or from a stream's ``response.completed`` event. A
request with ``previous_response_id`` gets that conversation prepended to its input before parsing,
whatever dialect the provider speaks; the provider never sees the id. Expanding rather than passing
the id on to a same-dialect provider is deliberate: the router may serve each turn with another model
or provider, and an id the gateway made for a translated turn means nothing to any provider. ``store:
false`` keeps nothing. An unknown, expired or other key's id is a 400 (``invalid_request_error`` on
``previous_response_id``), as OpenAI answers.

Codex's compactions (``responses_compact``) go through here too: ``ResponsesCompactCore`` is ``POST
/v1/responses/compact``, and a request ending in a ``compaction_trigger`` is answered with a
compaction item. ``StoredResponses`` is ``GET`` / ``DELETE /v1/responses/{response_id}`` on the
store, a key seeing only its own responses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from streams.ingress.core import ServingCore
from streams.ingress.errors import send_error
from streams.ingress.exchange import Exchange, Refusal
from streams.ingress.gateway import Gateway
from streams.ingress.http import JSON_HEADERS, Message, Receive, Scope, Send, header_map, send_bytes
from streams.ingress.response_store import ResponseStore
from streams.ingress.responses_compact import (
    RESOURCE,
    RESPONSE,
    STREAM,
    CompactionReply,
    expand_own_compactions,
    is_summary_request,
    summary_request,
    triggered,
)
from streams.ingress.responses_history import TERMINAL_EVENTS, input_items, replayable, response_in, terminal_response
from streams.translation import sse
from streams.translation.openai_responses import client_tools

DIALECT = "openai_responses"
ANONYMOUS = "anonymous"  # the owner of responses made without any key
_encode = msgspec.json.encode


def owner_of(ex: Exchange) -> str:
    return ex.identity.key_id if ex.identity is not None else ANONYMOUS


class OpenAIResponsesCore(ServingCore):
    dialect = DIALECT

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.store = ResponseStore(Path(gateway.settings.data_dir), gateway.settings.responses)

    def render_options(self, ex: Exchange) -> dict[str, Any]:
        # Codex groups tools in namespaces and offers custom (freeform) tools; calls of those (sent
        # upstream as plain functions) must come back as Codex declared them.
        tools = client_tools(ex.req) if ex.req is not None else {}
        return {"client_tools": tools} if tools else {}

    async def with_history(self, ex: Exchange, body: dict[str, Any]) -> dict[str, Any] | Refusal:
        prev = body.get("previous_response_id")
        items = input_items(body.get("input"))
        if items is None:
            return body if prev is None else Refusal(400, "input must be a string or a list", param="input")
        changed = False
        if prev is not None:
            if not isinstance(prev, str) or not prev:
                return Refusal(400, "previous_response_id must be a response id string",
                               param="previous_response_id")
            stored = await self.store.get(prev, owner_of(ex))
            if stored is None:
                return Refusal(400, f"Previous response with id '{prev}' not found (it expired, was made with "
                                    "store: false or with another key, or never existed).",
                               param="previous_response_id", error_type="invalid_request_error",
                               code="previous_response_not_found")
            items = stored.input + replayable(stored.response.get("output")) + items
            changed = True
        expanded = expand_own_compactions(items)
        if expanded is not None:
            items, changed = expanded, True
        full = {k: v for k, v in body.items() if k != "previous_response_id"}
        if triggered(items):
            full, changed = summary_request(full, items[:-1]), True
        elif changed:
            full["input"] = items
        if not changed:
            return body
        # The same-dialect relay and the admission's token estimate read the raw body: it is this one now.
        ex.raw = _encode(full)
        return full

    def watch_reply(self, ex: Exchange, send: Send) -> Send:
        watcher: Send | None = None

        async def watched(message: Message) -> None:
            nonlocal watcher
            if watcher is None:  # the first message: the body has been parsed by now
                watcher = self.reply_watcher(ex, send)
            await watcher(message)

        return watched

    def reply_watcher(self, ex: Exchange, send: Send) -> Send:
        """How this exchange's reply goes out: rewritten for a compaction, kept for the next turn, or as is."""
        if is_summary_request(ex.body):
            return CompactionReply(ex, send, shape=STREAM if ex.req is not None and ex.req.stream else RESPONSE)
        return ReplyKeeper(self, ex, send) if self.store.enabled else send

    async def keep(self, ex: Exchange, response: dict[str, Any]) -> None:
        """Store the conversation of an answered exchange (not a failed one, not one with store: false)."""
        rid = response.get("id")
        items = input_items(ex.body.get("input"))
        if not isinstance(rid, str) or items is None or response.get("status") not in ("completed", "incomplete"):
            return
        await self.store.put(rid, owner_of(ex), items, response)


class ResponsesCompactCore(OpenAIResponsesCore):
    """``POST /v1/responses/compact`` (``responses_compact``): a summarisation request, never streamed,
    answered as a ``response.compaction`` object."""

    def request_body(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
        items = input_items(body.get("input"))
        if items is None:  # the parser names the bad input
            return body
        return {**summary_request(body, items), "stream": False}

    def reply_watcher(self, ex: Exchange, send: Send) -> Send:
        return CompactionReply(ex, send, shape=RESOURCE)


class ReplyKeeper:
    """One reply on its way out: the response object it carries is kept before its last bytes leave."""

    __slots__ = ("core", "ex", "send", "active", "stream", "whole", "frames", "response")

    def __init__(self, core: OpenAIResponsesCore, ex: Exchange, send: Send) -> None:
        self.core, self.ex, self.send = core, ex, send
        self.active = False
        self.stream = False
        self.whole = bytearray()
        self.frames = sse.SSEDecoder()
        self.response: dict[str, Any] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            ex = self.ex
            self.active = message["status"] == 200 and ex.req is not None and ex.body.get("store") is not False
            self.stream = ex.req is not None and ex.req.stream
        elif message["type"] == "http.response.body" and self.active:
            chunk = message.get("body", b"")
            if chunk:
                self._feed(chunk)
            if not message.get("more_body", False):
                self.active = False
                response = self.response if self.stream else response_in(bytes(self.whole))
                if response is not None:
                    await self.core.keep(self.ex, response)
        await self.send(message)

    def _feed(self, chunk: bytes) -> None:
        if not self.stream:
            self.whole += chunk
            return
        for event, data in self.frames.feed(chunk):
            # Only the last event carries the whole response; the others are not decoded.
            if event in TERMINAL_EVENTS or (event is None and any(t in data for t in TERMINAL_EVENTS)):
                response = terminal_response(data)
                if response is not None:
                    self.response = response


class StoredResponses:
    """``GET`` (the response object) and ``DELETE /v1/responses/{response_id}``; 404 when the caller's
    key has no such response."""

    def __init__(self, core: OpenAIResponsesCore) -> None:
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core, gw = self.core, self.core.gw
        headers = header_map(scope)
        key = core.caller_key(scope, headers)
        caller = await gw.admit_caller(key, headers, scope["path"], DIALECT, send)
        if caller is None:
            return
        identity = caller[0]
        rid = scope.get("path_params", {}).get("response_id", "")
        if scope["method"] == "DELETE":
            if await core.store.delete(rid, identity.key_id):
                body = {"id": rid, "object": "response", "deleted": True}
                await send_bytes(send, 200, _encode(body), JSON_HEADERS)
                return
        else:
            stored = await core.store.get(rid, identity.key_id)
            if stored is not None:
                await send_bytes(send, 200, _encode(stored.response), JSON_HEADERS)
                return
        await send_error(send, DIALECT, 404, f"Response with id '{rid}' not found.", param="response_id",
                         error_type="invalid_request_error")
