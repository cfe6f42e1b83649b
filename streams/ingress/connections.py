"""Connection hygiene under uvicorn's httptools protocol: slow and greedy clients cannot hold the door.

``guarded_protocol(limits)`` returns a subclass of uvicorn's ``HttpToolsProtocol`` (pass it as
``uvicorn.Config(http=...)``) that adds what uvicorn leaves out for httptools:

- a header timeout: the request line and headers must arrive within ``header_timeout_s`` of the
  connection opening (or of the request's first byte on a kept-alive connection); else 408 and close,
  or a silent close when the client never sent a byte. uvicorn arms its keep-alive timer only after a
  response, so a connection that never speaks was held forever;
- a header size limit: more than ``max_header_bytes`` of request line and headers is a 431 (httptools
  itself has none: 50 MB of headers were served);
- caps on open connections, in all (503) and per client address (429), answered when the request's
  headers are in, so the client reads a proper response rather than a reset;
- the parser's 400 (and the above) as JSON in the caller's dialect, by path, instead of plain text.

Each ``guarded_protocol`` call makes a class with its own counters: one per server, no global state.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from streams.ingress.errors import dialect_for_path, error_body


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    keep_alive_s: float = 30.0
    max_connections: int = 4096
    max_connections_per_client: int = 1024

    @property
    def keep_alive_whole_s(self) -> int:
        """uvicorn takes whole seconds."""
        return max(1, math.ceil(self.keep_alive_s))

    @classmethod
    def from_settings(cls, s: Any) -> ConnectionLimits:
        return cls(s.header_timeout_s, s.max_header_bytes, s.keep_alive_s, s.max_connections,
                   s.max_connections_per_client)


class ConnectionCounts:
    """Open connections of one server, in all and per client address."""

    __slots__ = ("total", "by_client")

    def __init__(self) -> None:
        self.total = 0
        self.by_client: Counter[str] = Counter()

    def add(self, client: str) -> None:
        self.total += 1
        self.by_client[client] += 1

    def remove(self, client: str) -> None:
        self.total -= 1
        left = self.by_client[client] - 1
        if left > 0:
            self.by_client[client] = left
        else:
            del self.by_client[client]


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    counts: ClassVar[ConnectionCounts]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer = ""
        self._counted = False
        self._in_headers = True  # waiting for (or reading) a request line and headers
        self._raw_header_bytes = 0  # bytes received while in headers: bounds httptools' own buffer
        self._got_bytes = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    # --- connection ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = self.client[0] if self.client else ""
        counts, limits = self.counts, self.limits
        counts.add(self._peer)
        self._counted = True
        if counts.total > limits.max_connections:
            self._refusal = (503, f"the router is at its limit of {limits.max_connections} open connections; "
                                  "retry shortly")
        elif counts.by_client[self._peer] > limits.max_connections_per_client:
            self._refusal = (429, f"too many open connections from this client (the limit is "
                                  f"{limits.max_connections_per_client}); reuse connections or retry shortly")
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.counts.remove(self._peer)
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._in_headers:
            self._raw_header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            # uvicorn logs each of these at WARNING: one line per garbage request is a log flood.
            self.send_400_response("")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if (self._in_headers and self._raw_header_bytes > self.limits.max_header_bytes
                and not self.transport.is_closing()):
            self._refuse(431, f"request headers too large: the limit is {self.limits.max_header_bytes} bytes")

    # --- parser callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._in_headers = False
        # Bytes received so far bound the headers' size (they may include body bytes of the same read):
        # only past the limit is the exact size worth computing. No per-header work on the hot path.
        limit = self.limits.max_header_bytes
        if self._raw_header_bytes > limit and self._exact_header_bytes() > limit:
            self._refuse(431, f"request headers too large: the limit is {self.limits.max_header_bytes} bytes")
            return
        self._raw_header_bytes = 0
        if self._refusal is not None:
            status, message = self._refusal
            self._refuse(status, message, retry_after=True)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.transport.is_closing() or self.cycle is None:
            return  # refused at the headers: no request cycle to feed
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.transport.is_closing() or self.cycle is None:
            return
        super().on_message_complete()
        self._in_headers = True
        self._raw_header_bytes = 0

    # --- refusals ----------------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "malformed HTTP request: the request line or headers could not be parsed")

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if not self._got_bytes or (self.cycle is not None and not self.cycle.response_complete):
            self.transport.close()  # never spoke (or a response is still going out): nothing to answer
            return
        self._refuse(408, f"request headers not received within {self.limits.header_timeout_s:g} s")

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _exact_header_bytes(self) -> int:
        return len(getattr(self, "url", b"")) + sum(len(n) + len(v) + 4 for n, v in self.headers or ())

    def _path(self) -> str:
        url = getattr(self, "url", b"") or b""
        try:
            return (httptools.parse_url(url).path or b"/").decode("latin-1")
        except (httptools.HttpParserInvalidURLError, ValueError):
            return url.split(b"?", 1)[0].decode("latin-1", "replace")

    def _refuse(self, status: int, message: str, *, retry_after: bool = False) -> None:
        """Answer ``status`` in the path's dialect and close: the connection is not reused after it."""
        if self.transport.is_closing():
            return
        self._disarm_header_timer()
        body = error_body(dialect_for_path(self._path()), status, message)
        head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n"]
        if retry_after:
            head.append(b"retry-after: 1\r\n")
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits | None = None) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for one server: its limits and its own connection counts."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"limits": limits or ConnectionLimits(), "counts": ConnectionCounts()})
