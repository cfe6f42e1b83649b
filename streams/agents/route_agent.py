"""The router agent: RouteRequests from router.requests → Decision (+ Trace), and in execute mode the
model's answer as a RouteResponse on the request's reply topic.

The agent loop (``queue_route_batch``, driven by the worker's ``BatchApp`` or by a Faust agent) handles a
batch of requests and queues all their outputs at once; the work is in ``RouteHandler.handle`` (a plain
coroutine, tested without Kafka), which returns the events to publish:

- decide mode: Decision + Trace (status 200, no upstream call); no RouteResponse;
- execute mode: Decision, the upstream exchange of the gateway's serving core (``ServingCore.serve_whole``:
  the same admission, concurrency slot, breakers, retries, balancer and translation as an HTTP request
  that does not stream), the answer in the request's dialect as a RouteResponse, and the Trace (built by
  the same ``build_trace``);
- a request refused at admission (a body that does not parse, an unknown model): Trace and RouteResponse
  with its status in the request's dialect (a Decision too when one was made); bytes that are not a
  RouteRequest go to router.dlq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import faust
import msgspec

from streams.agents.app import Event, Poison, WeaveAvroCodec
from streams.agents.publisher import Outputs, Publisher
from streams.agents.records import decision_event, new_id, now_ms
from streams.agents.topics import Topics
from streams.config import Settings
from streams.ingress.admission import admit, parse_request
from streams.ingress.auth import accept_any
from streams.ingress.core import ServingCore
from streams.ingress.dialects import serving_cores
from streams.ingress.errors import BadRequest, load_json_object
from streams.ingress.exchange import Exchange, Refusal
from streams.ingress.gateway import Gateway
from streams.ingress.trace import Trace
from streams.providers.client import UpstreamClient

log = logging.getLogger("weave.router_agent")

AUTO_MODEL = "router/auto"

# The session also travels as a header so header-reading features see it; decide() gets it explicitly.
SESSION_HEADER = "x-session-id"


def hint_headers(hints: Mapping[str, str], session_id: str) -> dict[str, str]:
    """RouteRequest hints as the gateway's ``x-router-*`` headers, plus the session header."""
    headers = {SESSION_HEADER: session_id} if session_id else {}
    for k, v in hints.items():
        name = k.lower()
        headers[name if name.startswith("x-") else f"x-router-{name}"] = v
    return headers


class RouteHandler:
    """Decides (and executes) one RouteRequest through the gateway's serving core; no Kafka in here.

    ``gateway``: the process's gateway when it serves HTTP too (one set of breakers, limits and
    concurrency slots); else one of its own over ``client``.
    """

    def __init__(self, settings: Settings, router: Any, client: UpstreamClient | None,
                 topics: Topics | None = None, *, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.topics = topics or Topics()
        self.gateway = gateway or Gateway(settings, router, client or UpstreamClient())
        self.cores = serving_cores(self.gateway)
        self.executes = gateway is not None or client is not None
        self.stats: dict[str, int] = {"handled": 0, "dead": 0}

    async def handle(self, req: dict[str, Any]) -> Outputs:
        out = Outputs()
        session_id = req["session_id"]
        execute = req.get("mode", "execute") == "execute"
        reply_topic = req.get("reply_topic") or self.topics.responses
        core = self.cores.get(req["dialect"]) or self.cores["openai_chat"]
        ex = core.exchange(time.perf_counter(), hint_headers(req.get("hints") or {}, session_id), b"",
                           source="kafka", request_id=req["request_id"], ts_ms=int(req.get("ts_ms") or 0) or None)
        ex.session_id = session_id
        # The broker is a RouteRequest's trust boundary: no caller's key, attributed as an anonymous one.
        ex.identity = self.gateway.identify(None, ex.headers, None) or accept_any(None, ex.headers)
        refusal = await self._admit(core, ex, req, execute)
        if ex.decision is not None:
            out.add(self.topics.decisions, session_id, "Decision",
                    decision_event(ex.decision, **core.decision_context(ex)))
        reply: bytes | None = None  # the RouteResponse's body (execute mode only)
        if refusal is not None:
            reply = core.error_body(refusal) if execute else None
        elif not execute:
            ex.status = 200  # decided, nothing to call
        elif self.executes:
            _, reply = await core.serve_whole(ex)
        else:
            reply = core.error_body(ex.fail(Refusal(502, "no upstream client")))
        trace = core.finish(ex)
        assert trace is not None  # built once, here
        traced = (self.topics.traces, "Trace", trace.to_event())
        replies = [] if reply is None else [(reply_topic, "RouteResponse", self._response(ex, reply, trace))]
        # A refused request's trace goes out before its reply, an answered one's after it.
        for topic, name, value in ([traced, *replies] if refusal is not None else [*replies, traced]):
            out.add(topic, session_id, name, value)
        return out

    @staticmethod
    async def _admit(core: ServingCore, ex: Exchange, req: dict[str, Any], execute: bool) -> Refusal | None:
        raw = req["body"].encode()
        try:  # the same depth, size and UTF-8 checks as an HTTP body
            body = load_json_object(raw)
        except BadRequest as exc:
            return ex.fail(Refusal(exc.status, exc.message, param=exc.param or "body"))
        if not body.get("model"):
            body["model"] = AUTO_MODEL  # a RouteRequest may leave the choice to the router
            raw = b""
        if execute and body.get("stream"):
            body["stream"] = False  # a RouteResponse carries the whole answer
            raw = b""
        ex.raw = raw or msgspec.json.encode(body)
        return await parse_request(core, ex, body) or admit(core, ex, session_id=ex.session_id or None)

    @staticmethod
    def _response(ex: Exchange, body: bytes, trace: Trace) -> dict[str, Any]:
        return {
            "event_id": new_id(),
            "ts_ms": now_ms(),
            "request_id": ex.request_id,
            "session_id": ex.session_id,
            "dialect": ex.dialect,
            "status": trace.status,
            "body": body.decode(),
            "model": trace.model,
            "provider": trace.provider,
            "decision_id": trace.decision_id,
            "input_tokens": trace.input_tokens,
            "output_tokens": trace.output_tokens,
            "cost_usd": trace.cost_usd,
            "latency_ms": trace.latency_ms,
            "error": trace.error,
        }


async def route_batch(handler: RouteHandler, publisher: Publisher, items: list[tuple[Any, Any]]) -> None:
    """Handle one batch of ``(source message, decoded value)``; returns once every output is delivered,
    so the caller acknowledges the batch only after the broker has all of it (at-least-once)."""
    futures = await queue_route_batch(handler, publisher, items)
    if futures:
        await asyncio.gather(*futures)


async def queue_route_batch(handler: RouteHandler, publisher: Publisher,
                            items: list[tuple[Any, Any]]) -> list[asyncio.Future[Any]]:
    """Handle one batch and queue its outputs; returns their delivery futures (not awaited).

    Decide-mode requests are handled inline (no I/O), execute-mode ones concurrently (each awaits its
    provider); outputs are queued in input order. The source is a Faust event or an aiokafka record
    (dead letters quote its topic, partition and offset).
    """
    stats = handler.stats
    slots: list[Any] = []
    for source, value in items:
        if isinstance(value, Poison):
            slots.append((source, "decode", value.reason))
        elif not isinstance(value, Event) or value.name != "RouteRequest":
            name = value.name if isinstance(value, Event) else type(value).__name__
            slots.append((source, "decode", f"expected RouteRequest, got {name}"))
        elif value.value.get("mode") == "decide":
            slots.append(await _guarded(handler, source, value.value))  # no I/O: inline is cheapest
        else:
            slots.append(asyncio.ensure_future(_guarded(handler, source, value.value)))
    futures: list[asyncio.Future[Any]] = []
    outputs: list[Outputs] = []
    for slot in slots:
        if isinstance(slot, asyncio.Future):
            slot = await slot
        if isinstance(slot, Outputs):
            outputs.append(slot)
            stats["handled"] += 1
        else:
            source, stage, reason = slot
            futures.append(await publisher.dead_letter(source, reason, stage))
            stats["dead"] += 1
    futures.extend(await publisher.queue_many(outputs))
    return futures


async def _guarded(handler: RouteHandler, source: Any, request: dict[str, Any]) -> Any:
    try:
        return await handler.handle(request)
    except Exception as exc:  # one bad request must not stop the agent
        log.exception("router agent: request %s failed", request.get("request_id"))
        return (source, "handle", f"handler error: {type(exc).__name__}: {exc}")


def attach_router(app: faust.App, handler: RouteHandler, publisher: Publisher, *,
                  batch_max: int = 500, within_s: float = 0.005) -> Any:
    """Register the router agent on ``app`` (call before ``app.start()``).

    Events are taken in batches (``batch_max`` or ``within_s``): decide-mode requests are handled
    inline, execute-mode ones concurrently (each awaits its provider), outputs are published in
    input order, and the batch is acknowledged once every output is delivered.
    """
    requests = app.topic(handler.topics.requests, key_type=bytes, key_serializer="raw",
                         value_serializer=WeaveAvroCodec(publisher.codec))

    async def route(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=within_s):
            await route_batch(handler, publisher, [(event, event.value) for event in events])

    return app.agent(requests, name="weave-router-agent")(route)
