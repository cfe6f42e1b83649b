"""The simulator's HTTP application: the three LLM APIs plus a small ``/sim`` control surface.

Routes
  POST /v1/chat/completions, /v1/responses, /v1/messages (``?beta=true`` too), /v1/messages/count_tokens
  POST /v1beta/models/{model}:generateContent, :streamGenerateContent (``?alt=sse``), :countTokens
  GET  /v1/models (OpenAI shape, or Anthropic's when the request has ``anthropic-version``), /health, HEAD /
  GET  /v1beta/models, /v1beta/models/{model}
  GET/POST/DELETE /sim/faults, GET/POST /sim/skill, GET /sim/outcome, GET/DELETE /sim/stats

Per-request headers: ``x-sim-script`` (JSON script: ``tool_calls``, ``edit``, ``text``, ``parallel``,
``reply_tokens``; see ``behaviour``; or ``base64:`` and the script in URL-safe base64, for clients whose
header settings split on commas, like gemini-cli's ``GEMINI_CLI_CUSTOM_HEADERS``), ``x-sim-task`` (task id: the final answer says
TESTS PASSED / TESTS FAILED per ``solves``), ``x-sim-task-type`` (the task's type, which picks the
model's per-task-type skill; default: the task id's prefix, ``debugging:123``), ``x-sim-fault`` (a
fault for this request only).
"""

from __future__ import annotations

import asyncio
import base64
import time
from types import ModuleType
from typing import Any, cast

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from streams.providers.sim import wire_anthropic, wire_gemini, wire_openai_chat, wire_openai_responses
from streams.providers.sim.behaviour import Plan, SimRequest
from streams.providers.sim.config import SimConfig
from streams.providers.sim.control import Control, SimState
from streams.providers.sim.faults import FaultError, FaultSpec, parse_fault_header
from streams.providers.sim.signatures import ApiRefusal
from streams.providers.sim.sse import Frame, dumps, new_id
from streams.providers.sim.usage import Usage

_decode = msgspec.json.Decoder().decode
_JSON = "application/json"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Events sent before time-to-first-token elapses (Anthropic and Responses announce the message at once;
# Chat Completions' role chunk travels with the first token).
_PREAMBLE = {
    wire_anthropic.DIALECT: 2,
    wire_openai_responses.DIALECT: 2,
    wire_openai_chat.DIALECT: 0,
    wire_gemini.DIALECT: 0,
}
_MISSING_KEY = {
    wire_anthropic.DIALECT: (401, "x-api-key header is required"),
    wire_gemini.DIALECT: (403, "The request is missing a valid API key (x-goog-api-key header or key parameter)."),
}


SCRIPT_BASE64 = "base64:"


def script_text(header: str) -> str:
    """The ``x-sim-script`` header's JSON text, decoded when it came base64-encoded."""
    if not header.startswith(SCRIPT_BASE64):
        return header
    try:
        return base64.urlsafe_b64decode(header[len(SCRIPT_BASE64) :]).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise FaultError(f"x-sim-script: not base64 JSON: {exc}") from None


# -- responses --------------------------------------------------------------------------------------------
def _error(wire: ModuleType, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(wire.error_body(status, message)), status_code=status, media_type=_JSON, headers=headers)


class _SseStream:
    """SSE body sent event by event (one write per event), paced by ttft and tokens/s, with the stream
    faults applied. A plain ASGI callable: an aborted stream must close the socket mid-body, which
    Starlette's StreamingResponse cannot do without logging a traceback."""

    def __init__(
        self,
        frames: list[Frame],
        *,
        preamble: int,
        started: float,
        ttft_s: float,
        tokens_per_s: float,
        malformed: bytes | None,
        disconnect_after: int | None,
        malformed_after: int | None,
    ) -> None:
        self.frames = frames
        self.preamble = preamble
        self.started = started
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.malformed = malformed
        self.disconnect_after = disconnect_after
        self.malformed_after = malformed_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_SSE_HEADERS, (b"x-request-id", new_id("req_").encode())],
                }
            )
            first_token_at: float | None = None
            tokens_sent = 0
            for i, (data, tokens) in enumerate(self.frames):
                if i == self.disconnect_after:
                    return  # response left incomplete: the server closes the connection mid-stream
                if i == self.malformed_after and self.malformed is not None:
                    await send({"type": "http.response.body", "body": self.malformed, "more_body": True})
                if i == self.preamble and self.ttft_s > 0:
                    delay = self.started + self.ttft_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if tokens:
                    if first_token_at is None:
                        first_token_at = time.monotonic()
                    elif self.tokens_per_s > 0:
                        delay = first_token_at + tokens_sent / self.tokens_per_s - time.monotonic()
                        if delay > 0.0005:
                            await asyncio.sleep(delay)
                    tokens_sent += tokens
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


class _TruncatedBody:
    """A JSON response that stops halfway: the connection closes before Content-Length is reached."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _hang(request: Request, seconds: float) -> None:
    """Sleep like a stuck upstream, but stop as soon as the client gives up."""
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(_watch_disconnect(request.receive, gone))
    try:
        await asyncio.wait_for(gone.wait(), timeout=seconds)
    except TimeoutError:
        pass
    finally:
        watcher.cancel()


# -- the API handlers ---------------------------------------------------------------------------------------
def _has_key(request: Request) -> bool:
    if request.headers.get("x-api-key") or request.headers.get("x-goog-api-key") or request.query_params.get("key"):
        return True
    auth = request.headers.get("authorization", "")
    return auth[:7].lower() == "bearer " and bool(auth[7:].strip())


class _Api:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def chat(self, request: Request) -> Any:
        return await self._complete(request, wire_openai_chat)

    async def responses(self, request: Request) -> Any:
        return await self._complete(request, wire_openai_responses)

    async def messages(self, request: Request) -> Any:
        return await self._complete(request, wire_anthropic)

    async def count_tokens(self, request: Request) -> Response:
        if self.state.config.require_auth and not _has_key(request):
            return _error(wire_anthropic, 401, "x-api-key header is required")
        raw = await request.body()
        try:
            body = _decode(raw)
            if not isinstance(body, dict):
                raise wire_anthropic.WireError("the request body must be a JSON object")
            wire_anthropic.parse(body, count_only=True)
        except (msgspec.DecodeError, wire_anthropic.WireError) as exc:
            return _error(wire_anthropic, 400, str(exc))
        return Response(dumps({"input_tokens": wire_anthropic.input_tokens(len(raw))}), media_type=_JSON)

    async def gemini(self, request: Request) -> Any:
        """``models/{model}:{method}`` (POST) and ``models/{model}`` (GET)."""
        model, _, method = request.path_params["target"].partition(":")
        if request.method == "GET":
            if method or (self.state.config.strict_models and model not in self.state.behaviour.skills):
                return _error(wire_gemini, 404, f"models/{model} is not found for API version v1beta")
            return JSONResponse(wire_gemini.model_json(model))
        if method not in wire_gemini.METHODS:
            return _error(wire_gemini, 404, f"method {method!r} is not found on models/{model}")
        if method != "countTokens":
            return await self._complete(request, wire_gemini, (model, method == "streamGenerateContent"))
        if self.state.config.require_auth and not _has_key(request):
            return _error(wire_gemini, *_MISSING_KEY[wire_gemini.DIALECT])
        raw = await request.body()
        try:
            body = _decode(raw)
            if not isinstance(body, dict):
                raise wire_gemini.WireError("the request body must be a JSON object")
            return Response(dumps(wire_gemini.count_tokens(body, len(raw))), media_type=_JSON)
        except (msgspec.DecodeError, wire_gemini.WireError) as exc:
            return _error(wire_gemini, 400, str(exc))

    async def gemini_models(self, request: Request) -> Response:
        return JSONResponse({"models": [wire_gemini.model_json(n) for n in sorted(self.state.behaviour.skills)]})

    async def _complete(self, request: Request, wire: ModuleType, target: tuple[str, bool] | None = None) -> Any:
        """One completion; ``target`` is (model, stream) where the URL names them (Gemini)."""
        started = time.monotonic()
        state, config = self.state, self.state.config
        if config.require_auth and not _has_key(request):
            status, message = _MISSING_KEY.get(
                wire.DIALECT, (401, "You didn't provide an API key (Authorization: Bearer <key>).")
            )
            return _error(wire, status, message)
        raw = await request.body()
        try:
            body = _decode(raw)
            if not isinstance(body, dict):
                raise wire.WireError("the request body must be a JSON object")
            if target is not None:
                body["model"] = target[0]
            req: SimRequest = wire.parse(body) if target is None else wire.parse(body, *target)
        except ApiRefusal as exc:  # the API's own message, as clients match on it
            return _error(wire, 400, str(exc))
        except (msgspec.DecodeError, wire.WireError) as exc:
            return _error(wire, 400, f"invalid request: {exc}")
        if config.strict_models and req.model not in state.behaviour.skills:
            return _error(wire, 404, f"model {req.model!r} not found")
        state.stats.count(req.model, wire.DIALECT, req.stream)

        headers = request.headers
        fault: FaultSpec | None
        try:
            header_fault = headers.get("x-sim-fault")
            fault = parse_fault_header(header_fault) if header_fault else state.faults.pick(req.model, wire.DIALECT)
            script = _decode(script_text(headers["x-sim-script"])) if "x-sim-script" in headers else None
            if script is not None and not isinstance(script, dict):
                raise FaultError("x-sim-script must be a JSON object")
        except (FaultError, msgspec.DecodeError) as exc:
            return _error(wire, 400, str(exc))
        if fault is not None:
            state.faults.record(fault)
            if fault.kind == "error":
                return _error(wire, fault.status, f"simulated upstream error ({fault.status})")
            if fault.kind == "rate_limit":
                wait = fault.retry_after
                return _error(
                    wire,
                    429,
                    "simulated rate limit: please retry later",
                    {"retry-after": f"{wait:g}", "retry-after-ms": str(int(wait * 1000))},
                )
            if fault.kind == "timeout":
                await _hang(request, fault.seconds if fault.seconds is not None else config.hang_s)

        try:
            plan: Plan = state.behaviour.plan(req, script, headers.get("x-sim-task"), headers.get("x-sim-task-type"))
        except ValueError as exc:  # a script the behaviour cannot follow
            return _error(wire, 400, str(exc))
        use: Usage = wire.usage(body, raw, plan, state.cache)
        tokens_per_s = fault.tokens_per_s if fault is not None and fault.kind == "slow" else config.tokens_per_s
        if req.stream and wire is wire_gemini and request.query_params.get("alt") != "sse":
            # Without alt=sse Gemini streams one JSON array of the same chunks.
            chunks = b",".join(f[0][6:].strip() for f in _frames(wire, plan, req, use, body, config.chunk_tokens))
            return Response(b"[" + chunks + b"]", media_type=_JSON)
        if req.stream:
            return _SseStream(
                _frames(wire, plan, req, use, body, config.chunk_tokens),
                preamble=_PREAMBLE[wire.DIALECT],
                started=started,
                ttft_s=config.ttft_ms / 1000.0,
                tokens_per_s=tokens_per_s,
                malformed=wire.MALFORMED,
                disconnect_after=fault.after_chunks if fault is not None and fault.kind == "disconnect" else None,
                malformed_after=fault.after_chunks if fault is not None and fault.kind == "malformed" else None,
            )
        delay = config.ttft_ms / 1000.0 + (plan.output_tokens / tokens_per_s if tokens_per_s > 0 else 0.0)
        delay -= time.monotonic() - started
        if delay > 0:
            await asyncio.sleep(delay)
        payload = dumps(_render(wire, plan, req, use, body))
        if fault is not None and fault.kind == "disconnect":
            return _TruncatedBody(payload)
        if fault is not None and fault.kind == "malformed":
            return Response(payload[: len(payload) // 2], media_type=_JSON)
        return Response(payload, media_type=_JSON)

    # -- models, health --------------------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        names = sorted(self.state.behaviour.skills)
        if "anthropic-version" in request.headers:
            data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"} for n in names]
            return JSONResponse(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": names[0] if names else None,
                    "last_id": names[-1] if names else None,
                }
            )
        listing: list[dict[str, Any]] = [
            {"id": n, "object": "model", "created": 1735689600, "owned_by": "weave-sim"} for n in names
        ]
        return JSONResponse({"object": "list", "data": listing})


def _frames(wire: ModuleType, plan: Plan, req: SimRequest, use: Usage, body: dict[str, Any], size: int) -> list[Frame]:
    if wire is wire_anthropic:
        return wire_anthropic.stream(plan, req, use, size)
    if wire is wire_gemini:
        return wire_gemini.stream(plan, req, use, size)
    return cast(list[Frame], wire.stream(plan, req, use, body, size))


def _render(wire: ModuleType, plan: Plan, req: SimRequest, use: Usage, body: dict[str, Any]) -> dict[str, Any]:
    if wire is wire_openai_responses:
        return wire_openai_responses.render(plan, req, use, body)
    return cast(dict[str, Any], wire.render(plan, req, use))


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _root(request: Request) -> Response:
    # Claude Code probes with HEAD / before its first request.
    return JSONResponse({"name": "weave-router simulated provider"})


def create_sim_app(settings: SimConfig | None = None) -> Starlette:
    """The simulator as an ASGI app; ``app.state.sim`` is its ``SimState`` (for in-process control)."""
    state = SimState(settings or SimConfig())
    api, control = _Api(state), Control(state)
    routes = [
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/responses", api.responses, methods=["POST"]),
        Route("/v1/messages", api.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", api.count_tokens, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1beta/models", api.gemini_models, methods=["GET"]),
        Route("/v1beta/models/{target}", api.gemini, methods=["GET", "POST"]),
        Route("/health", _health, methods=["GET"]),
        Route("/", _root, methods=["GET", "HEAD"]),
        Route("/sim/faults", control.faults, methods=["GET", "POST", "DELETE"]),
        Route("/sim/skill", control.skill, methods=["GET", "POST"]),
        Route("/sim/outcome", control.outcome, methods=["GET"]),
        Route("/sim/stats", control.stats, methods=["GET", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app
