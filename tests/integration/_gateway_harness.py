"""Shared harness of the gateway integration tests: the simulated provider and the gateway running
on loopback in a background thread (so sync SDK clients work too), a recording upstream client, a
test-only router, and per-dialect readers that reduce any response to comparable facts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from streams.config import Settings
from streams.ingress.app import create_app, listen_socket, uvicorn_config
from streams.ingress.events import MemoryEventSink
from streams.ingress.gateway import Gateway, new_id
from streams.providers.client import UpstreamClient, UpstreamResponse
from streams.providers.sim.config import SimConfig
from streams.providers.sim.server import running_sim
from streams.routing.decision import Decision
from streams.translation.canonical import CanonicalRequest
from tests._support import in_background_loop, sse_frames

__all__ = ["sse_frames"]  # re-exported for the tests that read streams

DIALECTS = ("openai_chat", "openai_responses", "anthropic_messages")
# Gemini as well (no official Python SDK in the test environment: its tests speak HTTP directly).
ALL_DIALECTS = (*DIALECTS, "gemini")
# One configured model per provider dialect: requesting it by name forces that provider.
MODEL_FOR = {"openai_chat": "m-chat", "openai_responses": "m-resp", "anthropic_messages": "m-anth", "gemini": "m-gem"}


def make_settings(**overrides: Any) -> Settings:
    raw: dict[str, Any] = {
        "server": {"max_body_bytes": 256 * 1024},
        # Not the user's ~/.weave-router: Responses conversations are stored under the data dir.
        "data_dir": str(Path(tempfile.gettempdir()) / "weave-router-tests"),
        "providers": [
            {"name": "p-chat", "dialect": "openai_chat", "base_url": "sim"},
            {"name": "p-resp", "dialect": "openai_responses", "base_url": "sim"},
            {"name": "p-anth", "dialect": "anthropic_messages", "base_url": "sim"},
            {"name": "p-gem", "dialect": "gemini", "base_url": "sim"},
            # Nothing listens on port 9 of loopback: connection refused at once.
            {"name": "p-dead", "dialect": "openai_chat", "base_url": "http://127.0.0.1:9/v1", "connect_timeout_s": 1},
        ],
        "models": [
            {"name": "m-chat", "provider": "p-chat", "price_in": 0.25, "price_out": 2.0},
            {"name": "m-resp", "provider": "p-resp", "price_in": 1.25, "price_out": 10.0},
            {"name": "m-anth", "provider": "p-anth", "price_in": 5.0, "price_out": 25.0, "tier": "frontier"},
            {"name": "m-gem", "provider": "p-gem", "price_in": 0.3, "price_out": 2.5},
            {"name": "m-dead", "provider": "p-dead", "price_in": 1.0, "price_out": 1.0},
            # Multi-homed: the first provider is down, the second answers.
            {"name": "m-multi", "provider": ["p-dead", "p-chat"], "upstream_model": "m-chat"},
        ],
        "routing": {"auto_models": ["router/auto"], "default_model": "m-anth"},
    }
    raw.update(overrides)
    return Settings.model_validate(raw)


class TestRouter:
    """Test-only stand-in for ``streams.routing.router.Router``: ``x-test-route: model[,fallback...]``
    picks the model and its fallbacks; without it, the frontier default."""

    __test__ = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calls = 0

    def is_auto(self, model_name: str) -> bool:
        return model_name in self.settings.routing.auto_models

    def decide(self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str,
               session_id: str | None = None) -> Decision:
        self.calls += 1
        names = (headers.get("x-test-route") or self.settings.frontier_default() or "").split(",")
        model = self.settings.model(names[0])
        assert model is not None
        return Decision(
            decision_id=new_id(), session_id="", model=model.name, provider=model.providers[0], policy="test",
            policy_version=7, reason="test route", confidence=0.99, propensity=1.0, route="test",
            fallbacks=names[1:], features={"task_type": "debug"},
        )


@dataclass
class Recorded:
    provider: str
    dialect: str
    path: str
    body: bytes
    headers: dict[str, str]
    status: int = 0
    response: bytearray = field(default_factory=bytearray)


class _TeeResponse(UpstreamResponse):
    __slots__ = ("_record",)

    def __init__(self, inner: UpstreamResponse, record: Recorded) -> None:
        super().__init__(inner._resp, inner._idle_timeout, inner._provider)
        self._record = record

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in super().chunks():
            self._record.response.extend(chunk)
            yield chunk


class RecordingClient(UpstreamClient):
    """Keeps every upstream exchange: what the gateway sent and what the provider produced."""

    def __init__(self, sim_url: str | None) -> None:
        super().__init__(sim_url)
        self.records: list[Recorded] = []

    async def send(self, provider: Any, path: str, body: bytes, headers: Mapping[str, str],
                   stream: bool = False) -> UpstreamResponse:
        rec = Recorded(provider.name, provider.dialect, path, body, dict(headers))
        self.records.append(rec)
        resp = await super().send(provider, path, body, headers, stream)
        rec.status = resp.status
        return _TeeResponse(resp, rec)


@dataclass
class Stack:
    url: str  # the gateway, no /v1
    sim_url: str
    gateway: Gateway
    client: RecordingClient
    events: MemoryEventSink
    loop: asyncio.AbstractEventLoop

    def last(self) -> Recorded:
        return self.client.records[-1]


@contextlib.contextmanager
def running_stack(
    settings: Settings | None = None, sim: SimConfig | None = None, router: Callable[[Settings], Any] | None = None
) -> Iterator[Stack]:
    """Simulator + gateway in one background event loop; yields once both accept connections."""
    settings = settings or make_settings()
    sim = sim or SimConfig(ttft_ms=0.0, tokens_per_s=0.0,
                           models={"m-chat": 0.7, "m-resp": 0.8, "m-anth": 0.9, "m-gem": 0.75})

    @contextlib.asynccontextmanager
    async def serve() -> AsyncIterator[Stack]:
        async with running_sim(sim) as sim_url:
            client = RecordingClient(sim_url)
            events = MemoryEventSink()
            gateway = Gateway(settings, (router or TestRouter)(settings), client, events)
            server = uvicorn.Server(uvicorn_config(create_app(gateway)))
            sock = listen_socket("127.0.0.1", 0)
            port = sock.getsockname()[1]
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            try:
                yield Stack(f"http://127.0.0.1:{port}", sim_url, gateway, client, events, asyncio.get_running_loop())
            finally:
                server.should_exit = True
                await asyncio.wait_for(task, 10)

    with in_background_loop(serve, what="gateway stack", start_timeout_s=15) as stack:
        yield stack


# --- reducing responses to comparable facts ------------------------------------------------------


@dataclass
class Facts:
    text: str
    tool_calls: list[tuple[str, str, Any]]  # (id, name, parsed arguments)
    stop: str  # canonical stop reason
    input_tokens: int
    output_tokens: int


_CHAT_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}
_GEMINI_STOP = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens", "SAFETY": "content_filter"}


def gemini_whole(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A Gemini stream's chunks as one response: parts in order (text runs joined), the last
    finishReason and usage (what google-genai's stream consumers keep)."""
    parts: list[dict[str, Any]] = []
    finish, usage = None, None
    for chunk in chunks:
        assert "error" not in chunk, chunk
        candidate = chunk["candidates"][0]
        for part in candidate.get("content", {}).get("parts") or []:
            prev = parts[-1] if parts else None
            if "text" in part and prev is not None and "text" in prev and prev.get("thought") == part.get("thought"):
                prev["text"] += part["text"]
            else:
                parts.append(dict(part))
        finish = candidate.get("finishReason", finish)
        usage = chunk.get("usageMetadata", usage)
    candidate_out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate_out["finishReason"] = finish
    return {"candidates": [candidate_out], "usageMetadata": usage or {}}


def facts_from_body(dialect: str, body: dict[str, Any]) -> Facts:
    if dialect == "gemini":
        candidate = body["candidates"][0]
        parts = candidate["content"].get("parts") or []
        text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        calls = [(p["functionCall"].get("id", ""), p["functionCall"]["name"], p["functionCall"].get("args", {}))
                 for p in parts if "functionCall" in p]
        stop = _GEMINI_STOP.get(candidate.get("finishReason", ""), "error")
        stop = "tool_use" if stop == "end_turn" and calls else stop
        u = body.get("usageMetadata") or {}
        return Facts(text, calls, stop, u.get("promptTokenCount", 0),
                     u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0))
    if dialect == "openai_chat":
        choice = body["choices"][0]
        msg = choice["message"]
        calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
                 for c in msg.get("tool_calls") or []]
        u = body.get("usage") or {}
        return Facts(msg.get("content") or "", calls, _CHAT_STOP[choice["finish_reason"]],
                     u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
    if dialect == "openai_responses":
        text, calls = "", []
        for item in body["output"]:
            if item["type"] == "message":
                text += "".join(c.get("text", "") for c in item["content"] if c["type"] == "output_text")
            elif item["type"] == "function_call":
                calls.append((item["call_id"], item["name"], json.loads(item["arguments"] or "{}")))
        stop = "tool_use" if calls else ("max_tokens" if body.get("status") == "incomplete" else "end_turn")
        u = body.get("usage") or {}
        return Facts(text, calls, stop, u.get("input_tokens", 0), u.get("output_tokens", 0))
    text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
    calls = [(b["id"], b["name"], b["input"]) for b in body["content"] if b["type"] == "tool_use"]
    u = body.get("usage") or {}
    total_in = u.get("input_tokens", 0) + (u.get("cache_read_input_tokens") or 0) + (
        u.get("cache_creation_input_tokens") or 0)
    return Facts(text, calls, body["stop_reason"], total_in, u.get("output_tokens", 0))


def facts_from_stream(dialect: str, raw: bytes) -> Facts:
    """Accumulate a provider's (or the gateway's) SSE stream, independently of the gateway's code."""
    frames = sse_frames(raw)
    if dialect == "gemini":
        return facts_from_body(dialect, gemini_whole([json.loads(data) for _, data in frames]))
    if dialect == "openai_responses":
        for _, data in frames:
            obj = json.loads(data)
            if obj.get("type") in ("response.completed", "response.incomplete"):
                return facts_from_body(dialect, obj["response"])
        raise AssertionError("no response.completed event")
    if dialect == "openai_chat":
        text, calls, stop, usage = "", {}, "", {}
        for _, data in frames:
            if data == "[DONE]":
                continue
            obj = json.loads(data)
            if obj.get("usage"):
                usage = obj["usage"]
            for ch in obj.get("choices") or []:
                d = ch.get("delta") or {}
                text += d.get("content") or ""
                for tc in d.get("tool_calls") or []:
                    c = calls.setdefault(tc["index"], {"id": "", "name": "", "args": ""})
                    c["id"] = tc.get("id") or c["id"]
                    c["name"] = (tc.get("function") or {}).get("name") or c["name"]
                    c["args"] += (tc.get("function") or {}).get("arguments") or ""
                if ch.get("finish_reason"):
                    stop = _CHAT_STOP[ch["finish_reason"]]
        tool_calls = [(c["id"], c["name"], json.loads(c["args"] or "{}")) for _, c in sorted(calls.items())]
        return Facts(text, tool_calls, stop, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
    text, blocks, stop, in_tok, out_tok = "", {}, "", 0, 0
    for _, data in frames:
        obj = json.loads(data)
        t = obj.get("type")
        if t == "message_start":
            u = obj["message"]["usage"]
            in_tok = u["input_tokens"] + (u.get("cache_read_input_tokens") or 0) + (
                u.get("cache_creation_input_tokens") or 0)
        elif t == "content_block_start" and obj["content_block"]["type"] == "tool_use":
            b = obj["content_block"]
            blocks[obj["index"]] = {"id": b["id"], "name": b["name"], "args": ""}
        elif t == "content_block_delta":
            d = obj["delta"]
            if d["type"] == "text_delta":
                text += d["text"]
            elif d["type"] == "input_json_delta":
                blocks[obj["index"]]["args"] += d["partial_json"]
        elif t == "message_delta":
            stop = obj["delta"].get("stop_reason") or stop
            out_tok = obj["usage"]["output_tokens"]
    tool_calls = [(b["id"], b["name"], json.loads(b["args"] or "{}")) for _, b in sorted(blocks.items())]
    return Facts(text, tool_calls, stop, in_tok, out_tok)


def provider_facts(rec: Recorded, stream: bool) -> Facts:
    raw = bytes(rec.response)
    return facts_from_stream(rec.dialect, raw) if stream else facts_from_body(rec.dialect, json.loads(raw))


def trace_for(st: Stack, request_id: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """The trace of one request (emitted just after its last byte, so it may trail the response)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        for trace in reversed(st.events.traces):
            if trace["request_id"] == request_id:
                return trace
        if time.monotonic() > deadline:
            raise AssertionError(f"no trace for request {request_id}")
        time.sleep(0.005)
