"""A lean keep-alive HTTP/1.1 client pool on asyncio protocols, parsed with ``httptools``.

Why not aiohttp: the gateway's upstream call is always the same shape (one POST with a ready-made body,
response relayed as it arrives), and a general client spends ~0.4 ms CPU per request on features the
gateway never uses (cookies, redirects, multidict headers, stream readers, tracing hooks). Here a request
is one ``transport.write`` of a pre-built head plus the body, and the response is parsed in C by
``httptools`` straight into a small per-connection buffer.

Rules the pool keeps:
- connections are reused LIFO (the warmest socket first) and dropped after ``keepalive_s`` idle, when the
  server closed them, or when anything arrives on them while idle;
- a request that dies on a *reused* connection before a single response byte arrived is retried once on
  a fresh connection: the server closed the keep-alive socket while our request was on the wire, so it
  never saw it (the same rule browsers and httpx apply);
- TCP_NODELAY on every socket (small SSE writes would otherwise wait ~40 ms for an ACK);
- reading pauses when the consumer lags (``_HIGH_WATER`` buffered bytes) and resumes once it caught up.

Failures are raised as ``Http1Error`` with a ``kind``: connect | first_byte_timeout | idle_timeout | read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 1 << 20  # buffered body bytes before we stop reading from the socket
_LOW_WATER = 1 << 16


class Http1Error(Exception):
    """One step of an HTTP exchange failed; ``kind`` says which."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class Headers(dict[str, str]):
    """Response headers with lower-case names; lookups are case-insensitive. Repeated names are joined."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key.lower() if isinstance(key, str) else key)


def _fire_timeout(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class Connection(asyncio.Protocol):
    """One keep-alive socket: parser callbacks fill ``status``/``headers``/``buffer`` for the current answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Http1Pool) -> None:
        self.loop = loop
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.in_flight = False
        self.idle_since = 0.0
        self.origin_key: tuple[str, str, int] = ("", "", 0)
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers = Headers()
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.received = False  # any byte of the current response
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: str | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.in_flight:
            # Nothing was asked: a late 408 or garbage. The socket cannot be trusted for the next request.
            self.lost = True
            self._close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = f"malformed response: {exc}"
            self.lost = True
            self._close()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        # No length and not chunked: the body ran until the server closed the socket.
        if (
            self.in_flight and self.headers_done and not self.complete
            and "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "")
        ):
            self.complete = True
        self._wake()

    def pause_writing(self) -> None:  # request bodies are written in one go; the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # --- httptools callbacks --------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        prev = dict.get(self.headers, key)
        dict.__setitem__(self.headers, key, val if prev is None else f"{prev}, {val}")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # 1xx interim answer (we never send Expect, but a server may still send 103): wait for the real one.
            dict.clear(self.headers)
            return
        self.status = status
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.buffer.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()

    # --- used by the pool and the response --------------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until the parser made progress or the socket closed; ``TimeoutError`` after ``timeout``."""
        fut = self.loop.create_future()
        self._waiter = fut
        handle = self.loop.call_later(timeout, _fire_timeout, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    def take(self) -> bytes:
        """Everything buffered so far, as one piece."""
        buf = self.buffer
        data = buf.popleft() if len(buf) == 1 else b"".join(buf)
        buf.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class Origin:
    """Where requests go: one pool key, with the parts of the request head that never change."""

    __slots__ = ("scheme", "host", "port", "key", "prefix", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme: {url!r}")
        self.scheme = parts.scheme
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        default = 443 if self.tls else 80
        self.port = parts.port or default
        self.key = (self.scheme, self.host, self.port)
        host_header = self.host if ":" not in self.host else f"[{self.host}]"
        if self.port != default:
            host_header += f":{self.port}"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self.prefix = (
            f"POST {path} HTTP/1.1\r\nhost: {host_header}\r\naccept-encoding: identity\r\n".encode("latin-1")
        )


def build_head(origin: Origin, headers: Mapping[str, str], body_len: int) -> bytes:
    """Request line and headers; header values with line breaks are refused (header injection)."""
    lines = []
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise Http1Error(f"invalid header {name!r}", "connect")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {body_len}\r\n\r\n")
    return origin.prefix + "".join(lines).encode("utf-8")


class Http1Pool:
    """Keep-alive connections per origin, at most ``max_connections`` open in total."""

    def __init__(self, *, max_connections: int = 1024, keepalive_s: float = 75.0) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        return self._ssl

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        self._open += 1  # the caller made sure there is room
        loop = asyncio.get_running_loop()
        try:
            coro = loop.create_connection(
                lambda: Connection(loop, self), origin.host, origin.port,
                ssl=self._ssl_context() if origin.tls else None,
                server_hostname=origin.host if origin.tls else None,
            )
            if timeout is None:
                _, conn = await coro
            else:
                async with asyncio.timeout(timeout):
                    _, conn = await coro
        except TimeoutError as exc:
            self._discarded()
            raise Http1Error("upstream connect timeout", "connect") from exc
        except (OSError, ssl.SSLError) as exc:
            self._discarded()
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise Http1Error(f"upstream unreachable: {reason}", "connect") from exc
        except BaseException:
            self._discarded()
            raise
        return conn

    def _discarded(self) -> None:
        self._open -= 1
        self._notify()

    def _notify(self) -> None:
        """A connection closed or went idle: the longest waiter for room in the pool looks again."""
        while self._slot_waiters:
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def _acquire_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            t = conn.transport
            if conn.lost or t is None or t.is_closing() or now - conn.idle_since > self.keepalive_s:
                self._close(conn)
                continue
            return conn
        return None

    def _evict_idle(self) -> bool:
        """At the connection limit: close the longest-idle connection of any origin to make room."""
        oldest: list[Connection] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is None:
            return False
        self._close(oldest.pop(0))
        return True

    async def _checkout(self, origin: Origin, connect_timeout: float | None, reuse: bool) -> tuple[Connection, bool]:
        """An idle connection to ``origin`` (when ``reuse``) or a new one, waiting while the pool is full."""
        while True:
            conn = self._acquire_idle(origin) if reuse else None
            if conn is not None:
                return conn, True
            if self._open < self.max_connections or self._evict_idle():
                return await self._connect(origin, connect_timeout), False
            fut = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._notify()  # woken just as we were cancelled: pass the turn on
                raise

    def _close(self, conn: Connection) -> None:
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()
        conn.lost = True
        self._discarded()

    def release(self, conn: Connection) -> None:
        """Back to the pool when the answer was read to its end and both sides keep the socket; else close."""
        if not conn.in_flight:
            return
        conn.in_flight = False
        if conn.complete and conn.keep_alive and not conn.lost and not self._closed and conn.error is None:
            conn.idle_since = time.monotonic()
            conn._reset()
            idle = self._idle.get(conn.origin_key)
            if idle is not None:
                idle.append(conn)
                self._notify()
                return
        self._close(conn)

    def discard(self, conn: Connection) -> None:
        """Drop a connection in the middle of an answer (consumer went away)."""
        if not conn.in_flight:
            return
        conn.in_flight = False
        conn.abort()
        self._discarded()

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes,
        *,
        connect_timeout: float | None,
        first_byte_timeout: float | None,
    ) -> Connection:
        """Send one request; returns the connection once the response status and headers arrived."""
        if self._closed:
            raise Http1Error("upstream client closed", "connect")
        self._idle.setdefault(origin.key, [])
        for attempt in (0, 1):
            conn, reused = await self._checkout(origin, connect_timeout, reuse=attempt == 0)
            conn.origin_key = origin.key
            conn.in_flight = True
            transport = conn.transport
            assert transport is not None
            try:
                if len(body) < 16384:
                    transport.write(head + body)
                else:
                    transport.writelines((head, body))
                while not (conn.headers_done or conn.lost or conn.error):
                    await conn.wait(first_byte_timeout)
            except TimeoutError as exc:
                self.discard(conn)
                raise Http1Error("upstream first byte timeout", "first_byte_timeout") from exc
            except BaseException:
                self.discard(conn)
                raise
            if conn.headers_done:
                return conn
            stale = reused and not conn.received and conn.error is None
            error = conn.error or "ServerDisconnectedError"
            self.discard(conn)
            if stale and attempt == 0:
                continue  # the server closed the idle socket as we reused it: it never saw this request
            raise Http1Error(f"upstream unreachable: {error}", "connect")
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                self._close(idle.pop())
        self._idle.clear()

