"""Preview the dashboard without the whole service: the analytics API over a store filled with sample rows.

    python -m streams.analytics.preview /tmp/preview-ch 8799     # then open http://127.0.0.1:8799/dashboard

Also used by the tests: :func:`analytics_app` builds the Starlette app, :func:`serving` runs any ASGI
app with uvicorn in a background thread on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from streams.analytics.api import analytics_routes
from streams.analytics.metrics import RouterMetrics, metrics_route


def analytics_app(client: Client, settings: Any = None, metrics: RouterMetrics | None = None) -> Starlette:
    routes = analytics_routes(lambda: client, settings)
    if metrics is not None:
        routes.append(metrics_route(metrics))
    return Starlette(routes=routes)


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` in a thread on a free port; yields the base URL; stops it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name="analytics-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("server did not start")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv: list[str]) -> None:
    from streams.analytics import sample
    from streams.config import load_settings
    from streams.storage.clickhouse import connect
    from streams.storage.migrations import migrate

    directory = argv[0] if argv else "/tmp/weave-analytics-preview"
    port = int(argv[1]) if len(argv) > 1 else 8799
    client = connect(f"chdb://{directory}", "weave")
    migrate(client)
    if not client.query("SELECT count() FROM traces").result_rows[0][0]:
        sample.insert(client, sample.sample_data(sample.utc_now(), sessions=60))
    app = analytics_app(client, load_settings(env={}))
    print(f"dashboard: http://127.0.0.1:{port}/dashboard")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
