"""A small HTTP app exposing /health for processes without the gateway (e.g. ``weave-router worker``),
so Kubernetes probes and operators see the same component states as on the gateway."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_health_app(health: Callable[[], dict[str, Any]]) -> Starlette:
    async def root(request: Request) -> Response:
        return Response(status_code=200)

    async def health_endpoint(request: Request) -> JSONResponse:
        report = health()
        return JSONResponse(report, status_code=200 if report.get("status") == "ok" else 503)

    return Starlette(routes=[
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health", health_endpoint, methods=["GET", "HEAD"]),
    ])
