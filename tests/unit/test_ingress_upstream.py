"""Provider URLs, auth headers and the failover loop (with a scripted client, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config import ModelSettings, ProviderSettings
from streams.ingress.http import BodyTooLarge, read_body
from streams.providers.client import UpstreamError
from streams.providers.failover import candidates, send_with_failover
from streams.providers.upstream import auth_headers, endpoint_url, forwarded_headers, resolve_base_url


def prov(name: str, dialect: str = "openai_chat", **kw: Any) -> ProviderSettings:
    return ProviderSettings(name=name, dialect=dialect, base_url=kw.pop("base_url", "https://x.test/v1"), **kw)


def test_urls_and_sim_resolution() -> None:
    assert endpoint_url(resolve_base_url("https://api.openai.com/v1/", None), "openai_chat") == (
        "https://api.openai.com/v1/chat/completions"
    )
    assert endpoint_url(resolve_base_url("sim", "http://127.0.0.1:5000"), "anthropic_messages") == (
        "http://127.0.0.1:5000/v1/messages"
    )
    with pytest.raises(RuntimeError, match="simulator URL"):
        resolve_base_url("sim", None)
    # Gemini names the model (escaped) and streaming in the path; the simulator serves it under /v1beta.
    google = resolve_base_url("https://generativelanguage.googleapis.com/v1beta", None, "gemini")
    assert endpoint_url(google, "gemini", "gemini-2.5-pro") == endpoint_url(google, "gemini", "models/gemini-2.5-pro") == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    )
    assert endpoint_url(resolve_base_url("sim", "http://127.0.0.1:5000", "gemini"), "gemini", "a/b", stream=True) == (
        "http://127.0.0.1:5000/v1beta/models/a%2Fb:streamGenerateContent?alt=sse"
    )


def test_auth_headers_per_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UP_KEY", "secret-1")
    h = auth_headers(prov("o", api_key_env="UP_KEY", headers={"X-Org": "o1"}))
    assert h["authorization"] == "Bearer secret-1" and h["x-org"] == "o1" and "x-api-key" not in h
    h = auth_headers(prov("a", "anthropic_messages", api_key_env="UP_KEY"))
    assert h["x-api-key"] == "secret-1" and h["anthropic-version"] and "authorization" not in h
    h = auth_headers(prov("g", "gemini", api_key_env="UP_KEY"))
    assert h["x-goog-api-key"] == "secret-1" and "authorization" not in h and "x-api-key" not in h
    # No key configured: nothing sent (a real provider will answer 401 itself).
    assert "authorization" not in auth_headers(prov("n"))


def test_forwarded_headers_only_where_meaningful() -> None:
    client = {"anthropic-beta": "b1", "anthropic-version": "2023-06-01", "x-sim-fault": "503", "x-api-key": "k"}
    assert forwarded_headers(client, "anthropic_messages", prov("a", "anthropic_messages")) == {
        "anthropic-version": "2023-06-01", "anthropic-beta": "b1"}
    assert forwarded_headers(client, "anthropic_messages", prov("o")) == {}
    assert forwarded_headers(client, "openai_chat", prov("s", base_url="sim")) == {"x-sim-fault": "503"}


def test_candidates_order() -> None:
    providers = {n: prov(n) for n in ("p1", "p2", "p3")}
    models = {
        "a": ModelSettings(name="a", provider=["p1", "p2"]),
        "b": ModelSettings(name="b", provider="p3"),
    }
    got = [(m.name, p.name) for m, p in candidates(models["a"], "p2", ["b", "missing", "a"], models, providers)]
    assert got == [("a", "p2"), ("a", "p1"), ("b", "p3")]


class _Resp:
    def __init__(self, status: int) -> None:
        self.status = status
        self.read_called = False

    async def read(self) -> bytes:
        self.read_called = True
        return b"{}"


class _ScriptedClient:
    """Answers each send from a script: an int status or an exception."""

    def __init__(self, script: list[int | Exception]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def send(self, provider: ProviderSettings, path: str, body: bytes, headers: Any, stream: bool) -> _Resp:
        self.calls.append(provider.name)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return _Resp(step)


def _cands() -> list[tuple[ModelSettings, ProviderSettings]]:
    return [(ModelSettings(name=f"m{i}", provider=f"p{i}"), prov(f"p{i}")) for i in range(3)]


def _prepare(model: ModelSettings, provider: ProviderSettings) -> tuple[str, bytes, dict[str, str]]:
    return "/chat/completions", model.name.encode(), {}


async def test_failover_moves_on_after_connect_error_and_5xx() -> None:
    client = _ScriptedClient([UpstreamError("refused"), 503, 200])
    res = await send_with_failover(client, _cands(), _prepare, stream=False)  # type: ignore[arg-type]
    assert client.calls == ["p0", "p1", "p2"]
    assert res.response is not None and res.response.status == 200 and res.model.name == "m2"
    assert [(a.provider, a.status) for a in res.attempts] == [("p0", None), ("p1", 503), ("p2", 200)]


async def test_failover_keeps_client_errors_and_last_failure() -> None:
    client = _ScriptedClient([400])
    res = await send_with_failover(client, _cands(), _prepare, stream=False)  # type: ignore[arg-type]
    assert client.calls == ["p0"] and res.response is not None and res.response.status == 400

    client = _ScriptedClient([429, 500, 502])
    res = await send_with_failover(client, _cands(), _prepare, stream=False)  # type: ignore[arg-type]
    assert res.response is not None and res.response.status == 502 and len(res.attempts) == 3

    client = _ScriptedClient([503, UpstreamError("down", kind="first_byte_timeout")])
    res = await send_with_failover(client, _cands()[:2], _prepare, stream=False)  # type: ignore[arg-type]
    assert res.response is None and res.error is not None and res.error.kind == "first_byte_timeout"


def _receiver(chunks: list[bytes]) -> Any:
    msgs = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return msgs.pop(0)

    return receive


async def test_read_body_limit() -> None:
    assert await read_body(_receiver([b"ab", b"cd"]), None, 4) == b"abcd"
    with pytest.raises(BodyTooLarge):
        await read_body(_receiver([b"abc", b"de"]), None, 4)
    with pytest.raises(BodyTooLarge):  # refused from the declared length, before reading
        await read_body(_receiver([]), "5", 4)
