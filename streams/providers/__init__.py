"""Upstream providers: the pooled HTTP/1.1 client, the failover loop, provider URLs and headers;
``sim`` is the simulated provider."""

from __future__ import annotations

from streams.providers.client import UpstreamClient, UpstreamError, UpstreamResponse
from streams.providers.failover import (
    Attempt,
    FailoverPolicy,
    FailoverResult,
    PrimedResponse,
    candidates,
    send_with_failover,
)
from streams.providers.upstream import auth_headers, endpoint_url, forwarded_headers

__all__ = [
    "Attempt",
    "FailoverPolicy",
    "FailoverResult",
    "PrimedResponse",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
    "auth_headers",
    "candidates",
    "endpoint_url",
    "forwarded_headers",
    "send_with_failover",
]
