"""The ASGI app: Starlette routing over raw ASGI endpoints, and a uvicorn runner.

Endpoints are ASGI callables, so Starlette calls them without building Request/Response objects and no
middleware is added beyond Starlette's built-in error handling.

    gateway = Gateway(settings, router, UpstreamClient(sim_url))
    app = create_app(gateway)
    await serve(app, host, port)          # or: uvicorn.run(app, loop="uvloop", http="httptools")
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from streams.ingress.anthropic_messages import CountTokensEndpoint
from streams.ingress.dialects import serving_cores
from streams.ingress.feedback import FeedbackEndpoint, FeedbackHandler
from streams.ingress.gateway import Gateway
from streams.ingress.http import JSON_HEADERS, Receive, Scope, Send, send_bytes
from streams.ingress.models import ModelsEndpoint
from streams.ingress.pipeline import DialectIngress
from streams.ingress.route import RouteEndpoint


class _Root:
    """HEAD / (Claude Code's connectivity probe) and GET /: 200."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b'{"service":"weave-router"}', JSON_HEADERS)


class _Health:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, msgspec.json.encode(self.gw.health()), JSON_HEADERS)


def create_app(gateway: Gateway, feedback: FeedbackHandler | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    cores = serving_cores(gateway)
    routes = [
        Route("/v1/chat/completions", DialectIngress(cores["openai_chat"]), methods=["POST"]),
        Route("/v1/responses", DialectIngress(cores["openai_responses"]), methods=["POST"]),
        Route("/v1/messages", DialectIngress(cores["anthropic_messages"]), methods=["POST"]),
        Route("/v1/messages/count_tokens", CountTokensEndpoint(gateway), methods=["POST"]),
        Route("/v1/models", ModelsEndpoint(gateway), methods=["GET"]),
        Route("/v1/route", RouteEndpoint(gateway), methods=["POST"]),
        Route("/v1/feedback", FeedbackEndpoint(gateway, feedback), methods=["POST"]),
        Route("/health", _Health(gateway), methods=["GET"]),
        Route("/", _Root(), methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY, which Linux passes on to every accepted connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def uvicorn_config(app: Starlette, **kwargs: object) -> uvicorn.Config:
    """The fast stack: uvloop + httptools, no access log (traces carry that), lifespan on."""
    opts: dict[str, object] = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "backlog": 2048,
        "timeout_keep_alive": 75,
    }
    opts.update(kwargs)
    return uvicorn.Config(app, **opts)  # type: ignore[arg-type]


async def serve(app: Starlette, host: str, port: int, **kwargs: object) -> None:
    """Run until cancelled or signalled."""
    sock = listen_socket(host, port)
    server = uvicorn.Server(uvicorn_config(app, **kwargs))
    await server.serve(sockets=[sock])
