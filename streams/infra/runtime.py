"""The service's main coroutine: start the stack, serve until told to stop, stop without orphans."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.console import Console

from streams.config import Settings
from streams.infra.health import create_health_app
from streams.infra.serve import HttpServer
from streams.infra.stack import Stack


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
        app = create_health_app(stack.health)
        server = HttpServer(app, settings.server.host, settings.server.port)
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
