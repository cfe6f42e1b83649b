"""Who is calling, from the request headers (the task-session: ``routing.sessions.session_identity``)."""

from __future__ import annotations

from collections.abc import Mapping

# User-agent prefixes of known agents (lower-case) -> short client name for traces.
_CLIENTS = (
    ("claude-cli", "claude-code"),
    ("codex", "codex"),
    ("aider", "aider"),
    ("anthropic/python", "anthropic-python"),
    ("anthropic/js", "anthropic-js"),
    ("openai/python", "openai-python"),
    ("openai/js", "openai-js"),
    ("cursor", "cursor"),
)


def client_key(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``x-api-key`` (Claude Code) or ``Authorization: Bearer`` (SDKs, Codex)."""
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def client_name(headers: Mapping[str, str]) -> str:
    ua = headers.get("user-agent", "").lower()
    if headers.get("x-claude-code-session-id"):
        return "claude-code"
    for prefix, name in _CLIENTS:
        if prefix in ua:
            return name
    return ua.split("/", 1)[0][:40] if ua else "unknown"
