"""Reliability around every upstream call and every caller: circuit breakers, retries, the
multi-homing balancer, per-key limits and budgets, the concurrency cap, virtual keys and redaction.

``Reliability`` (``policy``) holds one of each for a gateway; ``settings`` is the ``reliability:``
configuration. This package imports nothing else of ``streams``.
"""

from __future__ import annotations

from streams.reliability.balancer import Balancer
from streams.reliability.circuit import CircuitBreaker, CircuitBreakers, is_failure
from streams.reliability.concurrency import ConcurrencyLimiter, Overloaded
from streams.reliability.keys import KeyCheck, KeyStore, KeyStoreError, VirtualKey, generate_key, scope_for_route
from streams.reliability.limits import LimitResult, Limits, TokenBucket, keep_spend
from streams.reliability.policy import Reliability, ReliabilityPolicy
from streams.reliability.redact import REDACTED, ContentLog, RedactingFilter, Redactor, configure_logging, redact
from streams.reliability.retry import Backoff, RetryableError, RetryState, parse_retry_after, retry_call
from streams.reliability.settings import (
    BalancerSettings,
    BreakerSettings,
    ConcurrencySettings,
    ConnectionSettings,
    KeyStoreSettings,
    LimitSettings,
    ReliabilitySettings,
    RetrySettings,
    VirtualKeySettings,
)

__all__ = [
    "REDACTED",
    "Backoff",
    "Balancer",
    "BalancerSettings",
    "BreakerSettings",
    "CircuitBreaker",
    "CircuitBreakers",
    "ConcurrencyLimiter",
    "ConcurrencySettings",
    "ConnectionSettings",
    "ContentLog",
    "KeyCheck",
    "KeyStore",
    "KeyStoreError",
    "KeyStoreSettings",
    "LimitResult",
    "LimitSettings",
    "Limits",
    "Overloaded",
    "RedactingFilter",
    "Redactor",
    "Reliability",
    "ReliabilityPolicy",
    "ReliabilitySettings",
    "RetryState",
    "RetrySettings",
    "RetryableError",
    "TokenBucket",
    "VirtualKey",
    "VirtualKeySettings",
    "configure_logging",
    "generate_key",
    "is_failure",
    "keep_spend",
    "parse_retry_after",
    "redact",
    "retry_call",
    "scope_for_route",
]
