"""Fuzz the gateway on the wire: raw HTTP/1.1 bytes over a real socket to the production server
(``streams.infra.serve.HttpServer``: uvicorn, httptools, the guarded protocol) in front of the real
app, router and simulated provider. Request lines, header names and values with CR, LF, NUL and high
bytes, headers up to 200 KB, bodies 100,000 levels deep, invalid UTF-8, lengths that lie. Whatever
arrives, the answer is a well-formed HTTP response that is never a 5xx, and every error is JSON
(never plain text); or, for a request that never completes, a clean close.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.agents.feedback import build_outcome
from streams.ingress.app import create_app
from streams.ingress.gateway import Gateway
from streams.providers.client import UpstreamClient
from streams.providers.sim.config import SimConfig
from streams.providers.sim.server import running_sim
from streams.routing.router import Router
from tests._support import http_server, in_background_loop
from tests.fuzz._fuzz import DERANDOMIZE, EXAMPLES, near_valid
from tests.fuzz.test_fuzz_http import MODELS, POST_PATHS, gateway_settings

PATHS = [*POST_PATHS, "/v1/models", "/health", "/", "/v1/feedback", "/v1/nope", "/v1beta/models/x:generateContent"]
METHODS = ["GET", "POST", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]
_TOKEN = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), min_size=1, max_size=12)
_ANY_BYTES = st.binary(max_size=40)
_NASTY = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b"\x7f", b"\xff", b"\xc3\x28", b" ", b"\t", b":"])


@st.composite
def header_value(draw: st.DrawFn) -> bytes:
    base = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)).encode()
    if draw(st.integers(0, 7)) == 0:  # splice in a byte a header must not carry
        at = draw(st.integers(0, len(base)))
        base = base[:at] + draw(_NASTY) + base[at:]
    return base


@st.composite
def body_bytes(draw: st.DrawFn, path: str) -> bytes:
    kind = draw(st.sampled_from(["near_valid"] * 6 + ["deep", "deep_object", "invalid_utf8", "bytes", "empty",
                                                      "surrogate"]))
    if kind == "deep":
        n = draw(st.sampled_from([129, 1_000, 100_000]))
        return b"[" * n + b"]" * n
    if kind == "deep_object":
        n = draw(st.sampled_from([200, 5_000]))
        return b'{"model":' * n + b"1" + b"}" * n
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return b""
    dialect = POST_PATHS.get(path, "openai_chat")
    doc = json.dumps(draw(near_valid(dialect, MODELS))).encode()
    if kind == "invalid_utf8":
        at = draw(st.integers(0, len(doc)))
        return doc[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + doc[at:]
    if kind == "surrogate":
        return doc.replace(b'"hi"', b'"\\ud800x"').replace(b'"x"', b'"\\udfff"')
    return doc


@st.composite
def raw_request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(METHODS)).encode()
    path = draw(st.sampled_from(PATHS)).encode()
    if draw(st.integers(0, 6)) == 0:  # a path with odd bytes in it
        path += draw(st.sampled_from([b"%00", b"%ff", b"/../../etc/passwd", b"?a=%zz", b"\x00", b" x", b"\xff"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 12 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""]))
    lines = [method + b" " + path + (b" " + version if version else b"")]
    lines.append(b"Host: gw")
    for _ in range(draw(st.integers(0, 3))):
        name = draw(_TOKEN).encode() if draw(st.integers(0, 9)) else draw(_ANY_BYTES)
        lines.append(name + b": " + draw(header_value()))
    if draw(st.integers(0, 9)) == 0:
        lines.append(b"X-Big: " + b"a" * draw(st.sampled_from([70_000, 200_000])))
    if draw(st.booleans()):
        lines.append(b"Authorization: Bearer " + draw(header_value()))
    body = draw(body_bytes(path.decode("latin-1")))
    length = draw(st.sampled_from(["exact"] * 12 + ["short", "none", "junk", "negative"]))
    if length == "exact":
        lines.append(b"Content-Length: %d" % len(body))
    elif length == "short":  # the rest reads as the next (broken) request
        lines.append(b"Content-Length: %d" % max(0, len(body) // 2))
    elif length == "junk":
        lines.append(b"Content-Length: 12abc")
    elif length == "negative":
        lines.append(b"Content-Length: -5")
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@contextlib.contextmanager
def wire_gateway() -> Iterator[tuple[str, int]]:
    """The fuzz gateway behind the production HTTP server, in a background thread."""
    s = gateway_settings().model_copy(deep=True)
    s.server.read_timeout_s = 2.0
    s.reliability.connections.header_timeout_s = 2.0

    @contextlib.asynccontextmanager
    async def serve() -> AsyncIterator[tuple[str, int]]:
        async with running_sim(SimConfig(ttft_ms=0, tokens_per_s=0, reply_tokens=8, chunk_tokens=4)) as sim_url:
            # Feedback validated as the service validates it (nothing published).
            app = create_app(Gateway(s, Router(s), UpstreamClient(sim_url)), lambda p: build_outcome(p))
            async with http_server(app) as server:
                yield server.host, server.port

    with in_background_loop(serve, what="wire fuzz gateway") as address:
        yield address


def exchange(host: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=15) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
        return out


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Each (status, headers, body) in what came back (a short body makes a second, broken request)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"an incomplete response: {raw[:300]!r}"
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        assert parts[0] == "HTTP/1.1" and len(parts) >= 2, status_line
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, raw = rest[:n], rest[n:]
        else:  # chunked or until close: the rest is this response
            body, raw = rest, b""
        out.append((int(parts[1]), headers, body))
    return out


def test_fuzz_wire_never_5xx_never_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    statuses: dict[int, int] = {}
    with wire_gateway() as (host, port):

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
        @given(req=raw_request())
        def run(req: bytes) -> None:
            raw = exchange(host, port, req)
            for status, headers, body in responses(raw):
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, (req[:400], raw[:600])
                ctype = headers.get("content-type", "")
                if status >= 400:
                    assert ctype.startswith("application/json"), (req[:400], raw[:600])
                    if body:  # HEAD answers carry none
                        assert "message" in json.dumps(json.loads(body)), raw[:600]

        run()
    tried = sum(statuses.values())
    with capsys.disabled():
        print(f"\n[fuzz] HTTP wire: {tried} responses, statuses {dict(sorted(statuses.items()))}")
    assert tried >= min(EXAMPLES, 50)
    assert {400, 431} <= statuses.keys() and statuses.get(200, 0) + statuses.get(202, 0) > 0
