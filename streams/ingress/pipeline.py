"""The HTTP entry point of the serving core: one dialect's POST endpoint.

read body (bounded in size and time) -> virtual key -> msgspec JSON -> admission (parse, model scope,
limits, decision: ``streams.ingress.admission``) -> concurrency slot -> upstream exchange with failover
(``streams.ingress.exchange``) -> the whole answer or the stream relayed (``streams.ingress.relay``) ->
one trace (``streams.ingress.trace``), journaled just before the answer's last bytes leave.

Every routed response carries x-router-* headers; every decided request ends with one decision and one
trace handed to the gateway's event sink. The Kafka router agent drives the same core
(``streams.agents.route_agent``).
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from streams.ingress.admission import acquire_slot, admit, parse_request
from streams.ingress.core import ServingCore
from streams.ingress.errors import decode_json_object, read_request_body, send_error
from streams.ingress.exchange import Exchange, Refusal, read_whole
from streams.ingress.http import JSON_HEADERS, Message, Receive, Scope, Send, header_map, send_bytes
from streams.ingress.relay import relay_stream


class DialectIngress:
    """One dialect's POST endpoint as a raw ASGI app (Starlette ``Route`` calls it directly)."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core
        self.dialect = core.dialect
        self.gw = core.gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = perf_counter()
        core, gw, dialect = self.core, self.gw, self.dialect
        rel = gw.reliability
        headers = header_map(scope)
        raw = await read_request_body(receive, send, headers, dialect, gw.max_body_bytes, gw.read_timeout_s)
        if raw is None:
            return
        key = core.caller_key(scope, headers)
        # Key and route now (401 before any parsing work); its model scope once the body names the model.
        caller = await gw.admit_caller(key, headers, scope["path"], dialect, send)
        if caller is None:
            return
        identity, vkey = caller
        body = await decode_json_object(send, dialect, raw)
        if body is None:
            return
        body = core.request_body(scope, body)
        ex = core.exchange(t0, headers, raw)
        ex.identity = identity
        send = core.watch_reply(ex, self._record_before_end(ex, send))
        refusal = await parse_request(core, ex, body)
        if refusal is None:
            refusal = admit(core, ex, vkey=vkey, key=key)
        if refusal is None:
            refusal = await acquire_slot(core, ex)
        if refusal is not None:
            await self._refuse(send, refusal)  # its last bytes record the trace (when there was a decision)
            return
        try:
            await self._serve(ex, receive, send)
        except BaseException as exc:
            if not ex.error:
                ex.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
                ex.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            rel.concurrency.release()
            self._record(ex)  # no-op when the answer's end already recorded it

    async def _serve(self, ex: Exchange, receive: Receive, send: Send) -> None:
        core = self.core
        answer = await core.upstream(ex)
        if isinstance(answer, Refusal):
            await self._refuse(send, answer)
        elif ex.req is not None and ex.req.stream:
            await relay_stream(core, ex, answer, receive, send)
        else:
            out = await read_whole(core, ex, answer)
            if isinstance(out, Refusal):
                await self._refuse(send, out)
                return
            headers = JSON_HEADERS + ex.router_headers()
            headers.append((b"x-router-cost-usd", f"{core.cost_usd(ex):.8f}".encode()))
            await send_bytes(send, ex.status, out, headers)

    async def _refuse(self, send: Send, refusal: Refusal) -> None:
        await send_error(send, self.dialect, refusal.status, refusal.message, param=refusal.param,
                         error_type=refusal.error_type, headers=refusal.headers or None, code=refusal.code)

    def _record_before_end(self, ex: Exchange, send: Send) -> Send:
        """``send`` that journals the trace just before the answer's last bytes leave: a client that
        has the whole answer can count on its trace surviving a kill of this process."""

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._record(ex)
            await send(message)

        return send_recorded

    def _record(self, ex: Exchange) -> None:
        """The decision and the trace to the event sink, once; a request refused before its decision
        (bad body, scope, limits, unknown model) leaves no trace over HTTP."""
        d = ex.decision
        if d is None:
            return
        trace = self.core.finish(ex)
        if trace is not None:
            self.gw.emit(d, trace.to_event(), **self.core.decision_context(ex))
