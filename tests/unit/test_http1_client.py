"""The upstream client's HTTP/1.1 pool against a scripted server on 127.0.0.1.

Each test scripts what the server does per request (answer, stall, hang up) and checks what the gateway's
caller sees: bodies, reuse of keep-alive sockets, a transparent retry when a reused socket turns out dead,
and timeouts reported as ``UpstreamError`` kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from streams.config import ProviderSettings
from streams.providers.client import UpstreamClient, UpstreamError

Handler = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]  # -> keep the connection open


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.handler(len(self.requests) - 1, body, writer):
                    return
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        srv.close()


def provider(base_url: str, **kw: float) -> ProviderSettings:
    return ProviderSettings(name="p", dialect="openai_chat", base_url=base_url, **kw)


def fixed(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status, len(body), body)


async def echo(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
    w.write(fixed(b'{"n":%d,"got":"%s"}' % (i, body)))
    await w.drain()
    return True


async def test_keep_alive_reuses_one_connection_and_sends_headers() -> None:
    async with serving(echo) as (server, url), UpstreamClient() as client:
        p = provider(url)
        for i in range(3):
            resp = await client.send(p, "/chat/completions", b"x%d" % i, {"authorization": "Bearer k"})
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            assert await resp.read() == b'{"n":%d,"got":"x%d"}' % (i, i)
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"authorization: Bearer k\r\n" in first and b"content-length: 2\r\n" in first


async def test_chunked_stream_relayed_as_it_arrives() -> None:
    go_on = asyncio.Event()

    async def chunked(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await w.drain()
        await go_on.wait()  # the rest only once the client saw the first piece
        w.write(b"6\r\n world\r\n0\r\n\r\n")
        await w.drain()
        return True

    async with serving(chunked) as (server, url), UpstreamClient() as client:
        resp = await client.send(provider(url), "/chat/completions", b"{}", {}, stream=True)
        got = []
        async for chunk in resp.chunks():
            got.append(chunk)
            go_on.set()
        assert b"".join(got) == b"hello world" and got[0] == b"hello"
        # Fully read: the connection goes back to the pool and serves the next request.
        go_on.clear()
        resp = await client.send(provider(url), "/chat/completions", b"{}", {})
        go_on.set()
        assert await resp.read() == b"hello world"
        assert server.connections == 1


async def test_body_until_close_without_length() -> None:
    async def until_close(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await w.drain()
        return False

    async with serving(until_close) as (server, url), UpstreamClient() as client:
        resp = await client.send(provider(url), "/x", b"", {})
        assert await resp.read() == b"all of it"
        resp = await client.send(provider(url), "/x", b"", {})
        assert await resp.read() == b"all of it"
        assert server.connections == 2  # "connection: close" is honoured


async def test_server_dropping_idle_connection_is_retried_on_a_fresh_one() -> None:
    async def drop_second(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        if i == 1:
            # Keep-alive socket closed by the server as our next request arrives: no answer at all.
            w.transport.abort()
            return False
        return await echo(i, body, w)

    async with serving(drop_second) as (server, url), UpstreamClient() as client:
        p = provider(url)
        assert (await (await client.send(p, "/x", b"a", {})).read()).startswith(b'{"n":0')
        resp = await client.send(p, "/x", b"b", {})
        assert await resp.read() == b'{"n":2,"got":"b"}'
        assert server.connections == 2 and len(server.requests) == 3


async def test_idle_connection_closed_by_server_is_not_reused() -> None:
    async def answer_then_close(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        await echo(i, body, w)
        return False  # closes right after answering, although the answer did not say so

    async with serving(answer_then_close) as (server, url), UpstreamClient() as client:
        p = provider(url)
        for _ in range(2):
            assert (await (await client.send(p, "/x", b"a", {})).read()).startswith(b'{"n":')
            await asyncio.sleep(0.05)  # the FIN arrives while the socket sits in the pool
        assert server.connections == 2 and len(server.requests) == 2


async def test_no_retry_once_response_bytes_arrived() -> None:
    async def half(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        if i == 0:
            return await echo(i, body, w)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await w.drain()
        w.transport.abort()
        return False

    async with serving(half) as (server, url), UpstreamClient() as client:
        p = provider(url)
        await (await client.send(p, "/x", b"a", {})).read()
        resp = await client.send(p, "/x", b"b", {})
        with pytest.raises(UpstreamError) as err:
            await resp.read()
        assert err.value.kind == "read"
        assert len(server.requests) == 2  # the request was not sent a second time


async def test_first_byte_timeout() -> None:
    async def silent(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(1)
        return False

    async with serving(silent) as (_, url), UpstreamClient() as client:
        with pytest.raises(UpstreamError) as err:
            await client.send(provider(url, first_byte_timeout_s=0.1), "/x", b"", {})
        assert err.value.kind == "first_byte_timeout" and err.value.provider == "p"


async def test_idle_timeout_between_chunks() -> None:
    async def stall(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await asyncio.sleep(1)
        return False

    async with serving(stall) as (_, url), UpstreamClient() as client:
        resp = await client.send(provider(url, idle_timeout_s=0.1), "/x", b"", {}, stream=True)
        got = []
        with pytest.raises(UpstreamError) as err:
            async for chunk in resp.chunks():
                got.append(chunk)
        assert got == [b"first"] and err.value.kind == "idle_timeout"


async def test_connection_refused_is_a_connect_error() -> None:
    async with serving(echo) as (_, url):
        pass  # closed again: nothing listens on that port now
    async with UpstreamClient() as client:
        with pytest.raises(UpstreamError) as err:
            await client.send(provider(url), "/x", b"", {})
        assert err.value.kind == "connect"


async def test_header_injection_refused() -> None:
    async with serving(echo) as (server, url), UpstreamClient() as client:
        with pytest.raises(UpstreamError):
            await client.send(provider(url), "/x", b"", {"x-a": "1\r\nx-b: 2"})
        assert server.requests == []


async def test_abandoned_stream_closes_its_connection() -> None:
    async def long_stream(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await w.drain()
        await asyncio.sleep(0.2)
        return False

    async with serving(long_stream) as (server, url), UpstreamClient() as client:
        resp = await client.send(provider(url), "/x", b"", {}, stream=True)
        resp.close()
        resp2 = await client.send(provider(url), "/x", b"", {}, stream=True)
        resp2.close()
        assert server.connections == 2  # a half-read answer never goes back to the pool


async def test_connection_limit_queues_requests_instead_of_failing() -> None:
    async def slow_echo(i: int, body: bytes, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        return await echo(i, body, w)

    async with serving(slow_echo) as (server, url), UpstreamClient(max_connections=1) as client:
        p = provider(url)

        async def call(i: int) -> bytes:
            return await (await client.send(p, "/x", b"%d" % i, {})).read()

        bodies = await asyncio.gather(*(call(i) for i in range(4)))
        assert sorted(b.split(b'"got":')[1] for b in bodies) == [b'"0"}', b'"1"}', b'"2"}', b'"3"}']
        assert server.connections == 1
