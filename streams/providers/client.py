"""The upstream HTTP client: one keep-alive connection pool shared by every provider call.

Built on ``streams.providers.http1`` (asyncio protocols + httptools) rather than a general HTTP client:
the gateway's upstream call is always one POST whose answer is relayed as it arrives, and a general client
cost ~0.4 ms CPU per request, more than the rest of the gateway. Nagle's algorithm is switched off on
every upstream socket (TCP_NODELAY), otherwise small SSE writes wait ~40 ms for an ACK on loopback.

Timeouts per provider: connect (TCP + TLS), first byte (from the request being written until the response
headers), idle (between two body chunks). Keys come from ``ProviderSettings.api_key()`` via
``upstream.auth_headers`` and are never logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from streams.config import ProviderSettings
from streams.providers.http1 import Connection, Headers, Http1Error, Http1Pool, Origin, build_head
from streams.providers.upstream import resolve_base_url


class UpstreamError(Exception):
    """The provider could not be reached or stopped answering; ``kind`` says which step failed."""

    def __init__(self, message: str, *, kind: str = "connect", provider: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind  # connect | first_byte_timeout | idle_timeout | read
        self.provider = provider


class UpstreamResponse:
    """Status and headers of an upstream answer, with its body read incrementally."""

    # ``_resp`` (the pooled connection), ``_idle_timeout`` and ``_provider`` are what a wrapping subclass
    # passes back to ``__init__`` (the integration tests' recording client does).
    __slots__ = ("status", "headers", "_resp", "_pool", "_idle_timeout", "_provider")

    def __init__(self, conn: Connection, idle_timeout: float | None, provider: str) -> None:
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._resp = conn
        self._pool = conn.pool
        self._idle_timeout = idle_timeout
        self._provider = provider

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; raises ``UpstreamError`` on idle timeout or a broken connection.

        Whatever is buffered when the consumer asks is handed over as one piece, so a consumer that falls
        behind catches up in fewer, larger writes.
        """
        conn, pool, idle = self._resp, self._pool, self._idle_timeout
        try:
            while True:
                if conn.buffer:
                    yield conn.take()
                    continue
                if conn.complete:
                    return
                if conn.lost or conn.error:
                    raise UpstreamError(
                        f"upstream connection broken: {conn.error or 'ServerDisconnectedError'}",
                        kind="read", provider=self._provider,
                    )
                try:
                    await conn.wait(idle)
                except TimeoutError as exc:
                    raise UpstreamError(
                        "upstream stream idle timeout", kind="idle_timeout", provider=self._provider
                    ) from exc
        finally:
            if conn.complete and not conn.buffer:
                pool.release(conn)
            else:
                pool.discard(conn)

    async def read(self) -> bytes:
        """The whole body (non-streaming answers, error bodies)."""
        parts = [c async for c in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Drop the connection without reading the rest (client went away, failover)."""
        self._pool.discard(self._resp)

    def release(self) -> None:
        """Back to the pool if the body was read to the end, else drop the connection."""
        self._pool.release(self._resp)


class UpstreamClient:
    """One pool for all providers; ``sim_url`` resolves providers whose base_url is ``sim``."""

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
        self._pool: Http1Pool | None = None
        # Per (provider, path): parsed URL with its constant request-head prefix, built once.
        self._origins: dict[tuple[str, str], Origin] = {}

    @property
    def started(self) -> bool:
        return self._pool is not None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = Http1Pool(max_connections=self._max_connections, keepalive_s=self._keepalive_s)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, provider: ProviderSettings, path: str) -> str:
        return resolve_base_url(provider.base_url, self.sim_url, provider.dialect) + path

    def _origin(self, provider: ProviderSettings, path: str) -> Origin:
        key = (provider.name, path)
        origin = self._origins.get(key)
        if origin is None:
            origin = Origin(self.url(provider, path))
            self._origins[key] = origin
        return origin

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
        pool = self._pool
        if pool is None:
            await self.start()
            pool = self._pool
            assert pool is not None
        try:
            origin = self._origin(provider, path)
            conn = await pool.request(
                origin, build_head(origin, headers, len(body)), body,
                connect_timeout=provider.connect_timeout_s, first_byte_timeout=provider.first_byte_timeout_s,
            )
        except Http1Error as exc:
            raise UpstreamError(exc.message, kind=exc.kind, provider=provider.name) from exc
        except ValueError as exc:
            raise UpstreamError(f"bad upstream URL: {exc}", kind="connect", provider=provider.name) from exc
        return UpstreamResponse(conn, provider.idle_timeout_s, provider.name)


__all__ = ["Headers", "UpstreamClient", "UpstreamError", "UpstreamResponse"]
