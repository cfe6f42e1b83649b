"""Raw ASGI helpers for the hot path: read a bounded body, send a whole response, read headers.

Endpoints are plain ASGI callables (no Request/Response objects) so a request costs a few dict
operations on top of uvicorn's parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]
T = TypeVar("T")

JSON_HEADERS: RawHeaders = [(b"content-type", b"application/json")]
SSE_HEADERS: RawHeaders = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body too large: the limit is {limit} bytes")
        self.limit = limit


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


class BodyTimeout(Exception):
    """The client did not finish sending its body in time (slow or stalled client): answer 408."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"request body not received within {timeout_s:g} s")
        self.timeout_s = timeout_s


# Bytes that may not appear in a header value (RFC 9110: no CTLs but HTAB); uvicorn refuses to write
# them and drops the connection, after the upstream call was already paid for.
_CTL = "".join(chr(c) for c in (*range(0, 9), *range(10, 32), 127))
_DROP_CTL = str.maketrans("", "", _CTL)
MAX_HEADER_TEXT = 256


def header_text(value: str, limit: int = MAX_HEADER_TEXT) -> str:
    """``value`` made safe for a response or upstream header: control characters (CR, LF, NUL...)
    dropped, characters outside latin-1 replaced by ``?``, at most ``limit`` characters. Deterministic,
    so a session id cleaned here is the same on every request of the session."""
    if value.isascii() and value.isprintable() and len(value) <= limit:
        return value  # the common case, no copy
    out = value.translate(_DROP_CTL)
    if not out.isascii():
        out = out.encode("latin-1", "replace").decode("latin-1")
    return out[:limit]


def header_safe(value: str) -> bool:
    """Can ``value`` be sent as a header value as it is?"""
    return header_text(value, limit=1 << 30) == value


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a dict of lower-case names (ASGI already lower-cases; latin-1 per HTTP)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(
    receive: Receive, content_length: str | None, limit: int, timeout_s: float | None = None
) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes (before reading, when declared).

    ``timeout_s`` bounds the whole read: a client that trickles its body (slowloris) must not hold a
    connection and a buffer forever. Raises ``BodyTimeout``.
    """
    if timeout_s is None:
        return await _read_body(receive, content_length, limit)
    # A bare timer handle, not ``asyncio.timeout``: this runs on every request and the context manager
    # costs ~10x more (tens of microseconds under load).
    task = asyncio.current_task()
    assert task is not None
    fired: list[bool] = []

    def expire() -> None:
        fired.append(True)
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await _read_body(receive, content_length, limit)
    except asyncio.CancelledError:
        if not fired:
            raise
        task.uncancel()
        raise BodyTimeout(timeout_s) from None
    finally:
        handle.cancel()


async def _read_body(receive: Receive, content_length: str | None, limit: int) -> bytes:
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            declared = 0
        if declared > limit:
            raise BodyTooLarge(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


# Above this size a body's parse (pure Python, ~1 µs per value) runs in a worker thread: the event loop
# keeps serving others (the thread yields the GIL every few ms) instead of stalling for seconds.
OFFLOAD_PARSE_BYTES = 256 * 1024


async def parse_off_loop(fn: Callable[[Any], T], arg: Any, size: int, threshold: int = OFFLOAD_PARSE_BYTES) -> T:
    """``fn(arg)`` inline for a small body (a thread hop costs more than the parse), in a thread for a big one."""
    if size <= threshold:
        return fn(arg)
    return await asyncio.to_thread(fn, arg)


async def send_bytes(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    """One complete response with a content-length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
