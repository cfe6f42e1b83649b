"""Who is calling and which task-session a request belongs to, from headers and the request."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import msgspec

from streams.translation.canonical import CanonicalRequest, TextPart

# Headers agents use to name their session, most specific first.
SESSION_HEADERS = ("x-router-session", "x-claude-code-session-id", "session-id", "x-session-id", "thread-id")

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


class _UserId(msgspec.Struct):
    session_id: str | None = None


def session_id(headers: Mapping[str, str], req: CanonicalRequest, key: str | None) -> str:
    """A stable id for the task-session: explicit header, client metadata, else a conversation hash.

    The hash of (key, system prompt start, first user message) is the same for every turn of one
    conversation because agents resend the full history.
    """
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    user_id = req.metadata.get("user_id") if req.metadata else None
    if user_id and user_id.startswith("{"):
        try:
            sid = msgspec.json.decode(user_id, type=_UserId).session_id
        except msgspec.DecodeError:
            sid = None
        if sid:
            return sid
    cache_key = req.extra.get("prompt_cache_key") if req.extra else None
    if isinstance(cache_key, str) and cache_key:
        return cache_key
    h = hashlib.blake2b(digest_size=8)
    h.update((key or "").encode())
    for sys_part in req.system[:1]:
        h.update(sys_part.text[:512].encode())
    for msg in req.messages:
        if msg.role == "user":
            for part in msg.parts:
                if isinstance(part, TextPart):
                    h.update(part.text[:2048].encode())
                    break
            break
    return "s-" + h.hexdigest()
