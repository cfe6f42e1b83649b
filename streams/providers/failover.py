"""Failover before the first byte: the one retry loop of the gateway.

A request goes to its decided (model, provider); when that fails before anything reached the client
(connect error, first-byte timeout, 429, 5xx) the next candidate is tried: the same model on its other
providers (multi-homing), then the decision's fallback models in order. A richer circuit breaker plugs
in through ``FailoverPolicy`` later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.config import ModelSettings, ProviderSettings
from streams.providers.client import UpstreamClient, UpstreamError, UpstreamResponse

Candidate = tuple[ModelSettings, ProviderSettings]
# Builds (path, body, headers) for one candidate; the body differs per model and provider dialect.
Prepare = Callable[[ModelSettings, ProviderSettings], tuple[str, bytes, Mapping[str, str]]]


class FailoverPolicy:
    """Which failures move on to the next candidate. Subclass to add a circuit breaker."""

    def retryable_status(self, status: int) -> bool:
        return status == 429 or status >= 500

    def retryable_error(self, error: UpstreamError) -> bool:
        return True

    def allow(self, model: ModelSettings, provider: ProviderSettings) -> bool:
        """Hook for a circuit breaker: skip a provider known to be down."""
        return True

    def record(self, model: ModelSettings, provider: ProviderSettings, ok: bool) -> None:
        """Hook for a circuit breaker: outcome of one attempt."""


@dataclass(slots=True)
class Attempt:
    model: str
    provider: str
    status: int | None = None
    error: str | None = None


@dataclass(slots=True)
class FailoverResult:
    """The answer to relay (``response``), or the last connection error when no candidate answered."""

    response: UpstreamResponse | None
    model: ModelSettings
    provider: ProviderSettings
    attempts: list[Attempt] = field(default_factory=list)
    error: UpstreamError | None = None


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


async def send_with_failover(
    client: UpstreamClient,
    cands: Sequence[Candidate],
    prepare: Prepare,
    *,
    stream: bool,
    policy: FailoverPolicy | None = None,
) -> FailoverResult:
    """Try candidates in order until one answers with a non-retryable status."""
    policy = policy or _DEFAULT_POLICY
    attempts: list[Attempt] = []
    last_error: UpstreamError | None = None
    usable = [c for c in cands if policy.allow(*c)] or list(cands[:1])
    for i, (model, provider) in enumerate(usable):
        is_last = i == len(usable) - 1
        path, body, headers = prepare(model, provider)
        try:
            resp = await client.send(provider, path, body, headers, stream)
        except UpstreamError as exc:
            attempts.append(Attempt(model.name, provider.name, None, exc.message))
            policy.record(model, provider, False)
            last_error = exc
            if is_last or not policy.retryable_error(exc):
                return FailoverResult(None, model, provider, attempts, exc)
            continue
        attempts.append(Attempt(model.name, provider.name, resp.status))
        ok = resp.status < 400
        policy.record(model, provider, ok or not policy.retryable_status(resp.status))
        if ok or is_last or not policy.retryable_status(resp.status):
            return FailoverResult(resp, model, provider, attempts)
        # Drain the small error body so the pooled connection can be reused.
        try:
            await resp.read()
        except UpstreamError:
            resp.close()
    # Only reached when ``usable`` is empty.
    model, provider = cands[0]
    return FailoverResult(None, model, provider, attempts, last_error or UpstreamError("no upstream candidates"))


_DEFAULT_POLICY = FailoverPolicy()
