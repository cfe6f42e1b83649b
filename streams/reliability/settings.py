"""Configuration of the reliability layer: breakers, retries, balancing, limits, concurrency, virtual keys.

Two sections of weave-router.yaml use these models:

- ``reliability:`` -> ``ReliabilitySettings`` (breaker, retry, balancer, concurrency, keys, default_limits)
- ``virtual_keys:`` -> ``list[VirtualKeySettings]``: keys declared in the config file (the key itself comes
  from an env var or is given as its sha256; plain keys never live in the config). Keys created with
  ``weave-router keys create`` live in ``<data_dir>/keys.json`` and are merged with these.

Field names (all optional; the defaults are safe for a single-user laptop and sane for a team proxy):

``reliability.breaker`` (per provider x model circuit breaker, see ``circuit.py``)
    enabled, window_s, buckets, min_requests, error_rate, slow_call_s, slow_call_rate,
    latency_spike_factor, latency_min_samples, open_s, max_open_s, half_open_probes, close_after,
    probe_timeout_s
``reliability.retry`` (jittered exponential backoff, see ``retry.py``)
    max_attempts, base_delay_s, max_delay_s, total_budget_s, max_retry_after_s, jitter
``reliability.balancer`` (multi-homing, see ``balancer.py``)
    strategy (latency | weighted), ewma_alpha, explore, cooldown_429_s, max_cooldown_s
``reliability.concurrency`` (back-pressure, see ``concurrency.py``)
    max_concurrency (None: ``server.max_concurrency``), max_queue, queue_timeout_s, overload_status
``reliability.keys`` (virtual keys, see ``keys.py``)
    require_key, store_file, salt_env, reload_interval_s
``reliability.connections`` (connection hygiene at the HTTP layer, see ``ingress/connections.py``)
    header_timeout_s, max_header_bytes, keep_alive_s, max_connections, max_connections_per_client
``reliability.default_limits`` (for keys without their own, and for anonymous callers)
    requests_per_min, tokens_per_min, usd_per_day, usd_per_month, burst_s
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class BreakerSettings(BaseModel):
    """Circuit breaker per (provider, model). Opens on an error rate or a latency spike over a sliding window."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    window_s: float = Field(30.0, gt=0, description="sliding window over which rates are computed")
    buckets: int = Field(10, ge=1, le=600, description="time buckets in the window (resolution window_s/buckets)")
    min_requests: int = Field(10, ge=1, description="no decision on fewer calls in the window")
    error_rate: float = Field(0.5, gt=0, le=1, description="failed / total in the window that opens the breaker")
    slow_call_s: float | None = Field(None, gt=0, description="a call slower than this counts as slow (None: off)")
    slow_call_rate: float = Field(0.8, gt=0, le=1, description="slow / total in the window that opens the breaker")
    latency_spike_factor: float | None = Field(
        4.0, gt=1, description="window mean latency above factor x long-run baseline opens (None: off)"
    )
    latency_min_samples: int = Field(20, ge=1, description="successes needed before the baseline is trusted")
    open_s: float = Field(15.0, gt=0, description="first cool-down before probing")
    max_open_s: float = Field(300.0, gt=0, description="cool-down doubles on each failed probe, up to this")
    half_open_probes: int = Field(1, ge=1, description="calls let through at once while half-open")
    close_after: int = Field(2, ge=1, description="successful probes that close the breaker")
    probe_timeout_s: float = Field(60.0, gt=0, description="a probe never reported back frees its slot after this")


class RetrySettings(BaseModel):
    """Retries of one upstream call: jittered exponential backoff, Retry-After honoured, bounded in total."""

    model_config = ConfigDict(extra="forbid")

    # Rounds over all of a request's candidates (failover to the next candidate always happens). 1 by
    # default: coding agents and the SDKs retry 429/5xx themselves, and a second layer of retries in the
    # proxy multiplies load on a provider that is already struggling. Raise it for clients that do not.
    max_attempts: int = Field(1, ge=1, description="rounds over the candidates, including the first")
    base_delay_s: float = Field(0.25, ge=0)
    max_delay_s: float = Field(8.0, ge=0, description="cap of one backoff delay (not of Retry-After)")
    total_budget_s: float = Field(30.0, gt=0, description="no retry starts after this much time has passed")
    max_retry_after_s: float = Field(20.0, ge=0, description="a longer Retry-After is not waited for: give up")
    jitter: Literal["full", "equal", "none"] = "full"


class BalancerSettings(BaseModel):
    """Choosing among the providers (or keys) that serve the same model."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["latency", "weighted"] = "latency"
    ewma_alpha: float = Field(0.3, gt=0, le=1, description="weight of the newest latency sample")
    explore: float = Field(0.05, ge=0, le=1, description="latency strategy: share of requests sent to a random peer")
    cooldown_429_s: float = Field(5.0, ge=0, description="how long a 429 without Retry-After moves load away")
    max_cooldown_s: float = Field(120.0, ge=0, description="cap on a provider's Retry-After cool-down")


class ConcurrencySettings(BaseModel):
    """In-flight cap with a bounded FIFO wait queue; beyond it callers get a fast 503/529 instead of collapse."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(None, gt=0, description="None: use server.max_concurrency")
    max_queue: int = Field(1024, ge=0, description="requests allowed to wait for a slot")
    queue_timeout_s: float = Field(10.0, ge=0, description="longest wait for a slot")
    overload_status: Literal[503, 529] = 503


class LimitSettings(BaseModel):
    """Rate limits (token buckets) and budgets of one key. ``None`` means unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_min: float | None = Field(None, gt=0)
    tokens_per_min: float | None = Field(None, gt=0, description="input + output tokens")
    usd_per_day: float | None = Field(None, ge=0, description="UTC calendar day")
    usd_per_month: float | None = Field(None, ge=0, description="UTC calendar month")
    burst_s: float = Field(60.0, gt=0, description="bucket capacity in seconds of the per-minute rate")

    @property
    def unlimited(self) -> bool:
        return all(
            v is None for v in (self.requests_per_min, self.tokens_per_min, self.usd_per_day, self.usd_per_month)
        )


class KeyStoreSettings(BaseModel):
    """Virtual API keys for clients."""

    model_config = ConfigDict(extra="forbid")

    require_key: bool = Field(
        False, description="true: only virtual keys are accepted (401 otherwise); false: any key, as today"
    )
    store_file: str = Field("keys.json", description="relative to data_dir unless absolute")
    salt_env: str = Field(
        "WEAVE_KEY_SALT", description="env var with the hashing secret; unset: <data_dir>/keys.salt (created 0600)"
    )
    reload_interval_s: float = Field(1.0, ge=0, description="how often the gateway notices CLI edits of the store")


class ConnectionSettings(BaseModel):
    """Slow and greedy clients: how long a client may take to send its headers, how big they may be, how
    long an idle keep-alive connection is kept, and how many connections one client and all may hold."""

    model_config = ConfigDict(extra="forbid")

    header_timeout_s: float = Field(10.0, gt=0, description="request line + headers must arrive within this (408)")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line + headers larger than this: 431")
    # Longer than the SDKs' own pool expiry (httpx 5 s, undici 4 s, aiohttp 15 s), so the client closes first.
    keep_alive_s: float = Field(30.0, gt=0, description="an idle keep-alive connection is closed after this")
    max_connections: int = Field(4096, ge=1, description="open connections in all; beyond: 503")
    max_connections_per_client: int = Field(1024, ge=1, description="open connections per client address; beyond: 429")


class ReliabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    balancer: BalancerSettings = Field(default_factory=BalancerSettings)
    concurrency: ConcurrencySettings = Field(default_factory=ConcurrencySettings)
    keys: KeyStoreSettings = Field(default_factory=KeyStoreSettings)
    default_limits: LimitSettings = Field(default_factory=LimitSettings)
    connections: ConnectionSettings = Field(default_factory=ConnectionSettings)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class VirtualKeySettings(LimitSettings):
    """One entry of ``virtual_keys:`` in the config file.

    The key is given either as ``key_env`` (name of an env var holding it) or ``key_sha256`` (hex sha256 of
    it, e.g. ``printf %s "$KEY" | sha256sum``). ``models`` and ``routes`` are fnmatch patterns
    (``claude-*``, ``router/auto``; ``/v1/messages*``); empty means any. Limit fields as in ``LimitSettings``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    key_env: str | None = None
    key_sha256: str | None = None
    models: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    team: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    disabled: bool = False
    scopes: list[str] = Field(
        default_factory=lambda: ["models"],
        description="models | feedback | analytics | metrics | * (what kinds of endpoint the key may call)",
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        known = {"models", "feedback", "analytics", "metrics", "*"}
        bad = [s for s in v if s not in known]
        if bad:
            raise ValueError(f"unknown scope {bad[0]!r}: use models, feedback, analytics, metrics or *")
        return v or ["models"]

    @field_validator("key_sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.match(v.lower()):
            raise ValueError("key_sha256 must be 64 hex digits")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_source(self) -> VirtualKeySettings:
        if bool(self.key_env) == bool(self.key_sha256):
            raise ValueError(f"virtual key {self.name!r}: give exactly one of key_env or key_sha256")
        return self

    def limits(self) -> LimitSettings:
        return LimitSettings(
            requests_per_min=self.requests_per_min,
            tokens_per_min=self.tokens_per_min,
            usd_per_day=self.usd_per_day,
            usd_per_month=self.usd_per_month,
            burst_s=self.burst_s,
        )
