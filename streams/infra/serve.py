"""Run an ASGI app with uvicorn inside the current event loop, next to the Faust workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from streams.ingress.connections import ConnectionLimits


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the CLI owns SIGINT/SIGTERM for the whole process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn.Server on a pre-bound socket; ``serve_forever`` runs until ``stop``.

    The protocol is the guarded httptools one (header timeout and size limit, connection caps, JSON
    refusals); its limits come from the app's gateway settings (``reliability.connections``) unless given.
    """

    def __init__(self, app: Any, host: str, port: int, *, log_level: str = "warning",
                 limits: ConnectionLimits | None = None) -> None:
        # The app's settings decide the limits.
        from streams.ingress.app import connection_limits, listen_socket, uvicorn_config

        # Bound before starting so port 0 resolves to a real port we can print and test against.
        self.sock = listen_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        limits = limits or connection_limits(app)
        # Less work per response: no Server/Date headers, no X-Forwarded parsing (we listen on loopback).
        config = uvicorn_config(app, limits=limits, loop="none", lifespan="auto", log_level=log_level,
                                server_header=False, date_header=False, proxy_headers=False)
        self.server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        for _ in range(500):  # bounded: 5 s
            if self.server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        raise RuntimeError("HTTP server did not start in 5 s")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=10)
