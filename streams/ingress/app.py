"""The ASGI app: Starlette routing over raw ASGI endpoints, and a uvicorn runner.

Endpoints are ASGI callables, so Starlette calls them without building Request/Response objects. One
thin ASGI layer (``EdgeGuard``) checks keys for the endpoints that learn, spend or reveal (feedback,
analytics, dashboard, metrics) before routing, so a route added later (``app.router.routes``) is
covered too; unknown paths (404), methods (405) and crashes (500) answer JSON in the caller's dialect.
The uvicorn protocol is ``connections.GuardedHttpToolsProtocol``: header timeout and size limit,
connection caps, parser errors as JSON.

    gateway = Gateway(settings, router, UpstreamClient(sim_url))
    app = create_app(gateway)
    await serve(app, host, port)          # or: uvicorn.run(app, loop="uvloop", http="httptools")
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from streams.ingress.anthropic_messages import CountTokensEndpoint
from streams.ingress.connections import ConnectionLimits, guarded_protocol
from streams.ingress.context import browser_key, client_key
from streams.ingress.dialects import serving_cores
from streams.ingress.errors import OWN, dialect_for_path, error_body, send_error
from streams.ingress.feedback import FeedbackEndpoint, FeedbackHandler
from streams.ingress.gateway import Gateway
from streams.ingress.gemini import GeminiModels
from streams.ingress.http import JSON_HEADERS, Receive, Scope, Send, header_map, send_bytes
from streams.ingress.models import ModelsEndpoint
from streams.ingress.openai_responses import OpenAIResponsesCore, ResponsesCompactCore, StoredResponses
from streams.ingress.pipeline import DialectIngress
from streams.ingress.request_info import RequestInfoEndpoint
from streams.ingress.route import RouteEndpoint
from streams.reliability.keys import scope_for_route

log = logging.getLogger(__name__)
# Scopes whose endpoints EdgeGuard checks; the model endpoints check their own key (with the model).
_GUARDED_SCOPES = frozenset({"feedback", "analytics", "metrics"})
_BASIC_CHALLENGE = (b"www-authenticate", b'Basic realm="weave-router", charset="UTF-8"')


class _Root:
    """HEAD / and HEAD /api/hello (Claude Code's connectivity probes), and their GETs: 200."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b'{"service":"weave-router"}', JSON_HEADERS)


class _Health:
    """Open to all (probes), but under ``require_key`` only up/down unless the key has ``metrics``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        report = self.gw.health()
        rel = self.gw.reliability
        if rel.require_key and not rel.authenticate(client_key(header_map(scope)), route="/health").ok:
            report = {"status": report["status"]}
        await send_bytes(send, 200, msgspec.json.encode(report), JSON_HEADERS)


class EdgeGuard:
    """Virtual-key and scope check for feedback, analytics, the dashboard and metrics, before routing.

    Same rules as the model endpoints (``Reliability.authenticate``): with ``require_key`` a missing,
    unknown or revoked key is a 401 and a key without the endpoint's scope a 403; in open mode only a
    known key is held to its scopes. The dashboard's pages also accept the key as a Basic-auth password,
    so a browser asks for it (``WWW-Authenticate``) and sends it with the page's API calls.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            need = scope_for_route(path)
            if need in _GUARDED_SCOPES and path != "/health":
                headers = header_map(scope)
                key = client_key(headers)
                browser = need == "analytics"
                if key is None and browser:
                    key = browser_key(headers)
                check = self.gw.reliability.authenticate(key, route=path)
                if not check.ok:
                    extra = [_BASIC_CHALLENGE] if browser and check.status == 401 else None
                    await send_error(send, OWN, check.status, check.message, param=check.param, headers=extra)
                    return
        await self.app(scope, receive, send)  # type: ignore[arg-type]


def _error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = error_body(dialect_for_path(request.url.path), status, message)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return _error_response(request, 405, f"method {request.method} is not allowed on {path} (allowed: {allow})",
                               headers=dict(exc.headers or {}))
    if exc.status_code == 404:
        return _error_response(request, 404, f"no such endpoint: {request.method} {path}")
    return _error_response(request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def _crash(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (uvicorn logs the re-raised exception); the caller gets no detail.
    return _error_response(request, 500, "internal error in the router; the request was not completed")


def create_app(gateway: Gateway, feedback: FeedbackHandler | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    cores = serving_cores(gateway)
    gemini = GeminiModels(gateway, cores["gemini"])
    models = ModelsEndpoint(gateway)
    responses = cores["openai_responses"]
    assert isinstance(responses, OpenAIResponsesCore)
    routes = [
        Route("/v1/chat/completions", DialectIngress(cores["openai_chat"]), methods=["POST"]),
        Route("/v1/responses", DialectIngress(responses), methods=["POST"]),
        Route("/v1/responses/compact", DialectIngress(ResponsesCompactCore(gateway)), methods=["POST"]),
        Route("/v1/responses/{response_id}", StoredResponses(responses), methods=["GET", "DELETE"]),
        Route("/v1/messages", DialectIngress(cores["anthropic_messages"]), methods=["POST"]),
        Route("/v1/messages/count_tokens", CountTokensEndpoint(gateway), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        # :path, as model ids have slashes (router/auto; the SDKs send it as router%2Fauto).
        Route("/v1/models/{model_id:path}", models, methods=["GET"]),
        Route("/v1beta/models", gemini, methods=["GET"]),
        Route("/v1beta/models/{target:path}", gemini, methods=["GET", "POST"]),
        Route("/v1/route", RouteEndpoint(gateway), methods=["POST"]),
        Route("/v1/requests/{request_id}", RequestInfoEndpoint(gateway), methods=["GET"]),
        Route("/v1/feedback", FeedbackEndpoint(gateway, feedback), methods=["POST"]),
        Route("/health", _Health(gateway), methods=["GET"]),
        Route("/", _Root(), methods=["GET", "HEAD"]),
        # Claude Code probes this path before its first request; a 404 there reads as "no service".
        Route("/api/hello", _Root(), methods=["GET", "HEAD"]),
    ]
    handlers: dict[Any, Any] = {404: _http_error, 405: _http_error, HTTPException: _http_error, Exception: _crash}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(EdgeGuard, gateway=gateway)
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


def uvicorn_config(app: Starlette, *, limits: ConnectionLimits | None = None, **kwargs: object) -> uvicorn.Config:
    """The fast stack: uvloop + httptools (guarded), no access log (traces carry that), lifespan on.
    No logging config of uvicorn's own: its records propagate to the process's one (redacting) root
    handler (``streams.reliability.redact.configure_logging``)."""
    limits = limits or connection_limits(app)
    opts: dict[str, object] = {
        "loop": "uvloop",
        "http": guarded_protocol(limits),
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "log_config": None,
        "backlog": 2048,
        "timeout_keep_alive": limits.keep_alive_whole_s,
    }
    opts.update(kwargs)
    return uvicorn.Config(app, **opts)  # type: ignore[arg-type]


def connection_limits(app: Any) -> ConnectionLimits:
    """The connection limits configured for the app's gateway (defaults for other apps)."""
    gateway = getattr(getattr(app, "state", None), "gateway", None)
    settings = getattr(getattr(gateway, "reliability", None), "settings", None)
    conns = getattr(settings, "connections", None)
    return ConnectionLimits.from_settings(conns) if conns is not None else ConnectionLimits()


async def serve(app: Starlette, host: str, port: int, *, limits: ConnectionLimits | None = None,
                **kwargs: object) -> None:
    """Run until cancelled or signalled."""
    sock = listen_socket(host, port)
    server = uvicorn.Server(uvicorn_config(app, limits=limits, **kwargs))
    await server.serve(sockets=[sock])
