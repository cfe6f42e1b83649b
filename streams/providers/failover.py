"""Failover before the first byte: the one retry loop of the gateway.

A request goes to its decided (model, provider); when that fails before anything reached the client
(connect error, first-byte timeout, 429, 5xx, or a stream that breaks before its first chunk) the next
candidate is tried: the same model on its other providers (multi-homing), then the decision's fallback
models in order.

The ``FailoverPolicy`` decides which candidates may be tried and learns from each attempt: the
reliability layer's policy (``streams.reliability.policy.ReliabilityPolicy``) plugs circuit breakers and
the balancer in here. ``available`` filters candidates up front (no side effect), ``allow`` is asked just
before an attempt (a half-open breaker hands out its probe slot then), ``record`` gets each outcome.

When every candidate failed with a retryable answer, ``retry`` (a factory of a ``RetryState``-like
object) may allow another round after a backoff that honours Retry-After; without it one round is all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Protocol

from streams.config import ModelSettings, ProviderSettings
from streams.providers.client import UpstreamClient, UpstreamError, UpstreamResponse

Candidate = tuple[ModelSettings, ProviderSettings]
# Builds (path, body, headers) for one candidate; the body differs per model and provider dialect.
Prepare = Callable[[ModelSettings, ProviderSettings], tuple[str, bytes, Mapping[str, str]]]


class RetryRounds(Protocol):
    """What the loop needs of ``streams.reliability.retry.RetryState``."""

    def attempt(self) -> None: ...

    def next_delay(self, retry_after: float | None = None) -> float | None: ...


class FailoverPolicy:
    """Which failures move on to the next candidate, and which candidates may be tried at all."""

    def retryable_status(self, status: int) -> bool:
        return status == 429 or status >= 500

    def retryable_error(self, error: UpstreamError) -> bool:
        return True

    def available(self, model: ModelSettings, provider: ProviderSettings) -> bool:
        """Up-front filter (no side effect): skip a provider known to be down."""
        return True

    def allow(self, model: ModelSettings, provider: ProviderSettings) -> bool:
        """Asked just before an attempt; may take a half-open breaker's probe slot."""
        return True

    def record(
        self,
        model: ModelSettings,
        provider: ProviderSettings,
        ok: bool,
        *,
        status: int | None = -1,
        latency_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Outcome of one attempt: HTTP ``status`` (None: no answer), time to headers, Retry-After."""


@dataclass(slots=True)
class Attempt:
    model: str
    provider: str
    status: int | None = None
    error: str | None = None


@dataclass(slots=True)
class FailoverResult:
    """The answer to relay (``response``), or the last connection error when no candidate answered.

    ``error.kind == "circuit_open"`` means no candidate was tried: every breaker is open.
    """

    response: UpstreamResponse | PrimedResponse | None
    model: ModelSettings
    provider: ProviderSettings
    attempts: list[Attempt] = field(default_factory=list)
    error: UpstreamError | None = None


class PrimedResponse:
    """A streaming answer whose first chunk was already read (so a stream that dies before it could still
    fail over). Same surface as ``UpstreamResponse``."""

    __slots__ = ("status", "headers", "_inner", "_first", "_rest")

    def __init__(self, inner: UpstreamResponse, first: bytes, rest: AsyncIterator[bytes]) -> None:
        self.status = inner.status
        self.headers = inner.headers
        self._inner = inner
        self._first = first
        self._rest = rest

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._first:
            first, self._first = self._first, b""
            yield first
        async for chunk in self._rest:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    def close(self) -> None:
        self._inner.close()

    def release(self) -> None:
        self._inner.release()


def candidates(
    primary: ModelSettings,
    primary_provider: str,
    fallbacks: Sequence[str],
    models: Mapping[str, ModelSettings],
    providers: Mapping[str, ProviderSettings],
) -> list[Candidate]:
    """Decided provider first, then the model's other providers, then each fallback model's providers."""
    out: list[Candidate] = []
    seen: set[tuple[str, str]] = set()

    def add(model: ModelSettings, provider_name: str) -> None:
        provider = providers.get(provider_name)
        if provider is not None and (model.name, provider_name) not in seen:
            seen.add((model.name, provider_name))
            out.append((model, provider))

    add(primary, primary_provider)
    for name in primary.providers:
        add(primary, name)
    for fallback in fallbacks:
        model = models.get(fallback)
        if model is not None:
            for name in model.providers:
                add(model, name)
    return out


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (delta seconds only; dates are rare upstream)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if 0 <= seconds < float("inf"):
                return seconds
    return None


async def _discard(resp: UpstreamResponse | PrimedResponse) -> None:
    """Drain a small error body so the pooled connection can be reused."""
    try:
        await resp.read()
    except UpstreamError:
        resp.close()


async def send_with_failover(
    client: UpstreamClient,
    cands: Sequence[Candidate],
    prepare: Prepare,
    *,
    stream: bool,
    policy: FailoverPolicy | None = None,
    retry: Callable[[], RetryRounds] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> FailoverResult:
    """Try candidates in order until one answers with a non-retryable status.

    Streams: the first body chunk is read here too, so a stream that breaks before it fails over.
    When every candidate failed retryably, the last failure is returned (or, with ``retry``, another
    round starts after its delay).
    """
    policy = policy or _DEFAULT_POLICY
    attempts: list[Attempt] = []
    rounds: RetryRounds | None = None
    while True:
        usable = [c for c in cands if policy.available(*c)]
        if not usable:
            model, provider = cands[0]
            return FailoverResult(
                None, model, provider, attempts,
                UpstreamError("circuit open for every candidate", kind="circuit_open", provider=provider.name),
            )
        # The last retryable failure of this round: a response (kept unread, to relay) or an error.
        last: FailoverResult | None = None
        retry_after: float | None = None
        for model, provider in usable:
            if not policy.allow(model, provider):
                continue  # its half-open breaker is already probing with another request
            path, body, headers = prepare(model, provider)
            t = perf_counter()
            try:
                resp: UpstreamResponse | PrimedResponse = await client.send(provider, path, body, headers, stream)
            except UpstreamError as exc:
                attempts.append(Attempt(model.name, provider.name, None, exc.message))
                policy.record(model, provider, False, status=None)
                if not policy.retryable_error(exc):
                    return FailoverResult(None, model, provider, attempts, exc)
                if last is not None and last.response is not None:
                    await _discard(last.response)
                last = FailoverResult(None, model, provider, attempts, exc)
                continue
            latency = perf_counter() - t
            status = resp.status
            if status < 400:
                if stream and isinstance(resp, UpstreamResponse):
                    primed = await _prime(resp)
                    if isinstance(primed, UpstreamError):
                        attempts.append(Attempt(model.name, provider.name, status, primed.message))
                        policy.record(model, provider, False, status=None, latency_s=latency)
                        if last is not None and last.response is not None:
                            await _discard(last.response)
                        last = FailoverResult(None, model, provider, attempts, primed)
                        continue
                    resp = primed
                attempts.append(Attempt(model.name, provider.name, status))
                policy.record(model, provider, True, status=status, latency_s=latency)
                if last is not None and last.response is not None:
                    await _discard(last.response)
                return FailoverResult(resp, model, provider, attempts)
            attempts.append(Attempt(model.name, provider.name, status))
            retryable = policy.retryable_status(status)
            ra = _retry_after(getattr(resp, "headers", None) or {}) if retryable else None
            policy.record(model, provider, not retryable, status=status, latency_s=latency, retry_after_s=ra)
            if not retryable:
                if last is not None and last.response is not None:
                    await _discard(last.response)
                return FailoverResult(resp, model, provider, attempts)
            if ra is not None:
                retry_after = ra if retry_after is None else min(retry_after, ra)
            if last is not None and last.response is not None:
                await _discard(last.response)
            last = FailoverResult(resp, model, provider, attempts)
        if last is None:
            # Every usable candidate's half-open breaker was busy probing.
            model, provider = usable[0]
            return FailoverResult(
                None, model, provider, attempts,
                UpstreamError("circuit half-open, probe in flight", kind="circuit_open", provider=provider.name),
            )
        if retry is None:
            return last
        if rounds is None:
            rounds = retry()
            rounds.attempt()  # the round just finished
        delay = rounds.next_delay(retry_after)
        if delay is None:
            return last
        if last.response is not None:
            await _discard(last.response)
        await sleep(delay)
        rounds.attempt()


async def _prime(resp: UpstreamResponse) -> PrimedResponse | UpstreamError:
    """Read a stream's first chunk; an error here is still a failover, not a broken client stream."""
    it = resp.chunks()
    try:
        first = await anext(it)
    except StopAsyncIteration:
        first = b""
    except UpstreamError as exc:
        resp.close()
        return exc
    return PrimedResponse(resp, first, it)


_DEFAULT_POLICY = FailoverPolicy()
