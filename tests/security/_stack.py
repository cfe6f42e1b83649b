"""A real gateway for the security probes: the simulated provider and the full gateway app (model
endpoints, feedback, analytics over chDB, dashboard, metrics) served by the production HTTP server
(``streams.infra.serve.HttpServer``, the guarded protocol) in a background thread, with
``reliability.keys.require_key: true`` and keys of every scope."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import Route

from streams.analytics.api import analytics_routes
from streams.analytics.metrics import RouterMetrics, metrics_route
from streams.config import Settings
from streams.ingress.app import create_app
from streams.ingress.gateway import Gateway
from streams.providers.client import UpstreamClient
from streams.providers.sim.config import SimConfig
from streams.providers.sim.faults import FaultSpec
from streams.providers.sim.server import running_sim
from streams.routing.router import Router
from tests._support import http_server, in_background_loop

KEYS = {
    "models": "wr-sec-models-0123456789abcdefghij",
    "feedback": "wr-sec-feedback-0123456789abcdefgh",
    "analytics": "wr-sec-analytics-0123456789abcdefg",
    "metrics": "wr-sec-metrics-0123456789abcdefghi",
    "revoked": "wr-sec-revoked-0123456789abcdefghi",
    "chat_only": "wr-sec-chatonly-0123456789abcdefgh",
    "auto_only": "wr-sec-autoonly-0123456789abcdefgh",
}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def security_settings(data_dir: str, **connections: Any) -> Settings:
    return Settings.model_validate({
        "data_dir": data_dir,
        "server": {"max_body_bytes": 24 * 1024 * 1024, "read_timeout_s": 5},
        "providers": [
            {"name": "p-chat", "dialect": "openai_chat", "base_url": "sim"},
            {"name": "p-anth", "dialect": "anthropic_messages", "base_url": "sim"},
        ],
        "models": [
            {"name": "m-chat", "provider": "p-chat", "price_in": 0.25, "price_out": 2.0, "tier": "cheap",
             "context_window": 100_000},
            {"name": "m-anth", "provider": "p-anth", "price_in": 5.0, "price_out": 25.0, "tier": "frontier",
             "context_window": 200_000},
            # The provider refuses the router's own key for this one (a sim fault answers 401).
            {"name": "m-badkey", "provider": "p-chat", "price_in": 1.0, "price_out": 1.0},
        ],
        "routing": {"auto_models": ["router/auto"], "default_model": "m-anth"},
        "reliability": {"keys": {"require_key": True, "reload_interval_s": 0},
                        "connections": {"header_timeout_s": 1.0, "keep_alive_s": 2.0, **connections}},
        "virtual_keys": [
            {"name": "models", "key_sha256": sha(KEYS["models"])},
            {"name": "feedback", "key_sha256": sha(KEYS["feedback"]), "scopes": ["models", "feedback"]},
            {"name": "analytics", "key_sha256": sha(KEYS["analytics"]), "scopes": ["analytics"]},
            {"name": "metrics", "key_sha256": sha(KEYS["metrics"]), "scopes": ["metrics"]},
            {"name": "revoked", "key_sha256": sha(KEYS["revoked"]), "scopes": ["*"], "disabled": True},
            {"name": "chat-only", "key_sha256": sha(KEYS["chat_only"]), "models": ["m-chat"]},
            # May ask for the auto name, but no model may serve it: whatever the router picks is refused.
            {"name": "auto-only", "key_sha256": sha(KEYS["auto_only"]), "models": ["router/auto"]},
        ],
    })


@dataclass
class Served:
    url: str
    host: str
    port: int
    gateway: Gateway
    feedback: list[dict[str, Any]] = field(default_factory=list)  # what reached the learner


@contextlib.contextmanager
def serving(settings: Settings, clickhouse: Any) -> Iterator[Served]:
    @contextlib.asynccontextmanager
    async def serve() -> AsyncIterator[Served]:
        sim = SimConfig(ttft_ms=0.0, tokens_per_s=0.0, reply_tokens=8,
                        faults=[FaultSpec("error", status=401, model="m-badkey")])
        async with running_sim(sim) as sim_url:
            gateway = Gateway(settings, Router(settings), UpstreamClient(sim_url))
            learned: list[dict[str, Any]] = []

            def feedback(payload: dict[str, Any]) -> dict[str, Any]:
                learned.append(payload)
                return {"event_id": "e", "session_id": payload.get("session_id"), "success": 1.0}

            app = create_app(gateway, feedback)
            app.router.routes.extend(analytics_routes(lambda: clickhouse, settings))
            metrics = RouterMetrics()
            app.router.routes.append(metrics_route(metrics))
            _ = Route  # the runtime wraps /metrics the same way; the guard sits in front of both
            async with http_server(app) as server:
                yield Served(server.url, server.host, server.port, gateway, learned)

    with in_background_loop(serve, what="security stack") as served:
        yield served


def main() -> None:
    """``python -m tests.security._stack``: serve the stack (no analytics store) in this process, print
    its URL, stop when stdin closes. Timing probes run the gateway apart from the measuring client so
    they do not share its GIL."""
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, serving(security_settings(tmp), None) as served:
        print(served.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
