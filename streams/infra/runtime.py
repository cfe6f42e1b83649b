"""The service's main coroutine: start the stack, serve until told to stop, stop without orphans."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from starlette.routing import Route

from streams.config import Settings
from streams.infra.health import create_health_app
from streams.infra.serve import HttpServer
from streams.infra.stack import Stack
from streams.reliability.redact import install


def build_gateway_app(settings: Settings, stack: Stack, events: Any = None) -> Any:
    """The gateway: router with the learned policy, pooled upstream client, events to Kafka."""
    from streams.analytics.api import analytics_routes
    from streams.analytics.metrics import RouterMetrics, metrics_route
    from streams.infra.observed import MeteredEventSink
    from streams.ingress.app import create_app
    from streams.ingress.gateway import Gateway
    from streams.providers.client import UpstreamClient
    from streams.routing.bandit import ContextualBandit
    from streams.routing.experiments import build_router

    bandit = ContextualBandit.from_settings(settings.routing.bandit, settings.models)
    router = build_router(settings, bandit)
    metrics = RouterMetrics()
    sink = MeteredEventSink(events, metrics)
    # Gateway.health adds the reliability layer's open breakers to the stack's components.
    gateway = Gateway(settings, router, UpstreamClient(stack.sim_url), sink, health=stack.components)
    rel = gateway.reliability
    providers = [p.name for p in settings.providers]

    def sync_breakers() -> None:
        # Breakers change state lazily (open -> half_open when read), so read them at scrape time.
        states = rel.provider_states()
        for name in providers:
            metrics.set_breaker(name, states.get(name, "closed"))  # type: ignore[arg-type]

    app = create_app(gateway)
    app.router.routes.extend(analytics_routes(lambda: stack.clickhouse, settings))
    route = metrics_route(metrics)
    scrape = route.endpoint

    async def metrics_endpoint(request: Any) -> Any:
        sync_breakers()
        return await scrape(request)

    app.router.routes.append(Route(route.path, metrics_endpoint, methods=["GET"]))
    return app


async def run_service(
    settings: Settings,
    *,
    gateway: bool,
    workers: bool,
    wait: Callable[[], Awaitable[None]],
    console: Console,
) -> None:
    stack = Stack(settings, with_gateway=gateway, with_workers=workers)
    server: HttpServer | None = None
    try:
        await stack.start()
        app = build_gateway_app(settings, stack) if gateway else create_health_app(stack.health)
        server = HttpServer(app, settings.server.host, settings.server.port)
        if gateway:
            # After uvicorn set up its loggers: every handler (root's and uvicorn's) redacts secrets,
            # the upstream keys' values included.
            redactor = app.state.gateway.reliability.redactor
            install(redactor)
            install(redactor, logging.getLogger("uvicorn"))
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
        await stack.stop()
