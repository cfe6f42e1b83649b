"""The service's main coroutine: start the stack, serve until told to stop, stop without orphans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from starlette.routing import Route

from streams.config import Settings
from streams.infra.health import create_health_app
from streams.infra.observed import RecentRequests
from streams.infra.serve import HttpServer
from streams.infra.stack import Stack
from streams.infra.worker_process import AnalyticsProxy, WorkerProcess
from streams.reliability.limits import keep_spend


def make_router(settings: Settings) -> Any:
    """The routing policy the gateway serves with: the learned bandit (hot-swapped by the policy
    follower) behind the configured routes, with canary/shadow experiments when configured."""
    from streams.routing.bandit import bandit_for
    from streams.routing.experiments import build_router

    return build_router(settings, bandit_for(settings))


def feedback_handler(
    router: Any, emitter: Any, recent: RecentRequests | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``POST /v1/feedback``: validate, publish to router.outcomes (the learner), tell the router (cascade).
    Feedback naming only a ``request_id`` is credited to that request's session when it was served here."""
    from streams.agents.feedback import build_outcome

    resolve = recent.session_of if recent is not None else None

    def handle(payload: dict[str, Any]) -> dict[str, Any]:
        outcome = build_outcome(payload, resolve_session=resolve)
        emitter.emit_outcome(outcome)
        router.record_outcome(outcome["session_id"], outcome["success"] >= 0.5, cost_usd=outcome.get("cost_usd"))
        return outcome

    return handle


def build_gateway_app(
    settings: Settings,
    stack: Stack,
    events: Any = None,
    *,
    router: Any = None,
    feedback: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    health: Callable[[], dict[str, Any]] | None = None,
    recent: RecentRequests | None = None,
    analytics: list[Any] | None = None,
) -> Any:
    """The gateway: router with the learned policy, pooled upstream client, events to Kafka.
    ``analytics``: routes answering ``/v1/analytics`` elsewhere (the process owning ClickHouse);
    without them the gateway queries ``stack.clickhouse`` itself."""
    from streams.analytics.api import analytics_routes
    from streams.analytics.metrics import RouterMetrics, metrics_route
    from streams.infra.observed import MeteredEventSink
    from streams.ingress.app import create_app
    from streams.ingress.gateway import Gateway
    from streams.providers.client import UpstreamClient
    router = router or make_router(settings)
    metrics = RouterMetrics()
    sink = MeteredEventSink(events, metrics, recent)
    # Gateway.health adds the reliability layer's open breakers to the stack's components.
    gateway = Gateway(settings, router, UpstreamClient(stack.sim_url), sink, health=health or stack.components)
    rel = gateway.reliability
    providers = [p.name for p in settings.providers]

    def sync_breakers() -> None:
        # Breakers change state lazily (open -> half_open when read), so read them at scrape time.
        states = rel.provider_states()
        for name in providers:
            metrics.set_breaker(name, states.get(name, "closed"))  # type: ignore[arg-type]

    app = create_app(gateway, feedback)
    own = analytics_routes(lambda: stack.clickhouse, settings)
    if analytics is not None:
        # The dashboard's static files are served here; its data comes through the proxy.
        own = [r for r in own if getattr(r, "path", "").startswith("/dashboard")] + analytics
    app.router.routes.extend(own)
    route = metrics_route(metrics)
    scrape = route.endpoint

    async def metrics_endpoint(request: Any) -> Any:
        sync_breakers()
        return await scrape(request)

    app.router.routes.append(Route(route.path, metrics_endpoint, methods=["GET"]))
    return app



def spend_path(settings: Settings) -> Path:
    """Where the gateway keeps budget spend, so a restart does not reset a daily budget."""
    return Path(settings.data_dir) / "budget-spend.json"


def worker_id(settings: Settings) -> str:
    """This process's worker (and learner) id. On the embedded broker one process owns the data dir, so
    the id is the same on every start and the learner finds its own saved policy again; against a real
    broker several workers may share a host, so the process id tells them apart."""
    return f"{socket.gethostname()}-{'up' if settings.embedded_kafka else os.getpid()}"

async def run_service(
    settings: Settings,
    *,
    gateway: bool,
    workers: bool,
    wait: Callable[[], Awaitable[None]],
    console: Console,
    split: bool = True,
) -> None:
    """Serve until ``wait`` returns. ``gateway`` and ``workers`` together (``up``) run the workers in a
    second process unless ``split`` is False (then everything shares this one)."""
    from streams.agents.service import StreamServices, consumer_groups, start_streams
    from streams.agents.topics import Topics
    from streams.infra.retention import BrokerKeeper

    # ``up``: the agents, the sink and ClickHouse in a second process (see streams.infra.worker_process).
    apart = gateway and workers and split
    stack = Stack(settings, with_gateway=gateway, with_workers=workers and not apart)
    server: HttpServer | None = None
    streams: StreamServices | None = None
    spend_keeper: asyncio.Task[None] | None = None
    broker_keeper: asyncio.Task[None] | None = None
    keeper: BrokerKeeper | None = None
    proxy: AnalyticsProxy | None = None
    try:
        if apart:
            await stack.start_broker()
            if stack.needs_sim():
                await stack.start_sim()
        else:
            await stack.start()
        router = make_router(settings) if gateway else None
        child = WorkerProcess(settings.model_dump_json(), Path(settings.data_dir),
                              bootstrap_servers=stack.bootstrap_servers, worker_id=worker_id(settings),
                              embedded=settings.embedded_kafka, sim_url=stack.sim_url) if apart else None
        # The sink runs where the workers run: with chDB only the process owning the data dir may write.
        in_process = workers and not apart
        started = await asyncio.gather(
            start_streams(
                settings, stack.bootstrap_servers, embedded=settings.embedded_kafka,
                clickhouse=stack.clickhouse if in_process else None, gateway_router=router,
                sim_url=stack.sim_url, worker_id=worker_id(settings),
                roles=("router", "learner") if in_process else (), with_emitter=gateway,
            ),
            child.start() if child is not None else asyncio.sleep(0),
            return_exceptions=True,
        )
        if isinstance(started[0], StreamServices):
            streams = started[0]
            streams.apart = child
        errors = [r for r in started if isinstance(r, BaseException)]
        if errors:
            if child is not None:
                await child.stop()
            raise errors[0]
        assert streams is not None
        if child is not None:
            proxy = AnalyticsProxy(child)
            await proxy.start()
        parts = [name for name, on in (("router and learner agents", workers), ("ClickHouse sink", workers),
                                       ("event producer", gateway), ("policy follower", gateway)) if on]
        where = f" (agents and sink in worker process {child.pid})" if child is not None else ""
        stack.state.set("streams", True, ", ".join(parts) + where)
        running = streams

        def components() -> dict[str, dict[str, Any]]:
            merged = dict(stack.components())
            if proxy is not None:
                merged.update(proxy.components)
            for name, state in running.health().items():
                merged[name] = {"ok": state == "ok", "detail": state}
            if keeper is not None:
                k = keeper.stats
                merged["broker retention"] = {"ok": True, "detail": (
                    f"{k.last_rss_mb:.0f} MB of {keeper.max_rss_mb:.0f}; started afresh {k.recycles} times, "
                    f"after exiting {k.restarts} times")}
            return merged

        def health() -> dict[str, Any]:
            comps = components()
            return {"status": "ok" if all(c["ok"] for c in comps.values()) else "degraded", "components": comps}

        if gateway:
            recent = RecentRequests()
            app = build_gateway_app(settings, stack, streams.emitter, router=router, recent=recent,
                                    feedback=feedback_handler(router, streams.emitter, recent), health=components,
                                    analytics=proxy.routes() if proxy is not None else None)
        else:
            app = create_health_app(health)
        server = HttpServer(app, settings.server.host, settings.server.port)
        if gateway:
            limits = app.state.gateway.reliability.limits
            limits.load(spend_path(settings))
            spend_keeper = asyncio.create_task(keep_spend(limits, spend_path(settings)), name="weave-spend")
        if stack.broker is not None and workers:
            # Bounded memory: the embedded broker never frees a record (streams.infra.retention).
            keeper = BrokerKeeper(stack.broker, Topics(), consumer_groups(Topics(), ("router", "learner")),
                                  partitions=settings.kafka.partitions, emitter=streams.emitter,
                                  max_rss_mb=settings.kafka.embedded_max_rss_mb,
                                  interval_s=settings.kafka.embedded_check_interval_s)
            broker_keeper = asyncio.create_task(keeper.run(), name="weave-broker-keeper")
        await server.start()
        stack.state.set("http", True, server.url)
        for comp in stack.state.components.values():
            console.print(f"[green]started[/green] {comp.name}: {comp.detail}")
        console.print(f"Weave Router listening on {server.url}  (health: {server.url}/health)")
        await wait()
        console.print("stopping …")
    finally:
        if server is not None:
            await server.stop()
        if broker_keeper is not None:
            broker_keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await broker_keeper
        if spend_keeper is not None:
            spend_keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await spend_keeper
            with contextlib.suppress(OSError):
                app.state.gateway.reliability.limits.save(spend_path(settings))
        if proxy is not None:
            await proxy.stop()
        if streams is not None:
            await streams.stop()
        await stack.stop()
