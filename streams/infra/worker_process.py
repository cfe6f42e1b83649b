"""``weave-router up``'s second process: the router and learner agents, the sink and the ClickHouse
engine, apart from the gateway.

Why a process of its own: the gateway's event loop then shares neither the GIL nor the loop with the
agents' decoding, the sink's inserts and chDB (the process that opens chDB owns its data dir), and it
runs at a lower CPU priority, so on a busy core requests come first and the event path catches up
behind them (it has the broker and the gateway's journal to queue in). The gateway serves
``/v1/analytics`` by asking this process (``AnalyticsProxy``), which answers from the ClickHouse it owns.

The parent starts it with ``WorkerProcess.start``; it reads its settings from a file the parent wrote,
prints ``WEAVE_WORKER_URL <url>`` once it serves, and dies with the parent (PR_SET_PDEATHSIG, SIGKILL:
what it had not committed is read again by the next run, and the gateway's journal holds the rest).

    python -m streams.infra.worker_process SETTINGS_JSON --bootstrap HOST:PORT --worker-id ID [--embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hmac
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("weave.worker_process")

READY = "WEAVE_WORKER_URL"
# The worker's HTTP port is on loopback but any local process could reach it: it answers only requests
# carrying this run's token (handed over in the environment), i.e. the gateway's own proxy.
TOKEN_ENV = "WEAVE_WORKER_TOKEN"
TOKEN_HEADER = "x-weave-worker-token"
# CPU priority of the worker process relative to the gateway (nice increment): on a contended core the
# gateway gets ~10x the share, and the agents and sink use whatever it leaves.
NICE = 10
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Between fork and exec: the kernel kills this child when the parent dies (even by SIGKILL), so a
    # restarted service never finds the old one holding chDB's lock.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.nice(NICE)


class WorkerProcess:
    """The parent's handle on the child: start it, read its URL, stop it (drain) or let it die."""

    def __init__(self, settings_json: str, data_dir: Path, *, bootstrap_servers: str, worker_id: str,
                 embedded: bool, sim_url: str | None = None) -> None:
        self.settings_path = data_dir / "worker-settings.json"
        self.settings_json = settings_json
        self.bootstrap_servers = bootstrap_servers
        self.worker_id = worker_id
        self.embedded = embedded
        self.sim_url = sim_url
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = secrets.token_urlsafe(32)

    async def start(self, timeout_s: float = 120.0) -> str:
        self.settings_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.settings_json)
        cmd = [sys.executable, "-m", "streams.infra.worker_process", str(self.settings_path),
               "--bootstrap", self.bootstrap_servers, "--worker-id", self.worker_id]
        if self.embedded:
            cmd.append("--embedded")
        if self.sim_url:
            cmd += ["--sim-url", self.sim_url]
        # stderr is the parent's: the operator sees both processes' warnings in one place.
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            # Own process group: a terminal's Ctrl-C reaches the parent only, which stops us in order.
            process_group=0, env={**os.environ, TOKEN_ENV: self.token},
        )
        self.url = await asyncio.wait_for(asyncio.to_thread(self._read_url), timeout_s)
        return self.url

    def _read_url(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(READY + " "):
                return line.split(" ", 1)[1]
        raise RuntimeError(f"the worker process exited (code {self.process.wait()}) before serving")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: the child drains (the sink writes and commits what it read) and exits."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if proc.stdout is not None:
            proc.stdout.close()


def _connect_clickhouse(settings: Any, timeout_s: float) -> Any:
    """chDB takes its data dir's lock when opened; a previous run's child may still be exiting."""
    from streams.storage.clickhouse import connect_configured

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return connect_configured(settings)
        except Exception as exc:
            if time.monotonic() > deadline or "lock" not in str(exc).lower():
                raise
            time.sleep(0.2)


async def _serve(args: argparse.Namespace) -> None:
    from streams.agents.service import StreamServices, start_streams
    from streams.analytics.api import analytics_routes
    from streams.config import Settings
    from streams.infra.health import create_health_app
    from streams.infra.serve import HttpServer
    from streams.infra.stack import StackState
    from streams.storage.clickhouse import is_embedded, redact_url
    from streams.storage.migrations import migrate

    settings = Settings.model_validate(json.loads(Path(args.settings).read_text()))
    state = StackState()
    client = await asyncio.to_thread(_connect_clickhouse, settings, 60.0)
    streams: StreamServices | None = None
    server: HttpServer | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        applied = await asyncio.to_thread(migrate, client)
        kind = "embedded chDB" if is_embedded(settings.clickhouse_url) else "ClickHouse server"
        detail = f"{kind} at {redact_url(settings.clickhouse_url)} (worker process {os.getpid()})"
        state.set("clickhouse", True, detail + (f"; applied migrations {', '.join(applied)}" if applied else ""))
        streams = await start_streams(
            settings, args.bootstrap, embedded=args.embedded, clickhouse=client, sim_url=args.sim_url,
            worker_id=args.worker_id, roles=("router", "learner"), with_emitter=False,
        )
        running = streams

        def health() -> dict[str, Any]:
            comps = {c.name: {"ok": c.ok, "detail": c.detail} for c in state.components.values()}
            for name, s in running.health().items():
                comps[name] = {"ok": s == "ok", "detail": s}
            return {"status": "ok" if all(c["ok"] for c in comps.values()) else "degraded", "components": comps}

        app = create_health_app(health)
        app.router.routes.extend(analytics_routes(lambda: client, settings))
        server = HttpServer(TokenGuard(app, os.environ.get(TOKEN_ENV, "")), "127.0.0.1", 0)
        await server.start()
        print(f"{READY} {server.url}", flush=True)
        await stop.wait()
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
        if streams is not None:
            await streams.stop()
        with contextlib.suppress(Exception):
            client.close()


class TokenGuard:
    """ASGI: only requests with the run's token reach ``app``; anything else gets a JSON 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(TOKEN_HEADER.encode(), b"")
            if not self.token or not hmac.compare_digest(given, self.token):
                body = b'{"error":{"type":"authentication_error","message":"internal endpoint of weave-router"}}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--sim-url")
    args = parser.parse_args(argv)
    from streams.config import Settings
    from streams.reliability.redact import Redactor, configure_logging

    # This process calls providers too (the router agent in execute mode): its logs redact their keys.
    configure_logging(Redactor.from_settings(Settings.model_validate(json.loads(Path(args.settings).read_text()))))
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(args))


if __name__ == "__main__":
    main()


class AnalyticsProxy:
    """The gateway's ``/v1/analytics`` answered by the worker process (which owns ClickHouse), and the
    worker's component states for the gateway's ``/health`` (refreshed in the background: a health
    probe must not wait on another process)."""

    def __init__(self, worker: WorkerProcess, *, refresh_s: float = 1.0) -> None:
        import httpx

        self.worker = worker
        self.refresh_s = refresh_s
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0),
                                        headers={TOKEN_HEADER: worker.token})
        self.components: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="weave-worker-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.client.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    async def refresh(self) -> None:
        if not self.worker.alive():
            self.components = {"worker_process": {"ok": False, "detail": "the worker process exited"}}
            return
        try:
            resp = await self.client.get(f"{self.worker.url}/health", timeout=5.0)
            comps = dict(resp.json().get("components") or {})
        except Exception as exc:
            comps = {"worker_process": {"ok": False, "detail": f"unreachable: {type(exc).__name__}"}}
        else:
            comps["worker_process"] = {"ok": True, "detail": f"pid {self.worker.pid} at {self.worker.url}"}
        self.components = comps

    def routes(self) -> list[Any]:
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        from streams.analytics.api import PREFIX

        async def forward(request: Request) -> Response:
            url = f"{self.worker.url}{request.url.path}"
            try:
                resp = await self.client.get(url, params=request.query_params)
            except Exception as exc:
                message = f"the worker process did not answer: {type(exc).__name__}"
                return JSONResponse({"error": {"type": "storage_error", "message": message}}, status_code=503)
            return Response(resp.content, status_code=resp.status_code,
                            media_type=resp.headers.get("content-type", "application/json"))

        return [Route(PREFIX, forward, methods=["GET"]), Route(PREFIX + "/{view}", forward, methods=["GET"])]
