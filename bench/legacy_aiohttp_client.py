"""The previous upstream client (pooled aiohttp session), kept only so bench_gateway.py can measure the
http1 pool against it in the same run (`--clients http1,aiohttp`). Not used by the gateway.

Original docstring: one pooled aiohttp session shared by every provider call.

Why aiohttp: a keep-alive pool with cheap per-request cost and incremental body reads, so stream chunks
are relayed as they arrive. Nagle's algorithm is switched off on every upstream socket (TCP_NODELAY),
otherwise small SSE writes wait ~40 ms for an ACK on loopback.

Timeouts per provider: connect (TCP + TLS), first byte (until the response headers), idle (between two
body chunks). Keys come from ``ProviderSettings.api_key()`` via ``upstream.auth_headers`` and are never
logged.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from yarl import URL

from streams.config import ProviderSettings
from streams.providers.client import UpstreamError
from streams.providers.upstream import resolve_base_url

# The gateway catches the project's UpstreamError, so this client raises that one.


def _nodelay_socket(addr_info: Any) -> socket.socket:
    """Socket factory for the connector: every upstream socket gets TCP_NODELAY before connecting."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setblocking(False)
    if family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class UpstreamResponse:
    """Status and headers of an upstream answer, with its body read incrementally."""

    __slots__ = ("status", "headers", "_resp", "_idle_timeout", "_provider")

    def __init__(
        self, resp: aiohttp.ClientResponse, idle_timeout: float | None, provider: str
    ) -> None:
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self._resp = resp
        self._idle_timeout = idle_timeout
        self._provider = provider

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; raises ``UpstreamError`` on idle timeout or a broken connection."""
        content = self._resp.content
        idle = self._idle_timeout
        try:
            while True:
                try:
                    if idle is None:
                        chunk = await content.readany()
                    else:
                        async with asyncio.timeout(idle):
                            chunk = await content.readany()
                except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                    raise UpstreamError(
                        "upstream stream idle timeout", kind="idle_timeout", provider=self._provider
                    ) from exc
                except aiohttp.ClientError as exc:
                    raise UpstreamError(
                        f"upstream connection broken: {type(exc).__name__}", kind="read", provider=self._provider
                    ) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            self._resp.release()

    async def read(self) -> bytes:
        """The whole body (non-streaming answers, error bodies)."""
        parts = [c async for c in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Drop the connection without reading the rest (client went away, failover)."""
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


class UpstreamClient:
    """One pooled session for all providers; ``sim_url`` resolves providers whose base_url is ``sim``."""

    def __init__(
        self,
        sim_url: str | None = None,
        *,
        max_connections: int = 1024,
        keepalive_s: float = 75.0,
    ) -> None:
        self.sim_url = sim_url
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        # Per provider: parsed URL and timeout objects, built once (no per-request churn).
        self._urls: dict[tuple[str, str], URL] = {}
        self._timeouts: dict[str, tuple[aiohttp.ClientTimeout, float | None, float | None]] = {}

    @property
    def started(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_s,
            ttl_dns_cache=300,
            socket_factory=_nodelay_socket,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Relay bodies as the provider sent them and never pay for decompression.
            headers={"accept-encoding": "identity"},
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
            # Provider calls never carry cookies; skipping the jar saves work on every request.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, provider: ProviderSettings, path: str) -> URL:
        key = (provider.name, path)
        url = self._urls.get(key)
        if url is None:
            url = URL(resolve_base_url(provider.base_url, self.sim_url) + path)
            self._urls[key] = url
        return url

    def _timeout(self, provider: ProviderSettings) -> tuple[aiohttp.ClientTimeout, float | None, float | None]:
        cached = self._timeouts.get(provider.name)
        if cached is None:
            # aiohttp's sock_read covers both the wait for headers and the gaps between chunks; give it the
            # larger of the two and enforce the smaller one ourselves, only when it differs.
            first_byte, idle = provider.first_byte_timeout_s, provider.idle_timeout_s
            read = max(first_byte, idle)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=provider.connect_timeout_s, sock_read=read)
            cached = (timeout, first_byte if first_byte < read else None, idle if idle < read else None)
            self._timeouts[provider.name] = cached
        return cached

    async def send(
        self,
        provider: ProviderSettings,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        stream: bool = False,
    ) -> UpstreamResponse:
        """POST ``body`` to the provider; returns once the response headers arrived.

        ``stream`` only documents intent: the body is always read incrementally via ``chunks()``.
        Raises ``UpstreamError`` when the provider cannot be reached or sends no headers in time.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout, first_byte, idle = self._timeout(provider)
        url = self.url(provider, path)
        try:
            if first_byte is None:
                resp = await self._session.post(url, data=body, headers=headers, timeout=timeout)
            else:
                async with asyncio.timeout(first_byte):
                    resp = await self._session.post(url, data=body, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            kind = "connect" if isinstance(exc, aiohttp.ConnectionTimeoutError) else "first_byte_timeout"
            raise UpstreamError(f"upstream {kind.replace('_', ' ')}", kind=kind, provider=provider.name) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"upstream unreachable: {type(exc).__name__}", kind="connect", provider=provider.name
            ) from exc
        except OSError as exc:
            raise UpstreamError(
                f"upstream unreachable: {exc.strerror or type(exc).__name__}", kind="connect", provider=provider.name
            ) from exc
        return UpstreamResponse(resp, idle, provider.name)
