"""The request path shared by the three dialect endpoints.

read body (bounded in size and time) -> virtual key -> msgspec JSON -> dialect.parse_request -> key's
model scope -> rate limits and budgets -> decision (router or passthrough) -> concurrency slot ->
upstream call with failover (breakers, balancer, retries) -> relay -> usage charged to the key:

- same dialect as the provider: the fast path. The raw body is rewritten only where the model changes
  (``fastpath.rewrite_body``) and the provider's bytes are relayed as they arrive; a side scanner picks
  usage out of them.
- another dialect: ``render_request`` for the provider, and back either ``parse_response`` +
  ``render_response`` or, streaming, ``StreamParser`` -> ``StreamWriter`` event by event.

Every routed response carries x-router-* headers; every request ends with one decision and one trace
handed to the gateway's event sink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from time import perf_counter
from typing import Any, ClassVar

import msgspec

from streams.config import ModelSettings, ProviderSettings
from streams.ingress.auth import ClientIdentity
from streams.ingress.context import client_key, client_name
from streams.ingress.errors import decode_json_object, parse_upstream_error, read_request_body, send_error
from streams.ingress.gateway import Gateway, new_id
from streams.ingress.http import (
    JSON_HEADERS,
    SSE_HEADERS,
    Message,
    RawHeaders,
    Receive,
    Scope,
    Send,
    header_map,
    send_bytes,
)
from streams.providers.client import UpstreamError, UpstreamResponse
from streams.providers.failover import Attempt, PrimedResponse, send_with_failover
from streams.providers.upstream import PATHS, auth_headers, forwarded_headers
from streams.reliability.concurrency import Overloaded
from streams.reliability.settings import LimitSettings
from streams.routing.decision import Decision
from streams.routing.sessions import session_identity
from streams.translation import fastpath, registry, sse
from streams.translation.canonical import CanonicalRequest, StreamError, TranslationError, Usage

log = logging.getLogger(__name__)

_decode = msgspec.json.decode
# Admission estimate of input tokens from the body size (~4 bytes of JSON per token).
_BYTES_PER_TOKEN = 4
_encode = msgspec.json.Encoder().encode


class Exchange:
    """Everything one request accumulates on its way through; becomes the trace at the end."""

    __slots__ = (
        "t0", "request_id", "headers", "raw", "body", "req", "decision", "identity", "client",
        "model", "provider", "pre_s", "translate_s", "ttft_s", "status", "error", "usage", "attempts",
        "same_dialect", "limits", "est_tokens", "requested", "recorded",
    )

    def __init__(self, t0: float, headers: dict[str, str], raw: bytes) -> None:
        self.t0 = t0
        self.request_id = new_id()
        self.headers = headers
        self.raw = raw
        self.body: dict[str, Any] = {}
        self.req: CanonicalRequest | None = None
        self.decision: Decision | None = None
        self.identity: ClientIdentity | None = None
        self.client = ""
        self.model: ModelSettings | None = None
        self.provider: ProviderSettings | None = None
        self.pre_s = 0.0  # gateway time before the first upstream send
        self.translate_s = 0.0  # translation time after it (response side, re-prepared fallbacks)
        self.ttft_s: float | None = None
        self.status = 0
        self.error: str | None = None
        self.usage: Usage | None = None
        self.attempts: list[Attempt] = []
        self.same_dialect = False
        self.limits: LimitSettings | None = None  # the key's limits, when it has any (charged after)
        self.est_tokens = 0
        self.requested = ""
        self.recorded = False

    @property
    def overhead_ms(self) -> float:
        return (self.pre_s + self.translate_s) * 1000.0

    def router_headers(self) -> RawHeaders:
        d = self.decision
        if d is None:
            return []
        model = self.model.name if self.model else d.model
        provider = self.provider.name if self.provider else d.provider
        return [
            (b"x-router-model", model.encode()),
            (b"x-router-provider", provider.encode()),
            (b"x-router-decision-id", d.decision_id.encode()),
            (b"x-router-session", d.session_id.encode("latin-1", "replace")),
            (b"x-router-overhead-ms", f"{self.overhead_ms:.3f}".encode()),
            (b"x-request-id", self.request_id.encode()),
        ]


class DialectIngress:
    """One dialect's POST endpoint as a raw ASGI app (Starlette ``Route`` calls it directly)."""

    dialect: ClassVar[str]

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.tr = registry.get(self.dialect)

    # Dialect hooks ----------------------------------------------------------------------------------

    def client_wants_usage(self, body: dict[str, Any]) -> bool:
        """Did the client ask for usage in its stream? (Only OpenAI Chat makes it optional.)"""
        return True

    def render_options(self, ex: Exchange) -> dict[str, Any]:
        """Extra keyword arguments of this dialect's ``render_response`` / ``StreamWriter``."""
        return {}

    def stream_writer(self, ex: Exchange) -> Any:
        model = ex.model.name if ex.model else ex.decision.model if ex.decision else ""
        return self.tr.StreamWriter(model, include_usage=self.client_wants_usage(ex.body), **self.render_options(ex))

    def rewrite_headers(self, headers: dict[str, str], model: ModelSettings) -> None:
        """Per-model header rewrites on the same-dialect path (Anthropic betas)."""

    # The request path -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = perf_counter()
        gw = self.gw
        rel = gw.reliability
        dialect = self.dialect
        headers = header_map(scope)
        raw = await read_request_body(receive, send, headers, dialect, gw.max_body_bytes, gw.read_timeout_s)
        if raw is None:
            return
        key = client_key(headers)
        # Key and route now (401 before any parsing work); its model scope once the body names the model.
        check = rel.authenticate(key, route=scope["path"])
        if not check.ok:
            await send_error(send, dialect, check.status, check.message, param=check.param,
                             error_type=check.error_type if dialect == "anthropic_messages" else None)
            return
        vkey = check.key
        identity = gw.identify(key, headers, vkey)
        if identity is None:
            await send_error(send, dialect, 401, "invalid API key")
            return
        body = await decode_json_object(send, dialect, raw)
        if body is None:
            return
        try:
            req = self.tr.parse_request(body)
        except TranslationError as exc:
            await send_error(send, dialect, exc.status, exc.message, param=exc.param)
            return
        requested = req.model
        if vkey is not None:
            denied = rel.authorize_model(vkey, requested)
            if denied is not None:
                await send_error(send, dialect, 403, denied.message, param=denied.param,
                                 error_type=denied.error_type if dialect == "anthropic_messages" else None)
                return
        limits = rel.limits_for(vkey)
        est_tokens = 0
        if not limits.unlimited:
            est_tokens = len(raw) // _BYTES_PER_TOKEN
            admit = rel.limits.check(identity.key_id, limits, est_tokens)
            if not admit.ok:
                await send_error(send, dialect, admit.status, admit.message,
                                 error_type=admit.error_type_for(dialect), headers=admit.headers())
                return
        decision = gw.decide(req, headers, requested, session_identity(headers, req, key))
        if decision is None:
            await send_error(send, dialect, 404, f"model '{requested}' not found", param="model")
            return
        if identity.allowed_models is not None and decision.model not in identity.allowed_models:
            await send_error(send, dialect, 403, f"this key may not use model '{decision.model}'", param="model")
            return
        ex = Exchange(t0, headers, raw)
        ex.body, ex.req, ex.decision, ex.identity, ex.requested = body, req, decision, identity, requested
        ex.client = client_name(headers)
        if not limits.unlimited:
            ex.limits, ex.est_tokens = limits, est_tokens
        concurrency = rel.concurrency
        try:
            # The slot covers the whole exchange, stream included; beyond the cap (and its queue) the
            # caller gets a fast 503 (529 for Anthropic when configured) instead of a slow collapse.
            await concurrency.acquire()
        except Overloaded as exc:
            # 529 is Anthropic's "overloaded"; OpenAI clients know 503 for the same thing.
            status = 503 if exc.status == 529 and dialect != "anthropic_messages" else exc.status
            await send_error(send, dialect, status, exc.message, error_type=exc.error_type_for(dialect),
                             headers=exc.headers())
            return
        try:
            await self._serve(ex, receive, self._record_before_end(ex, send))
        except BaseException as exc:
            if not ex.error:
                ex.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
                ex.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            concurrency.release()
            self._record(ex)  # no-op when the answer's end already recorded it

    async def _serve(self, ex: Exchange, receive: Receive, send: Send) -> None:
        gw = self.gw
        dialect = self.dialect
        assert ex.decision is not None and ex.req is not None
        rel = gw.reliability
        cands = gw.candidates(ex.decision)
        if not cands:
            ex.status, ex.error = 503, f"no provider configured for model '{ex.decision.model}'"
            await send_error(send, dialect, 503, ex.error, headers=ex.router_headers())
            return
        result = await send_with_failover(
            gw.client, rel.order(cands), partial(self._prepare, ex), stream=ex.req.stream, policy=gw.failover,
            retry=rel.retry_state if rel.backoff.s.max_attempts > 1 else None,
        )
        ex.attempts, ex.model, ex.provider = result.attempts, result.model, result.provider
        ex.same_dialect = result.provider.dialect == dialect
        resp = result.response
        if resp is None:
            err = result.error
            if err is not None and err.kind == "circuit_open":
                await self._circuit_open(ex, cands, send)
                return
            status = 504 if err is not None and err.kind.endswith("timeout") else 502
            ex.status, ex.error = status, err.message if err else "upstream failed"
            await send_error(
                send, dialect, status, f"upstream provider '{result.provider.name}' failed: {ex.error}",
                headers=ex.router_headers(),
            )
            return
        if resp.status >= 400:
            await self._upstream_error(ex, resp, send)
        elif ex.req.stream:
            await self._stream(ex, resp, receive, send)
        else:
            await self._whole(ex, resp, send)

    def _prepare(
        self, ex: Exchange, model: ModelSettings, provider: ProviderSettings
    ) -> tuple[str, bytes, dict[str, str]]:
        """Body and headers for one upstream attempt (called again for each fallback)."""
        t = perf_counter()
        assert ex.req is not None
        pd = provider.dialect
        headers = auth_headers(provider)
        fwd = forwarded_headers(ex.headers, self.dialect, provider)
        if fwd:
            headers.update(fwd)
        thinking = model.capabilities.thinking
        if pd == self.dialect:
            body = fastpath.rewrite_body(
                ex.raw, pd, model.upstream, supports_thinking=thinking, ensure_usage=True
            )
            self.rewrite_headers(headers, model)
        else:
            wire = registry.get(pd).render_request(ex.req, model.upstream, supports_thinking=thinking)
            if ex.req.stream and pd == "openai_chat":
                # Usage on every response: ask for it even when the client did not.
                opts = wire.get("stream_options") or {}
                wire["stream_options"] = {**opts, "include_usage": True}
            body = _encode(wire)
        now = perf_counter()
        if ex.pre_s == 0.0:
            ex.pre_s = now - ex.t0
        else:
            ex.translate_s += now - t
        return PATHS[pd], body, headers

    async def _circuit_open(self, ex: Exchange, cands: list[Any], send: Send) -> None:
        """Every candidate's breaker is open: fail fast with 503 and when to come back."""
        breakers = self.gw.reliability.breakers
        waits = [breakers.get(p.name, m.name).snapshot().get("retry_in_s", 1.0) for m, p in cands]
        retry_in = max(1, round(min(waits))) if waits else 1
        names = ", ".join(sorted({p.name for _, p in cands}))
        ex.status, ex.error = 503, f"circuit open for every provider of model '{ex.decision.model if ex.decision else ''}'"
        await send_error(
            send, self.dialect, 503, f"{ex.error} ({names}): they failed repeatedly; retry in {retry_in} s",
            error_type="overloaded_error" if self.dialect == "anthropic_messages" else None,
            headers=[*ex.router_headers(), (b"retry-after", str(retry_in).encode())],
        )

    async def _upstream_error(self, ex: Exchange, resp: UpstreamResponse | PrimedResponse, send: Send) -> None:
        """The provider refused: same status, its message, in the caller's dialect."""
        try:
            data = await resp.read()
        except UpstreamError:
            data = b""
        message, etype, param = parse_upstream_error(data, resp.status)
        # A provider may quote the key it was sent ("Incorrect API key provided: sk-…"): never pass it on.
        message = self.gw.reliability.redactor.redact(message)
        ex.status, ex.error = resp.status, message
        extra = ex.router_headers()
        retry_after = resp.headers.get("retry-after")
        if retry_after:
            extra.append((b"retry-after", retry_after.encode("latin-1")))
        await send_error(
            send, self.dialect, resp.status, message, param=param,
            error_type=etype if ex.same_dialect else None, headers=extra,
        )

    async def _whole(self, ex: Exchange, resp: UpstreamResponse | PrimedResponse, send: Send) -> None:
        assert ex.model is not None and ex.provider is not None
        try:
            data = await resp.read()
        except UpstreamError as exc:
            ex.status, ex.error = 502, exc.message
            await send_error(send, self.dialect, 502, exc.message, headers=ex.router_headers())
            return
        ex.ttft_s = perf_counter() - ex.t0
        t = perf_counter()
        if ex.same_dialect:
            out = data
            usage = self.tr.body_usage(data)
            if usage is None:  # cut short or garbage: never a 200 with a body the client cannot read
                ex.status, ex.error = 502, "unreadable upstream response: not valid JSON"
                await send_error(send, self.dialect, 502, ex.error, headers=ex.router_headers())
                return
            ex.usage = usage
        else:
            try:
                parsed = registry.get(ex.provider.dialect).parse_response(_decode(data))
            except (msgspec.DecodeError, TranslationError, KeyError, TypeError, ValueError) as exc:
                ex.status, ex.error = 502, f"unreadable upstream response: {exc}"
                await send_error(send, self.dialect, 502, ex.error, headers=ex.router_headers())
                return
            ex.usage = parsed.usage
            out = _encode(self.tr.render_response(parsed, model=ex.model.name, **self.render_options(ex)))
        ex.translate_s += perf_counter() - t
        ex.status = resp.status
        headers = JSON_HEADERS + ex.router_headers()
        headers.append((b"x-router-cost-usd", f"{self._cost(ex)[0]:.8f}".encode()))
        await send_bytes(send, resp.status, out, headers)

    async def _stream(self, ex: Exchange, resp: UpstreamResponse | PrimedResponse, receive: Receive, send: Send) -> None:
        assert ex.model is not None and ex.provider is not None
        ex.status = resp.status
        await send({"type": "http.response.start", "status": resp.status, "headers": SSE_HEADERS + ex.router_headers()})
        # The client may hang up mid-stream; stop reading upstream then (the provider stops billing).
        gone = asyncio.ensure_future(receive())
        error: str | None = None
        try:
            if ex.same_dialect:
                error = await self._relay(ex, resp, gone, send)
            else:
                error = await self._translate_stream(ex, resp, gone, send)
            if gone.done():
                ex.status, ex.error = 499, "client disconnected"
                resp.close()
                return
            if error is not None:
                ex.error = error
                ex.status = 502
                tail = self.stream_writer(ex).write(StreamError(message=error, status=502))
                if tail:
                    await send({"type": "http.response.body", "body": tail, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if not gone.done():
                gone.cancel()

    async def _relay(self, ex: Exchange, resp: UpstreamResponse | PrimedResponse, gone: asyncio.Future[Any], send: Send) -> str | None:
        """Same dialect: forward bytes as they come; usage and errors are picked out on the side."""
        scanner = self.tr.usage_scanner(drop_usage_chunk=not self.client_wants_usage(ex.body))
        error: str | None = None
        try:
            async for chunk in resp.chunks():
                if ex.ttft_s is None:
                    ex.ttft_s = perf_counter() - ex.t0
                out = scanner.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if scanner.malformed is not None:
                    # Not passed on: the client gets the well-formed events before it and an error event.
                    resp.close()
                    ex.usage = scanner.usage
                    return scanner.malformed
                if gone.done():
                    break
        except UpstreamError as exc:
            error = exc.message
        rest = scanner.rest()
        if rest and not gone.done():
            await send({"type": "http.response.body", "body": rest, "more_body": True})
        ex.usage = scanner.usage
        if scanner.error:
            # The provider already wrote its error event into the stream; only record it.
            ex.error, ex.status = scanner.error, 502
            return None
        if error is None and not scanner.finished and not gone.done():
            error = "upstream stream ended before completion"
        return error

    async def _translate_stream(
        self, ex: Exchange, resp: UpstreamResponse | PrimedResponse, gone: asyncio.Future[Any], send: Send
    ) -> str | None:
        """Other dialect: provider SSE -> canonical events -> client SSE, event by event.

        Errors are written here with the same writer, so the client's event sequence stays well formed.
        """
        assert ex.provider is not None
        parser = registry.get(ex.provider.dialect).StreamParser()
        writer = self.stream_writer(ex)
        reader = sse.SSEDecoder()
        ended = False

        def translate(events: list[Any]) -> bytes:
            nonlocal ended
            out: list[bytes] = []
            for ev in events:
                kind = ev.kind
                if kind == "end":
                    ex.usage = ev.usage
                    ended = True
                elif kind == "error":
                    ex.error, ex.status = ev.message, 502
                    ended = True
                piece = writer.write(ev)
                if piece:
                    out.append(piece)
            return b"".join(out)

        error: str | None = None
        out = b""
        try:
            async for chunk in resp.chunks():
                t = perf_counter()
                if ex.ttft_s is None:
                    ex.ttft_s = t - ex.t0
                events = [ev for event, data in reader.feed(chunk) for ev in parser.feed(event, data)]
                chunk_out = translate(events) if events else b""
                ex.translate_s += perf_counter() - t
                if chunk_out:
                    await send({"type": "http.response.body", "body": chunk_out, "more_body": True})
                if gone.done():
                    return None
            events = [ev for event, data in reader.flush() for ev in parser.feed(event, data)]
            events.extend(parser.close())
            out = translate(events)
        except UpstreamError as exc:
            error = exc.message
        except (TranslationError, ValueError, KeyError, TypeError) as exc:
            resp.close()
            error = f"unreadable upstream stream: {exc}"
        else:
            if not ended:
                error = "upstream stream ended before completion"
        if error is not None:
            ex.error, ex.status = error, 502
            out += translate([StreamError(message=error, status=502)])
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
        return None

    # Bookkeeping ------------------------------------------------------------------------------------

    def _cost(self, ex: Exchange) -> tuple[float, float]:
        u = ex.usage
        if u is None or ex.model is None:
            return 0.0, 0.0
        cost = ex.model.cost_usd(u.input_tokens, u.output_tokens, u.cached_input_tokens)
        frontier = self.gw.frontier
        baseline = frontier.cost_usd(u.input_tokens, u.output_tokens, u.cached_input_tokens) if frontier else cost
        return cost, baseline

    def _record_before_end(self, ex: Exchange, send: Send) -> Send:
        """``send`` that journals the trace just before the answer's last bytes leave: a client that
        has the whole answer can count on its trace surviving a kill of this process."""

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._record(ex)
            await send(message)

        return send_recorded

    def _record(self, ex: Exchange) -> None:
        d = ex.decision
        if d is None or ex.recorded:
            return
        ex.recorded = True
        requested = ex.requested
        u = ex.usage or Usage()
        cost, baseline = self._cost(ex)
        latency_ms = (perf_counter() - ex.t0) * 1000.0
        trace = {
            "event_id": new_id(),
            "ts_ms": int(time.time() * 1000),
            "request_id": ex.request_id,
            "session_id": d.session_id,
            "decision_id": d.decision_id,
            "client_dialect": self.dialect,
            "provider_dialect": ex.provider.dialect if ex.provider else None,
            "model": ex.model.name if ex.model else d.model,
            "provider": ex.provider.name if ex.provider else d.provider,
            "requested_model": requested,
            "route": d.route,
            "policy": d.policy,
            "policy_version": d.policy_version,
            "prompt_version": d.prompt_version,
            "status": ex.status,
            "error": ex.error,
            "stream": bool(ex.req and ex.req.stream),
            "latency_ms": latency_ms,
            "ttft_ms": ex.ttft_s * 1000.0 if ex.ttft_s is not None else None,
            "overhead_ms": ex.overhead_ms,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cached_tokens": u.cached_input_tokens,
            "cost_usd": cost,
            "baseline_cost_usd": baseline,
            "attempts": len(ex.attempts),
            "source": "http",
            # The router's features name it ``task`` (as records.decision_record reads it too).
            "task_type": (d.features.get("task_type") or d.features.get("task")) if d.features else None,
            "client": ex.client,
            "key_id": ex.identity.key_id if ex.identity else None,
        }
        self.gw.emit(d, trace, request_id=ex.request_id, client_dialect=self.dialect,
                     requested_model=requested, source="http")
        if ex.limits is not None and ex.identity is not None:
            # Charge what the answer really cost (the admission took only the input estimate).
            self.gw.reliability.limits.record(
                ex.identity.key_id, ex.limits, tokens=u.input_tokens + u.output_tokens, cost_usd=cost,
                est_tokens=ex.est_tokens,
            )

