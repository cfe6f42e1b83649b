"""Who is calling: the caller's key (the client: ``routing.features.detect_client``; the task-session:
``routing.sessions.session_identity``)."""

from __future__ import annotations

from collections.abc import Mapping


def client_key(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``x-api-key`` (Claude Code) or ``Authorization: Bearer`` (SDKs, Codex)."""
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None
