"""The relay of a streamed answer: the provider's SSE to the caller as it arrives.

Same dialect: the provider's bytes pass through and a side scanner picks usage and errors out of
them. Another dialect: provider SSE -> canonical events (its ``StreamParser``) -> the caller's SSE
(its ``StreamWriter``), event by event. Either way a stream that breaks ends with an error event in
the caller's dialect, and a caller that hangs up stops the upstream read (the provider stops billing).
The request's cost goes into the final usage event and into a closing SSE comment where the dialect's
clients allow (``streams.ingress.stream_cost``): no header can carry it once the first byte is out.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any

from streams.ingress.exchange import Answer, Exchange
from streams.ingress.http import SSE_HEADERS, Receive, Send
from streams.ingress.stream_cost import cost_comment, tag_usage, usage_marker
from streams.providers.client import UpstreamError
from streams.translation import registry, sse
from streams.translation.canonical import StreamError, TranslationError, Usage

if TYPE_CHECKING:
    from streams.ingress.core import ServingCore


async def relay_stream(core: ServingCore, ex: Exchange, resp: Answer, receive: Receive, send: Send) -> None:
    """A streamed answer, relayed as it comes; a break mid-stream ends in an error event of the dialect."""
    assert ex.model is not None and ex.provider is not None
    ex.status = resp.status
    await send({"type": "http.response.start", "status": resp.status, "headers": SSE_HEADERS + ex.router_headers()})
    # The client may hang up mid-stream; stop reading upstream then (the provider stops billing).
    gone = asyncio.ensure_future(receive())
    error: str | None = None
    try:
        if ex.same_dialect:
            error = await _relay(core, ex, resp, gone, send)
        else:
            error = await _translate(core, ex, resp, gone, send)
        if gone.done():
            ex.status, ex.error = 499, "client disconnected"
            resp.close()
            return
        if error is not None:
            ex.error = error
            ex.status = 502
            tail = core.stream_writer(ex).write(StreamError(message=error, status=502))
            if tail:
                await send({"type": "http.response.body", "body": tail, "more_body": True})
        # The last bytes: what the request cost, broken streams included (the tokens were billed). The
        # trace is recorded just before they leave, so the cost read here is the trace's.
        tail = cost_comment(core.dialect, core.cost_usd(ex))
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    finally:
        if not gone.done():
            gone.cancel()

def _with_cost(core: ServingCore, ex: Exchange, out: bytes, usage: Usage) -> bytes:
    """Relayed events with the cost put into the one carrying the final usage: the scanner has just
    read that usage off these very events, so it is the exchange's from here on."""
    ex.usage = usage
    return tag_usage(core.dialect, out, core.cost_usd(ex))


async def _relay(core: ServingCore, ex: Exchange, resp: Answer, gone: asyncio.Future[Any], send: Send) -> str | None:
    """Same dialect: forward bytes as they come; usage and errors are picked out on the side."""
    scanner = core.codec.usage_scanner(drop_usage_chunk=not core.client_wants_usage(ex.body))
    carries_usage = usage_marker(core.dialect)  # None: the dialect's events get no cost field
    error: str | None = None
    try:
        async for chunk in resp.chunks():
            if ex.ttft_s is None:
                ex.ttft_s = perf_counter() - ex.t0
            out = scanner.feed(chunk)
            if out:
                if carries_usage is not None and carries_usage(out):
                    out = _with_cost(core, ex, out, scanner.usage)
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if scanner.malformed is not None:
                # Not passed on: the client gets the well-formed events before it and an error event.
                resp.close()
                ex.usage = scanner.usage
                return scanner.malformed
            if gone.done():
                break
    except UpstreamError as exc:
        error = exc.message
    rest = scanner.rest()
    if rest and carries_usage is not None and carries_usage(rest):
        rest = _with_cost(core, ex, rest, scanner.usage)
    if rest and not gone.done():
        await send({"type": "http.response.body", "body": rest, "more_body": True})
    ex.usage = scanner.usage
    if scanner.error:
        # The provider already wrote its error event into the stream; only record it.
        ex.error, ex.status = scanner.error, 502
        return None
    if error is None and not scanner.finished and not gone.done():
        error = "upstream stream ended before completion"
    return error

async def _translate(core: ServingCore, ex: Exchange, resp: Answer, gone: asyncio.Future[Any], send: Send) -> str | None:
    """Other dialect: provider SSE -> canonical events -> client SSE, event by event.

    Errors are written here with the same writer, so the client's event sequence stays well formed.
    """
    assert ex.provider is not None
    parser = registry.get(ex.provider.dialect).StreamParser()
    writer = core.stream_writer(ex)
    reader = sse.SSEDecoder()
    ended = False

    def translate(events: list[Any]) -> bytes:
        nonlocal ended
        out: list[bytes] = []
        for ev in events:
            kind = ev.kind
            if kind == "end":
                ex.usage = ev.usage
                ended = True
            elif kind == "error":
                ex.error, ex.status = ev.message, 502
                ended = True
            piece = writer.write(ev)
            if kind == "end" and piece:
                piece = tag_usage(core.dialect, piece, core.cost_usd(ex))
            if piece:
                out.append(piece)
        return b"".join(out)

    error: str | None = None
    out = b""
    try:
        async for chunk in resp.chunks():
            t = perf_counter()
            if ex.ttft_s is None:
                ex.ttft_s = t - ex.t0
            events = [ev for event, data in reader.feed(chunk) for ev in parser.feed(event, data)]
            chunk_out = translate(events) if events else b""
            ex.translate_s += perf_counter() - t
            if chunk_out:
                await send({"type": "http.response.body", "body": chunk_out, "more_body": True})
            if gone.done():
                return None
        events = [ev for event, data in reader.flush() for ev in parser.feed(event, data)]
        events.extend(parser.close())
        out = translate(events)
    except UpstreamError as exc:
        error = exc.message
    except (TranslationError, ValueError, KeyError, TypeError) as exc:
        resp.close()
        error = f"unreadable upstream stream: {exc}"
    else:
        if not ended:
            error = "upstream stream ended before completion"
    if error is not None:
        ex.error, ex.status = error, 502
        out += translate([StreamError(message=error, status=502)])
    if out:
        await send({"type": "http.response.body", "body": out, "more_body": True})
    return None
