"""Running the simulator: in the caller's event loop, in a background thread, or until cancelled (CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from starlette.applications import Starlette

from streams.providers.sim.app import SimState, create_sim_app
from streams.providers.sim.config import SimConfig

_log = logging.getLogger(__name__)


def _uvicorn_config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",  # run in whichever loop the caller already has
        http="httptools",
        lifespan="off",
        log_level=log_level,
        log_config=None,  # the process's own logging set-up applies (no handlers of uvicorn's)
        access_log=False,
        timeout_keep_alive=30,
        # Hanging requests (timeout faults) must not hold shutdown for long.
        timeout_graceful_shutdown=1,
    )


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        # Embedded in tests or in the gateway process: leave signals to the host.
        pass


def _bound_url(server: uvicorn.Server) -> str:
    for s in server.servers:
        for sock in s.sockets:
            host, port = sock.getsockname()[:2]
            return f"http://{host}:{port}"
    raise RuntimeError("simulator did not bind a socket")


async def _start(server: uvicorn.Server) -> asyncio.Task[None]:
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces the start-up error (port in use, ...)
            raise RuntimeError("simulator stopped during start-up")
        await asyncio.sleep(0.005)
    return task


@contextlib.asynccontextmanager
async def running_sim(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Run the simulator as a task of the current event loop; yields its base URL (no ``/v1``).

    Clients in the same loop must be async (a sync client would block the server); use
    ``running_sim_thread`` for sync clients.
    """
    app = create_sim_app(config or SimConfig())
    server = _Server(_uvicorn_config(app, host, port, log_level))
    task = await _start(server)
    try:
        yield _bound_url(server)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)


def sim_state(app: Starlette) -> SimState:
    """The live state (skills, faults, stats) of an app built by ``create_sim_app``."""
    state: SimState = app.state.sim
    return state


@contextlib.contextmanager
def running_sim_thread(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[str]:
    """Run the simulator in a background thread with its own event loop; yields its base URL."""
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    url: list[str] = []
    errors: list[BaseException] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        try:
            async with running_sim(config, host, port, log_level) as base_url:
                url.append(base_url)
                ready.set()
                await stop[0].wait()
        except BaseException as exc:  # reported to the caller's thread
            errors.append(exc)
            ready.set()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="weave-sim", daemon=True)
    thread.start()
    ready.wait(timeout=10)
    if errors or not url:
        thread.join(timeout=5)
        raise RuntimeError("simulator failed to start") from (errors[0] if errors else None)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=10)
        loop.close()


async def serve_sim(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled (``weave-router sim``). ``on_ready`` gets the base URL once bound (with
    port 0 the caller cannot know it in advance); without it the URL is logged."""
    async with running_sim(config, host, port, log_level) as base_url:
        if on_ready is not None:
            on_ready(base_url)
        else:
            _log.info("weave-router simulated provider listening on %s", base_url)
        await asyncio.Event().wait()
