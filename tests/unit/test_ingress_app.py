"""The app's own answers: a crash is a JSON 500 in the caller's dialect (no traceback, no plain text),
and the edge guard covers routes added after ``create_app`` (the runtime adds analytics and metrics)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from streams.config import Settings
from streams.ingress.app import create_app
from streams.ingress.gateway import Gateway
from streams.providers.client import UpstreamClient
from streams.routing.router import Router


def settings(tmp: Path, **extra: object) -> Settings:
    return Settings.model_validate({
        "data_dir": str(tmp),
        "providers": [{"name": "p", "dialect": "openai_chat", "base_url": "sim"}],
        "models": [{"name": "m", "provider": "p", "price_in": 1.0, "price_out": 1.0, "tier": "frontier"}],
        "routing": {"auto_models": ["router/auto"], "default_model": "m"},
        **extra,
    })


async def boom(request: Request) -> Response:
    raise RuntimeError("secret internals: sk-live-123")


def test_a_crash_is_a_json_500_in_the_callers_dialect(tmp_path: Path) -> None:
    s = settings(tmp_path)
    app = create_app(Gateway(s, Router(s), UpstreamClient(None)))
    app.router.routes += [Route("/v1/messages/boom", boom), Route("/v1/boom", boom)]
    client = TestClient(app, raise_server_exceptions=False)
    anth = client.get("/v1/messages/boom")
    assert anth.status_code == 500 and anth.headers["content-type"] == "application/json"
    assert anth.json()["type"] == "error" and anth.json()["error"]["type"] == "api_error"
    own = client.get("/v1/boom")
    assert own.status_code == 500 and own.json()["error"]["type"] == "server_error"
    assert "sk-live" not in anth.text + own.text and "Traceback" not in anth.text + own.text


def test_routes_added_later_are_guarded_too(tmp_path: Path) -> None:
    key = "wr-metrics-key-0123456789abcdefghijk"
    s = settings(tmp_path, reliability={"keys": {"require_key": True, "reload_interval_s": 0}},
                 virtual_keys=[{"name": "prom", "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                                "scopes": ["metrics"]}])
    app = create_app(Gateway(s, Router(s), UpstreamClient(None)))

    async def metrics(request: Request) -> Response:
        return Response(b"weave_router_requests_total 1\n", media_type="text/plain")

    app.router.routes.append(Route("/metrics", metrics))
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": f"Bearer {key}"}).text.startswith("weave_router")
