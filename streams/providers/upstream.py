"""Where and how to call a provider: per-dialect URL paths and auth headers.

Pure functions, no I/O. The upstream key is read from ``ProviderSettings.api_key()`` at call time and
only ever put into the outgoing headers (never logged, never stored elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from streams.config import ProviderSettings
from streams.translation.canonical import Dialect

SIM_BASE_URL = "sim"
ANTHROPIC_VERSION = "2023-06-01"
SIM_KEY = "sim-key"
# Client headers starting with this reach a simulated provider (per-request fault injection in tests).
SIM_HEADER_PREFIX = "x-sim-"

# Relative to a base URL that already ends in the API version (``https://api.openai.com/v1``,
# ``https://generativelanguage.googleapis.com/v1beta``).
PATHS: dict[str, str] = {
    "openai_chat": "/chat/completions",
    "openai_responses": "/responses",
    "anthropic_messages": "/messages",
}
# Gemini names the model and streaming in the path.
GEMINI_PATH = "/models/{model}:generateContent"
GEMINI_STREAM_PATH = "/models/{model}:streamGenerateContent?alt=sse"
# The simulator's API version prefix per dialect (the default is /v1).
_SIM_VERSION = {"gemini": "/v1beta"}

# Client headers worth forwarding to a provider of the same dialect (lower-case names).
_FORWARD_ANTHROPIC = ("anthropic-version", "anthropic-beta")


def resolve_base_url(base_url: str, sim_url: str | None, dialect: Dialect | str = "openai_chat") -> str:
    """``sim`` means the built-in simulator; its URL is only known once it runs."""
    if base_url == SIM_BASE_URL:
        if not sim_url:
            raise RuntimeError("provider base_url 'sim' needs the simulator URL (UpstreamClient(sim_url=...))")
        base_url = sim_url.rstrip("/") + _SIM_VERSION.get(dialect, "/v1")
    return base_url.rstrip("/")


def request_path(dialect: Dialect | str, upstream_model: str, *, stream: bool) -> str:
    """The generation endpoint's path under a provider's base URL."""
    if dialect == "gemini":  # Google's resource name "models/x" is accepted for the model too
        model = quote(upstream_model.removeprefix("models/"), safe="")
        return (GEMINI_STREAM_PATH if stream else GEMINI_PATH).format(model=model)
    return PATHS[dialect]


def endpoint_url(base_url: str, dialect: Dialect | str, upstream_model: str = "", *, stream: bool = False) -> str:
    """Full URL of the dialect's generation endpoint under ``base_url`` (already resolved)."""
    return base_url + request_path(dialect, upstream_model, stream=stream)


def auth_headers(provider: ProviderSettings) -> dict[str, str]:
    """Auth and version headers a provider of this dialect expects, plus its configured extras."""
    headers: dict[str, str] = {"content-type": "application/json"}
    key = provider.api_key()
    if key is None and provider.base_url == SIM_BASE_URL:
        key = SIM_KEY  # the simulator wants some key, like a real provider; it has no secret
    if provider.dialect == "anthropic_messages":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if key:
            headers["x-api-key"] = key
    elif provider.dialect == "gemini":
        if key:
            headers["x-goog-api-key"] = key
    elif key:
        headers["authorization"] = f"Bearer {key}"
    for name, value in provider.headers.items():
        headers[name.lower()] = value
    return headers


def forwarded_headers(
    client_headers: Mapping[str, str], client_dialect: str, provider: ProviderSettings
) -> dict[str, str]:
    """Client headers that still mean something to the provider (Anthropic ones: same dialect only)."""
    out: dict[str, str] = {}
    provider_dialect = provider.dialect
    if provider.base_url == SIM_BASE_URL:
        for name, value in client_headers.items():
            if name.startswith(SIM_HEADER_PREFIX):
                out[name] = value
    if client_dialect == provider_dialect == "anthropic_messages":
        for name in _FORWARD_ANTHROPIC:
            forwarded = client_headers.get(name)
            if forwarded:
                out[name] = forwarded
    return out
