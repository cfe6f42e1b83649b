"""Helpers the test folders share: a service run in a background event loop, SSE frames, and what a
test does when something it needs is not installed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

T = TypeVar("T")


def missing(why: str) -> NoReturn:
    """Something a test needs is not there: in CI a failure (``./dev test`` installs everything and CI
    lays ``../shared`` beside the checkout), elsewhere a skip."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@contextlib.contextmanager
def in_background_loop(serve: Callable[[], contextlib.AbstractAsyncContextManager[T]], *, what: str,
                       start_timeout_s: float = 20.0) -> Iterator[T]:
    """Enter ``serve()`` in a new event loop on a daemon thread and yield what it yields; leave it when
    the block ends. A failure to start is raised here, with the cause."""
    ready = threading.Event()
    box: list[Any] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        try:
            async with serve() as value:
                box.append(value)
                ready.set()
                await stop[0].wait()
        except BaseException as exc:
            box.append(exc)
            ready.set()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(start_timeout_s)
    if not box or isinstance(box[0], BaseException):
        raise RuntimeError(f"{what} failed to start") from (box[0] if box else None)
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(15)
        loop.close()


@contextlib.asynccontextmanager
async def http_server(app: Any) -> AsyncIterator[Any]:
    """The production HTTP server (``HttpServer``) on a free loopback port."""
    from streams.infra.serve import HttpServer

    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def sse_frames(raw: bytes) -> list[tuple[str | None, str]]:
    """(event, data) per server-sent event of ``raw`` (multi-line data joined)."""
    frames = []
    for block in raw.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            frames.append((event, "\n".join(data)))
    return frames
