"""The upstream exchange: what one request accumulates, and the phase that talks to the provider.

``Exchange`` is the per-request state both entry points fill (HTTP endpoints and the Kafka router
agent); ``Refusal`` is an answer that is an error, rendered later in the caller's dialect by whichever
entry point has the caller. ``call_upstream`` orders the candidates by breaker state and runs the one
failover loop (``providers.failover.send_with_failover``: breakers, retries, balancer);
``read_whole`` turns a non-streamed answer into the bytes the caller gets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import msgspec

from streams.config import ModelSettings, ProviderSettings
from streams.events.ids import new_id
from streams.ingress.auth import ClientIdentity
from streams.ingress.errors import parse_upstream_error, upstream_auth_failure
from streams.ingress.http import RawHeaders
from streams.providers.client import UpstreamError, UpstreamResponse
from streams.providers.failover import Attempt, PrimedResponse, send_with_failover
from streams.providers.upstream import auth_headers, forwarded_headers, request_path
from streams.reliability.settings import LimitSettings
from streams.routing.decision import Decision
from streams.translation import fastpath, registry
from streams.translation.canonical import CanonicalRequest, TranslationError, Usage
from streams.translation.common import session_cache_key

if TYPE_CHECKING:
    from streams.ingress.core import ServingCore

_encode = msgspec.json.encode
_decode = msgspec.json.decode
Answer = UpstreamResponse | PrimedResponse


@dataclass(slots=True)
class Refusal:
    """An error answer, not yet rendered: status, message and what the dialect's error shape may add."""

    status: int
    message: str
    param: str | None = None
    error_type: str | None = None
    headers: RawHeaders = field(default_factory=list)
    code: str | None = None  # a machine-readable reason, where the dialect's error shape has one


class Exchange:
    """Everything one request accumulates on its way through; becomes the trace at the end."""

    __slots__ = (
        "t0", "ts_ms", "event_id", "request_id", "dialect", "source", "session_id", "headers", "raw", "body",
        "req", "requested", "decision", "identity", "model", "provider", "pre_s", "translate_s", "ttft_s",
        "status", "error", "usage", "attempts", "same_dialect", "limits", "est_tokens", "recorded",
    )

    def __init__(self, t0: float, dialect: str, headers: dict[str, str], raw: bytes, *, source: str = "http",
                 request_id: str | None = None, ts_ms: int | None = None) -> None:
        self.t0 = t0
        self.ts_ms = ts_ms or int(time.time() * 1000)  # when the request arrived
        self.event_id = new_id()
        self.request_id = request_id or new_id()
        self.dialect = dialect
        self.source = source
        self.session_id = ""  # the caller's, for a trace without a decision
        self.headers = headers
        self.raw = raw
        self.body: dict[str, Any] = {}
        self.req: CanonicalRequest | None = None
        self.requested = ""
        self.decision: Decision | None = None
        self.identity: ClientIdentity | None = None
        self.model: ModelSettings | None = None
        self.provider: ProviderSettings | None = None
        self.pre_s = 0.0  # gateway time before the first upstream send
        self.translate_s = 0.0  # translation time after it (response side, re-prepared fallbacks)
        self.ttft_s: float | None = None
        self.status = 0
        self.error: str | None = None
        self.usage: Usage | None = None
        self.attempts: list[Attempt] = []
        self.same_dialect = False
        self.limits: LimitSettings | None = None  # the key's limits, when it has any (charged after)
        self.est_tokens = 0
        self.recorded = False

    @property
    def overhead_ms(self) -> float:
        return (self.pre_s + self.translate_s) * 1000.0

    def fail(self, refusal: Refusal) -> Refusal:
        """Note a refusal as this exchange's outcome (what the trace records) and return it."""
        self.status, self.error = refusal.status, refusal.message
        return refusal

    def router_headers(self) -> RawHeaders:
        d = self.decision
        if d is None:
            return []
        model = self.model.name if self.model else d.model
        provider = self.provider.name if self.provider else d.provider
        return [
            (b"x-router-model", model.encode()),
            (b"x-router-provider", provider.encode()),
            (b"x-router-decision-id", d.decision_id.encode()),
            (b"x-router-session", d.session_id.encode("latin-1", "replace")),
            (b"x-router-overhead-ms", f"{self.overhead_ms:.3f}".encode()),
            (b"x-request-id", self.request_id.encode()),
        ]


def prepare_attempt(
    core: ServingCore, ex: Exchange, model: ModelSettings, provider: ProviderSettings
) -> tuple[str, bytes, dict[str, str]]:
    """Body and headers for one upstream attempt (called again for each fallback)."""
    t = perf_counter()
    assert ex.req is not None
    pd = provider.dialect
    headers = auth_headers(provider)
    fwd = forwarded_headers(ex.headers, ex.dialect, provider)
    if fwd:
        headers.update(fwd)
    thinking = model.capabilities.thinking
    if pd == ex.dialect:
        body = fastpath.rewrite_body(ex.raw, pd, model.upstream, supports_thinking=thinking, ensure_usage=True)
        core.rewrite_headers(headers, model)
    else:
        wire = registry.get(pd).render_request(_with_cache_key(ex, provider), model.upstream, supports_thinking=thinking)
        if ex.req.stream and pd == "openai_chat":
            # Usage on every response: ask for it even when the client did not.
            opts = wire.get("stream_options") or {}
            wire["stream_options"] = {**opts, "include_usage": True}
        body = _encode(wire)
    now = perf_counter()
    if ex.pre_s == 0.0:
        ex.pre_s = now - ex.t0
    else:
        ex.translate_s += now - t
    return request_path(pd, model.upstream, stream=ex.req.stream), body, headers


def _with_cache_key(ex: Exchange, provider: ProviderSettings) -> CanonicalRequest:
    """The request as this provider gets it: a translated conversation keeps one prompt cache per
    session (OpenAI's prompt_cache_key: the client's, else the session's), where the provider takes one."""
    req = ex.req
    assert req is not None
    if not provider.takes_prompt_cache_key():
        key = None
    elif req.cache_key is not None or ex.decision is None or not ex.decision.session_id:
        key = req.cache_key
    else:
        key = session_cache_key(ex.decision.session_id)
    return req if key == req.cache_key else replace(req, cache_key=key)


async def call_upstream(core: ServingCore, ex: Exchange) -> Answer | Refusal:
    """The decided model first, then its other providers, then the fallbacks; an answer to relay
    (any status: ``upstream_refusal`` renders a provider's error) or why there is none."""
    gw = core.gw
    assert ex.decision is not None and ex.req is not None
    rel = gw.reliability
    cands = gw.candidates(ex.decision)
    if not cands:
        return ex.fail(Refusal(503, f"no provider configured for model '{ex.decision.model}'",
                               headers=ex.router_headers()))
    result = await send_with_failover(
        gw.client, rel.order(cands), partial(prepare_attempt, core, ex), stream=ex.req.stream, policy=gw.failover,
        retry=rel.retry_state if rel.backoff.s.max_attempts > 1 else None,
    )
    ex.attempts, ex.model, ex.provider = result.attempts, result.model, result.provider
    ex.same_dialect = result.provider.dialect == ex.dialect
    if result.response is not None:
        return result.response
    err = result.error
    if err is not None and err.kind == "circuit_open":
        return _circuit_open(core, ex, cands)  # notes the shorter reason on ex itself
    status = 504 if err is not None and err.kind.endswith("timeout") else 502
    message = err.message if err else "upstream failed"
    ex.status, ex.error = status, message
    return Refusal(status, f"upstream provider '{result.provider.name}' failed: {message}",
                   headers=ex.router_headers())


def _circuit_open(core: ServingCore, ex: Exchange, cands: list[Any]) -> Refusal:
    """Every candidate's breaker is open: fail fast with 503 and when to come back."""
    breakers = core.gw.reliability.breakers
    waits = [breakers.get(p.name, m.name).snapshot().get("retry_in_s", 1.0) for m, p in cands]
    retry_in = max(1, round(min(waits))) if waits else 1
    names = ", ".join(sorted({p.name for _, p in cands}))
    what = f"circuit open for every provider of model '{ex.decision.model if ex.decision else ''}'"
    refusal = Refusal(503, f"{what} ({names}): they failed repeatedly; retry in {retry_in} s",
                      error_type="overloaded_error" if ex.dialect == "anthropic_messages" else None,
                      headers=[*ex.router_headers(), (b"retry-after", str(retry_in).encode())])
    ex.status, ex.error = 503, what
    return refusal


async def upstream_refusal(core: ServingCore, ex: Exchange, resp: Answer) -> Refusal:
    """The provider refused: same status, its message, in the caller's dialect."""
    try:
        data = await resp.read()
    except UpstreamError:
        data = b""
    message, etype, param = parse_upstream_error(data, resp.status)
    # A provider may quote the key it was sent ("Incorrect API key provided: sk-…"): never pass it on.
    message = core.gw.reliability.redactor.redact(message)
    extra = ex.router_headers()
    auth = upstream_auth_failure(ex.provider.name if ex.provider else "upstream", resp.status)
    if auth is not None:  # the router's key for that provider, not the caller's
        return ex.fail(Refusal(auth.status, auth.message, headers=extra))
    retry_after = resp.headers.get("retry-after")
    if retry_after:
        extra.append((b"retry-after", retry_after.encode("latin-1")))
    return ex.fail(Refusal(resp.status, message, param=param, error_type=etype if ex.same_dialect else None,
                           headers=extra))


async def read_whole(core: ServingCore, ex: Exchange, resp: Answer) -> bytes | Refusal:
    """A non-streamed answer as the caller's dialect's bytes (the provider's own when it speaks it)."""
    assert ex.model is not None and ex.provider is not None
    try:
        data = await resp.read()
    except UpstreamError as exc:
        return ex.fail(Refusal(502, exc.message, headers=ex.router_headers()))
    ex.ttft_s = perf_counter() - ex.t0
    t = perf_counter()
    if ex.same_dialect:
        usage = core.codec.body_usage(data)
        if usage is None:  # cut short or garbage: never a 200 with a body the client cannot read
            return ex.fail(Refusal(502, "unreadable upstream response: not valid JSON", headers=ex.router_headers()))
        ex.usage, out = usage, core.codec.seal_relayed(data)
    else:
        try:
            parsed = registry.get(ex.provider.dialect).parse_response(_decode(data))
        except (msgspec.DecodeError, TranslationError, KeyError, TypeError, ValueError) as exc:
            return ex.fail(Refusal(502, f"unreadable upstream response: {exc}", headers=ex.router_headers()))
        ex.usage = parsed.usage
        out = _encode(core.codec.render_response(parsed, model=ex.model.name, **core.render_options(ex)))
    ex.translate_s += perf_counter() - t
    ex.status = resp.status
    return out
