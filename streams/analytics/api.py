"""The analytics HTTP API (``/v1/analytics/<view>``) and the dashboard (``/dashboard``).

    app.routes.extend(analytics_routes(lambda: client, settings))

Every view takes ``since`` and ``until`` (ISO 8601, epoch seconds, ``now`` or a span like ``24h``;
default: the last 24 hours; ``since`` as a span counts back from ``until``); some take ``limit``,
``bucket_s`` or ``source``. clickhouse-connect is synchronous, so queries run in a worker thread; they
are serialized on one lock because one client (one chDB connection, or one HTTP session) must not run
two queries at once, and the dashboard's load is a handful of queries every few seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streams.analytics import queries
from streams.analytics.window import WindowError, parse_window

PREFIX = "/v1/analytics"
MAX_LIMIT = 1000
_INT_PARAMS = {"limit": ("decisions", "sessions", "fallbacks"), "bucket_s": ("timeseries",)}
_STATIC = {
    "dashboard.js": "application/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


class _BadRequest(ValueError):
    pass


def _view_params(name: str, request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, views in _INT_PARAMS.items():
        raw = request.query_params.get(key)
        if raw is None or name not in views:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise _BadRequest(f"{key} must be an integer, got {raw!r}") from None
        if not 1 <= value <= (MAX_LIMIT if key == "limit" else 366 * 86400):
            raise _BadRequest(f"{key} out of range: {value}")
        params[key] = value
    if name == "daily" and "source" in request.query_params:
        source = request.query_params["source"]
        if source not in ("auto", "raw", "rollup"):
            raise _BadRequest("source must be auto, raw or rollup")
        params["source"] = source
    return params


def _static(name: str) -> bytes:
    return resources.files("streams.analytics").joinpath("static", name).read_bytes()


def analytics_routes(get_client: Callable[[], Client], settings: Any = None) -> list[BaseRoute]:
    """Routes for every analytics view, the view index and the dashboard (HTML, JS, CSS)."""
    prices = queries.frontier_prices(settings)
    model_prices = queries.model_prices(settings)
    frontier = settings.frontier_default() if settings is not None else None
    tiers = queries.model_tiers(settings)
    lock = threading.Lock()

    def run(name: str, since: Any, until: Any, params: dict[str, Any]) -> Any:
        if name in queries.MODEL_PRICED:
            params = {**params, "model_prices": model_prices}
        with lock:
            return queries.run_view(get_client(), name, since, until, prices, **params)

    def endpoint(name: str) -> Callable[[Request], Any]:
        async def view(request: Request) -> Response:
            try:
                since, until = parse_window(request.query_params.get("since"), request.query_params.get("until"))
                params = _view_params(name, request)
            except (WindowError, _BadRequest) as exc:
                return JSONResponse({"error": {"type": "invalid_request", "message": str(exc)}}, status_code=400)
            try:
                data = await asyncio.to_thread(run, name, since, until, params)
            except Exception as exc:  # storage down or tables missing: say so, do not crash the gateway
                message = f"analytics query failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                return JSONResponse({"error": {"type": "storage_error", "message": message}}, status_code=503)
            if name == "summary":
                data = {**queries.with_tiers(data, tiers), "frontier_model": frontier}
            return JSONResponse(data)

        view.__name__ = f"analytics_{name}"
        return view

    async def index(request: Request) -> Response:
        return JSONResponse({"views": [f"{PREFIX}/{n}" for n in queries.names()], "frontier_model": frontier})

    async def dashboard(request: Request) -> Response:
        return Response(_static("dashboard.html"), media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-cache"})

    def static(name: str, media_type: str) -> Route:
        async def serve(request: Request) -> Response:
            return Response(_static(name), media_type=media_type, headers={"cache-control": "no-cache"})

        return Route(f"/dashboard/{name}", serve, methods=["GET"])

    routes: list[BaseRoute] = [Route(PREFIX, index, methods=["GET"])]
    routes += [Route(f"{PREFIX}/{n}", endpoint(n), methods=["GET"]) for n in queries.names()]
    routes.append(Route("/dashboard", dashboard, methods=["GET"]))
    routes += [static(n, t) for n, t in _STATIC.items()]
    return routes
