"""Prometheus metrics for the gateway and workers, on a registry of their own (never the global one),
so several apps in one process (tests, ``up``) keep separate counts.

The gateway holds one :class:`RouterMetrics` and calls, per request, after the response is done::

    metrics.observe_request(dialect, model, provider, status, latency_s, overhead_s, attempts)

and, when a state changes (cheap, no I/O): ``set_breaker(provider, state)``, ``set_buffer(depth,
spill_bytes)``, ``set_consumer_lag(group, topic, partition, lag)``. Mount :func:`metrics_route`.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BreakerState = Literal["closed", "half_open", "open"]
BREAKER_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}

# Request latency spans a sub-second cache hit to a multi-minute agent turn.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Router overhead targets are p50 <= 0.5 ms, p99 <= 2 ms: resolve that range finely.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1)


class RouterMetrics:
    """Every metric the service exports, on ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "weave_router") -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        labels = ("dialect", "model", "provider", "status")
        self.requests = Counter(
            "requests", "Requests served, by client dialect, model, provider and HTTP status",
            labels, namespace=namespace, registry=self.registry,
        )
        self.latency = Histogram(
            "request_latency_seconds", "Total request latency as the client sees it",
            labels, namespace=namespace, buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.overhead = Histogram(
            "router_overhead_seconds", "Time spent in the router itself (parse, route, translate)",
            ("dialect",), namespace=namespace, buckets=OVERHEAD_BUCKETS, registry=self.registry,
        )
        self.fallbacks = Counter(
            "fallbacks", "Requests that needed more than one upstream attempt",
            ("provider", "model"), namespace=namespace, registry=self.registry,
        )
        self.tokens = Counter(
            "tokens", "Tokens processed, by model and kind (input, output, cached)",
            ("model", "kind"), namespace=namespace, registry=self.registry,
        )
        self.cost = Counter(
            "cost_usd", "Cost in USD at the serving model's prices", ("model",),
            namespace=namespace, registry=self.registry,
        )
        self.breaker = Gauge(
            "circuit_breaker_state", "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
            ("provider",), namespace=namespace, registry=self.registry,
        )
        self.buffer_depth = Gauge(
            "producer_buffer_depth", "Events waiting in the in-memory producer buffer",
            namespace=namespace, registry=self.registry,
        )
        self.spill_bytes = Gauge(
            "producer_spill_bytes", "Bytes of events spilled to disk while Kafka is unreachable",
            namespace=namespace, registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "consumer_lag", "Messages behind the log end, per consumer group, topic and partition",
            ("group", "topic", "partition"), namespace=namespace, registry=self.registry,
        )

    def observe_request(
        self,
        dialect: str,
        model: str,
        provider: str,
        status: int,
        latency_s: float,
        overhead_s: float,
        attempts: int = 1,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        """Record one finished request (call once, after the last byte went out)."""
        code = str(status)
        self.requests.labels(dialect, model, provider, code).inc()
        self.latency.labels(dialect, model, provider, code).observe(latency_s)
        self.overhead.labels(dialect).observe(overhead_s)
        if attempts > 1:
            self.fallbacks.labels(provider, model).inc()
        if input_tokens:
            self.tokens.labels(model, "input").inc(input_tokens)
        if output_tokens:
            self.tokens.labels(model, "output").inc(output_tokens)
        if cached_tokens:
            self.tokens.labels(model, "cached").inc(cached_tokens)
        if cost_usd:
            self.cost.labels(model).inc(cost_usd)

    def set_breaker(self, provider: str, state: BreakerState) -> None:
        self.breaker.labels(provider).set(BREAKER_VALUES[state])

    def set_buffer(self, depth: int, spill_bytes: int = 0) -> None:
        self.buffer_depth.set(depth)
        self.spill_bytes.set(spill_bytes)

    def set_consumer_lag(self, group: str, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(group, topic, str(partition)).set(lag)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


def metrics_route(metrics: RouterMetrics, path: str = "/metrics") -> Route:
    """``GET /metrics`` in the Prometheus text format."""

    async def endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Route(path, endpoint, methods=["GET"])
