"""The router agent: RouteRequests from router.requests → Decision (+ Trace), and in execute mode the
model's answer as a RouteResponse on the request's reply topic.

The agent loop (``queue_route_batch``, driven by the worker's ``BatchApp`` or by a Faust agent) handles a
batch of requests and queues all their outputs at once; the work is in ``RouteHandler.handle`` (a plain
coroutine, tested without Kafka), which returns the events to publish:

- decide mode: Decision + Trace (status 200, no upstream call); no RouteResponse;
- execute mode: Decision, the upstream call (non-streaming; the decided model first, then its other
  providers, then the decision's fallbacks on connect errors, 429 and 5xx), the answer translated back
  into the request's dialect as a RouteResponse, and the Trace;
- a body that does not parse: Trace and RouteResponse with status 400 in the request's dialect (no
  decision: nothing was decided); bytes that are not a RouteRequest go to router.dlq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.agents.app import Event, Poison, WeaveAvroCodec
from streams.agents.dlq import DeadLetter
from streams.agents.records import decision_event, new_id, now_ms
from streams.agents.topics import MAX_EVENT_BYTES, Topics
from streams.config import ModelSettings, ProviderSettings, Settings
from streams.events.codec import EventCodec
from streams.infra.capabilities import start_producer
from streams.providers.client import UpstreamClient, UpstreamError
from streams.providers.failover import candidates
from streams.providers.upstream import PATHS, auth_headers
from streams.routing.decision import Decision
from streams.translation import registry
from streams.translation.canonical import CanonicalRequest, TranslationError

log = logging.getLogger("weave.router_agent")



@dataclass(slots=True)
class Outputs:
    """What one request produces: (topic, key, record name, value) in publish order."""

    events: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, topic: str, key: str, name: str, value: dict[str, Any]) -> None:
        self.events.append((topic, key, name, value))


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
    """Decides (and executes) one RouteRequest; no Kafka in here."""

    def __init__(self, settings: Settings, router: Any, client: UpstreamClient | None,
                 topics: Topics | None = None) -> None:
        self.settings = settings
        self.router = router
        self.client = client
        self.topics = topics or Topics()
        self.models: dict[str, ModelSettings] = {m.name: m for m in settings.models}
        self.providers: dict[str, ProviderSettings] = {p.name: p for p in settings.providers}
        self.stats: dict[str, int] = {"handled": 0, "dead": 0}

    async def handle(self, req: dict[str, Any]) -> Outputs:
        t0 = time.perf_counter()
        out = Outputs()
        dialect = req["dialect"]
        session_id = req["session_id"]
        request_id = req["request_id"]
        execute = req.get("mode", "execute") == "execute"
        reply_topic = req.get("reply_topic") or self.topics.responses
        codec = registry.get(dialect)
        try:
            body = json.loads(req["body"])
            if not isinstance(body, dict):
                raise TranslationError("request body must be a JSON object", "body")
            canonical = codec.parse_request(body)
        except (ValueError, TypeError, KeyError) as exc:
            message = exc.message if isinstance(exc, TranslationError) else f"invalid request body: {exc}"
            status = exc.status if isinstance(exc, TranslationError) else 400
            trace = self._trace(req, None, status=status, error=message, t0=t0)
            out.add(self.topics.traces, session_id, "Trace", trace)
            if execute:
                out.add(reply_topic, session_id, "RouteResponse", self._response(
                    req, status, json.dumps(codec.render_error(status, message)), error=message))
            return out

        overhead_start = time.perf_counter()
        decision = self.router.decide(canonical, hint_headers(req.get("hints") or {}, session_id),
                                      requested_model=canonical.model or "router/auto", session_id=session_id or None)
        if not decision.session_id:
            decision.session_id = session_id
        overhead_ms = (time.perf_counter() - overhead_start) * 1000.0
        out.add(self.topics.decisions, session_id, "Decision",
                decision_event(decision, request_id=request_id, source="kafka"))
        if not execute:
            trace = self._trace(req, decision, status=200, t0=t0, overhead_ms=overhead_ms)
            out.add(self.topics.traces, session_id, "Trace", trace)
            return out

        status, text, served, usage, attempts, error = await self._execute(canonical, decision, dialect)
        model = self.models.get(served[0]) if served else None
        cost = model.cost_usd(*usage) if model else 0.0
        frontier_name = self.settings.frontier_default()
        frontier = self.models.get(frontier_name) if frontier_name else None
        baseline = frontier.cost_usd(*usage) if frontier else cost
        latency_ms = (time.perf_counter() - t0) * 1000.0
        response = self._response(req, status, text, error=error, decision=decision, served=served,
                                  usage=usage, cost=cost, latency_ms=latency_ms)
        out.add(reply_topic, session_id, "RouteResponse", response)
        trace = self._trace(req, decision, status=status, error=error, t0=t0, overhead_ms=overhead_ms,
                            served=served, usage=usage, cost=cost, baseline=baseline, attempts=attempts)
        out.add(self.topics.traces, session_id, "Trace", trace)
        return out

    async def _execute(
        self, canonical: CanonicalRequest, decision: Decision, dialect: str
    ) -> tuple[int, str, tuple[str, str, str] | None, tuple[int, int, int], int, str | None]:
        """(status, body text in the client's dialect, (model, provider, provider dialect), usage, attempts, error)."""
        client_codec = registry.get(dialect)
        primary = self.models.get(decision.model)
        if primary is None or self.client is None:
            message = f"model {decision.model!r} is not configured" if primary is None else "no upstream client"
            return 502, json.dumps(client_codec.render_error(502, message)), None, (0, 0, 0), 0, message
        canonical.stream = False  # a RouteResponse carries the whole answer
        attempts = 0
        last_status, last_error = 502, "no provider available"
        served: tuple[str, str, str] | None = None
        for model, provider in candidates(primary, decision.provider, decision.fallbacks, self.models,
                                          self.providers):
            attempts += 1
            served = (model.name, provider.name, provider.dialect)
            pcodec = registry.get(provider.dialect)
            try:
                upstream_body = pcodec.render_request(canonical, model.upstream,
                                                      supports_thinking=model.capabilities.thinking)
                resp = await self.client.send(provider, PATHS[provider.dialect],
                                              json.dumps(upstream_body).encode(), auth_headers(provider))
                raw = await resp.read()
            except UpstreamError as exc:
                last_status, last_error = 502, f"{exc.kind}: {exc.message}"
                continue
            except TranslationError as exc:
                last_status, last_error = exc.status, exc.message
                break
            if resp.status == 200:
                try:
                    parsed = pcodec.parse_response(json.loads(raw))
                    text = json.dumps(client_codec.render_response(parsed, model=model.name))
                except (ValueError, TranslationError) as exc:
                    last_status, last_error = 502, f"unreadable upstream answer: {exc}"
                    continue
                u = parsed.usage
                return 200, text, served, (u.input_tokens, u.output_tokens, u.cached_input_tokens), attempts, None
            last_status = resp.status
            last_error = f"upstream status {resp.status}: {raw[:300].decode('utf-8', 'replace')}"
            if not (resp.status == 429 or resp.status >= 500):
                break
        # Errors are always rendered in the client's dialect (the provider's may differ).
        body = json.dumps(client_codec.render_error(last_status, last_error))
        return last_status, body, served, (0, 0, 0), attempts, last_error

    def _response(self, req: dict[str, Any], status: int, body: str, *, error: str | None = None,
                  decision: Decision | None = None, served: tuple[str, str, str] | None = None,
                  usage: tuple[int, int, int] = (0, 0, 0), cost: float = 0.0,
                  latency_ms: float = 0.0) -> dict[str, Any]:
        return {
            "event_id": new_id(),
            "ts_ms": now_ms(),
            "request_id": req["request_id"],
            "session_id": req["session_id"],
            "dialect": req["dialect"],
            "status": status,
            "body": body,
            "model": served[0] if served else (decision.model if decision else ""),
            "provider": served[1] if served else (decision.provider if decision else ""),
            "decision_id": decision.decision_id if decision else "",
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "cost_usd": cost,
            "latency_ms": latency_ms,
            "error": error,
        }

    def _trace(self, req: dict[str, Any], decision: Decision | None, *, status: int, t0: float,
               error: str | None = None, overhead_ms: float = 0.0, served: tuple[str, str, str] | None = None,
               usage: tuple[int, int, int] = (0, 0, 0), cost: float = 0.0, baseline: float = 0.0,
               attempts: int = 0) -> dict[str, Any]:
        features = decision.features if decision else {}
        return {
            "event_id": new_id(),
            "ts_ms": int(req.get("ts_ms") or now_ms()),
            "request_id": req["request_id"],
            "session_id": req["session_id"],
            "decision_id": decision.decision_id if decision else "",
            "client_dialect": req["dialect"],
            "provider_dialect": served[2] if served else "",
            "model": served[0] if served else (decision.model if decision else ""),
            "provider": served[1] if served else (decision.provider if decision else ""),
            "route": decision.route if decision else "default",
            "policy": decision.policy if decision else "",
            "policy_version": decision.policy_version if decision else 0,
            "prompt_version": decision.prompt_version if decision else None,
            "status": status,
            "error": error,
            "stream": False,
            "latency_ms": (time.perf_counter() - t0) * 1000.0,
            "ttft_ms": 0.0,
            "overhead_ms": overhead_ms,
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "cached_tokens": usage[2],
            "cost_usd": cost,
            "baseline_cost_usd": baseline,
            "attempts": attempts or (1 if decision else 0),
            "source": "kafka",
            "task_type": str(features.get("task") or "") if features else "",
            "client": str(features.get("client") or "") if features else "",
        }


class Publisher:
    """The agents' output producer: a batching aiokafka producer, delivery awaited per input batch.

    Faust's own ``topic.send`` costs ~0.4 ms per message here (its buffer, sensors and per-message
    futures); the agents instead process a batch of input events, hand every output to this producer
    without waiting, and await all deliveries before the batch is acknowledged (so offsets are
    committed only for inputs whose outputs reached the broker: at-least-once).
    """

    def __init__(self, bootstrap_servers: str, codec: EventCodec, topics: Topics, *, embedded: bool = False,
                 linger_ms: int = 2) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.codec = codec
        self.topics = topics
        self.embedded = embedded
        self.linger_ms = linger_ms
        self.producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()  # what AIOKafkaProducer.send uses by default
        self._partitions: dict[tuple[str, bytes], int] = {}  # (topic, key) -> partition

    async def start(self) -> None:
        if self.producer is None:
            self.producer, _ = await start_producer(
                lambda idempotent: AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=self.linger_ms,
                    enable_idempotence=idempotent, max_batch_size=256 * 1024,
                    # Policy snapshots grow with the catalogue (~1.1 MB for 24 models): above the 1 MB default.
                    max_request_size=MAX_EVENT_BYTES,
                ),
                self.bootstrap_servers, idempotent=not self.embedded)

    async def stop(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def send(self, topic: str, key: str | bytes | None, name: str, value: dict[str, Any]
                   ) -> asyncio.Future[Any]:
        """Queue one event; the returned future resolves when the broker has it."""
        assert self.producer is not None, "Publisher.start() first"
        k = key.encode() if isinstance(key, str) else key
        return await self.producer.send(topic, self.codec.encode(name, value), key=k or None)

    async def queue(self, outputs: Outputs) -> list[asyncio.Future[Any]]:
        return [await self.send(topic, key, name, value) for topic, key, name, value in outputs.events]

    async def queue_many(self, batch: list[Outputs]) -> list[asyncio.Future[Any]]:
        """Queue every output of a batch of requests: one record batch per (topic, partition).

        ``producer.send`` costs ~15 µs of Python per message (partitioner, accumulator, a future
        each); here the records are appended to one builder per partition and handed over with one
        ``send_batch`` each. Records land on the partitions ``send`` would pick (aiokafka's default
        partitioner on the same key), in input order within each partition.
        """
        assert self.producer is not None, "Publisher.start() first"
        producer = self.producer
        encode = self.codec.encode
        partitions: dict[str, list[int]] = {}
        builders: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for outputs in batch:
            for topic, key, name, value in outputs.events:
                k = (key.encode() if isinstance(key, str) else key) or None
                parts = partitions.get(topic)
                if parts is None:
                    parts = partitions[topic] = list(await producer.partitions_for(topic))
                p = self._partition(topic, k, parts)
                v = encode(name, value)
                builder = builders.get((topic, p))
                if builder is None:
                    builder = builders[(topic, p)] = producer.create_batch()
                if builder.append(key=k, value=v, timestamp=None) is None:  # full: send it, start another
                    futures.append(await producer.send_batch(builder, topic, partition=p))
                    builder = builders[(topic, p)] = producer.create_batch()
                    if builder.append(key=k, value=v, timestamp=None) is None:
                        futures.append(await producer.send(topic, v, key=k, partition=p))  # larger than a batch
                        del builders[(topic, p)]
        for (topic, p), builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=p))
        return futures

    def _partition(self, topic: str, key: bytes | None, parts: list[int]) -> int:
        if key is None:
            return int(self._partitioner(None, parts, parts))
        cache = self._partitions
        p = cache.get((topic, key))
        if p is None:
            if len(cache) > 100_000:
                cache.clear()
            p = cache[(topic, key)] = self._partitioner(key, parts, parts)
        return int(p)

    async def publish(self, outputs: Outputs) -> None:
        await asyncio.gather(*await self.queue(outputs))

    async def dead_letter(self, event: Any, reason: str, stage: str) -> asyncio.Future[Any]:
        assert self.producer is not None, "Publisher.start() first"
        msg = getattr(event, "message", event)  # a Faust event, or an aiokafka record
        raw = msg.value if isinstance(msg.value, bytes) else b""
        letter = DeadLetter(msg.topic, msg.partition, msg.offset, reason, stage, msg.key, raw)
        log.warning("dead letter from %s/%s@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        return await self.producer.send(self.topics.dlq, raw, key=msg.key, headers=letter.headers())


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
