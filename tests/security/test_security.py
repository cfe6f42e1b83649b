"""Security probes against a real gateway over HTTP (``reliability.keys.require_key: true``): open doors,
bad input, slow and greedy clients, header injection, file modes. Each probe is a row of the table the
suite prints (probe, expected, observed); every row must show what was expected.

    .venv/bin/pytest tests/security -s -p no:randomly
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.storage.clickhouse import connect
from streams.storage.migrations import migrate
from tests.security._stack import KEYS, Served, security_settings, serving

Check = Callable[[httpx.Response], bool]
ROOT = Path(__file__).resolve().parents[2]
_CHAT = {"model": "m-chat", "messages": [{"role": "user", "content": "hi"}]}
_ANTH = {"model": "m-anth", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
_RESP = {"model": "m-chat", "input": "hi"}
POSTS = {  # path -> (error shape, a valid body)
    "/v1/chat/completions": ("openai", _CHAT),
    "/v1/responses": ("openai", _RESP),
    "/v1/messages": ("anthropic", _ANTH),
    "/v1/messages/count_tokens": ("anthropic", {"model": "m-anth", "messages": [{"role": "user", "content": "hi"}]}),
    "/v1/route": ("own", _CHAT),
    "/v1/feedback": ("own", {"session_id": "s-1", "success": True}),
}
FEEDBACK_OK = {"session_id": "s-1", "success": True}


@dataclass
class Row:
    probe: str
    expected: str
    observed: str
    ok: bool


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

        self.verified = 0

    def add(self, probe: str, expected: str, observed: str, ok: bool) -> None:
        self.rows.append(Row(probe, expected, observed, ok))

    def verify(self) -> None:
        """Every row added since the last call shows what was expected."""
        new, self.verified = self.rows[self.verified:], len(self.rows)
        bad = [r for r in new if not r.ok]
        assert new and not bad, "\n" + "\n".join(f"{r.probe}: expected {r.expected}, observed {r.observed}"
                                                  for r in bad)

    def render(self) -> str:
        w = [max(len(r.probe) for r in self.rows), max(len(r.expected) for r in self.rows)]
        lines = [f"{'probe'.ljust(w[0])}  {'expected'.ljust(w[1])}  observed", "-" * (w[0] + w[1] + 40)]
        for r in self.rows:
            mark = "" if r.ok else "   <-- MISMATCH"
            lines.append(f"{r.probe.ljust(w[0])}  {r.expected.ljust(w[1])}  {r.observed}{mark}")
        return "\n".join(lines)


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}


def shape_of(resp: httpx.Response) -> str:
    """Which error dialect a body is in: anthropic, openai/own (both {"error": {"message", "type"}}), text."""
    try:
        body = resp.json()
    except ValueError:
        return "text"
    if isinstance(body, dict) and body.get("type") == "error" and isinstance(body.get("error"), dict):
        return "anthropic"
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]:
        return "openai"
    return "json"


def describe(resp: httpx.Response) -> str:
    ctype = resp.headers.get("content-type", "").split(";")[0]
    kind = shape_of(resp) if ctype == "application/json" else ctype or "no body"
    return f"{resp.status_code} {kind}"


def expect_error(shape: str) -> str:
    return "anthropic" if shape == "anthropic" else "openai"  # our own shape is OpenAI-like


def raw_http(host: str, port: int, data: bytes, *, read_s: float = 5.0, source: str | None = None) -> tuple[bytes, float]:
    """Send bytes on a fresh connection; return what came back until close (or ``read_s``) and when."""
    sock = socket.create_connection((host, port), timeout=read_s, source_address=(source, 0) if source else None)
    t0 = time.monotonic()
    try:
        if data:
            sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out, time.monotonic() - t0
    finally:
        sock.close()


def status_of(raw: bytes) -> str:
    if not raw:
        return "closed, no bytes"
    line = raw.split(b"\r\n", 1)[0].decode("latin-1")
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    try:
        kind = "openai" if "message" in json.loads(body).get("error", {}) else "json"
    except (ValueError, AttributeError):
        kind = "text"
    return f"{line.split(' ')[1]} {kind}"


@pytest.fixture(scope="module")
def store(chdb_url: str) -> Iterator[Any]:
    name = f"t_sec_{uuid.uuid4().hex[:8]}"
    client = connect(chdb_url, name)
    migrate(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="module")
def gw(store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(security_settings(str(tmp_path_factory.mktemp("sec"))), store) as served:
        yield served


@pytest.fixture(scope="module")
def table(request: pytest.FixtureRequest) -> Iterator[Table]:
    t = Table()
    yield t
    if t.rows:
        text = "\n[security] probes against a live gateway (require_key: true)\n" + t.render() + "\n"
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print(text, flush=True)


def _check(table: Table, probe: str, expected: str, observed: str) -> None:
    table.add(probe, expected, observed, observed == expected)


# --- open doors under require_key ------------------------------------------------------------------


def test_every_endpoint_that_learns_spends_or_reveals_needs_a_scoped_key(gw: Served, table: Table) -> None:
    u = gw.url
    endpoints: list[tuple[str, str, Any, str]] = [  # (method, path, json body, the scope that opens it)
        ("POST", "/v1/feedback", FEEDBACK_OK, "feedback"),
        ("GET", "/v1/analytics/summary", None, "analytics"),
        ("GET", "/v1/analytics/sessions", None, "analytics"),
        ("GET", "/v1/analytics", None, "analytics"),
        ("GET", "/dashboard", None, "analytics"),
        ("GET", "/dashboard/dashboard.js", None, "analytics"),
        ("GET", "/metrics", None, "metrics"),
        ("POST", "/v1/chat/completions", _CHAT, "models"),
        ("POST", "/v1/messages", _ANTH, "models"),
        ("POST", "/v1/responses", _RESP, "models"),
        ("POST", "/v1/messages/count_tokens", POSTS["/v1/messages/count_tokens"][1], "models"),
        ("POST", "/v1/route", _CHAT, "models"),
        ("GET", "/v1/models", None, "models"),
    ]
    for method, path, body, scope in endpoints:
        for who, headers in (("no key", {}), ("bogus key", {"authorization": "Bearer wr-bogus-000000000000000000"}),
                             ("revoked key", bearer("revoked"))):
            r = httpx.request(method, u + path, json=body, headers=headers, timeout=15)
            _check(table, f"{method} {path}, {who}", "401", str(r.status_code))
        wrong = "analytics" if scope != "analytics" else "metrics"
        r = httpx.request(method, u + path, json=body, headers=bearer(wrong), timeout=15)
        _check(table, f"{method} {path}, {wrong}-scoped key", "403", str(r.status_code))
        r = httpx.request(method, u + path, json=body, headers=bearer(scope if scope != "models" else "models"),
                          timeout=15)
        _check(table, f"{method} {path}, {scope}-scoped key", "202" if path == "/v1/feedback" else "200",
               str(r.status_code))
    table.verify()


def test_anonymous_feedback_cannot_move_the_policy(gw: Served, table: Table) -> None:
    before = len(gw.feedback)
    codes = {httpx.post(gw.url + "/v1/feedback", json=FEEDBACK_OK, timeout=10).status_code for _ in range(40)}
    _check(table, "40 anonymous feedbacks", "all 401, none learned",
           f"{'all 401' if codes == {401} else sorted(codes)}, {len(gw.feedback) - before} learned"
           if len(gw.feedback) - before else f"{'all 401' if codes == {401} else sorted(codes)}, none learned")
    table.verify()


def test_health_says_up_or_down_unless_authorised(gw: Served, table: Table) -> None:
    anon = httpx.get(gw.url + "/health", timeout=10)
    _check(table, "GET /health, no key", "200 {status} only", f"{anon.status_code} {'{status} only' if set(anon.json()) == {'status'} else sorted(anon.json())}")
    full = httpx.get(gw.url + "/health", headers=bearer("metrics"), timeout=10)
    _check(table, "GET /health, metrics-scoped key", "200 with components",
           f"{full.status_code} {'with components' if 'components' in full.json() else sorted(full.json())}")
    table.verify()


def test_dashboard_asks_a_browser_for_a_key(gw: Served, table: Table) -> None:
    r = httpx.get(gw.url + "/dashboard", timeout=10)
    challenge = r.headers.get("www-authenticate", "")
    _check(table, "GET /dashboard, browser without key", "401 + Basic challenge",
           f"{r.status_code}{' + Basic challenge' if challenge.startswith('Basic') else ' no challenge'}")
    basic = "Basic " + base64.b64encode(f"me:{KEYS['analytics']}".encode()).decode()
    r = httpx.get(gw.url + "/dashboard", headers={"authorization": basic}, timeout=10)
    _check(table, "GET /dashboard, key as Basic password", "200 text/html",
           f"{r.status_code} {r.headers.get('content-type', '').split(';')[0]}")
    r = httpx.get(gw.url + "/v1/analytics/summary", headers={"authorization": basic}, timeout=10)
    _check(table, "GET /v1/analytics/summary, same Basic", "200", str(r.status_code))
    table.verify()


def test_the_report_reads_analytics_with_a_key(gw: Served, table: Table) -> None:
    from datetime import UTC, datetime, timedelta

    from streams.analytics.report import HttpSource, SourceError

    until = datetime.now(UTC)
    since = until - timedelta(hours=1)
    summary = HttpSource(gw.url, api_key=KEYS["analytics"]).view("summary", since, until)
    _check(table, "weave-router report with WEAVE_API_KEY (analytics)", "reads the summary",
           "reads the summary" if isinstance(summary, dict) else repr(summary)[:60])
    try:
        HttpSource(gw.url, api_key="").view("summary", since, until)
        observed = "read without a key"
    except SourceError as exc:
        observed = "refused: HTTP 401" if "HTTP 401" in str(exc) else str(exc)[:60]
    _check(table, "weave-router report without a key", "refused: HTTP 401", observed)
    table.verify()


def test_model_scope_holds_on_route_and_count_tokens(gw: Served, table: Table) -> None:
    h = bearer("chat_only")  # a key for m-chat only
    r = httpx.post(gw.url + "/v1/route", json={**_CHAT, "model": "m-anth"}, headers=h, timeout=10)
    _check(table, "POST /v1/route m-anth, key for m-chat only", "403", str(r.status_code))
    r = httpx.post(gw.url + "/v1/messages/count_tokens", json=POSTS["/v1/messages/count_tokens"][1], headers=h,
                   timeout=10)
    _check(table, "POST count_tokens m-anth, key for m-chat only", "403 anthropic", describe(r))
    r = httpx.post(gw.url + "/v1/route", json=_CHAT, headers=h, timeout=10)
    _check(table, "POST /v1/route m-chat, key for m-chat only", "200", str(r.status_code))
    r = httpx.post(gw.url + "/v1/route", json={**_CHAT, "model": "router/auto"}, headers=bearer("auto_only"),
                   timeout=10)
    routed = "routed from 'router/auto'" in r.text
    _check(table, "POST /v1/route router/auto, key for the auto name only", "403 naming the routed model",
           f"{r.status_code} {'naming the routed model' if routed else r.text[:60]}")
    table.verify()


def test_model_endpoints_check_the_model_served_and_the_request(gw: Served, table: Table) -> None:
    """The serving core's admission: the key's scope on the model the router picked, the dialect's shared
    request checks, and a provider refusing the router's own key reported as the provider's fault."""
    auto = {**_ANTH, "model": "router/auto"}
    r = httpx.post(gw.url + "/v1/messages", json=auto, headers=bearer("auto_only"), timeout=10)
    routed = "routed from 'router/auto'" in r.text
    _check(table, "POST /v1/messages router/auto, key for the auto name only", "403 anthropic naming the routed model",
           f"{describe(r)}{' naming the routed model' if routed else ''}")
    h = bearer("models")
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("/v1/messages", "empty messages", {**_ANTH, "messages": []}, "400 anthropic"),
        ("/v1/messages", "max_tokens -1", {**_ANTH, "max_tokens": -1}, "400 anthropic"),
        ("/v1/chat/completions", "max_tokens above the model's window", {**_CHAT, "max_tokens": 100_001}, "400 openai"),
        ("/v1/chat/completions", "100k-character model", {**_CHAT, "model": "m" * 100_000}, "400 openai"),
        ("/v1/responses", "empty input list", {**_RESP, "input": []}, "400 openai"),
    ]
    for path, name, body, expected in cases:
        r = httpx.post(gw.url + path, content=json.dumps(body).encode(), headers=h, timeout=10)
        _check(table, f"POST {path}: {name}", expected, describe(r))
    r = httpx.post(gw.url + "/v1/chat/completions", json={**_CHAT, "model": "m-badkey"}, headers=h, timeout=10)
    named = "p-chat" in r.text and "router's" in r.text
    _check(table, "upstream answers 401 to the router's own key", "502 openai naming the provider",
           f"{describe(r)}{' naming the provider' if named else ''}")
    table.verify()


def test_a_request_lookup_reveals_nothing_to_another_key(gw: Served, table: Table) -> None:
    """GET /v1/requests/{id}: the key that made the request or an analytics key; any other key gets the
    404 of an unknown id (not a 403 that would confirm the id exists), and the answer holds no key."""
    r = httpx.post(gw.url + "/v1/chat/completions", json={**_CHAT, "stream": True}, headers=bearer("models"),
                   timeout=10)
    rid = r.headers.get("x-request-id", "")
    _check(table, "streamed chat answer names its request id", "yes", "yes" if rid else "no")
    path = f"/v1/requests/{rid}"
    cases: list[tuple[str, dict[str, str], str]] = [
        ("the key that made it", bearer("models"), "200 json"),
        ("an analytics-scoped key", bearer("analytics"), "200 json"),
        ("another models key", bearer("chat_only"), "404 openai"),
        ("another key with feedback", bearer("feedback"), "404 openai"),
        ("a metrics-only key", bearer("metrics"), "403 openai"),
        ("no key", {}, "401 openai"),
        ("a revoked key", bearer("revoked"), "401 openai"),
    ]
    for who, headers, expected in cases:
        got = httpx.get(gw.url + path, headers=headers, timeout=10)
        _check(table, f"GET /v1/requests/<id>, {who}", expected, describe(got))
        if got.status_code == 200:
            secret = any(k in got.text for k in KEYS.values())
            _check(table, f"GET /v1/requests/<id>, {who}: a key in the answer", "no", "yes" if secret else "no")
    other = httpx.get(gw.url + path, headers=bearer("chat_only"), timeout=10).json()["error"]["message"]
    unknown = httpx.get(gw.url + "/v1/requests/" + "e" * 32, headers=bearer("chat_only"), timeout=10)
    same = other.replace(rid, "ID") == unknown.json()["error"]["message"].replace("e" * 32, "ID")
    _check(table, "GET /v1/requests/<id>, another key vs an unknown id", "same 404", "same 404" if same and
           unknown.status_code == 404 else f"{unknown.status_code} differs")
    table.verify()


# --- one error path -------------------------------------------------------------------------------


def test_bad_bodies_are_4xx_in_the_callers_dialect(gw: Served, table: Table) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    bodies = {
        "100,000-deep JSON": (deep, "400"),
        "2,000-deep object": (b'{"a":' * 2_000 + b"1" + b"}" * 2_000, "400"),
        "100,000-deep object (too complex first)": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "413"),
        "invalid UTF-8": (b'{"model": "m-chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "400"),
        "lone surrogate escape": (b'{"model": "m-chat", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
        "truncated JSON": (b'{"model": "m-chat", "messa', "400"),
        "JSON array, not object": (b"[1, 2]", "400"),
    }
    for path, (shape, _) in POSTS.items():
        headers = bearer("feedback")  # models + feedback: the scope check passes everywhere here
        for name, (raw, status) in bodies.items():
            r = httpx.post(gw.url + path, content=raw, headers={**headers, "content-type": "application/json"},
                           timeout=30)
            if status is None:  # a valid escape: any non-5xx answer in the dialect
                ok = r.status_code < 500 and shape_of(r) in ("json", expect_error(shape))
                _check(table, f"POST {path}: {name}", "no 5xx, JSON", "no 5xx, JSON" if ok else describe(r))
                continue
            _check(table, f"POST {path}: {name}", f"{status} {expect_error(shape)}", describe(r))
    table.verify()


def test_count_tokens_and_route_validate_as_their_endpoints(gw: Served, table: Table) -> None:
    h = bearer("models")
    ct = "/v1/messages/count_tokens"
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        (ct, "empty messages", {"model": "m-anth", "messages": []}, "400 anthropic"),
        (ct, "role: 5", {"model": "m-anth", "messages": [{"role": 5, "content": "x"}]}, "400 anthropic"),
        (ct, "100k-character model", {"model": "m" * 100_000, "messages": [{"role": "user", "content": "x"}]},
         "400 anthropic"),
        (ct, "unknown model", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "404 anthropic"),
        ("/v1/route", "empty messages", {"model": "m-chat", "messages": []}, "400 openai"),
        ("/v1/route", "role: 5", {"model": "m-chat", "messages": [{"role": 5, "content": "x"}]}, "400 openai"),
        ("/v1/route", "100k-character model", {"model": "m" * 100_000, "messages": [{"role": "user", "content": "x"}]},
         "400 openai"),
        ("/v1/route", "max_tokens -1", {**_CHAT, "max_tokens": -1}, "400 openai"),
        ("/v1/route", "max_tokens 10^400", {**_CHAT, "max_tokens": 10**400}, "400 openai"),
        ("/v1/route", "max_tokens above the model's window", {**_CHAT, "max_tokens": 100_001}, "400 openai"),
    ]
    for path, name, body, expected in cases:
        r = httpx.post(gw.url + path, content=json.dumps(body).encode(), headers=h, timeout=10)
        _check(table, f"POST {path}: {name}", expected, describe(r))
    table.verify()


def test_unknown_paths_methods_and_parser_errors_are_json(gw: Served, table: Table) -> None:
    cases = [("GET", "/v1/nope", "404 openai"), ("GET", "/v1/messages/nope", "404 anthropic"),
             ("GET", "/v1/chat/completions", "405 openai"), ("PUT", "/v1/messages", "405 anthropic"),
             ("DELETE", "/v1/route", "405 openai"), ("GET", "/v1beta/models/x:generateContent", "404 openai")]
    for method, path, expected in cases:
        r = httpx.request(method, gw.url + path, headers=bearer("models"), timeout=10)
        _check(table, f"{method} {path}", expected, describe(r))
    for name, data in {
        "garbage request line": b"NOT HTTP AT ALL\r\n\r\n",
        "bare LF inside a header value": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\nb: c\r\n\r\n",
        "CR inside a header value": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        "NUL in the path": b"GET /hea\x00lth HTTP/1.1\r\nHost: x\r\n\r\n",
        "conflicting content-length": b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    }.items():
        raw, _ = raw_http(gw.host, gw.port, data)
        _check(table, f"HTTP parser: {name}", "400 openai", status_of(raw))
    table.verify()


# --- header values -----------------------------------------------------------------------------------


def test_crlf_in_prompt_cache_key_never_reaches_a_header(gw: Served, table: Table) -> None:
    body = {**_RESP, "prompt_cache_key": "task-7\r\nx-injected: 1\r\n"}
    r = httpx.post(gw.url + "/v1/responses", json=body, headers=bearer("models"), timeout=15)
    session = r.headers.get("x-router-session", "")
    clean = bool(session) and "x-injected" not in r.headers and not any(c in session for c in "\r\n")
    _check(table, "CR/LF in prompt_cache_key", "200, session header clean",
           f"{r.status_code}, session header {'clean' if clean else repr(session)}")
    table.verify()


# --- slow and greedy clients ---------------------------------------------------------------------------


def test_header_limits_and_timeouts(gw: Served, table: Table) -> None:
    r = httpx.get(gw.url + "/health", headers={"x-big": "a" * 100_000}, timeout=10)
    _check(table, "100 KB of headers", "431 openai", describe(r))
    r = httpx.post(gw.url + "/v1/messages", headers={**bearer("models"), "x-big": "a" * 100_000}, json=_ANTH,
                   timeout=10)
    _check(table, "100 KB of headers on /v1/messages", "431 anthropic", describe(r))
    raw, took = raw_http(gw.host, gw.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    _check(table, "headers never finished (timeout 1 s)", "408 within 2 s",
           f"{status_of(raw).split(' ')[0]} within {'2 s' if took < 2 else f'{took:.1f} s'}")
    raw, took = raw_http(gw.host, gw.port, b"")
    _check(table, "connection that never speaks", "closed within 2 s",
           f"{'closed' if not raw else status_of(raw)} within {'2 s' if took < 2 else f'{took:.1f} s'}")
    sock = socket.create_connection((gw.host, gw.port), timeout=10)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first or not first.rstrip().endswith(b"}"):  # the whole JSON answer
            first += sock.recv(65536)
        t0 = time.monotonic()
        rest = sock.recv(65536)  # b"" once the server closes the idle keep-alive connection
        took = time.monotonic() - t0
    finally:
        sock.close()
    _check(table, "idle keep-alive connection (2 s)", "closed within 4 s",
           f"{'closed' if first and not rest else 'open'} within {'4 s' if took < 4 else f'{took:.1f} s'}")
    table.verify()


def test_connection_caps(store: Any, tmp_path_factory: pytest.TempPathFactory, table: Table) -> None:
    settings = security_settings(str(tmp_path_factory.mktemp("caps")), header_timeout_s=5.0,
                                 max_connections=5, max_connections_per_client=3)
    with serving(settings, store) as s:
        held = [socket.create_connection((s.host, s.port)) for _ in range(3)]
        try:
            time.sleep(0.2)
            raw, _ = raw_http(s.host, s.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            _check(table, "4th connection from one client (cap 3)", "429 openai", status_of(raw))
            held += [socket.create_connection((s.host, s.port), source_address=("127.0.0.2", 0)) for _ in range(2)]
            time.sleep(0.2)
            raw, _ = raw_http(s.host, s.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.3")
            _check(table, "6th connection in all (cap 5)", "503 openai", status_of(raw))
        finally:
            for c in held:
                c.close()
        time.sleep(0.3)
        r = httpx.get(s.url + "/health", timeout=10)
        _check(table, "after the held connections close", "200", str(r.status_code))


@pytest.fixture(scope="module")
def apart() -> Iterator[str]:
    """The same gateway in a child process: the timing probes measure it, not this process's GIL."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.security._stack"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), "the child gateway did not start"
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _health_latency_during(url: str, body: bytes, tmp: Path) -> tuple[float, int]:
    """The worst /health latency (after a warm-up) while another process POSTs ``body`` to /v1/route:
    the poster runs apart too, so only the gateway's own event loop is measured."""
    path = tmp / "body.json"
    path.write_bytes(body)
    poster = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60",
                               "-H", f"authorization: Bearer {KEYS['models']}", "--data-binary", f"@{path}",
                               url + "/v1/route"], stdout=subprocess.PIPE, text=True)
    worst = 0.0
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(5):
            client.get("/health")
        while poster.poll() is None:
            t0 = time.perf_counter()
            client.get("/health")
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.002)
    out, _ = poster.communicate()
    return worst, int(out or 0)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl to post from another process")
def test_one_big_request_does_not_stall_health(apart: str, table: Table, tmp_path: Path) -> None:
    bodies = [  # (what, body, expected status)
        ("480k tiny messages", {"model": "m-chat", "messages": [{"role": "user", "content": "x"}] * 480_000}, 413),
        ("60k messages of 200 chars", {"model": "m-chat", "messages": [{"role": "user", "content": "x" * 200}] * 60_000},
         413),
        ("12k messages (over 10k)", {"model": "m-chat", "messages": [{"role": "user", "content": "z" * 300}] * 12_000},
         400),
        ("5k messages of 3 KB (accepted)", {"model": "m-chat",
                                            "messages": [{"role": "user", "content": "y " * 1500}] * 5_000}, 200),
    ]
    for what, body, expected in bodies:
        raw = json.dumps(body).encode()
        worst, status = _health_latency_during(apart, raw, tmp_path)
        for _ in range(3):  # a shared CPU (CI runs tests in parallel) can delay a poll; a real stall repeats
            if worst < 0.05:
                break
            again, status = _health_latency_during(apart, raw, tmp_path)
            worst = min(worst, again)
        _check(table, f"{len(raw) / 1e6:.1f} MB: {what}", f"{expected}, /health < 50 ms",
               f"{status}, /health {'< 50 ms' if worst < 0.05 else f'{worst * 1000:.0f} ms'}")
    table.verify()


# --- files -----------------------------------------------------------------------------------------------


def test_files_the_service_creates_are_private(tmp_path: Path, table: Table) -> None:
    from tests.e2e._service import running_up

    with running_up(tmp_path, 90) as (url, _log):
        r = httpx.post(url + "/v1/chat/completions", json={**_CHAT, "model": "router/auto"},
                       headers={"authorization": "Bearer any"}, timeout=30)
        assert r.status_code == 200
        time.sleep(1.0)
        loose = []
        for root, dirs, files in os.walk(tmp_path / "data"):
            for name in dirs + files:
                p = Path(root, name)
                mode = stat.S_IMODE(p.lstat().st_mode)
                if not p.is_symlink() and mode & 0o077:
                    loose.append(f"{p.relative_to(tmp_path)} {mode:o}")
        _check(table, "files and dirs under the data dir (weave-router up)", "none group/world-accessible",
               "none group/world-accessible" if not loose else f"{len(loose)}: {', '.join(loose[:4])}")
    table.verify()
